"""The cgroup manager and drivers without root: discovery, placement, what each part of
linux.resources becomes on v1 and v2, runc's conversions, the device list and its BPF program
(run by a small interpreter), and the parsing of update/events options."""

from __future__ import annotations

import pytest

from ocirt.errors import ConfigError, OcirtError, UnsupportedError
from ocirt.linux import cgroups
from ocirt.linux.cgroups import devices, v2
from ocirt.linux.cgroups.ops import Write

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
1:cpu:/
0::/
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"


def hybrid() -> list[cgroups.Hierarchy]:
    found = cgroups.discover(HYBRID_MOUNTINFO, HYBRID_SELF)
    for h in found:  # cgroup.controllers cannot be read here: say what this host's holds
        if h.version == 2:
            h.controllers = frozenset({"hugetlb"})
    return found


def pure_v2(own: str = "/user.slice/session-1.scope") -> list[cgroups.Hierarchy]:
    found = cgroups.discover(V2_MOUNTINFO, f"0::{own}\n")
    found[0].controllers = frozenset({"cpu", "cpuset", "io", "memory", "pids", "hugetlb"})
    return found


def test_discover_hybrid_places_each_controller_where_it_lives():
    manager = cgroups.Manager(hybrid(), "ocirt-c1")
    assert manager.dirs["memory"] == "/sys/fs/cgroup/memory/process_api/abc/ocirt-c1"
    assert manager.dirs["pids"] == "/sys/fs/cgroup/pids/ocirt-c1"
    assert manager.dirs["unified"] == "/sys/fs/cgroup/unified/ocirt-c1"
    assert manager.where("memory").version == 1
    assert manager.where("hugetlb").version == 2
    assert manager.where("freezer").version == 1
    assert manager.where("rdma") is None


def test_v2_relative_paths_go_under_the_parent_of_our_cgroup():
    manager = cgroups.Manager(pure_v2(), "ocirt-c1")
    assert manager.dirs == {"unified": "/sys/fs/cgroup/user.slice/ocirt-c1"}
    assert cgroups.Manager(pure_v2("/"), "x/y").dirs["unified"] == "/sys/fs/cgroup/x/y"
    absolute = cgroups.Manager(pure_v2(), "/abs/ctr")
    assert absolute.dirs["unified"] == "/sys/fs/cgroup/abs/ctr"
    assert absolute.where("freezer").version == 2 and absolute.where("devices").version == 2


def test_resolve_path():
    assert cgroups.resolve_path(None, "c1") == "ocirt-c1"
    assert cgroups.resolve_path("/a/b", "c1") == "/a/b"
    with pytest.raises(UnsupportedError, match="systemd"):
        cgroups.resolve_path("system.slice:ocirt:c1", "c1")
    with pytest.raises(ConfigError, match=r"\.\."):
        cgroups.resolve_path("a/../b", "c1")


def test_state_round_trip():
    manager = cgroups.Manager(hybrid(), "ocirt-c1")
    manager.created = ["/sys/fs/cgroup/pids/ocirt-c1"]
    again = cgroups.Manager.from_state(manager.to_state())
    assert again.dirs == manager.dirs and again.created == manager.created
    assert again.where("hugetlb").version == 2


def ops(manager: cgroups.Manager, resources: dict) -> list[tuple[str, object]]:
    return [(h.name, op) for h, op in manager.ops(resources)
            if op.controller != "devices"]


def test_v1_writes():
    manager = cgroups.Manager(hybrid(), "c")
    planned = ops(manager, {"memory": {"reservation": 50, "swappiness": 10,
                                       "disableOOMKiller": True},
                            "pids": {"limit": 0},
                            "blockIO": {"throttleReadBpsDevice": [
                                {"major": 8, "minor": 0, "rate": 600}]}})
    writes = [op for _, op in planned if isinstance(op, Write)]
    assert Write("memory", "memory.soft_limit_in_bytes", "50", "") in writes
    assert Write("memory", "memory.swappiness", "10", "") in writes
    assert Write("memory", "memory.oom_control", "1", "") in writes
    assert Write("pids", "pids.max", "0", "") in writes  # 0 is a limit (runtime spec)
    assert Write("blkio", "blkio.throttle.read_bps_device", "8:0 600", "") in writes
    assert ("unified", "hugetlb") not in [(n, op.controller) for n, op in planned]


