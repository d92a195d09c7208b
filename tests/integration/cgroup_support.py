"""Helpers of the cgroup integration tests: where a container's cgroup files are, on v1, hybrid
and pure v2 hosts, seen from outside (by the container's PID), and containers to look at.

The same tests run on this host (v1 controllers, hybrid placement) and, through the VM lane
(scripts/vm), on a pure cgroup v2 kernel; ``V2`` tells them which. Every path is found from
/proc/<pid>/cgroup of the container's process, so the tests hold for runc too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .support import Runtime, mountinfo, wait_for


def _pure_v2() -> bool:
    cgroup_mounts = [m for m in mountinfo() if m["fstype"] in ("cgroup", "cgroup2")]
    return bool(cgroup_mounts) and all(m["fstype"] == "cgroup2" for m in cgroup_mounts)


V2 = _pure_v2()
IN_VM = os.environ.get("OCIRT_VM_GUEST") == "1"
requires_v1 = pytest.mark.skipif(V2, reason="a cgroup v1 behaviour (this is a v2 host)")
requires_v2 = pytest.mark.skipif(not V2, reason="a cgroup v2 behaviour: runs in the VM lane")
SLOW = 20.0 if IN_VM else 1.0  # Python under TCG is ~20x slower: scale the timeouts


def _mounts_of(controller: str) -> tuple[str, str] | None:
    """(mountpoint, root) of the hierarchy holding ``controller`` (v2: '' is the unified)."""
    for entry in mountinfo():
        if entry["fstype"] == "cgroup" and controller and controller in entry["super"]:
            return entry["mountpoint"], entry["root"]
    for entry in mountinfo():
        if entry["fstype"] == "cgroup2":
            return entry["mountpoint"], entry["root"]
    return None


def cgroup_dir(pid: int, controller: str) -> Path:
    """The host directory of ``pid``'s cgroup in the hierarchy that holds ``controller``."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    found = _mounts_of(controller)
    assert found is not None, f"no hierarchy holds {controller}"
    mountpoint, root = found
    v1 = any(e["fstype"] == "cgroup" and e["mountpoint"] == mountpoint for e in mountinfo())
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (v1 and controller in controllers.split(",")) or (not v1 and controllers == ""):
            relative = path[len(root):] if root != "/" and path.startswith(root) else path
            return Path(mountpoint) / relative.lstrip("/")
    raise AssertionError(f"/proc/{pid}/cgroup has no line for {controller}: {lines}")


def placement_parents() -> list[Path]:
    """Where a runtime puts a relative cgroupsPath, in every hierarchy this process is in:
    below our own cgroup on v1, below its parent on v2 (as runc's cgroupfs driver)."""
    result = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers:
            result.append(cgroup_dir(os.getpid(), controllers.split(",")[0]))
            continue
        mount = next(e["mountpoint"] for e in mountinfo() if e["fstype"] == "cgroup2")
        parent = os.path.dirname(path.rstrip("/")) or "/"
        result.append(Path(mount) / parent.lstrip("/"))
    return result


def read(pid: int, controller: str, name: str) -> str:
    return (cgroup_dir(pid, controller) / name).read_text().strip()


def v1_weight_files(name: str) -> list[str]:
    """The proportional-weight files a new v1 blkio cgroup gets on this kernel, seen in a probe
    cgroup ``name`` made where containers' cgroups go and removed at once.

    blkio.weight was CFQ's (gone since Linux 5.0); blkio.bfq.weight is there while BFQ is
    built in or its module (bfq) is loaded, which an earlier run may have done or not: a test
    must ask the kernel, not assume either."""
    probe = cgroup_dir(os.getpid(), "blkio") / name
    probe.mkdir()
    try:
        return sorted(n for n in os.listdir(probe) if n in ("blkio.weight", "blkio.bfq.weight"))
    finally:
        probe.rmdir()


def block_device() -> tuple[int, int, str]:
    """A block device of this machine that root may open (major, minor, name): loop0 where
    there is one (some sandboxes forbid opening their disks), else the first disk."""
    names = sorted(os.listdir("/sys/block"))
    for name in ["loop0"] * ("loop0" in names) + names:
        if name.startswith(("ram", "zram", "sr", "nbd")) or (name.startswith("loop")
                                                            and name != "loop0"):
            continue
        major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        return int(major), int(minor), name
    pytest.skip("this machine has no block device")


class Started:
    """A created-and-started container: its ID and its init's host PID."""

    def __init__(self, cid: str, pid: int) -> None:
        self.cid, self.pid = cid, pid


def start(rt: Runtime, make_config: Callable[..., dict[str, Any]],
          bundle: Callable[..., Path], resources: dict[str, Any] | None = None,
          args: list[str] | None = None, name: str = "cg", **overrides: Any) -> Started:
    """Create and start a container running ``args`` (default: sleep) with ``resources``
    (added to the test config's device rule)."""
    config = make_config(args or ["sleep", "1000"], **overrides)
    config["linux"].setdefault("resources", {}).update(resources or {})
    cid = rt.new_id(name)
    rt.ok("create", "--bundle", str(bundle(config, name=f"bundle-{cid}")), cid,
          timeout=10 * SLOW)
    rt.ok("start", cid, timeout=10 * SLOW)
    return Started(cid, int(rt.state(cid)["pid"]))


def stats(rt: Runtime, cid: str) -> dict[str, Any]:
    line = rt.ok("events", "--stats", cid, timeout=10 * SLOW).stdout.strip()
    event: dict[str, Any] = json.loads(line)
    assert event["type"] == "stats" and event["id"] == cid, event
    data: dict[str, Any] = event["data"]
    return data


def wait_file(path: Path, timeout: float = 5.0) -> str:
    wait_for(lambda: path.exists() and path.read_text().strip(), timeout * SLOW,
             what=f"{path} to be written")
    return path.read_text().strip()


def counter_advances(path: Path, seconds: float) -> bool:
    """Does the number in ``path`` (written by the container) change within ``seconds``?"""
    before = path.read_text().strip()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if path.read_text().strip() != before:
            return True
    return False
