"""Helpers for the rootless tests: an unprivileged user the session makes, and the runtime
under test run as that user.

The session (root) makes a dedicated user, ``ocirt-rootless-test``, with ranges in /etc/subuid
and /etc/subgid, and installs Debian's ``uidmap`` (newuidmap/newgidmap) where it is missing;
it removes the user (and with it the ranges) at the end if it made it. It never uses anyone's
own account.

Everything the user touches lives in one private directory under /tmp that the session makes
(0755, the user's parts owned by the user): a copy of the ``ocirt`` package with a launcher
(the checkout itself may not be readable by another user, and is never loosened), the user's
``XDG_RUNTIME_DIR`` (0700), a home, the rootfs and the bundles. Commands run as the user with
``setpriv`` and a clean environment: XDG_RUNTIME_DIR, HOME, PATH and the test's token only.

The runtime is ``$OCIRT_TEST_RUNTIME`` when it names another runtime (``runc``: it proves the
tests), else that copy of ocirt.
"""

from __future__ import annotations

import compileall
import grp
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from testkit import (
    REPO,
    Result,
    RuntimeCalls,
    pid_alive,
    processes_with_env,
    run_captured,
    spec_process,
    wait_for,
)

USER = "ocirt-rootless-test"
TOKEN_VAR = "OCIRT_RLTEST"
RANGE = 65536
USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_chosen = os.environ.get("OCIRT_TEST_RUNTIME", "").strip()
IS_OCIRT = not _chosen or "ocirt" in _chosen
RUNTIME_NAME = "ocirt" if IS_OCIRT else os.path.basename(shlex.split(_chosen)[0])
requires_ocirt = pytest.mark.skipif(
    not IS_OCIRT, reason=f"checks an ocirt-only behaviour; the runtime is {RUNTIME_NAME}")

LAUNCHER = """\
#!{python} -IS
# ocirt from a copy of the checkout's package that the rootless test user can read.
import sys

sys.path[:0] = {paths!r}
from ocirt.cli import main

main()
"""


# --- the user ---------------------------------------------------------------------------------

def _run_root(argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def install_uidmap() -> None:
    """newuidmap/newgidmap from Debian's uidmap package, if they are missing."""
    if shutil.which("newuidmap") and shutil.which("newgidmap"):
        return
    apt = ["apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0", "--no-install-recommends",
           "install", "uidmap"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(apt, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        _run_root(["apt-get", "-q", "update"], timeout=600)
        done = subprocess.run(apt, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600, check=False)
    if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        pytest.fail(f"could not install uidmap (newuidmap/newgidmap): {done.stderr[-800:]}")


def _ranges(path: str) -> list[tuple[str, int, int]]:
    try:
        with open(path) as handle:
            lines = [line.strip().split(":") for line in handle if line.strip()]
    except FileNotFoundError:
        return []
    return [(f[0], int(f[1]), int(f[2])) for f in lines if len(f) == 3 and f[1].isdigit()]


def _free_start() -> int:
    """The first id at or above 100000 past every range in /etc/subuid and /etc/subgid."""
    ends = [start + count for path in ("/etc/subuid", "/etc/subgid")
            for _, start, count in _ranges(path)]
    start = max([100000, *ends])
    return (start + RANGE - 1) // RANGE * RANGE


class RootlessUser:
    """The unprivileged user: made (or found) by the session, with its subordinate ranges."""

    def __init__(self) -> None:
        self.made = False
        try:
            entry = pwd.getpwnam(USER)
        except KeyError:
            done = _run_root(["useradd", "--system", "--user-group", "--no-create-home",
                              "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                              USER])
            if done.returncode != 0:
                pytest.fail(f"useradd {USER}: {done.stderr.strip()}")
            self.made = True
            entry = pwd.getpwnam(USER)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.group = grp.getgrgid(self.gid).gr_name
        self.subuid = self._range("/etc/subuid", "--add-subuids")
        self.subgid = self._range("/etc/subgid", "--add-subgids")

    def _range(self, path: str, option: str) -> int:
        for name, start, count in _ranges(path):
            if name in (USER, str(self.uid)) and count >= RANGE:
                return start
        start = _free_start()
        done = _run_root(["usermod", option, f"{start}-{start + RANGE - 1}", USER])
        if done.returncode != 0:
            pytest.fail(f"usermod {option} for {USER}: {done.stderr.strip()}")
        return start

    def remove(self) -> None:
        if self.made:  # userdel takes the /etc/subuid and /etc/subgid lines with it
            _run_root(["userdel", USER])


# --- the user's directory ---------------------------------------------------------------------

class Workspace:
    """The private directory: the launcher, XDG_RUNTIME_DIR, home, rootfs and bundles."""

    def __init__(self, user: RootlessUser, busybox_rootfs: Path) -> None:
        self.user = user
        self.base = Path(tempfile.mkdtemp(prefix="ocirt-rootless-", dir="/tmp"))
        self.base.chmod(0o755)
        self.runtime_dir = self._own_dir("xdg", 0o700)
        self.home = self._own_dir("home", 0o700)
        self.bundles = self._own_dir("bundles", 0o755)
        self.launcher = self._launcher()
        self.rootfs = self.base / "rootfs"
        subprocess.run(["cp", "-a", str(busybox_rootfs), str(self.rootfs)], check=True)
        for name in ("out", "mnt", "tmp"):
            (self.rootfs / name).mkdir(exist_ok=True)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(self.rootfs)], check=True)

    def _own_dir(self, name: str, mode: int) -> Path:
        path = self.base / name
        path.mkdir(mode=mode)
        path.chmod(mode)
        os.chown(path, self.user.uid, self.user.gid)
        return path

    def _launcher(self) -> Path:
        package = self.base / "pkg"
        shutil.copytree(REPO / "ocirt", package / "ocirt",  # the schemas are inside it
                        ignore=shutil.ignore_patterns("__pycache__"))
        # Byte-compiled now: the user cannot write __pycache__ there, and compiling every
        # module on every call would be most of each command's time.
        compileall.compile_dir(str(package / "ocirt"), quiet=1)
        paths = [str(package), sysconfig.get_paths()["purelib"]]
        launcher = self.base / "bin" / "ocirt"
        launcher.parent.mkdir()
        launcher.write_text(LAUNCHER.format(python=sys.executable, paths=paths))
        launcher.chmod(0o755)
        return launcher

    def runtime_command(self) -> list[str]:
        return [str(self.launcher)] if IS_OCIRT else shlex.split(_chosen)

    def new_dir(self, name: str) -> Path:
        path = self.bundles / f"{name}-{os.urandom(4).hex()}"
        path.mkdir()
        os.chown(path, self.user.uid, self.user.gid)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def as_user(user: RootlessUser, space: Workspace, argv: Sequence[str], token: str,
            extra_env: dict[str, str] | None = None) -> list[str]:
    """``argv`` run as the test user with a clean environment."""
    env = [f"XDG_RUNTIME_DIR={space.runtime_dir}", f"HOME={space.home}", f"PATH={USER_PATH}",
           f"USER={USER}", f"{TOKEN_VAR}={token}"]
    env += [f"{key}={value}" for key, value in (extra_env or {}).items()]
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
            "--reset-env", "env", "-i", *env, *argv]


def run_as_user(user: RootlessUser, space: Workspace, argv: Sequence[str], token: str,
                timeout: float = 20, cwd: Path | None = None, stdin: Any = subprocess.DEVNULL,
                extra_env: dict[str, str] | None = None, cgroups: Sequence[str] = ()
                ) -> Result:
    """``argv`` as the user; ``cgroups``: cgroup.procs files it starts in (root moves it)."""
    full = as_user(user, space, argv, token, extra_env)

    def join() -> None:
        for procs in cgroups:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))

    return run_captured(full, stdin=stdin, cwd=cwd, timeout=timeout,
                        preexec_fn=join if cgroups else None)


