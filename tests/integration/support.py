"""Helpers for the root integration tests: the runtime under test, configs, host checks.

The runtime is a command prefix: ``$OCIRT_TEST_RUNTIME`` (``runc``, ``crun``, or any command
line, split like a shell would) or, by default, ``<this Python> -m ocirt`` with the checkout on
PYTHONPATH. Pointing the tests at runc proves that a test itself is right; tests of what only
ocirt does (its error wording, ``--explain``, ``run BUNDLE``) carry ``requires_ocirt``.

Every runtime call writes stdout and stderr to files, never pipes: a container's stdio is the
runtime's, so ``create`` with a pipe would keep it open for the container's whole life.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from testkit import (  # noqa: F401  (for the tests)
    BUSYBOX_ROOTFS,
    CONTAINER_PATH,
    REPO,
    Result,
    RuntimeCalls,
    pid_alive,
    proc_status,
    processes_with_env,
    run_captured,
    spec_process,
    wait_for,
)

TOKEN_VAR = "OCIRT_ITEST"  # in the runtime's and the container's env: finds stray processes


def _runtime_command() -> list[str]:
    chosen = os.environ.get("OCIRT_TEST_RUNTIME", "").strip()
    if chosen:
        return shlex.split(chosen)
    return [sys.executable, "-m", "ocirt"]


RUNTIME_CMD = _runtime_command()
IS_OCIRT = "ocirt" in " ".join(RUNTIME_CMD)
RUNTIME_NAME = "ocirt" if IS_OCIRT else os.path.basename(RUNTIME_CMD[0])

ROOT_MARKS = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="integration tests need root"),
]
requires_ocirt = pytest.mark.skipif(
    not IS_OCIRT, reason=f"checks an ocirt-only behaviour; the runtime is {RUNTIME_NAME}")


# --- the host ---------------------------------------------------------------------------------

def mountinfo(path: str = "/proc/self/mountinfo") -> list[dict[str, Any]]:
    """Parsed mountinfo lines: mountpoint, root, options (per mount), fstype, source, super."""
    entries = []
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            entries.append({
                "root": _unescape(fields[3]), "mountpoint": _unescape(fields[4]),
                "options": set(fields[5].split(",")), "fstype": fields[sep + 1],
                "source": fields[sep + 2], "super": set(fields[sep + 3].split(",")),
                "major_minor": fields[2],
            })
    return entries


def parse_mountinfo_text(text: str) -> dict[str, dict[str, Any]]:
    """Mountinfo text (as printed inside a container) -> mountpoint -> entry (last wins)."""
    result: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        result[_unescape(fields[4])] = {
            "root": _unescape(fields[3]), "options": set(fields[5].split(",")),
            "fstype": fields[sep + 1], "source": fields[sep + 2],
            "super": set(fields[sep + 3].split(",")),
        }
    return result


def propagation_tags(text: str) -> dict[str, set[str]]:
    """Mountinfo text -> mount point -> optional fields (shared:N, master:N, unbindable)."""
    result = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" in fields:
            result[fields[4]] = {tag.split(":")[0] for tag in fields[6:fields.index("-")]}
    return result


def _unescape(text: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def mount_points() -> set[str]:
    return {entry["mountpoint"] for entry in mountinfo()}


def mount_table() -> list[tuple[str, str]]:
    """(mount point, root) of every mount of the host."""
    return [(entry["mountpoint"], entry["root"]) for entry in mountinfo()]


def mounts_that_count(table: Iterable[tuple[str, str]], ours: Sequence[str],
                      shared: str = "/tmp/") -> set[tuple[str, str]]:
    """The part of a mount table a before/after comparison looks at.

    Others share this machine and mount things of their own under ``shared`` (/tmp) while the
    tests run, so there only mounts that involve ``ours`` count: a mount point under one of
    those prefixes, or a bind whose root is one of them. Everywhere else every mount counts.
    """
    heads = tuple(ours)
    result = set()
    for point, root in table:
        involves_ours = (point + "/").startswith(heads) or (root + "/").startswith(heads)
        if (point + "/").startswith(shared) and not involves_ours:
            continue
        result.add((point, root))
    return result


def host_mounts(ours: Sequence[str], shared: str = "/tmp/") -> set[tuple[str, str]]:
    """``mounts_that_count`` of the host's mount table now."""
    return mounts_that_count(mount_table(), ours, shared)


def cgroup_dirs_named(names: Iterable[str]) -> list[str]:
    """Directories under /sys/fs/cgroup/*/ whose name is one of ``names``."""
    wanted = set(names)
    found = []
    if not wanted:
        return found
    for top in sorted(Path("/sys/fs/cgroup").iterdir()):
        if not top.is_dir() or top.is_symlink():
            continue
        for root, dirs, _ in os.walk(top):
            found += [os.path.join(root, d) for d in dirs if d in wanted]
    return found


