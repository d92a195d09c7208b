"""A damaged state file: ``state`` and ``kill`` say so in one line naming the file, and
``delete --force`` still finds the container's processes, cgroups, mounts and state directory
and removes them all.

The state file is attacked as a crash, a full disk or a careless hand would leave it: empty,
cut in half, garbage bytes, JSON of the wrong shape, a document about another container. runc
1.1.5 cannot delete such a container at all (it leaves the processes and cgroups), so these
checks are ocirt's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from testkit import mounts_under

from . import feature_support
from .support import (
    ROOT_MARKS,
    assert_nothing_left,
    cgroup_dirs_named,
    cgroup_names,
    pid_alive,
    processes_with_token,
    requires_ocirt,
    wait_for,
)

pytestmark = [*ROOT_MARKS, requires_ocirt]

# init and two children that outlive it (no pid namespace: only the cgroup holds them all)
FAMILY = "sleep 100 & sleep 101 & echo ready > /out/ready; exec sleep 102"


def damage(path: Path, how: str) -> None:
    original = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        with open(path, "r+b") as handle:  # in place, as a crash mid-write would leave it
            handle.truncate(len(original) // 2)
    elif how == "garbage":
        path.write_bytes(b"\x00\xff\xfegarbage{" + os.urandom(32))
    elif how == "wrong-shape":
        doc = json.loads(original)
        doc["pid"], doc["cgroup"] = "1", {"path": 1}
        path.write_text(json.dumps(doc))
    elif how == "not-an-object":
        path.write_text("[1, 2, 3]")
    elif how == "other-id":
        doc = json.loads(original)
        doc["id"] = "someone-else"
        path.write_text(json.dumps(doc))
    else:
        raise AssertionError(how)


def running_family(rt, make_config, bundle, out_dir, pid_ns=False):
    cid = rt.new_id()
    config = make_config(["sh", "-c", FAMILY])
    if not pid_ns:
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                         if ns["type"] != "pid"]
    rt.create(cid, bundle(config))
    rt.ok("start", cid)
    wait_for((out_dir / "ready").exists, what="the children to start")
    members = wait_for(lambda: (lambda p: p if len(p) >= 3 else None)(processes_with_token(
        rt.token)), what="init and its two children")
    assert cgroup_dirs_named(cgroup_names(cid))
    return cid, members


def one_line(result) -> str:
    text = result.stderr.strip()
    assert "\n" not in text and "Traceback" not in text, result
    return text


HOW = ["empty", "truncated", "garbage", "wrong-shape", "not-an-object", "other-id"]


@pytest.mark.parametrize("how", HOW)
def test_damaged_state_is_reported_and_force_delete_removes_everything(
        rt, make_config, bundle, out_dir, how):
    cid, members = running_family(rt, make_config, bundle, out_dir)
    state_file = rt.state_dir(cid) / "state.json"
    damage(state_file, how)
    for verb in (["state", cid], ["kill", cid, "KILL"], ["delete", cid]):
        line = one_line(rt.fails(*verb))
        assert str(state_file) in line and "damaged" in line, line
    assert all(pid_alive(pid) for pid in members), "a failed command killed"
    result = rt("delete", "--force", cid)
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    assert_nothing_left(rt, cid)
    assert not any(pid_alive(pid) for pid in members)


@pytest.mark.parametrize("pid_ns", [True, False], ids=["pid-ns", "host-pid-ns"])
def test_both_records_damaged_the_cgroup_of_the_id_is_enough(rt, make_config, bundle, out_dir,
                                                             pid_ns):
    """state.json and its cleanup.json copy both garbage: the processes are found in the
    cgroup that the ID names."""
    cid, members = running_family(rt, make_config, bundle, out_dir, pid_ns)
    for name in ("state.json", "cleanup.json"):
        damage(rt.state_dir(cid) / name, "garbage")
    result = rt("delete", "--force", cid)
    assert result.returncode == 0, result
    assert_nothing_left(rt, cid)
    assert not any(pid_alive(pid) for pid in members)


def test_state_file_missing_force_delete_uses_the_copy(rt, make_config, bundle, out_dir):
    cid, members = running_family(rt, make_config, bundle, out_dir)
    (rt.state_dir(cid) / "state.json").unlink()
    assert all(pid_alive(pid) for pid in members)
    assert "does not exist" in one_line(rt.fails("state", cid))
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)
    assert not any(pid_alive(pid) for pid in members)


def test_state_is_replaced_never_rewritten_in_place(rt, make_config, bundle):
    """Every write is a new file renamed over the old one: a reader (or a crash) sees the old
    document or the new, whole; no temporary file stays behind."""
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"], out=False)))
    state_file = rt.state_dir(cid) / "state.json"
    before = os.stat(state_file).st_ino
    rt.ok("start", cid)
    assert os.stat(state_file).st_ino != before
    assert json.loads(state_file.read_text())["status"] == "running"
    assert sorted(os.listdir(rt.state_dir(cid))) == ["cleanup.json", "state.json"]


# --- a container without a mount namespace: its mounts are in the runtime's ------------------

holder_ns = feature_support.private_mount_ns
holder = feature_support.holder
nsrt = feature_support.ns_runtime


@pytest.mark.parametrize("how", ["empty", "garbage"])
def test_damaged_state_without_mount_namespace_detaches_its_mounts(
        nsrt, holder, make_config, bundle, private_rootfs, how):
    def under_rootfs() -> list[str]:  # other people's mounts under /tmp come and go
        return mounts_under(holder, private_rootfs)

    config = make_config(["sleep", "100"], rootfs_path=private_rootfs, hostname=None)
    config["linux"]["namespaces"] = []
    cid = nsrt.new_id()
    assert under_rootfs() == []
    nsrt.create(cid, bundle(config))
    assert len(under_rootfs()) > 3  # /proc, /dev, /sys, /out, ... in the runtime's namespace
    damage(nsrt.state_dir(cid) / "state.json", how)
    nsrt.ok("delete", "--force", cid)
    assert under_rootfs() == []
    assert_nothing_left(nsrt, cid)