def test_hybrid_hugetlb_goes_to_the_v2_hierarchy():
    planned = ops(cgroups.Manager(hybrid(), "c"),
                  {"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 22}]})
    assert planned[0] == ("unified", Write("hugetlb", "hugetlb.2MB.max", str(1 << 22), ""))


def test_v2_writes_and_refusals():
    manager = cgroups.Manager(pure_v2(), "c")
    planned = ops(manager, {"pids": {"limit": -1},
                            "blockIO": {"throttleWriteIOPSDevice": [
                                {"major": 8, "minor": 16, "rate": 300}]},
                            "cpu": {"shares": 1024, "cpus": "0-1"}})
    writes = [op for _, op in planned if isinstance(op, Write)]
    assert Write("pids", "pids.max", "max", "") in writes
    assert Write("io", "io.max", "8:16 wiops=300", "") in writes
    assert Write("cpu", "cpu.weight", "100", "") in writes
    assert Write("cpuset", "cpuset.cpus", "0-1", "") in writes
    for resources, field in (({"memory": {"swappiness": 5}}, "swappiness"),
                             ({"memory": {"disableOOMKiller": True}}, "disableOOMKiller"),
                             ({"cpu": {"realtimeRuntime": 5}}, "realtimeRuntime"),
                             ({"blockIO": {"leafWeight": 5}}, "leafWeight")):
        with pytest.raises(UnsupportedError, match=field):
            manager.ops(resources)
    with pytest.raises(UnsupportedError, match="net_cls"):
        manager.ops({"network": {"classID": 1}})


def test_unified_on_v1_controllers_is_refused():
    with pytest.raises(UnsupportedError, match="cgroup v1"):
        cgroups.Manager(hybrid(), "c").ops({"unified": {"memory.high": "1"}})
    with pytest.raises(ConfigError):
        cgroups.Manager(pure_v2(), "c").ops({"unified": {"../etc": "1"}})


@pytest.mark.parametrize("swap,limit,expected", [
    (0, -1, -1), (-1, 100, -1), (0, 100, 0), (300, 100, 200), (100, 100, 0)])
def test_swap_conversion(swap, limit, expected):
    assert v2.swap_max(swap, limit) == expected


@pytest.mark.parametrize("swap,limit", [(300, 0), (50, 100)])
def test_swap_conversion_errors(swap, limit):
    with pytest.raises(ConfigError):
        v2.swap_max(swap, limit)


def test_weight_conversions():
    assert [v2.cpu_weight(s) for s in (0, 2, 1024, 262144)] == [0, 1, 100, 10000]
    assert [v2.io_weight(w) for w in (0, 10, 500, 1000)] == [0, 1, 4950, 10000]


def test_device_rules_and_their_bpf_program():
    rules = devices.rules([{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
                           {"allow": False, "type": "c", "major": 1, "minor": 9,
                            "access": "w"}],
                          [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    assert rules[0] == devices.DENY_ALL and rules.count(devices.DENY_ALL) == 1
    code = devices.program(rules)
    cases = [("b", 8, 0, "r", True), ("b", 8, 0, "w", False), ("b", 8, 1, "r", False),
             ("c", 1, 3, "rw", True), ("c", 1, 9, "r", True),  # the default wins: last
             ("c", 10, 229, "rwm", True), ("c", 4, 1, "r", False), ("c", 4, 1, "m", True),
             ("b", 7, 0, "m", True), ("c", 136, 5, "rw", True)]
    for kind, major, minor, access, expected in cases:
        assert devices.evaluate(rules, kind, major, minor, access) is expected
        assert devices.interpret(code, kind, major, minor, access) is expected, \
            (kind, major, minor, access)


def test_allow_all_program_has_no_unreachable_code():
    rules = devices.rules([{"allow": True, "access": "rwm"}], [])
    code = devices.program(rules)
    assert devices.interpret(code, "b", 8, 0, "rwm")
    # Checked from the last rule: the allow-all ends the program, the deny-all is never emitted.
    assert code.endswith(devices._encode(devices.JMP_EXIT, 0, 0, 0, 0))


def test_v1_device_lines():
    assert devices.v1_line(devices.DENY_ALL) == ("devices.deny", "a")
    assert devices.v1_line((True, "c", 136, None, "rwm")) == ("devices.allow", "c 136:* rwm")


def test_bad_device_rules():
    with pytest.raises(ConfigError, match="type"):
        devices.rules([{"allow": True, "type": "x"}], [])
    with pytest.raises(ConfigError, match="access"):
        devices.rules([{"allow": True, "access": "rwx"}], [])


def test_update_options():
    from ocirt.container import update

    patch = update.from_options({"memory": "64m", "memory_swap": "-1", "cpu_shares": "512",
                                 "cpuset_cpus": "0", "pids_limit": "-1"},
                                '{"blockIO": {"weight": 300}}')
    assert patch == {"memory": {"limit": 64 << 20, "swap": -1}, "cpu": {"shares": 512,
                     "cpus": "0"}, "pids": {"limit": -1}, "blockIO": {"weight": 300}}
    assert update.parse_bytes("1.5g", "memory") == 3 << 29
    assert update.parse_bytes("2GiB", "memory") == 2 << 30
    with pytest.raises(OcirtError, match="--memory"):
        update.parse_bytes("lots", "memory")
    merged = update.merge({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 3}},
                          {"memory": {"limit": 5}})
    assert merged == {"memory": {"limit": 5, "swap": 2}, "pids": {"limit": 3}}


def test_events_interval():
    from ocirt.container.events import parse_interval

    assert parse_interval("5s") == 5.0
    assert parse_interval("500ms") == 0.5
    assert parse_interval("1m30s") == 90.0
    assert parse_interval("2") == 2.0
    for bad in ("0s", "fast", "5"[:0], "10x"):
        with pytest.raises(OcirtError):
            parse_interval(bad)


def test_paused_is_derived_from_the_freezer(tmp_path):
    import os

    from ocirt.container.state import ContainerState, Status, process_start_time

    freezer = tmp_path / "freezer"
    freezer.mkdir()
    (freezer / "freezer.state").write_text("FROZEN\n")
    state = ContainerState(id="c", bundle="/b", rootfs="/r", pid=os.getpid(),
                           pid_start=process_start_time(os.getpid()) or 0,
                           status=Status.RUNNING,
                           cgroup={"path": "c", "dirs": {"freezer": str(freezer)},
                                   "created": []})
    assert state.current_status() is Status.PAUSED
    assert state.document()["status"] == "paused" and state.document()["pid"] == os.getpid()
    assert Status.PAUSED.can_kill and Status.PAUSED.can_resume and not Status.PAUSED.can_pause
    (freezer / "freezer.state").write_text("THAWED\n")
    assert state.current_status() is Status.RUNNING


def test_the_directories_to_make_are_known_before_they_are_made(tmp_path):
    """create records them before the mkdir steps; delete of a create killed in between
    removes those that exist, leaves a parent another cgroup has moved into, and removes the
    cgroups the container made inside its own. (Plain directories stand in for cgroupfs.)"""
    import os

    mountpoint = tmp_path / "pids"
    (mountpoint / "outer").mkdir(parents=True)  # was there before: never ours
    hierarchy = cgroups.Hierarchy(1, str(mountpoint), frozenset({"pids"}), str(mountpoint))
    manager = cgroups.Manager([hierarchy], "/outer/pod/ctr")
    own = f"{mountpoint}/outer/pod/ctr"
    assert manager.missing_dirs() == [own, f"{mountpoint}/outer/pod"]
    recorded = cgroups.Manager.from_state({**manager.to_state(),
                                           "created": manager.missing_dirs()})
    os.makedirs(f"{own}/made-inside/deeper")  # the mkdir steps, then the container's own
    os.mkdir(f"{mountpoint}/outer/pod/other-ctr")  # a sibling in the parent we made
    recorded.destroy()
    assert not os.path.exists(own)
    assert sorted(os.listdir(f"{mountpoint}/outer/pod")) == ["other-ctr"]
    assert os.path.isdir(f"{mountpoint}/outer")
    # killed before any mkdir: nothing exists, nothing fails
    recorded = cgroups.Manager.from_state({**manager.to_state(), "created": [own]})
    recorded.destroy()
