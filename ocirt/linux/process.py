"""The container process: environment, program lookup, identity, limits, fds and execve.

``ProcessSetup`` is built from config.json ``process`` in the parent (so mistakes are found
before anything is created) and carried out by the init process inside the container, after
pivot_root and before it waits for ``start``. Messages for a program that cannot be run use
runc's words, which managers such as podman map to exit codes 127 and 126.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
from functools import partial

from ocirt.errors import ConfigError, ExecError, OcirtError
from ocirt.linux import capabilities
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Step
from ocirt.linux.process_attrs import process_steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def environment(entries: list[str], where: str = "$.process.env") -> dict[str, str]:
    """process.env as a dict: the last of duplicate keys wins, as with runc, and entries runc
    refuses (no '=', an empty name, a NUL byte) are errors."""
    env: dict[str, str] = {}
    for index, entry in enumerate(entries):
        key, sep, value = entry.partition("=")
        if not sep:
            raise ConfigError(f"{where}[{index}]", f"invalid environment variable {entry!r}: "
                              "missing '='")
        if not key:
            raise ConfigError(f"{where}[{index}]", "invalid environment variable: name "
                              "cannot be empty")
        if "\0" in entry:
            raise ConfigError(f"{where}[{index}]", "invalid environment variable: contains "
                              "a NUL byte")
        env[key] = value
    return env


def rlimit_number(name: str, index: int) -> int:
    number = getattr(resource, name, None)
    if not isinstance(number, int):
        raise ConfigError(f"$.process.rlimits[{index}].type", f"unknown rlimit {name!r}")
    return number


class ProcessSetup:
    """config.json ``process``, checked and ready to apply."""

    def __init__(self, process: dict[str, Any], preserve_fds: int) -> None:
        if not process.get("args"):
            raise ConfigError("$.process.args", "must name the program to run")
        user = process.get("user", {})
        caps = process.get("capabilities")
        self.args: list[str] = list(process["args"])
        self.env = environment(process.get("env", []))
        self.cwd: str = process.get("cwd", "/")
        self.uid: int = user.get("uid", 0)
        self.gid: int = user.get("gid", 0)
        self.additional_gids: list[int] = list(user.get("additionalGids", []))
        self.umask: int | None = user.get("umask")
        # (name, number, soft, hard)
        self.rlimits = [(r["type"], rlimit_number(r["type"], i), r["soft"], r["hard"])
                        for i, r in enumerate(process.get("rlimits", []))]
        self.no_new_privileges = bool(process.get("noNewPrivileges", False))
        self.capabilities = capabilities.resolve(caps) if caps is not None else None
        self.capability_names: dict[str, Any] = caps or {}
        self.preserve_fds = preserve_fds
        self.path = ""  # the program, found inside the container
        self.attribute_steps = process_steps(process)  # ioPriority, scheduler

    def steps(self) -> list[Step]:
        """What init does in the container before it waits for ``start``."""
        steps = [Step(f"find {self.args[0]!r} (PATH={self.env.get('PATH', '')})",
                      self.find_program)]
        steps += [Step(f"setrlimit {name} soft={soft} hard={hard}",
                       partial(_setrlimit, name, num, soft, hard))
                  for name, num, soft, hard in self.rlimits]
        steps += self.attribute_steps
        if self.no_new_privileges:
            steps.append(Step("prctl(PR_SET_NO_NEW_PRIVS, 1)",
                              lambda: sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)))
        if self.capabilities is not None:
            steps.append(Step(f"drop bounding set to: "
                              f"{' '.join(self.capability_names.get('bounding', [])) or '(none)'}",
                              self._drop_bounding))
        groups = ",".join(map(str, self.additional_gids)) or "(none)"
        steps.append(Step(f"setgroups [{groups}]; setresgid {self.gid}; setresuid {self.uid}",
                          self.set_identity))
        if self.capabilities is not None:
            text = "; ".join(capabilities.describe(self.capability_names)[1:])
            steps.append(Step(text, self._apply_caps))
        steps.append(Step(f"chdir {self.cwd}", self.enter_cwd))
        return steps

    def _drop_bounding(self) -> None:
        assert self.capabilities is not None
        capabilities.drop_bounding(self.capabilities)

    def _apply_caps(self) -> None:
        assert self.capabilities is not None
        capabilities.apply_sets(self.capabilities)

    def find_program(self) -> None:
        name = self.args[0]
        if "/" in name:
            self.path = _check_executable(name, name)
            return
        for directory in self.env.get("PATH", "").split(":"):
            candidate = os.path.join(directory or ".", name)
            try:
                self.path = _check_executable(name, candidate)
                return
            except ExecError:
                continue
        raise ExecError(f'exec: "{name}": executable file not found in $PATH')

    def set_identity(self) -> None:
        keep = self.capabilities is not None and self.uid != 0
        if keep:
            sc.prctl(sc.PR_SET_KEEPCAPS, 1)
        try:
            os.setgroups(self.additional_gids)
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        except OSError as err:
            raise OcirtError(f"setting user {self.uid}:{self.gid} "
                             f"(groups {self.additional_gids}): {err.strerror}") from err
        if keep:
            sc.prctl(sc.PR_SET_KEEPCAPS, 0)
        if "HOME" not in self.env:
            self.env["HOME"] = _home_of(self.uid)

    def enter_cwd(self) -> None:
        try:
            os.chdir(self.cwd)
        except OSError as err:
            raise OcirtError(f"chdir to cwd ({self.cwd!r}) set in config.json failed: "
                             f"{err.strerror}") from err
        # A cwd reached through a leaked fd would lie outside the root (CVE-2024-21626).
        if not os.getcwd().startswith("/"):
            raise OcirtError(f"cwd {self.cwd!r} is outside the container's root")

    def execute(self) -> None:
        """The last step: signals back to default, the umask, then execve. Never returns."""
        for signum in range(1, signal.NSIG):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.umask(self.umask if self.umask is not None else 0o022)
        try:
            os.execve(self.path, self.args, self.env)
        except OSError as err:
            raise ExecError(f'exec: "{self.args[0]}": {_text(err)}') from err


def _check_executable(name: str, path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as err:
        raise ExecError(f'exec: "{name}": stat {path}: {_text(err)}') from err
    if stat.S_ISDIR(st.st_mode) or not os.access(path, os.X_OK, effective_ids=True):
        raise ExecError(f'exec: "{name}": permission denied')
    return path


def _text(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


def _setrlimit(name: str, number: int, soft: int, hard: int) -> None:
    try:
        resource.setrlimit(number, (soft, hard))
    except (OSError, ValueError) as err:
        current = resource.getrlimit(number)
        why = str(err)
        if hard > current[1]:
            why += " (raising a hard limit needs CAP_SYS_RESOURCE)"
        raise OcirtError(f"setrlimit {name} soft={soft} hard={hard} "
                         f"(current soft={current[0]} hard={current[1]}): {why}") from err


def _home_of(uid: int) -> str:
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def close_extra_fds(preserve_fds: int, keep: set[int]) -> None:
    """Close every fd the caller handed us except stdio, the preserved ones and ``keep``.

    Preserved fds (3 .. 3+N-1) are made inheritable; nothing else survives exec.
    """
    first_free = 3 + preserve_fds
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3 or fd in keep:
            continue
        if fd < first_free:
            os.set_inheritable(fd, True)
        else:
            try:
                os.close(fd)
            except OSError:
                pass
