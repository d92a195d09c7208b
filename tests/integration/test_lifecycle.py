"""The lifecycle of runtime.md: create, start, state, kill, delete, checked inside and out."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .support import (
    IS_OCIRT,
    ROOT_MARKS,
    assert_nothing_left,
    cgroup_dirs_named,
    cgroup_names,
    pid_alive,
    requires_ocirt,
    wait_for,
)

pytestmark = ROOT_MARKS

# Marks that it ran, then waits (interruptibly) until the test creates /out/stop.
RUN_UNTIL_STOP = ("echo ran > /out/marker; "
                  "while [ ! -e /out/stop ]; do sleep 0.02; done; echo done > /out/done")
SLEEPER = ["sleep", "100"]


def test_create_then_start(rt, make_config, bundle, out_dir, tmp_path):
    cid = rt.new_id()
    pid_file = tmp_path / "pid"
    rt.create(cid, bundle(make_config(["sh", "-c", RUN_UNTIL_STOP])),
              "--pid-file", str(pid_file))

    state = rt.state(cid)
    assert state["status"] == "created"
    assert state["id"] == cid
    pid = int(pid_file.read_text())
    assert state["pid"] == pid
    assert pid_alive(pid)
    assert rt.state_dir(cid).is_dir()
    time.sleep(0.1)  # a runtime that ran the program early would have written the marker
    assert not (out_dir / "marker").exists(), "the program ran before start"

    began = time.monotonic()
    rt.ok("start", cid)
    assert time.monotonic() - began < 1.5, "start did not return promptly"
    wait_for((out_dir / "marker").exists, what="the program to run after start")
    assert rt.status(cid) == "running"
    assert rt.state(cid)["pid"] == pid, "the program must run as the container's process"

    (out_dir / "stop").touch()
    wait_for((out_dir / "done").exists, what="the program to finish")
    rt.wait_status(cid, "stopped")
    assert not pid_alive(pid)

    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)
    result = rt.fails("state", cid)
    if IS_OCIRT:
        assert cid in result.stderr


def test_start_twice_errors(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(SLEEPER)))
    rt.ok("start", cid)
    pid = rt.state(cid)["pid"]
    rt.fails("start", cid)
    assert rt.status(cid) == "running"
    assert rt.state(cid)["pid"] == pid
    assert pid_alive(pid)


def test_start_of_stopped_container_errors(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["true"])))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    rt.fails("start", cid)
    assert rt.status(cid) == "stopped"


def test_delete_running_needs_force(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(SLEEPER)))
    rt.ok("start", cid)
    pid = rt.state(cid)["pid"]

    rt.fails("delete", cid)
    assert rt.status(cid) == "running"
    assert rt.state(cid)["pid"] == pid
    assert pid_alive(pid)
    assert cgroup_dirs_named(cgroup_names(cid)), "the cgroup must still be there"

    rt.ok("delete", "--force", cid)
    assert not pid_alive(pid)
    assert_nothing_left(rt, cid)
    rt.fails("state", cid)


@requires_ocirt
def test_delete_created_needs_force(rt, make_config, bundle, out_dir):
    # runtime.md: deleting a container that is not stopped is an error (runc deletes it).
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sh", "-c", RUN_UNTIL_STOP])))
    pid = rt.state(cid)["pid"]
    result = rt.fails("delete", cid)
    assert cid in result.stderr
    assert rt.status(cid) == "created"
    assert pid_alive(pid)
    # Still startable: the failed delete changed nothing.
    rt.ok("start", cid)
    wait_for((out_dir / "marker").exists, what="the program to run")


def test_delete_force_created(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sh", "-c", RUN_UNTIL_STOP])))
    pid = rt.state(cid)["pid"]
    rt.ok("delete", "--force", cid)
    assert not pid_alive(pid)
    assert not (out_dir / "marker").exists()
    assert_nothing_left(rt, cid)


def test_delete_force_unknown_id_succeeds(rt):
    rt.ok("delete", "--force", rt.new_id())


def test_delete_unknown_id_errors(rt):
    cid = rt.new_id()
    result = rt.fails("delete", cid)
    if IS_OCIRT:
        assert cid in result.stderr


def test_create_existing_id_errors(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(SLEEPER)
    rt.create(cid, bundle(config))
    before = rt.state(cid)
    rt.fails("create", "--bundle", str(bundle(config, "other")), cid)
    after = rt.state(cid)
    assert after == before
    assert pid_alive(after["pid"])


# --- kill ---------------------------------------------------------------------------------------

TRAPPER = ("trap 'echo TERM > /out/sig; exit 0' TERM; "
           "trap 'echo USR1 > /out/sig; exit 0' USR1; "
           "echo ready > /out/ready; sleep 100 & wait")


@pytest.mark.parametrize("signal_args,expected", [
    ((), "TERM"),
    (("TERM",), "TERM"),
    (("SIGUSR1",), "USR1"),
    (("USR1",), "USR1"),
    ((str(int(signal.SIGUSR1)),), "USR1"),
])
def test_kill_delivers_signal(rt, make_config, bundle, out_dir, signal_args, expected):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sh", "-c", TRAPPER])))
    rt.ok("start", cid)
    wait_for((out_dir / "ready").exists, what="the trap to be set")
    rt.ok("kill", cid, *signal_args)
    wait_for((out_dir / "sig").exists, what="the signal to arrive")
    assert (out_dir / "sig").read_text().strip() == expected
    rt.wait_status(cid, "stopped")


@pytest.mark.parametrize("name", ["KILL", "SIGKILL", "9"])
def test_kill_sigkill(rt, make_config, bundle, name):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(SLEEPER)))
    rt.ok("start", cid)
    pid = rt.state(cid)["pid"]
    rt.ok("kill", cid, name)
    wait_for(lambda: not pid_alive(pid), what="the container's process to die")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_kill_created_container(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sh", "-c", RUN_UNTIL_STOP])))
    pid = rt.state(cid)["pid"]
    rt.ok("kill", cid, "KILL")
    wait_for(lambda: not pid_alive(pid), what="the created container's process to die")
    rt.wait_status(cid, "stopped")
    assert not (out_dir / "marker").exists()


def test_kill_stopped_container_errors(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["true"])))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    for args in ((), ("KILL",)):
        result = rt.fails("kill", cid, *args)
        assert result.returncode == 1
        assert "container not running" in result.stderr
    assert rt.status(cid) == "stopped"


def test_kill_invalid_signal_errors(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(SLEEPER)))
    rt.ok("start", cid)
    pid = rt.state(cid)["pid"]
    for bad in ("NOSUCHSIG", "0x9", "-1", "999"):
        rt.fails("kill", cid, bad)
    assert rt.status(cid) == "running"
    assert pid_alive(pid)


def test_pid_file_is_absolute_when_relative(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    work = tmp_path / "cwd"
    work.mkdir()
    rt.ok("create", "--bundle", str(bundle(make_config(SLEEPER))), "--pid-file", "pidf", cid,
          cwd=work)
    assert int((work / "pidf").read_text()) == rt.state(cid)["pid"]
    assert os.path.exists(f"/proc/{rt.state(cid)['pid']}")


def test_config_changes_after_create_have_no_effect(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    path = bundle(make_config(["sh", "-c", "echo original > /out/which"]))
    rt.create(cid, path)
    bundle(make_config(["sh", "-c", "echo changed > /out/which"]))  # rewrites config.json
    rt.ok("start", cid)
    wait_for((out_dir / "which").exists, what="the program to run")
    rt.wait_status(cid, "stopped")
    assert (out_dir / "which").read_text() == "original\n"


def test_program_is_the_container_process(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    pid = rt.state(cid)["pid"]
    rt.ok("start", cid)
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        assert handle.read().split(b"\0")[:2] == [b"sleep", b"100"]
    assert os.readlink(f"/proc/{pid}/exe").endswith("/bin/busybox")
