"""CPU affinity of the container's processes, seen from outside: sched_getaffinity(2) of the
process and Cpus_allowed_list in /proc/<pid>/status.

runc 1.4 stopped handing its own affinity to the container (``taskset -c 1 runc run`` gave a
container allowed only CPU 1; now it gets every CPU its cpuset allows), and runc 1.3 added
``process.execCPUAffinity`` for exec: ``initial`` before the process joins the container's
cgroup, ``final`` after. Debian's runc 1.1.5 has neither (it passes its affinity on), so these
tests are ocirt's alone. They run in the cgroup v2 VM lane too (exec there goes through clone3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .cgroup_support import SLOW, V2, start
from .feature_support import status_of
from .support import ROOT_MARKS, assert_nothing_left, requires_ocirt, wait_for

pytestmark = [*ROOT_MARKS, requires_ocirt,
              pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs")]


def _cpus(text: str) -> set[int]:
    result: set[int] = set()
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        result.update(range(int(low), int(high or low) + 1))
    return result


ONLINE = _cpus(Path("/sys/devices/system/cpu/online").read_text())


def _on_cpu(cpu: int):
    """A preexec_fn: the runtime itself runs pinned to ``cpu`` (``taskset -c cpu ocirt``)."""
    return lambda: os.sched_setaffinity(0, {cpu})


def allowed(pid: int) -> set[int]:
    """The mask, read two ways that must agree."""
    mask = os.sched_getaffinity(pid)
    assert _cpus(status_of(pid)["Cpus_allowed_list"][0]) == mask
    return mask


def _exec_detached(rt, cid, tmp_path, *options, pinned_to=None, name="exec"):
    pid_file = tmp_path / f"{name}.pid"
    rt.ok("exec", "-d", "--pid-file", str(pid_file), *options, cid, "sleep", "100",
          preexec_fn=_on_cpu(pinned_to) if pinned_to is not None else None, timeout=10 * SLOW)
    return int(pid_file.read_text())


def test_create_does_not_pass_the_runtime_affinity_on(rt, make_config, bundle, tmp_path):
    config = make_config(["sleep", "100"])
    cid = rt.new_id("aff")
    rt.ok("create", "--bundle", str(bundle(config)), cid, preexec_fn=_on_cpu(1),
          timeout=10 * SLOW)
    pid = rt.state(cid)["pid"]
    assert allowed(pid) == ONLINE, "init was created with the runtime's mask"
    rt.ok("start", cid, preexec_fn=_on_cpu(0), timeout=10 * SLOW)
    assert allowed(pid) == ONLINE
    # exec, started by a runtime pinned to CPU 1, without execCPUAffinity: every CPU too
    assert allowed(_exec_detached(rt, cid, tmp_path, pinned_to=1)) == ONLINE


def test_the_cpuset_bounds_the_reset(rt, make_config, bundle, tmp_path):
    """The reset is "every CPU": the kernel narrows it to the container's cpuset."""
    c = start(rt, make_config, bundle, resources={"cpu": {"cpus": "0"}})
    assert allowed(c.pid) == {0}
    assert allowed(_exec_detached(rt, c.cid, tmp_path, pinned_to=1)) == {0}


@pytest.mark.parametrize("wanted,expected", [
    ({"initial": "1", "final": "0"}, {0}),
    # no final: the process keeps the initial mask, unless joining the cgroup resets it (a v2
    # cpuset does, for a task born in it or moved into it; runc's own test checks only the
    # mask of its child before the join)
    ({"initial": "1"}, ONLINE if V2 else {1}),
    ({"final": "1"}, {1}),
    ({"initial": "", "final": ""}, ONLINE),  # empty lists: as if not set
], ids=["initial+final", "initial", "final", "empty"])
def test_exec_cpu_affinity(rt, make_config, bundle, tmp_path, wanted, expected):
    c = start(rt, make_config, bundle, process__execCPUAffinity=wanted)
    assert allowed(c.pid) == ONLINE, "execCPUAffinity is for exec, not for init"
    # the runtime pinned to the other CPU: what it has never shows through
    other = 1 if expected == {0} else 0
    assert allowed(_exec_detached(rt, c.cid, tmp_path, pinned_to=other)) == expected


def test_exec_process_file_has_its_own(rt, make_config, bundle, tmp_path):
    c = start(rt, make_config, bundle, process__execCPUAffinity={"final": "0"})
    process = {"args": ["sleep", "100"], "cwd": "/", "user": {"uid": 0, "gid": 0},
               "env": ["PATH=/bin"], "execCPUAffinity": {"final": "1"}}
    (tmp_path / "process.json").write_text(json.dumps(process))
    pid = _exec_detached(rt, c.cid, tmp_path, "--process", str(tmp_path / "process.json"))
    assert allowed(pid) == {1}
    del process["execCPUAffinity"]  # without one, the container's applies (as runc)
    (tmp_path / "process.json").write_text(json.dumps(process))
    pid = _exec_detached(rt, c.cid, tmp_path, "--process", str(tmp_path / "process.json"),
                         name="second")
    assert allowed(pid) == {0}


@pytest.mark.parametrize("field,value", [("initial", "0-x"), ("final", "3-1"),
                                         ("final", ",,")])
def test_bad_cpu_list_is_refused_at_create(rt, make_config, bundle, field, value):
    config = make_config(["true"], process__execCPUAffinity={field: value})
    cid = rt.new_id("bad")
    result = rt.fails("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    assert f"$.process.execCPUAffinity.{field}" in result.stderr, result
    assert_nothing_left(rt, cid)


def test_final_outside_the_cpuset_fails_the_exec(rt, make_config, bundle, tmp_path):
    c = start(rt, make_config, bundle, resources={"cpu": {"cpus": "0"}},
              process__execCPUAffinity={"final": "1"})
    result = rt.fails("exec", c.cid, "true", timeout=10 * SLOW)
    assert "$.process.execCPUAffinity.final" in result.stderr
    assert "sched_setaffinity" in result.stderr and "EINVAL" in result.stderr, result
    # nothing of the failed exec is left in the container
    wait_for(lambda: rt.ok("ps", "--format", "json", c.cid,
                           timeout=10 * SLOW).stdout.strip() == f"[{c.pid}]",
             10 * SLOW, what="only init in the container")
