"""The systemd cgroup driver (``--systemd-cgroup``): a transient scope per container.

Needs a host booted with systemd on pure cgroup v2: the systemd VM lane
(scripts/vm/systemd-tests.sh) runs these with runc first, then with ocirt. Elsewhere they skip.
Everything is checked from outside: /proc/<pid>/cgroup, the scope's cgroup files, and what
systemd says of the unit (``systemctl show``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .cgroup_support import SLOW, V2
from .support import IS_OCIRT, ROOT_MARKS, wait_for

pytestmark = [*ROOT_MARKS, pytest.mark.skipif(
    not (V2 and os.path.isdir("/run/systemd/system")),
    reason="needs systemd as PID 1 on pure cgroup v2: runs in the systemd VM lane")]

SD = ["--systemd-cgroup"]
MB = 1 << 20


def show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", "-p", ",".join(props), unit],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_state(unit: str) -> str:
    return show(unit, "LoadState", "ActiveState").get("ActiveState", "")


def unit_gone(unit: str) -> bool:
    doc = show(unit, "LoadState", "ActiveState")
    return doc.get("LoadState") == "not-found" or doc.get("ActiveState") in ("inactive", "")


def cgroup_path(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"no v2 line in /proc/{pid}/cgroup")


def state(rt, cid: str) -> dict:
    """``state``, with the slow-VM timeout (Python under TCG on a loaded host)."""
    return json.loads(rt.ok("state", cid, timeout=10 * SLOW).stdout)


def read(path: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup{path}/{name}").read_text().strip()


@pytest.fixture
def sd_container(rt, make_config, bundle):
    """``start(resources, path=..., annotations=...)``: a created container in a scope."""

    def start(resources=None, path="", annotations=None, args=("sleep", "1000")):
        config = make_config(list(args))
        cid = rt.new_id("sd")
        config["linux"]["cgroupsPath"] = path.replace("ID", cid)
        config["linux"]["resources"].update(resources or {})
        if annotations:
            config["annotations"] = annotations
        rt.ok("create", "--bundle", str(bundle(config)), cid, global_opts=SD,
              timeout=10 * SLOW)
        pid = int(state(rt, cid)["pid"])
        return cid, pid

    return start


def test_scope_properties_and_files(rt, sd_container):
    cid, pid = sd_container({"memory": {"limit": 64 * MB, "reservation": 16 * MB},
                             "pids": {"limit": 20},
                             "cpu": {"quota": 50000, "period": 100000, "cpus": "0"}},
                            path="system.slice:ocirtit:ID")
    unit = f"ocirtit-{cid}.scope"
    path = cgroup_path(pid)
    assert path == f"/system.slice/{unit}"
    props = show(unit, "ActiveState", "Delegate", "MemoryMax", "MemoryLow", "TasksMax",
                 "CPUQuotaPerSecUSec", "AllowedCPUs", "Slice")
    assert props["ActiveState"] == "active" and props["Delegate"] == "yes", props
    assert props["Slice"] == "system.slice"
    assert props["MemoryMax"] == str(64 * MB) and props["MemoryLow"] == str(16 * MB), props
    assert props["TasksMax"] == "20" and props["CPUQuotaPerSecUSec"] == "500ms", props
    assert props["AllowedCPUs"] == "0", props
    assert read(path, "memory.max") == str(64 * MB)
    assert read(path, "memory.low") == str(16 * MB)
    assert read(path, "pids.max") == "20"
    assert read(path, "cpu.max") == "50000 100000"
    assert read(path, "cpuset.cpus") == "0"
    rt.ok("delete", "--force", cid, timeout=10 * SLOW)
    wait_for(lambda: unit_gone(unit), 5 * SLOW, what=f"{unit} to be gone")
    assert not Path(f"/sys/fs/cgroup{path}").exists()


def test_default_path_is_a_scope_in_system_slice(rt, sd_container):
    cid, pid = sd_container()
    path = cgroup_path(pid)
    assert path.startswith("/system.slice/") and path.endswith(f"-{cid}.scope"), path
    unit = path.rsplit("/", 1)[1]
    assert unit_state(unit) == "active"
    rt.ok("delete", "--force", cid, timeout=10 * SLOW)
    wait_for(lambda: unit_gone(unit), 5 * SLOW, what=f"{unit} to be gone")


def test_a_slice_with_dashes_nests(rt, sd_container):
    cid, pid = sd_container(path="ocirtit-nest.slice:p:ID")
    assert cgroup_path(pid) == f"/ocirtit.slice/ocirtit-nest.slice/p-{cid}.scope"
    rt.ok("delete", "--force", cid, timeout=10 * SLOW)
    wait_for(lambda: unit_gone(f"p-{cid}.scope"), 5 * SLOW, what="the scope to be gone")


def test_annotations_become_properties(rt, sd_container):
    cid, _ = sd_container(path="system.slice:ocirtit:ID", annotations={
        "org.systemd.property.TimeoutStopSec": "7",
        "org.systemd.property.CollectMode": "'inactive-or-failed'"})
    props = show(f"ocirtit-{cid}.scope", "TimeoutStopUSec", "CollectMode")
    assert props == {"TimeoutStopUSec": "7s", "CollectMode": "inactive-or-failed"}, props


def test_update_sets_properties_and_files(rt, sd_container):
    cid, pid = sd_container({"memory": {"limit": 64 * MB}, "pids": {"limit": 20}},
                            path="system.slice:ocirtit:ID")
    rt.ok("start", cid, timeout=10 * SLOW)
    rt.ok("update", "--memory", str(128 * MB), "--pids-limit", "30", cid, global_opts=SD,
          timeout=10 * SLOW)
    unit, path = f"ocirtit-{cid}.scope", cgroup_path(pid)
    props = show(unit, "MemoryMax", "TasksMax")
    assert props == {"MemoryMax": str(128 * MB), "TasksMax": "30"}, props
    assert read(path, "memory.max") == str(128 * MB) and read(path, "pids.max") == "30"


def test_pause_resume_ps_kill_all_exec(rt, sd_container):
    cid, pid = sd_container(path="system.slice:ocirtit:ID")
    rt.ok("start", cid, timeout=10 * SLOW)
    path = cgroup_path(pid)
    rt.ok("pause", cid, global_opts=SD, timeout=10 * SLOW)
    assert read(path, "cgroup.freeze") == "1" and state(rt, cid)["status"] == "paused"
    rt.ok("resume", cid, global_opts=SD, timeout=10 * SLOW)
    assert read(path, "cgroup.freeze") == "0" and state(rt, cid)["status"] == "running"
    out = rt.ok("exec", cid, "cat", "/proc/self/cgroup", global_opts=SD,
                timeout=10 * SLOW).stdout
    assert f"0::{path}" in out.splitlines() or "0::/" in out.splitlines(), out
    assert str(pid) in rt.ok("ps", "--format", "json", cid, timeout=10 * SLOW).stdout
    rt.ok("kill", "--all", cid, "KILL", global_opts=SD, timeout=10 * SLOW)
    wait_for(lambda: state(rt, cid)["status"] == "stopped", 5 * SLOW, what="stopped")
    rt.ok("delete", cid, global_opts=SD, timeout=10 * SLOW)
    wait_for(lambda: unit_gone(f"ocirtit-{cid}.scope"), 5 * SLOW, what="the scope to go")


def test_a_failed_create_leaves_no_unit(rt, make_config, bundle):
    config = make_config(["/no/such/binary"])
    cid = rt.new_id("sdfail")
    config["linux"]["cgroupsPath"] = f"system.slice:ocirtit:{cid}"
    config["linux"]["resources"]["memory"] = {"limit": 64 * MB}
    rt.fails("create", "--bundle", str(bundle(config)), cid, global_opts=SD,
             timeout=10 * SLOW)
    unit = f"ocirtit-{cid}.scope"
    wait_for(lambda: unit_gone(unit), 5 * SLOW, what=f"{unit} to be gone")
    assert not Path(f"/sys/fs/cgroup/system.slice/{unit}").exists()
    assert not rt.state_dir(cid).exists()


@pytest.mark.skipif(not IS_OCIRT, reason="ocirt's error text")
def test_a_bad_slice_is_a_config_error(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["cgroupsPath"] = "system:ocirtit:x"
    result = rt.fails("create", "--bundle", str(bundle(config)), rt.new_id("sdbad"),
                      global_opts=SD, timeout=10 * SLOW)
    assert "cgroupsPath" in result.stderr and "slice" in result.stderr, result.stderr
