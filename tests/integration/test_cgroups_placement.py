"""Where the container's cgroup is (cgroupsPath: default, relative, absolute; joining an
existing one), what is removed on delete, and the resources this host may lack (hugetlb,
net_cls/net_prio, rdma, unified) with the clear errors ocirt gives where it lacks them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .cgroup_support import (
    SLOW,
    V2,
    cgroup_dir,
    placement_parents,
    read,
    requires_v1,
    requires_v2,
    start,
)
from .support import ROOT_MARKS, requires_ocirt, wait_for

pytestmark = ROOT_MARKS


def own_dir(controller: str) -> Path:
    return cgroup_dir(os.getpid(), controller)


def v2_placement_parent() -> Path:
    """v2: relative paths go below the parent of our own cgroup (ours holds processes)."""
    mine = own_dir("pids")
    return mine if mine == Path("/sys/fs/cgroup") else mine.parent


def test_default_placement_is_under_our_own_cgroup(rt, make_config, bundle):
    c = start(rt, make_config, bundle)
    for controller in ("memory", "pids"):
        mine = own_dir(controller)
        theirs = cgroup_dir(c.pid, controller)
        # v1: below our own cgroup; v2: below its parent, as runc does
        parent = v2_placement_parent() if V2 else mine
        assert theirs.parent == parent, (theirs, mine)
        assert theirs.name in (f"ocirt-{c.cid}", c.cid)
    rt.ok("delete", "--force", c.cid, timeout=15 * SLOW)
    assert not theirs.exists()


@requires_ocirt
def test_absolute_path_and_cleanup_of_what_was_made(rt, make_config, bundle, tmp_path):
    # An absolute path names the cgroup from the root of each hierarchy; delete removes the
    # directories ocirt made (here two levels), nothing else.
    tag = f"ocirt-abs-{os.getpid()}-{os.urandom(3).hex()}"
    config = make_config(["sleep", "1000"], linux__cgroupsPath=f"/{tag}/inner")
    cid = rt.new_id("abs")
    rt.ok("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    pid = int(rt.state(cid)["pid"])
    directory = cgroup_dir(pid, "pids")
    assert directory.name == "inner" and directory.parent.name == tag
    assert directory.parent.parent == Path("/sys/fs/cgroup" if V2 else "/sys/fs/cgroup/pids")
    rt.ok("delete", "--force", cid, timeout=15 * SLOW)
    assert not directory.parent.exists()


def test_relative_path_and_an_existing_parent_left_alone(rt, make_config, bundle):
    # The parent exists in every hierarchy before the container: the runtime makes only ctr
    # (runc, unlike ocirt, would leave a parent it made itself behind).
    parent_name = f"ocirt-rel-{os.getpid()}-{os.urandom(3).hex()}"
    parents = [d / parent_name for d in placement_parents()]
    made = []
    try:
        for parent in parents:
            parent.mkdir()
            made.append(parent)
        config = make_config(["sleep", "1000"], linux__cgroupsPath=f"{parent_name}/ctr")
        cid = rt.new_id("rel")
        rt.ok("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
        pid = int(rt.state(cid)["pid"])
        pids_parent = (v2_placement_parent() if V2 else own_dir("pids")) / parent_name
        assert cgroup_dir(pid, "pids") == pids_parent / "ctr"
        rt.ok("delete", "--force", cid, timeout=15 * SLOW)
        assert not any((p / "ctr").exists() for p in parents)
        assert all(p.is_dir() for p in parents), "a parent ocirt did not make was removed"
    finally:
        for parent in reversed(made):
            wait_for(lambda p=parent: not (p / "ctr").exists(), 5 * SLOW, what="cleanup")
            parent.rmdir()


@requires_ocirt
def test_joining_a_cgroup_with_processes_is_refused(rt, make_config, bundle):
    c = start(rt, make_config, bundle)
    taken = cgroup_dir(c.pid, "pids")
    relative = "/" + str(taken.relative_to("/sys/fs/cgroup" if V2 else "/sys/fs/cgroup/pids"))
    config = make_config(["true"], linux__cgroupsPath=relative)
    if not V2:  # the same path must name a cgroup in every v1 hierarchy: use the pids one
        pytest.skip("on v1 the container's cgroups sit at different paths per hierarchy")
    result = rt.fails("run", "--bundle", str(bundle(config, name="second")), rt.new_id(),
                      timeout=10 * SLOW)
    assert "is not empty" in result.stderr
    assert taken.is_dir()


@requires_ocirt
@pytest.mark.parametrize("how", ["slice-path", "flag"])
def test_systemd_cgroups_are_refused(rt, make_config, bundle, how):
    """A slice:prefix:name path without --systemd-cgroup is refused everywhere; the flag where
    systemd is not running or cgroup v1 is mounted (test_systemd_cgroup.py: where it is)."""
    if how == "flag" and V2 and os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here on cgroup v2: the systemd driver works")
    config = make_config(["true"])
    args = ["run", "--bundle", str(bundle(config)), rt.new_id()]
    if how == "slice-path":
        config["linux"]["cgroupsPath"] = "system.slice:ocirt:test"
        args = ["run", "--bundle", str(bundle(config)), rt.new_id()]
        result = rt.fails(*args, timeout=10 * SLOW)
    else:
        result = rt.fails(*args, global_opts=["--systemd-cgroup"], timeout=10 * SLOW)
    assert "systemd" in result.stderr
    assert "Traceback" not in result.stderr


@requires_ocirt
def test_hugetlb_where_it_lives(rt, make_config, bundle):
    # On this hybrid host hugetlb is only in the cgroup2 mount: ocirt writes it there.
    c = start(rt, make_config, bundle, {"hugepageLimits": [{"pageSize": "2MB",
                                                            "limit": 4 << 20}]})
    assert read(c.pid, "hugetlb", "hugetlb.2MB.max" if V2 or _hugetlb_in_v2()
                else "hugetlb.2MB.limit_in_bytes") == str(4 << 20)


def _hugetlb_in_v2() -> bool:
    return not any(e.startswith("hugetlb") for e in os.listdir("/sys/fs/cgroup"))


@requires_ocirt
def test_unknown_page_size_is_a_clear_error(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "3MB", "limit": 1}]
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id(), timeout=10 * SLOW)
    assert "pageSize '3MB'" in result.stderr and "2MB" in result.stderr


@requires_ocirt
@pytest.mark.parametrize("resources,needle", [
    ({"network": {"classID": 1048577}}, "net_cls"),
    ({"network": {"priorities": [{"name": "lo", "priority": 5}]}}, "net_prio"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "rdma"),
])
def test_missing_controllers_are_clear_errors(rt, make_config, bundle, resources, needle):
    config = make_config(["true"])
    config["linux"]["resources"].update(resources)
    if Path(f"/sys/fs/cgroup/{needle}").is_dir():
        pytest.skip(f"this host has {needle}")
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id(), timeout=10 * SLOW)
    assert needle in result.stderr
    # No such controller, or (v2 with rdma but no such RDMA device) the kernel's ENODEV.
    assert any(text in result.stderr for text in ("does not offer", "cgroup v1",
                                                  "rdma.max (linux.resources.rdma): No such "
                                                  "device (ENODEV)")), result.stderr


@requires_v1
@requires_ocirt
def test_unified_needs_v2_for_its_controller(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["resources"]["unified"] = {"memory.high": "1000000"}
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id())
    assert "unified['memory.high']" in result.stderr and "cgroup v1" in result.stderr


@requires_v2
def test_unified_is_written_verbatim(rt, make_config, bundle):
    c = start(rt, make_config, bundle, {"unified": {"memory.high": "50000000",
                                                    "pids.max": "42"}})
    assert read(c.pid, "memory", "memory.high") == str(50000000 // 4096 * 4096)
    assert read(c.pid, "pids", "pids.max") == "42"


@requires_v2
@requires_ocirt
def test_unified_unknown_file_is_an_error(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["resources"]["unified"] = {"memory.nonexistent": "1"}
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id(), timeout=10 * SLOW)
    assert "memory.nonexistent" in result.stderr and "no such file" in result.stderr
