"""pause/resume, kill --all, update, events, ps: the operations on a container's cgroup."""

from __future__ import annotations

import json

from .cgroup_support import SLOW, V2, counter_advances, read, start, stats, wait_file
from .support import ROOT_MARKS, pid_alive, wait_for

pytestmark = ROOT_MARKS

MB = 1 << 20
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /out/n; sleep 0.05; done"


def test_pause_and_resume(rt, make_config, bundle, out_dir):
    c = start(rt, make_config, bundle, args=["sh", "-c", COUNTER])
    wait_file(out_dir / "n")
    assert counter_advances(out_dir / "n", 2 * SLOW)
    rt.ok("pause", c.cid, timeout=10 * SLOW)
    assert rt.status(c.cid) == "paused"
    assert rt.state(c.cid)["pid"] == c.pid
    if V2:
        assert read(c.pid, "freezer", "cgroup.freeze") == "1"
        assert "frozen 1" in read(c.pid, "freezer", "cgroup.events").splitlines()
    else:
        assert read(c.pid, "freezer", "freezer.state") == "FROZEN"
    assert not counter_advances(out_dir / "n", 0.5 * SLOW), "a paused container ran"
    assert "container not paused" not in rt("resume", c.cid).stderr
    assert rt.status(c.cid) == "running"
    assert counter_advances(out_dir / "n", 2 * SLOW)
    assert "not paused" in rt.fails("resume", c.cid, timeout=10 * SLOW).stderr


def test_paused_container_can_be_force_deleted(rt, make_config, bundle):
    c = start(rt, make_config, bundle)
    rt.ok("pause", c.cid, timeout=10 * SLOW)
    rt.fails("delete", c.cid, timeout=10 * SLOW)
    rt.ok("delete", "--force", c.cid, timeout=15 * SLOW)
    wait_for(lambda: not pid_alive(c.pid), 5 * SLOW, what="the paused container to die")


def test_kill_all_signals_every_process(rt, make_config, bundle, out_dir):
    # init catches TERM (its children get the default action: they die).
    script = ("trap 'echo term > /out/init' TERM; for i in 1 2 3; do sleep 1000 & done; "
              "echo $! > /out/last; while :; do sleep 0.1; done")
    c = start(rt, make_config, bundle, args=["sh", "-c", script])
    wait_file(out_dir / "last")
    pids = json.loads(rt.ok("ps", "--format", "json", c.cid, timeout=10 * SLOW).stdout)
    assert c.pid in pids and len(pids) >= 4, pids
    children = [p for p in pids if p != c.pid]
    rt.ok("kill", "--all", c.cid, "TERM", timeout=10 * SLOW)
    wait_for(lambda: not any(pid_alive(p) for p in children), 5 * SLOW,
             what="the children to die of SIGTERM")
    assert wait_file(out_dir / "init") == "term"
    assert pid_alive(c.pid)
    assert rt.status(c.cid) == "running", "kill --all must leave the container thawed"


def test_ps_lists_the_container_processes(rt, make_config, bundle):
    c = start(rt, make_config, bundle)
    assert json.loads(rt.ok("ps", "--format", "json", c.cid).stdout) == [c.pid]
    table = rt.ok("ps", c.cid, timeout=10 * SLOW).stdout.splitlines()
    assert table[0].split()[:2] == ["UID", "PID"]
    assert len(table) == 2 and table[1].split()[1] == str(c.pid), table
    assert "sleep 1000" in table[1]


def test_update_applies_live(rt, make_config, bundle, tmp_path):
    c = start(rt, make_config, bundle, {"memory": {"limit": 64 * MB}, "pids": {"limit": 20},
                                        "cpu": {"shares": 1024}})
    rt.ok("update", "--memory", "128m", "--pids-limit", "30", "--cpu-quota", "30000",
          "--cpu-period", "100000", c.cid, timeout=10 * SLOW)
    assert read(c.pid, "pids", "pids.max") == "30"
    if V2:
        assert read(c.pid, "memory", "memory.max") == str(128 * MB)
        assert read(c.pid, "cpu", "cpu.max") == "30000 100000"
    else:
        assert read(c.pid, "memory", "memory.limit_in_bytes") == str(128 * MB)
        assert read(c.pid, "cpu", "cpu.cfs_quota_us") == "30000"
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"pids": {"limit": 40}, "memory": {"limit": 96 * MB}}))
    rt.ok("update", "--resources", str(resources), c.cid, timeout=10 * SLOW)
    assert read(c.pid, "pids", "pids.max") == "40"
    data = stats(rt, c.cid)
    assert data["memory"]["usage"]["limit"] == 96 * MB
    assert data["pids"]["limit"] == 40


def test_events_stats(rt, make_config, bundle):
    c = start(rt, make_config, bundle, {"memory": {"limit": 64 * MB}, "pids": {"limit": 20}})
    data = stats(rt, c.cid)
    assert data["memory"]["usage"]["limit"] == 64 * MB
    assert data["memory"]["usage"]["usage"] > 0
    assert data["pids"] == {"current": 1, "limit": 20}
    assert data["cpu"]["usage"]["total"] > 0
    assert "blkio" in data


def test_events_refuses_a_stopped_container(rt, make_config, bundle):
    config = make_config(["true"])
    cid = rt.new_id("ev")
    rt.ok("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    rt.ok("start", cid, timeout=10 * SLOW)
    rt.wait_status(cid, "stopped", 5 * SLOW)
    assert "not running" in rt.fails("events", "--stats", cid, timeout=10 * SLOW).stderr
