"""memory: limit, reservation, swap, OOM killer, swappiness, hierarchy; read back from the
cgroup files and felt inside the container (a process past the limit is OOM-killed)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

import pytest

from .cgroup_support import SLOW, V2, read, requires_v1, requires_v2, start
from .support import ROOT_MARKS, requires_ocirt, wait_for

pytestmark = ROOT_MARKS

MB = 1 << 20
# Allocates (and touches) 200 MB: dd's buffer is filled from /dev/zero.
HOG = "dd if=/dev/zero of=/dev/null bs=200M count=1"


def test_limit_reservation_swap_read_back(rt, make_config, bundle):
    c = start(rt, make_config, bundle,
              {"memory": {"limit": 64 * MB, "reservation": 32 * MB, "swap": 96 * MB}})
    if V2:
        assert read(c.pid, "memory", "memory.max") == str(64 * MB)
        assert read(c.pid, "memory", "memory.low") == str(32 * MB)
        # OCI swap is memory+swap; v2's swap.max is the swap alone (runc's conversion).
        assert read(c.pid, "memory", "memory.swap.max") == str(32 * MB)
    else:
        assert read(c.pid, "memory", "memory.limit_in_bytes") == str(64 * MB)
        assert read(c.pid, "memory", "memory.soft_limit_in_bytes") == str(32 * MB)
        assert read(c.pid, "memory", "memory.memsw.limit_in_bytes") == str(96 * MB)


def test_past_the_limit_is_oom_killed(rt, make_config, bundle):
    config = make_config(["sh", "-c", HOG])
    config["linux"]["resources"]["memory"] = {"limit": 32 * MB, "swap": 32 * MB}
    cid = rt.new_id("oom")
    result = rt("run", "--bundle", str(bundle(config)), cid, timeout=30 * SLOW)
    assert result.returncode == 137, result  # SIGKILL, from the OOM killer


def test_events_report_the_oom_kill(rt, make_config, bundle, out_dir):
    # init survives; its child is OOM-killed once /out/go exists.
    script = f"while [ ! -e /out/go ]; do sleep 0.05; done; {HOG}; echo $? > /out/dd; sleep 1000"
    c = start(rt, make_config, bundle, {"memory": {"limit": 32 * MB, "swap": 32 * MB}},
              ["sh", "-c", script])
    with tempfile.TemporaryFile() as out:
        events = subprocess.Popen(rt.argv("events", "--interval", "1h", c.cid),
                                  stdout=out, stderr=subprocess.STDOUT, env=rt.env)
        try:
            time.sleep(0.5 * SLOW)  # let `events` read the counter before the kill
            (out_dir / "go").write_text("")
            done = out_dir / "dd"  # (the shell makes the file, then writes into it)
            wait_for(lambda: done.exists() and done.read_text().strip(), 20 * SLOW,
                     what="the memory hog to end")
            assert done.read_text().strip() == "137"

            def oom_seen() -> bool:
                out.seek(0)
                return b'"oom"' in out.read()
            wait_for(oom_seen, 5 * SLOW, what="an oom event")
        finally:
            events.kill()
            events.wait()
        out.seek(0)
        lines = [json.loads(line) for line in out.read().splitlines() if line.strip()]
    assert {"type": "oom", "id": c.cid} in lines, lines
    if V2:
        assert "oom_kill 1" in read(c.pid, "memory", "memory.events").splitlines()
    else:
        assert "oom_kill 1" in read(c.pid, "memory", "memory.oom_control").splitlines()


@requires_v1
def test_v1_oom_killer_swappiness(rt, make_config, bundle):
    c = start(rt, make_config, bundle, {"memory": {"limit": 64 * MB, "swappiness": 17,
                                                   "disableOOMKiller": True}})
    assert read(c.pid, "memory", "memory.swappiness") == "17"
    assert "oom_kill_disable 1" in read(c.pid, "memory", "memory.oom_control").splitlines()


@requires_v1
@requires_ocirt
def test_v1_use_hierarchy_false_is_a_clear_error(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["resources"]["memory"] = {"useHierarchy": False}
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id())
    assert "memory.use_hierarchy" in result.stderr and "Invalid argument" in result.stderr


@requires_v2
@requires_ocirt
@pytest.mark.parametrize("memory,field", [({"swappiness": 10}, "swappiness"),
                                          ({"disableOOMKiller": True}, "disableOOMKiller")])
def test_v2_refuses_what_it_cannot_express(rt, make_config, bundle, memory, field):
    config = make_config(["true"])
    config["linux"]["resources"]["memory"] = memory
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id(), timeout=10 * SLOW)
    assert f"linux.resources.memory.{field}" in result.stderr


@requires_v2
@requires_ocirt
def test_v2_check_before_update(rt, make_config, bundle, out_dir):
    script = "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24; echo done > /out/filled; sleep 1000"
    c = start(rt, make_config, bundle, {"memory": {"limit": 64 * MB, "checkBeforeUpdate": True}},
              ["sh", "-c", script])
    wait_for((out_dir / "filled").exists, 10 * SLOW, what="the container to fill 24 MB")
    result = rt.fails("update", "--memory", "8m", c.cid, timeout=10 * SLOW)
    assert "checkBeforeUpdate" in result.stderr and "more than the new limit" in result.stderr
    assert read(c.pid, "memory", "memory.max") == str(64 * MB)
