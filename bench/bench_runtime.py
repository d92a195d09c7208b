"""bench.py's runtimes: each runtime's CLI run with its own --root, timed from the parent;
finding them and their versions; the bundle they all run; and, on a hybrid cgroup host, a
private mount namespace without the cgroup2 half (crun refuses it)."""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

REPO = Path(__file__).resolve().parent.parent
SOURCE_BUNDLE = REPO / "bundles" / "busybox"
DEFAULT_OCIRT = "/usr/local/bin/ocirt"  # the launcher set-up writes (python -IS)
OPERATIONS = ("run", "run-seccomp", "state")
TIMEOUT = 60.0  # seconds for one runtime command; a hung runtime counts as a failure
CGROUP2_IN_HYBRID = Path("/sys/fs/cgroup/unified")

# <sched.h>, <sys/mount.h>
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 2


def timed_call(argv: list[str], stderr: IO[bytes], env: dict[str, str] | None = None,
               timeout: float = TIMEOUT) -> tuple[int, float]:
    """Run one runtime command; return its exit status and wall time in ms.

    stdin and stdout are /dev/null and stderr a file, never a pipe: a container created
    without a terminal inherits them, and would hold a pipe open after the runtime exits.

    The exit is awaited on a pidfd, not with ``subprocess.run(timeout=...)``: that polls with
    sleeps that double from 0.5 ms, which rounds every time up to 0.5 * (2^k - 1) ms
    (7.5, 15.5, 31.5, 63.5, ...).
    """
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, env=env)
    except OSError as err:
        stderr.write(f"cannot execute {argv[0]}: {err}".encode())
        return -1, 0.0
    pidfd = os.pidfd_open(proc.pid)
    try:
        exited = select.select([pidfd], [], [], timeout)[0]
    finally:
        os.close(pidfd)
    if not exited:
        proc.kill()
        proc.wait()
        stderr.write(f"\n(timed out after {timeout:.0f} s)".encode())
        return -1, (time.perf_counter() - start) * 1000
    elapsed = (time.perf_counter() - start) * 1000
    return proc.wait(), elapsed


@dataclass
class Runtime:
    """One runtime under test: its CLI, its private --root, what it measured and left behind."""

    name: str
    path: str
    root: Path
    stderr: IO[bytes]
    times: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    max_rss_kib: int = 0  # the peak RSS of `run` (KiB), see peak_rss
    sequential_ms: float | None = None  # wall time of --sequential runs back to back
    errors: dict[str, str] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    state_id: str = ""

    def command(self, *args: str) -> list[str]:
        return [self.path, "--root", str(self.root), *args]

    def call(self, *args: str, timeout: float = TIMEOUT) -> tuple[int, float]:
        """Run one command of this runtime; return its exit status and wall time in ms."""
        self.stderr.seek(0)
        self.stderr.truncate()
        return timed_call(self.command(*args), self.stderr, timeout=timeout)

    def last_stderr(self, max_lines: int = 20) -> str:
        """The stderr of the last command: its end, where a traceback says what went wrong."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        if len(lines) > max_lines:
            lines = [f"[{len(lines) - max_lines} lines left out]", *lines[-max_lines:]]
        return "\n".join(lines)

    def fail(self, op: str, what: str, status: int) -> None:
        if op not in self.errors:
            detail = self.last_stderr() or "(no output on stderr)"
            self.errors[op] = f"{what} exited with status {status}: {detail}"

    def delete(self, container_id: str) -> None:
        """Remove a container if the runtime still knows it (untimed)."""
        status, _ = self.call("state", container_id, timeout=30)
        if status == 0:
            self.call("delete", "--force", container_id, timeout=30)
        self.containers.discard(container_id)


def die(message: str) -> NoReturn:
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(2)


def find_runtimes(wanted: Sequence[str], ocirt: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in wanted:
        if name == "ocirt":
            path: str | None = ocirt if os.access(ocirt, os.X_OK) else None
        elif name in ("runc", "crun"):
            path = shutil.which(name)
        else:
            die(f"unknown runtime {name!r}: choose among ocirt, runc, crun")
        if path is None:
            print(f"bench: {name} not found, left out")
        else:
            found[name] = path
    return found


def version(path: str) -> str:
    try:
        proc = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = proc.stdout.strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else "?"


def hide_hybrid_cgroup2() -> None:
    """Enter a private mount namespace without /sys/fs/cgroup/unified, if crun would refuse it."""
    controllers = CGROUP2_IN_HYBRID / "cgroup.controllers"
    try:
        if not controllers.read_text().strip():
            return
    except OSError:
        return  # not a hybrid layout
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def check(what: str, result: int) -> None:
        if result != 0:
            die(f"{what}: {os.strerror(ctypes.get_errno())} (try --keep-unified)")

    # In this order, each only after the one before succeeded: making / private must never
    # happen in the host's mount namespace.
    check("unshare(CLONE_NEWNS)", libc.unshare(CLONE_NEWNS))
    check("make / private", libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
    check(f"umount {CGROUP2_IN_HYBRID}", libc.umount2(bytes(CGROUP2_IN_HYBRID), MNT_DETACH))
    print(
        f"bench: hybrid cgroups with controllers in {CGROUP2_IN_HYBRID}, which crun refuses:"
        " all runtimes run in a private mount namespace without it (plain cgroup v1)"
    )


def make_bundle(workdir: Path) -> Path:
    """A copy of the busybox bundle whose process is /bin/true, without a network namespace."""
    rootfs = SOURCE_BUNDLE / "rootfs"
    if not (rootfs / "bin" / "busybox").exists():
        die(f"{rootfs} is not built: run `sudo bash scripts/setup.sh` first")
    config = json.loads((SOURCE_BUNDLE / "config.json").read_text())
    config["process"]["args"] = ["/bin/true"]
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    bundle = workdir / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / config["root"]["path"], symlinks=True)
    (bundle / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return bundle
