"""The systemd driver's conversions (no systemd needed): names, slices, unit properties."""

from __future__ import annotations

import pytest

from ocirt.errors import ConfigError, UnsupportedError
from ocirt.linux import cgroups
from ocirt.linux.cgroups import sdprops


def props(resources, version=252):
    return dict(sdprops.resource_properties(resources, version))


def test_slice_expansion_nests_on_dashes():
    assert sdprops.expand_slice("system.slice") == "/system.slice"
    assert sdprops.expand_slice("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"
    assert sdprops.expand_slice("-.slice") == "/"
    for bad in ("system", "a--b.slice", "-a.slice", "a/b.slice", ".slice"):
        with pytest.raises(ConfigError, match="cgroupsPath"):
            sdprops.expand_slice(bad)


def test_cgroups_path_and_defaults():
    assert sdprops.parse_path("machine.slice:libpod:abc", "x", False) == (
        "machine.slice", "libpod-abc.scope")
    assert sdprops.parse_path("", "c1", False) == ("system.slice", "ocirt-c1.scope")
    assert sdprops.parse_path(None, "c1", True) == ("user.slice", "ocirt-c1.scope")
    assert sdprops.parse_path(":p:", "c1", False) == ("system.slice", "p-c1.scope")
    with pytest.raises(ConfigError, match="slice:prefix:name"):
        sdprops.parse_path("/a/b", "c1", False)
    with pytest.raises(UnsupportedError, match="slice unit"):
        sdprops.parse_path("a.slice:p:b.slice", "c1", False)


def test_memory_pids_cpu():
    got = props({"memory": {"limit": 64 << 20, "reservation": 1 << 20, "swap": 96 << 20},
                 "pids": {"limit": -1}, "cpu": {"shares": 1024, "cpus": "0-2,4",
                                                 "mems": "0"}})
    assert got["MemoryMax"] == ("t", 64 << 20) and got["MemoryLow"] == ("t", 1 << 20)
    assert got["MemorySwapMax"] == ("t", 32 << 20)
    assert got["TasksMax"] == ("t", (1 << 64) - 1)
    assert got["CPUWeight"] == ("t", 100)
    assert got["AllowedCPUs"] == ("ay", bytes([0b10111]))
    assert got["AllowedMemoryNodes"] == ("ay", b"\x01")
    assert "AllowedCPUs" not in props({"cpu": {"cpus": "0"}}, version=243)


def test_cpu_quota_rounds_up_to_ten_ms():
    assert props({"cpu": {"quota": 50000, "period": 100000}})["CPUQuotaPerSecUSec"] == (
        "t", 500000)
    assert props({"cpu": {"quota": 12345}})["CPUQuotaPerSecUSec"] == ("t", 130000)
    got = props({"cpu": {"period": 50000}})
    assert got["CPUQuotaPerSecUSec"] == ("t", (1 << 64) - 1)
    assert got["CPUQuotaPeriodUSec"] == ("t", 50000)
    assert props({"cpu": {"idle": 1, "shares": 512}})["CPUWeight"] == ("t", 0)


def test_io_and_unified():
    got = props({"blockIO": {"weight": 500, "throttleReadBpsDevice": [
        {"major": 8, "minor": 0, "rate": 1000}]},
        "unified": {"memory.high": "1000", "pids.max": "max", "cpu.max": "20000 100000"}})
    assert got["IOWeight"] == ("t", 4950)
    assert got["IOReadBandwidthMax"] == ("a(st)", [("/dev/block/8:0", 1000)])
    assert got["MemoryHigh"] == ("t", 1000) and got["TasksMax"] == ("t", (1 << 64) - 1)
    assert got["CPUQuotaPerSecUSec"] == ("t", 200000)


def test_devices():
    got = dict(sdprops.device_properties([], []))
    assert got["DevicePolicy"] == ("s", "strict")
    allowed = got["DeviceAllow"][1]
    assert ("/dev/char/1:3", "rwm") in allowed and ("char-*", "m") in allowed
    everything = [{"allow": True, "access": "rwm"}]
    assert sdprops.device_properties(everything, []) == [("DevicePolicy", ("s", "auto"))]


def test_annotations_as_runc_parses_them():
    got = dict(sdprops.annotation_properties({
        "org.systemd.property.TimeoutStopSec": "7",
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
        "org.systemd.property.CPUWeight": "uint64 50",
        "org.systemd.property.Delegate": "true",
        "other": "x"}))
    assert got == {"TimeoutStopUSec": ("t", 7_000_000),
                   "CollectMode": ("s", "inactive-or-failed"),
                   "CPUWeight": ("t", 50), "Delegate": ("b", True)}
    with pytest.raises(ConfigError, match="latin letters"):
        sdprops.annotation_properties({"org.systemd.property.X1": "1"})
    with pytest.raises(ConfigError, match="GVariant"):
        sdprops.annotation_properties({"org.systemd.property.Abc": "uint64 x"})


def test_systemd_needs_systemd_running(monkeypatch):
    monkeypatch.setattr("os.path.isdir", lambda path: False)
    with pytest.raises(UnsupportedError, match="systemd is not running"):
        cgroups.select("system.slice:p:c1", "c1", "systemd")


def test_a_saved_systemd_driver_plans_like_cgroupfs_v2():
    from ocirt.linux.cgroups.discovery import Hierarchy
    from ocirt.linux.cgroups.systemd import SystemdManager

    unified = Hierarchy(2, "/sys/fs/cgroup", frozenset({"memory", "pids"}), "/sys/fs/cgroup")
    manager = SystemdManager([unified], "system.slice:p:c1", "system.slice", "p-c1.scope",
                             False, "/sys/fs/cgroup/system.slice/p-c1.scope")
    ops = manager.ops({"memory": {"limit": 1 << 20}}, [])
    assert any("memory.max" in op.describe(manager.dirs["unified"]) for _, op in ops)
    saved = cgroups.load(manager.to_state())
    assert isinstance(saved, SystemdManager) and saved.started and saved.unit == "p-c1.scope"
    assert saved.ops({"pids": {"limit": 5}}, update=True)
