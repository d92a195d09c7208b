"""A rootless runtime where the user owns a delegated cgroup: the container gets a cgroup of
its own there and its limits work (as under a systemd user session on cgroup v2). The test
makes the delegation itself: in every hierarchy, a subtree below its own cgroup handed to the
user (chown), in which the runtime is started; it removes the subtree afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import rootless_config, wait_for

# The session makes the unprivileged user: it needs root (the tests then run as that user).
pytestmark = pytest.mark.root


def _hierarchies() -> list[tuple[Path, str]]:
    """(mount point, our own path in it) of each cgroup hierarchy this process is in."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers] = path
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2" and "" in own:
                found.append((Path(fields[4]), own[""]))
            elif fstype == "cgroup":
                for controllers, path in own.items():
                    if controllers and set(controllers.split(",")) <= set(options):
                        found.append((Path(fields[4]), path))
                        break
    return found


@pytest.fixture
def delegated(urt, rootless_user) -> Iterator[list[Path]]:
    """A delegated subtree ``rl-deleg-*/inner`` in every hierarchy; the runtime starts in
    ``inner`` (so v1 places the container below it, and v2 beside it, below the delegated
    ``rl-deleg-*``, both the user's)."""
    name = f"rl-deleg-{os.urandom(4).hex()}"
    made: list[Path] = []
    try:
        for mount, own in _hierarchies():
            top = mount / own.lstrip("/") / name
            inner = top / "inner"
            inner.mkdir(parents=True)
            made.append(top)
            if (top / "cpuset.cpus").exists():  # v1 cpuset: a new cgroup starts empty
                for key in ("cpuset.cpus", "cpuset.mems"):
                    value = (top.parent / key).read_text().strip()
                    (top / key).write_text(value)
                    (inner / key).write_text(value)
            for directory in (top, inner):
                os.chown(directory, rootless_user.uid, rootless_user.gid)
                for entry in directory.iterdir():
                    if entry.is_file():
                        os.chown(entry, rootless_user.uid, rootless_user.gid)
        urt.cgroups = [str(top / "inner" / "cgroup.procs") for top in made]
        yield made
    finally:
        urt.cgroups = []
        urt.cleanup()
        for top in made:
            for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir():
                    _rmdir(path)
            _rmdir(top)


def _rmdir(path: Path) -> None:
    deadline = time.monotonic() + 5
    while path.exists():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _memory_dir(pid: int) -> Path:
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    pytest.skip("no v1 memory hierarchy on this host")


def test_limits_work_in_a_delegated_cgroup(urt, rootless_user, delegated):
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("checks v1 memory files; the VM lane covers cgroup v2")
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 42}}
    cid = urt.new_id("deleg")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    pid = urt.state(cid)["pid"]
    memory = _memory_dir(pid)
    assert any(str(memory).startswith(str(top)) for top in delegated), memory
    assert memory.name != "inner", "the container has a cgroup of its own"
    assert int((memory / "memory.limit_in_bytes").read_text()) == 64 << 20
    urt.ok("update", "--memory", str(32 << 20), cid)
    assert int((memory / "memory.limit_in_bytes").read_text()) == 32 << 20
    urt.ok("pause", cid)
    assert urt.state(cid)["status"] == "paused"
    urt.ok("resume", cid)
    assert urt.state(cid)["status"] == "running"
    urt.ok("delete", "--force", cid)
    wait_for(lambda: not memory.exists(), 5.0, what="the container's cgroup to be removed")
