"""The container process: environment, program lookup, identity, limits, fds, seccomp, execve.

``ProcessSetup`` is built from config.json ``process`` in the parent (so mistakes are found
before anything is created) and carried out by the init process inside the container, after
pivot_root and before it waits for ``start``. Messages for a program that cannot be run use
runc's words, which managers such as podman map to exit codes 127 and 126.
"""

from __future__ import annotations

import os
import sys
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, ExecError, OcirtError, SyscallError, errno_text
from ocirt.linux import capabilities, procfs, program, safepath, trampoline
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Note, Step
from ocirt.linux.process_attrs import process_steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import Any

    from ocirt.linux.seccomp import SeccompFilter
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal

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
    number = sc.RLIMITS.get(name)
    if number is None:
        raise ConfigError(f"$.process.rlimits[{index}].type", f"unknown rlimit {name!r}")
    return number


class ProcessSetup:
    """config.json ``process``, checked and ready to apply."""

    def __init__(self, process: dict[str, Any], preserve_fds: int,
                 seccomp: dict[str, Any] | None = None) -> None:
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
        # The fds the caller really passed: --preserve-fds must never hand over one of ours.
        own = _runtime_fds()
        self.inherited = {fd for fd in range(3, 3 + preserve_fds)
                          if fd not in own and _is_open(fd)}
        self.path = ""  # the program, found inside the container
        self.exec_fd = -1  # the sealed memfd the last execve goes through (see trampoline)
        self.attribute_steps = process_steps(process)  # ioPriority, scheduler
        self.apparmor_profile: str | None = process.get("apparmorProfile") or None
        if self.apparmor_profile:
            from ocirt.linux import apparmor

            apparmor.check(self.apparmor_profile)
        # linux.personality and linux.memoryPolicy, for exec'd processes
        self.personality: list[Step] = []
        # linux.seccomp, compiled (or taken from the cache) now, in the parent; loaded by
        # ``execute`` just before execve. Without no_new_privs, loading needs CAP_SYS_ADMIN: a
        # process that will not keep it loads before the identity change, as runc does.
        self.seccomp: SeccompFilter | None = None
        self.seccomp_early = False
        if seccomp is not None:
            from ocirt.linux.seccomp import SeccompFilter

            self.seccomp = SeccompFilter(seccomp)
            self.seccomp.prepare()
            self.seccomp_early = not self.no_new_privileges and not self._keeps_sys_admin()
            if self.seccomp_early:
                capabilities._capng()  # loaded now: after pivot_root the host's lib is gone

    def steps(self) -> list[Step | Note]:
        """What init does in the container before it waits for ``start``."""
        steps: list[Step | Note] = [
            Step("put the exec trampoline in a sealed memfd (the program must not find the "
                 "runtime's binary as /proc/self/exe: CVE-2019-5736)",
                 self._prepare_trampoline, "exec trampoline")]
        steps += [Step(f"setrlimit {name} soft={soft} hard={hard}",
                       partial(_setrlimit, name, num, soft, hard), "rlimits")
                  for name, num, soft, hard in self.rlimits]
        steps += self.attribute_steps
        if self.apparmor_profile:  # as runc: before no_new_privs and the identity change
            from ocirt.linux import apparmor

            steps += apparmor.steps(self.apparmor_profile)
        if self.no_new_privileges:
            steps.append(Step("prctl(PR_SET_NO_NEW_PRIVS, 1)",
                              lambda: sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1), "no_new_privs"))
        if self.capabilities is not None:
            steps.append(Step(f"drop bounding set to: "
                              f"{' '.join(self.capability_names.get('bounding', [])) or '(none)'}",
                              self._drop_bounding, "capabilities"))
        groups = ",".join(map(str, self.additional_gids)) or "(none)"
        steps.append(Step(f"setgroups [{groups}]; setresgid {self.gid}; setresuid {self.uid}",
                          self.set_identity, "user and groups"))
        if self.capabilities is not None:
            text = "; ".join(capabilities.describe(self.capability_names)[1:])
            steps.append(Step(text, self._apply_caps, "capabilities"))
        steps.append(Step(f"chdir {self.cwd}", self.enter_cwd, "cwd and program lookup"))
        # Last, as the process will exec: its user, its cwd (a relative path), its PATH.
        steps.append(Step(f"find {self.args[0]!r} (PATH={self.env.get('PATH', '')})",
                          self.find_program, "cwd and program lookup"))
        if self.seccomp is not None and self.seccomp_early:
            # Without no_new_privs loading a filter needs CAP_SYS_ADMIN: the process keeps it
            # through the identity change, loads the filter once ocirt's own work is done (a
            # profile may refuse getcwd or faccessat), and only then takes its exact sets.
            if self.capabilities is None:
                steps.append(Step("keep CAP_SYS_ADMIN for loading the filter",
                                  self._keep_admin_only, "capabilities"))
            steps += self._seccomp_steps("after ocirt's own work, still holding CAP_SYS_ADMIN",
                                         self._load_early)
            steps.append(Step("final capabilities (CAP_SYS_ADMIN dropped unless granted)",
                              self._final_caps, "capabilities"))
        return steps

    def _with_admin(self, sets: dict[str, list[int]]) -> dict[str, list[int]]:
        result = {name: list(numbers) for name, numbers in sets.items()}
        for name in ("effective", "permitted"):
            if capabilities.CAP_SYS_ADMIN not in result[name]:
                result[name].append(capabilities.CAP_SYS_ADMIN)
        return result

    def _keep_admin_only(self) -> None:
        capabilities.apply_sets(self._with_admin({name: [] for name in capabilities.SETS}))

    def _final_caps(self) -> None:
        if self.capabilities is not None:
            capabilities.apply_sets(self.capabilities)
        elif self.uid != 0:
            capabilities.apply_sets({name: [] for name in capabilities.SETS})

    def start_steps(self) -> list[Step | Note]:
        """What happens on ``start``, after the startContainer hooks: the last steps, ending
        in execve (which never returns)."""
        steps: list[Step | Note] = [Step("signals back to default, none blocked",
                                         self._reset_signals, "execve")]
        if not self.seccomp_early:  # (an early filter came after the umask, see _load_early)
            steps.append(Step(f"umask {oct(self.umask if self.umask is not None else 0o022)}",
                              self._set_umask, "execve"))
        steps.append(Step(f"check the interpreter of {self.args[0]!r} exists (#! or ELF "
                          "PT_INTERP: the exec is made where no error can be reported)",
                          self._check_interpreter, "execve"))
        if self.seccomp is not None and not self.seccomp_early:
            # from here on every syscall meets the filter: execve now
            steps += self._seccomp_steps("the very last step before execve", self.seccomp.load)
        steps.append(Step(f"execve {self.args!r} (through the sealed exec trampoline)",
                          self._execve, "execve"))
        return steps

    def _seccomp_steps(self, when: str, action: Callable[[], None]) -> list[Step | Note]:
        assert self.seccomp is not None
        lines = self.seccomp.describe()
        return [Step(f"{lines[0]} ({when})", action, "seccomp"), *map(Note, lines[1:])]

    def _prepare_trampoline(self) -> None:
        self.exec_fd = trampoline.prepare()

    def _load_early(self) -> None:
        """The filter before the identity change; the umask first, which it may refuse."""
        assert self.seccomp is not None
        os.umask(self.umask if self.umask is not None else 0o022)
        self.seccomp.load()

    def _keeps_sys_admin(self) -> bool:
        """Whether the process still has CAP_SYS_ADMIN (effective) after the identity change."""
        if self.capabilities is not None:
            return capabilities.CAP_SYS_ADMIN in self.capabilities["effective"]
        return self.uid == 0

    def _drop_bounding(self) -> None:
        assert self.capabilities is not None
        capabilities.drop_bounding(self.capabilities)

    def _apply_caps(self) -> None:
        assert self.capabilities is not None
        if self.seccomp is not None and self.seccomp_early:
            capabilities.apply_sets(self._with_admin(self.capabilities))
        else:
            capabilities.apply_sets(self.capabilities)

    def find_program(self) -> None:
        self.path = program.find(self.args[0], self.env.get("PATH", ""))

    def set_identity(self) -> None:
        early = self.seccomp is not None and self.seccomp_early
        keep = (self.capabilities is not None or early) and self.uid != 0
        if keep:
            sc.prctl(sc.PR_SET_KEEPCAPS, 1)
        try:
            self._set_groups()
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        except OSError as err:
            raise SyscallError.of("setgroups/setresgid/setresuid", err, "$.process.user: setting "
                                  f"{self.uid}:{self.gid}, groups {self.additional_gids}") from err
        if keep:
            sc.prctl(sc.PR_SET_KEEPCAPS, 0)
        if "HOME" not in self.env:
            self.env["HOME"] = _home_of(self.uid)

    def _set_groups(self) -> None:
        # The kernel decides first: /proc/self/setgroups is only asked once setgroups(2) was
        # refused, so a file a container mounted there cannot make us skip a call that works.
        try:
            os.setgroups(self.additional_gids)
        except PermissionError:
            if not _setgroups_denied():
                raise
            if self.additional_gids:
                raise OcirtError(f"$.process.user.additionalGids {self.additional_gids}: "
                                 "setgroups is denied in this user namespace (its gid_map "
                                 "was written without newgidmap: a rootless runtime mapping "
                                 "only its own gid): map a gid range from /etc/subgid, or "
                                 "drop additionalGids") from None
            # Nothing to set, and nothing can be: the groups stay as the user had them.

    def enter_cwd(self) -> None:
        """By fd: resolved inside the root, no magic link (``/proc/self/fd/N``) followed."""
        try:
            root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = safepath.open_in_root(root, self.cwd, os.O_PATH | os.O_DIRECTORY)
            finally:
                os.close(root)
            try:
                os.fchdir(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise SyscallError.of(f"chdir({self.cwd!r})", err,
                                  "the working directory $.process.cwd") from err
        # A cwd reached through a leaked fd would lie outside the root (CVE-2024-21626).
        if not os.getcwd().startswith("/"):
            raise OcirtError(f"cwd {self.cwd!r} ($.process.cwd) is outside the container's root")

    def _reset_signals(self) -> None:
        for signum in range(1, signal.NSIG):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
        except OSError:
            if not self.seccomp_early:  # else the filter may refuse it: go on, as runc does
                raise

    def _set_umask(self) -> None:
        os.umask(self.umask if self.umask is not None else 0o022)

    def _check_interpreter(self) -> None:
        program.check_interpreter(self.args[0], self.path)

    def _execve(self) -> None:
        try:
            trampoline.execve(self.exec_fd, self.path, self.args, self.env)
        except OSError as err:
            raise ExecError(f'exec: "{self.args[0]}": {program.text(err)}') from err


def _setgroups_denied() -> bool:
    """True where the kernel refuses setgroups(2): /proc/self/setgroups says "deny"."""
    try:
        fd = procfs.open_file("self/setgroups", os.O_RDONLY)  # not the container's /proc
    except OcirtError:
        return False
    try:
        return os.read(fd, 64).strip() == b"deny"
    except OSError:
        return False
    finally:
        os.close(fd)


def _setrlimit(name: str, number: int, soft: int, hard: int) -> None:
    try:
        sc.setrlimit(number, soft, hard)
    except OSError as err:
        current = sc.getrlimit(number)
        why = errno_text(err)
        if hard > current[1]:
            why += " (raising a hard limit needs CAP_SYS_RESOURCE)"
        raise OcirtError(f"setrlimit {name} soft={soft} hard={hard} ($.process.rlimits; "
                         f"current soft={current[0]} hard={current[1]}): {why}") from err


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


def _runtime_fds() -> set[int]:
    """The fds ocirt opened for itself before any command ran (the code pack the launcher
    keeps open): they may have a number --preserve-fds names, but are never the caller's."""
    codepack = sys.modules.get("ocirt.codepack")
    return codepack.held_fds() if codepack is not None else set()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def close_extra_fds(inherited: set[int], keep: set[int]) -> None:
    """Close every fd except stdio, ``keep`` and ``inherited`` (the ones the caller passed
    with --preserve-fds, made inheritable); nothing else survives exec. The trusted procfs
    handle, if one was inherited, is closed too and forgotten."""
    procfs.forget()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3 or fd in keep:
            continue
        if fd in inherited:
            os.set_inheritable(fd, True)
        else:
            try:
                os.close(fd)
            except OSError:
                pass