def cgroup_names(container_id: str) -> set[str]:
    """What a runtime calls the cgroup of a container without cgroupsPath (ocirt, runc)."""
    return {f"ocirt-{container_id}", container_id}


def processes_with_token(token: str) -> list[int]:
    """PIDs of live processes whose environment holds our token (runtime or container)."""
    return processes_with_env(f"{TOKEN_VAR}={token}")


def cgroup_of(pid: int, controller: str) -> str:
    """The v1 cgroup path of ``pid`` in the hierarchy that holds ``controller``."""
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return path
    raise AssertionError(f"/proc/{pid}/cgroup has no {controller} line")


def ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


# --- the runtime ------------------------------------------------------------------------------

class Runtime(RuntimeCalls):
    """The runtime under test with a private state root; remembers every ID it hands out."""

    id_prefix = "it"

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        self.ids: list[str] = []
        self.env = dict(os.environ)
        self.env[TOKEN_VAR] = token
        if IS_OCIRT:
            path = self.env.get("PYTHONPATH")
            self.env["PYTHONPATH"] = f"{REPO}:{path}" if path else str(REPO)

    def argv(self, *args: str, global_opts: Sequence[str] = ()) -> list[str]:
        return [*RUNTIME_CMD, "--root", str(self.root), *global_opts, *args]

    def __call__(self, *args: str, global_opts: Sequence[str] = (), timeout: float = 10,
                 cwd: str | Path | None = None, env: dict[str, str] | None = None,
                 stdin: Any = subprocess.DEVNULL, **popen: Any) -> Result:
        argv = self.argv(*args, global_opts=global_opts)
        return run_captured(argv, stdin=stdin, cwd=cwd, env=env or self.env, timeout=timeout,
                            **popen)

    def create(self, container_id: str, bundle: Path, *extra: str) -> Result:
        return self.ok("create", "--bundle", str(bundle), *extra, container_id)

    def status(self, container_id: str) -> str:
        status: str = self.state(container_id)["status"]
        return status

    def wait_status(self, container_id: str, status: str, timeout: float = 3.0) -> None:
        wait_for(lambda: self.status(container_id) == status, timeout,
                 what=f"container {container_id} to be {status}")

    def state_dir(self, container_id: str) -> Path:
        return self.root / container_id

    def cleanup(self) -> list[str]:
        """``delete --force`` every ID handed out; returns the complaints."""
        problems = []
        # Also any container the test did not name (``run BUNDLE`` makes up an ID).
        if self.root.is_dir():
            self.ids += [name for name in sorted(os.listdir(self.root))
                         if name not in self.ids and (self.root / name).is_dir()]
        for container_id in self.ids:
            if not self.state_dir(container_id).exists():
                continue
            try:
                result = self("delete", "--force", container_id, timeout=15)
            except subprocess.TimeoutExpired:
                problems.append(f"delete --force {container_id} timed out")
                continue
            if result.returncode != 0 and self.state_dir(container_id).exists():
                problems.append(f"cleanup failed: {result!r}")
        return problems


def assert_nothing_left(rt: Runtime, container_id: str) -> None:
    """No state directory, no cgroup, no process of this test's runtime or containers."""
    assert not rt.state_dir(container_id).exists(), os.listdir(rt.state_dir(container_id))
    assert cgroup_dirs_named(cgroup_names(container_id)) == []
    wait_for(lambda: not processes_with_token(rt.token), 2.0,
             what="the runtime's and the container's processes to be gone")


# --- configs ----------------------------------------------------------------------------------

DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
]
DEFAULT_NAMESPACES = ["pid", "network", "ipc", "uts", "mount"]


def base_config(rootfs: Path, args: list[str], token: str) -> dict[str, Any]:
    """What ``runc spec`` writes, with terminal off, an absolute read-only root and our token
    in process.env (so a stray container process can be found)."""
    return {
        "ociVersion": "1.0.2",
        "process": spec_process(args, f"{TOKEN_VAR}={token}"),
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "itest",
        "mounts": copy.deepcopy(DEFAULT_MOUNTS),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": kind} for kind in DEFAULT_NAMESPACES],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``process__cwd="/tmp"`` sets config["process"]["cwd"]; a value of None removes the key."""
    for key, value in overrides.items():
        parts = key.split("__")
        node = config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return config


def bind_mount(source: str | Path, destination: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": ["rbind", *options]}


def write_bundle(directory: Path, config: dict[str, Any] | str | bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(config, dict):
        config = json.dumps(config, indent=2)
    if isinstance(config, str):
        config = config.encode()
    (directory / "config.json").write_bytes(config)
    return directory
