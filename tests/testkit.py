"""What the test suites share: where the checkout and its busybox rootfs are, what the
checkout holds (to catch tests that write into it), polling for a condition, reading a process
from /proc, the process ``runc spec`` writes, running the runtime and checking its result, a
console socket, and a copy of the package with its code pack. On sys.path
through pytest's ``pythonpath`` setting (pyproject.toml)."""

from __future__ import annotations

import array
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BUSYBOX_ROOTFS = REPO / "bundles" / "busybox" / "rootfs"

# What may appear in the checkout during a test run: byte-compiled modules (and git's own
# files), and the bundles' root filesystems, which the busybox_rootfs fixture builds with
# scripts/build-rootfs.sh when they are missing. Anything else a test writes there is a bug
# (tests/conftest.py: checkout_untouched).
_NOT_COUNTED = ("__pycache__", ".git")
_NOT_COUNTED_IN_A_BUNDLE = ("rootfs", ".rootfs-stamp")


def checkout_files(repo: Path = REPO) -> set[str]:
    """Every file and directory in ``repo``, as paths relative to it, but for those that the
    build may add (see _NOT_COUNTED)."""
    found = set()
    for top, dirs, files in os.walk(repo):
        rel = os.path.relpath(top, repo)
        in_bundle = os.path.dirname(rel) == "bundles"

        def counted(name: str, in_bundle: bool = in_bundle) -> bool:
            if in_bundle and (name in _NOT_COUNTED_IN_A_BUNDLE or name.startswith("rootfs.")):
                return False
            return name not in _NOT_COUNTED

        dirs[:] = [name for name in dirs if counted(name)]
        found.update(os.path.normpath(os.path.join(rel, name))
                     for name in (*dirs, *files) if counted(name))
    return found


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.01,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def mounts_under(pid: int | str, path: Path | str) -> list[str]:
    """The lines of ``/proc/PID/mountinfo`` whose mount point is ``path`` or lies under it
    (what a runtime left in a mount namespace, or made there)."""
    text = Path(f"/proc/{pid}/mountinfo").read_text()
    return [line for line in text.splitlines()
            if (line.split()[4] + "/").startswith(f"{str(path).rstrip('/')}/")]


def mount_ids_under(pid: int | str, path: Path | str) -> dict[int, str]:
    """Mount ID -> mount point, for the mounts of ``mounts_under``."""
    return {int(line.split()[0]): line.split()[4] for line in mounts_under(pid, path)}


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


def processes_with_env(entry: str) -> list[int]:
    """PIDs of the processes (but this one) whose environment holds ``entry`` ("VAR=value")."""
    needle = entry.encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict: ``{"Uid": "0\t0\t0\t0", ...}`` (values stripped)."""
    result = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            result[key] = value.strip()
    return result


CONTAINER_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SPEC_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # runc spec's, each set


def spec_process(args: list[str], token_entry: str) -> dict[str, Any]:
    """The ``process`` of what ``runc spec`` writes, with terminal off, ``args``, and
    ``token_entry`` ("VAR=token", to find a stray container process) in the environment."""
    return {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": list(args),
        "env": [CONTAINER_PATH, token_entry],
        "cwd": "/",
        "capabilities": {kind: list(SPEC_CAPS)
                         for kind in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


class Result:
    """One finished command: argv, exit code and output; its repr is what a failure shows."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr

    def __repr__(self) -> str:
        return (f"<{shlex.join(self.argv)}: exit {self.returncode}\n"
                f"stdout: {self.stdout[-2000:]!r}\nstderr: {self.stderr[-2000:]!r}>")


def run_captured(argv: list[str], **run: Any) -> Result:
    """Run ``argv`` to its end (``run``: subprocess.run's keywords) and keep its output.

    Files, not pipes: a detached container keeps the runtime's stdio, so a pipe would not end.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdout=out, stderr=err, check=False, **run)
        out.seek(0)
        err.seek(0)
        return Result(argv, proc.returncode, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"))


class RuntimeCalls:
    """What the suites' wrappers of the runtime under test share; each defines ``__call__``
    (runtime arguments -> Result), ``ids`` and ``id_prefix``."""

    ids: list[str]
    id_prefix = "t"
    # What an error must never show a user (the brief: no traceback, no "internal error").
    never_in_errors: tuple[str, ...] = ("Traceback", "panic")

    def __call__(self, *args: str, **kwargs: Any) -> Result:
        raise NotImplementedError

    def new_id(self, name: str = "c") -> str:
        """A fresh container ID, remembered for clean-up."""
        container_id = f"{self.id_prefix}-{name}-{os.urandom(4).hex()}"
        self.ids.append(container_id)
        return container_id

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.returncode == 0, result
        return result

    def fails(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.returncode != 0, result
        for bad in self.never_in_errors:
            assert bad not in result.stderr, result
        return result

    def state(self, container_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.ok("state", container_id).stdout)
        return doc


def accept_fd(listener: socket.socket, timeout: float, what: str) -> tuple[bytes, int]:
    """Accept the runtime's connection on ``listener`` (queued by the kernel until now) and
    return the payload and the fd it sent with SCM_RIGHTS; ``what`` names the socket when no
    fd came."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(timeout)
        fds = array.array("i")
        data, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, raw in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(raw[:fds.itemsize])
            return data, fds[0]
    raise AssertionError(f"the {what} received no file descriptor")


class ConsoleSocket:
    """A ``--console-socket`` in ``directory``: a unix socket whose first connection hands over
    a pty master.

    The runtime connects and sends during ``create``/``exec``; the kernel queues the connection
    and the message until ``receive`` accepts it, so no thread is needed. ``owner`` (uid, gid)
    lets an unprivileged runtime connect.
    """

    def __init__(self, directory: str, owner: tuple[int, int] | None = None,
                 timeout: float = 3.0) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "console.sock")  # at most 107 bytes
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        if owner is not None:
            os.chown(self.path, *owner)
        self.sock.listen(4)
        self.masters: list[int] = []

    def receive(self, timeout: float | None = None) -> int:
        """The pty master the runtime sends (kept, to be closed with the socket)."""
        timeout = self.timeout if timeout is None else timeout
        _, master = accept_fd(self.sock, timeout, "console socket")
        self.masters.append(master)
        return master

    def close(self) -> None:
        for fd in self.masters:
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()

    def __enter__(self) -> ConsoleSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def install_copy(tmp_path: Path) -> Path:
    """A copy of the package as set-up installs it (no code pack yet): the site directory."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "ocirt", site / "ocirt",
                    ignore=shutil.ignore_patterns("__pycache__", "codepack.bin"))
    return site


def build_pack(site: Path) -> Path:
    """Write the code pack of the package under ``site`` (as set-up does); its path."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         "import sys; sys.path[:0] = [sys.argv[1]]; from ocirt import codepack; "
         "print(codepack.build(sys.argv[1] + '/ocirt'))", str(site)],
        capture_output=True, text=True, check=True, cwd="/")
    return Path(result.stdout.strip())
