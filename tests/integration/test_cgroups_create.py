"""cgroups as ``create`` leaves them on this hybrid host: the container's own cgroup in every
v1 hierarchy, its init in it and the memory limit written before ``start``, the limit felt by
the program (OOM-killed, exit 137), and the cgroups gone after ``delete``.

(test_cgroups_memory.py covers the memory controller's every knob, v1 and v2.)
"""

from __future__ import annotations

import os

import pytest

from .cgroup_support import requires_v1
from .support import (
    ROOT_MARKS,
    assert_nothing_left,
    cgroup_dirs_named,
    cgroup_names,
    cgroup_of,
    wait_for,
)

# These read v1 paths: on the VM lane's pure cgroup v2 kernel they do not apply.
pytestmark = [*ROOT_MARKS, requires_v1]

LIMIT = 32 * 1024 * 1024
# Holds 64 MiB in the shell's own memory: past the limit, so the OOM killer ends it.
HOG = "x=$(head -c 67108864 /dev/zero | tr '\\000' a); echo survived"


def v1_dir(pid, controller):
    return f"/sys/fs/cgroup/{controller}{cgroup_of(pid, controller)}"


def read(path):
    with open(path) as handle:
        return handle.read()


def memory_config(make_config, args, **memory):
    return make_config(args, linux__resources={"memory": {"limit": LIMIT, **memory}})


def test_limit_written_before_start(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    rt.create(cid, bundle(memory_config(make_config, ["sh", "-c", "echo ran > /out/ran"],
                                        reservation=LIMIT // 2)))
    pid = rt.state(cid)["pid"]
    directory = v1_dir(pid, "memory")
    assert os.path.basename(directory) in cgroup_names(cid)
    assert int(read(f"{directory}/memory.limit_in_bytes")) == LIMIT
    assert int(read(f"{directory}/memory.soft_limit_in_bytes")) == LIMIT // 2
    assert str(pid) in read(f"{directory}/cgroup.procs").split()
    assert not (out_dir / "ran").exists()

    rt.ok("start", cid)
    wait_for((out_dir / "ran").exists, what="the program to run")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert not os.path.exists(directory)
    assert_nothing_left(rt, cid)


def test_init_is_in_every_v1_hierarchy(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    pid = rt.state(cid)["pid"]
    mine = {}
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            mine[controllers] = path
    seen = 0
    for controllers in ("memory", "pids", "cpu", "devices", "freezer", "blkio", "cpuset"):
        if controllers not in mine:
            continue
        seen += 1
        assert os.path.basename(mine[controllers]) in cgroup_names(cid), (controllers, mine)
        directory = f"/sys/fs/cgroup/{controllers}{mine[controllers]}"
        assert str(pid) in read(f"{directory}/cgroup.procs").split()
    if not seen:
        pytest.skip("no cgroup v1 hierarchy on this host")
    rt.ok("delete", "--force", cid)
    assert cgroup_dirs_named(cgroup_names(cid)) == []


def test_pids_limit_written_before_start(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(["true"], linux__resources={"pids": {"limit": 4}})
    rt.create(cid, bundle(config))
    pid = rt.state(cid)["pid"]
    assert read(f"{v1_dir(pid, 'pids')}/pids.max").strip() == "4"
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)


def test_oom_kill_with_run(rt, make_config, bundle):
    cid = rt.new_id()
    result = rt("run", "--bundle", str(bundle(memory_config(make_config, ["sh", "-c", HOG]))),
                cid, timeout=20)
    assert result.returncode == 137, result
    assert "survived" not in result.stdout
    assert_nothing_left(rt, cid)


def test_oom_kill_seen_from_outside(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(memory_config(make_config, ["sh", "-c", HOG])))
    pid = rt.state(cid)["pid"]
    directory = v1_dir(pid, "memory")
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped", timeout=10)
    control = dict(line.split() for line in read(f"{directory}/memory.oom_control").splitlines())
    assert int(read(f"{directory}/memory.failcnt")) > 0
    if "oom_kill" in control:  # the counter is there since Linux 4.13
        assert int(control["oom_kill"]) >= 1
    rt.ok("delete", cid)
    assert not os.path.exists(directory)


def test_under_the_limit_runs(rt, make_config, bundle):
    cid = rt.new_id()
    program = "x=$(head -c 4194304 /dev/zero | tr '\\000' a); echo ${#x}"
    result = rt("run", "--bundle", str(bundle(memory_config(make_config, ["sh", "-c", program]))),
                cid)
    assert result.returncode == 0, result
    assert result.stdout == "4194304\n"
