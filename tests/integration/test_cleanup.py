"""Nothing outlives a container: every process in its cgroup dies with it (with and without a
pid namespace), its cgroups and state go with ``delete``, and a create that fails late
leaves nothing either."""

from __future__ import annotations

import os
import signal

import pytest

from .support import (
    ROOT_MARKS,
    assert_nothing_left,
    cgroup_dirs_named,
    cgroup_names,
    cgroup_of,
    pid_alive,
    processes_with_token,
    wait_for,
)

pytestmark = ROOT_MARKS

# Leaves two background children, then waits for /out/stop.
FAMILY = ("sleep 100 & sleep 101 & echo ready > /out/ready; "
          "while [ ! -e /out/stop ]; do sleep 0.02; done")


def without_pid_namespace(config):
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "pid"]
    return config


def family_pids(rt):
    return processes_with_token(rt.token)


@pytest.mark.parametrize("pid_ns", [True, False], ids=["pid-ns", "host-pid-ns"])
def test_force_delete_kills_every_process(rt, make_config, bundle, out_dir, pid_ns):
    cid = rt.new_id()
    config = make_config(["sh", "-c", FAMILY])
    if not pid_ns:
        config = without_pid_namespace(config)
    rt.create(cid, bundle(config))
    rt.ok("start", cid)
    wait_for((out_dir / "ready").exists, what="the children to start")
    wait_for(lambda: len(family_pids(rt)) >= 3, what="init and its two children")
    rt.ok("delete", "--force", cid)
    assert_nothing_left(rt, cid)


def test_kill_all_signals_every_process(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    rt.create(cid, bundle(without_pid_namespace(make_config(["sh", "-c", FAMILY]))))
    rt.ok("start", cid)
    wait_for((out_dir / "ready").exists, what="the children to start")
    members = wait_for(lambda: (lambda p: p if len(p) >= 3 else None)(family_pids(rt)),
                       what="init and its two children")
    rt.ok("kill", "--all", cid, "KILL")
    wait_for(lambda: not any(pid_alive(pid) for pid in members), what="all of them to die")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_children_die_with_init_in_a_pid_namespace(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sh", "-c", FAMILY])))
    rt.ok("start", cid)
    wait_for((out_dir / "ready").exists, what="the children to start")
    (out_dir / "stop").touch()
    rt.wait_status(cid, "stopped")
    wait_for(lambda: not family_pids(rt), what="the children to die with init")
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_foreground_run_without_pid_namespace_kills_leftovers(rt, make_config, bundle):
    cid = rt.new_id()
    config = without_pid_namespace(make_config(["sh", "-c", "sleep 100 & echo started"]))
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    assert result.stdout == "started\n"
    assert_nothing_left(rt, cid)


def test_delete_removes_every_cgroup(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["true"])))
    pid = rt.state(cid)["pid"]
    directories = []
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            base = "unified" if not controllers else controllers.replace("name=", "")
            if path.rstrip("/").rsplit("/", 1)[-1] in cgroup_names(cid):
                directories.append(f"/sys/fs/cgroup/{base}{path}")
    assert directories, "the container has a cgroup of its own"
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    assert cgroup_dirs_named(cgroup_names(cid)), "cgroups stay until delete"
    rt.ok("delete", cid)
    assert [d for d in directories if os.path.exists(d)] == []
    assert_nothing_left(rt, cid)


def test_failed_start_leaves_a_stopped_container(rt, make_config, bundle, private_rootfs):
    """The program vanishes between create and start: start fails, delete cleans up."""
    program = private_rootfs / "bin" / "vanishing"
    program.write_text("#!/bin/sh\necho ran\n")
    program.chmod(0o755)
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["/bin/vanishing"], rootfs_path=private_rootfs)))
    program.unlink()
    result = rt("start", cid)
    if result.returncode == 0:  # a runtime may report the failed exec only as the exit
        rt.wait_status(cid, "stopped")
    else:
        assert "Traceback" not in result.stderr
        assert "vanishing" in result.stderr
    assert rt.status(cid) == "stopped"
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_failure_late_in_create_leaves_nothing(rt, make_config, bundle, tmp_path):
    """A bind source that is a dangling symlink: the failure happens in the container's
    init, after namespaces and cgroups exist."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cid = rt.new_id()
    config = make_config(["true"])
    config["mounts"].append({"destination": "/mnt/bind", "type": "bind",
                             "source": str(tmp_path / "dangling"), "options": ["rbind"]})
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert "Traceback" not in result.stderr
    assert_nothing_left(rt, cid)


def test_repeated_create_delete_of_one_id(rt, make_config, bundle):
    cid = rt.new_id()
    path = bundle(make_config(["sleep", "100"]))
    for _ in range(3):
        rt.create(cid, path)
        assert rt.status(cid) == "created"
        rt.ok("delete", "--force", cid)
        assert_nothing_left(rt, cid)


def kill_cgroup_members(procs_file):
    """SIGKILL what is left in this test's own container cgroup (by the PIDs it lists)."""
    try:
        with open(procs_file) as handle:
            pids = [int(pid) for pid in handle.read().split()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), what="the leftovers to die")


@pytest.mark.parametrize("force", [False, True], ids=["delete", "delete-force"])
def test_delete_stopped_kills_what_init_left(rt, make_config, bundle, out_dir, force):
    cid = rt.new_id()
    config = without_pid_namespace(make_config(["sh", "-c", "sleep 100 & exit 0"]))
    rt.create(cid, bundle(config))
    pid = rt.state(cid)["pid"]
    procs_file = f"/sys/fs/cgroup/pids{cgroup_of(pid, 'pids')}/cgroup.procs"
    try:
        rt.ok("start", cid)
        rt.wait_status(cid, "stopped")
        assert family_pids(rt), "the background child outlives init"
        result = rt("delete", *(["--force"] if force else []), cid, timeout=1.5)
        assert result.returncode == 0, result
        assert_nothing_left(rt, cid)
    finally:
        kill_cgroup_members(procs_file)
