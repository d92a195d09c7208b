"""cpu (shares/weight, quota and period, burst, realtime, cpus and mems, idle) and pids (the
limit, and a fork bomb that stops at it): read back from the cgroup files, felt inside."""

from __future__ import annotations

import math
import time

import pytest

from .cgroup_support import SLOW, V2, read, requires_v1, requires_v2, start, stats, wait_file
from .support import ROOT_MARKS, proc_status, requires_ocirt

pytestmark = ROOT_MARKS


def runc_weight(shares: int) -> int:
    """The conversion runc (and crun) use since 2025, restated here to check ocirt's."""
    if shares <= 2:
        return 1
    log = math.log2(shares)
    return math.ceil(10 ** ((log * log + 125 * log) / 612.0 - 7.0 / 34.0))


def test_shares_quota_period_read_back(rt, make_config, bundle):
    c = start(rt, make_config, bundle,
              {"cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0",
                       "mems": "0"}})
    if V2:
        assert read(c.pid, "cpu", "cpu.weight") in (str(runc_weight(512)),
                                                    str(1 + (512 - 2) * 9999 // 262142))
        assert read(c.pid, "cpu", "cpu.max") == "20000 100000"
        assert read(c.pid, "cpuset", "cpuset.cpus") == "0"
    else:
        assert read(c.pid, "cpu", "cpu.shares") == "512"
        assert read(c.pid, "cpu", "cpu.cfs_quota_us") == "20000"
        assert read(c.pid, "cpu", "cpu.cfs_period_us") == "100000"
        assert read(c.pid, "cpuset", "cpuset.cpus") == "0"
        assert read(c.pid, "cpuset", "cpuset.mems") == "0"
    # Felt inside: the container may only run on CPU 0.
    assert proc_status(c.pid)["Cpus_allowed_list"] == "0"


@requires_ocirt
def test_v2_weight_conversion_matches_runc():
    from ocirt.linux.cgroups.v2 import cpu_weight

    for shares in (2, 3, 10, 100, 512, 1024, 2048, 10000, 262143, 262144):
        assert cpu_weight(shares) == runc_weight(shares)
    assert cpu_weight(1024) == 100


def test_quota_throttles_a_busy_loop(rt, make_config, bundle, out_dir):
    c = start(rt, make_config, bundle, {"cpu": {"quota": 10000, "period": 100000}},
              ["sh", "-c", "echo go > /out/go; while :; do :; done"])
    wait_file(out_dir / "go")
    time.sleep(1.0)
    stat = dict(line.split() for line in read(c.pid, "cpu", "cpu.stat").splitlines())
    assert int(stat["nr_throttled"]) > 0, stat
    data = stats(rt, c.cid)
    assert data["cpu"]["throttling"]["throttledPeriods"] > 0, data["cpu"]


@requires_ocirt  # runc 1.1 (Debian 12's) has neither cpu burst nor idle
def test_burst_and_idle(rt, make_config, bundle):
    c = start(rt, make_config, bundle, {"cpu": {"quota": 50000, "period": 100000,
                                                "burst": 20000, "idle": 1}})
    if V2:
        assert read(c.pid, "cpu", "cpu.max.burst") == "20000"
    else:
        assert read(c.pid, "cpu", "cpu.cfs_burst_us") == "20000"
    assert read(c.pid, "cpu", "cpu.idle") == "1"


@requires_v1
def test_v1_realtime(rt, make_config, bundle):
    c = start(rt, make_config, bundle, {"cpu": {"realtimePeriod": 1000000,
                                                "realtimeRuntime": 10000}})
    assert read(c.pid, "cpu", "cpu.rt_period_us") == "1000000"
    assert read(c.pid, "cpu", "cpu.rt_runtime_us") == "10000"


@requires_v2
@requires_ocirt
def test_v2_realtime_is_a_clear_error(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["resources"]["cpu"] = {"realtimeRuntime": 10000}
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id(), timeout=10 * SLOW)
    assert "linux.resources.cpu.realtimeRuntime" in result.stderr


def test_pids_limit_stops_a_fork_bomb(rt, make_config, bundle, out_dir):
    # A subshell forks 30 sleepers; the fork past the limit fails and ends it, init goes on.
    script = ("(for i in $(seq 30); do sleep 1000 & done) 2>/out/err; echo $? > /out/rc; "
              "exec sleep 1000")
    c = start(rt, make_config, bundle, {"pids": {"limit": 10}}, ["sh", "-c", script])
    assert wait_file(out_dir / "rc", 20) != "0"
    assert "fork" in (out_dir / "err").read_text()
    assert read(c.pid, "pids", "pids.max") == "10"
    assert int(read(c.pid, "pids", "pids.current")) <= 10
    if V2:
        assert int(dict(line.split() for line in
                        read(c.pid, "pids", "pids.events").splitlines())["max"]) > 0
    assert stats(rt, c.cid)["pids"]["limit"] == 10


@pytest.mark.parametrize("limit,expected", [(-1, "max"), (25, "25")])
def test_pids_limit_values(rt, make_config, bundle, limit, expected):
    c = start(rt, make_config, bundle, {"pids": {"limit": limit}})
    assert read(c.pid, "pids", "pids.max") == expected