class UserRuntime(RuntimeCalls):
    """The runtime under test, run as the test user with its default state root."""

    id_prefix = "rl"
    never_in_errors = ("Traceback", "internal error", "panic")

    def __init__(self, user: RootlessUser, space: Workspace, token: str) -> None:
        self.user, self.space, self.token = user, space, token
        self.command = space.runtime_command()
        self.root = space.runtime_dir / RUNTIME_NAME  # runc's rule: $XDG_RUNTIME_DIR/<name>
        self.ids: list[str] = []
        self.cgroups: list[str] = []  # cgroup.procs files every command starts in
        self.env: dict[str, str] = {}  # more environment for every command (a bus address)

    def __call__(self, *args: str, timeout: float = 20, cwd: Path | None = None,
                 global_opts: Sequence[str] = (), stdin: Any = subprocess.DEVNULL) -> Result:
        return run_as_user(self.user, self.space, [*self.command, *global_opts, *args],
                           self.token, timeout=timeout, cwd=cwd, stdin=stdin,
                           extra_env=self.env, cgroups=self.cgroups)

    def wait_status(self, container_id: str, status: str, timeout: float = 5.0) -> None:
        wait_for(lambda: self.state(container_id)["status"] == status, timeout,
                 what=f"container {container_id} to be {status}")

    def bundle(self, config: dict[str, Any], name: str = "b") -> Path:
        directory = self.space.new_dir(name)
        path = directory / "config.json"
        path.write_text(json.dumps(config, indent=2))
        os.chown(path, self.user.uid, self.user.gid)
        return directory

    def left(self) -> list[str]:
        return sorted(os.listdir(self.root)) if self.root.is_dir() else []

    def cleanup(self) -> list[str]:
        problems = []
        for container_id in sorted(set(self.ids) | set(self.left())):
            if (self.root / container_id).exists():
                result = self("delete", "--force", container_id, timeout=30)
                if result.returncode != 0 and (self.root / container_id).exists():
                    problems.append(f"delete --force {container_id}: {result!r}")
        return problems


# --- configs ----------------------------------------------------------------------------------

def rootless_config(user: RootlessUser, rootfs: Path, args: list[str], token: str
                    ) -> dict[str, Any]:
    """What ``runc spec --rootless`` writes for the user, with terminal off, our rootfs, the
    token in the container's environment and a hostname."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]},
    ]
    return {
        "ociVersion": "1.0.2",
        "process": spec_process(args, f"{TOKEN_VAR}={token}"),
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "rootless",
        "mounts": mounts,
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": user.uid, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": user.gid, "size": 1}],
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "user")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


# --- the host ---------------------------------------------------------------------------------

def processes_with_token(token: str) -> list[int]:
    """PIDs of the live processes whose environment holds the session's token."""
    return [pid for pid in processes_with_env(f"{TOKEN_VAR}={token}") if pid_alive(pid)]


def ns_link(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def mount_table() -> set[tuple[str, str]]:
    with open("/proc/self/mountinfo") as handle:
        return {(line.split()[4], line.split()[3]) for line in handle}

