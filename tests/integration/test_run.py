"""``run``: create + start; in the foreground it waits and returns the program's exit status."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time

import pytest

from .support import (
    ROOT_MARKS,
    assert_nothing_left,
    pid_alive,
    requires_ocirt,
    wait_for,
)

pytestmark = ROOT_MARKS


def without_pid_namespace(config):
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "pid"]
    return config


@pytest.mark.parametrize("code", [0, 3, 127, 255])
def test_exit_status(rt, make_config, bundle, code):
    cid = rt.new_id()
    result = rt("run", "--bundle", str(bundle(make_config(["sh", "-c", f"exit {code}"]))), cid)
    assert result.returncode == code, result
    assert_nothing_left(rt, cid)


def test_killed_by_signal_is_128_plus_n(rt, make_config, bundle):
    # PID 1 of a pid namespace cannot SIGKILL itself: this one shares the host's pid namespace.
    config = without_pid_namespace(make_config(["sh", "-c", "kill -9 $$; exit 5"]))
    cid = rt.new_id()
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 128 + signal.SIGKILL, result
    assert_nothing_left(rt, cid)


def test_killed_from_outside_is_137(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    pid_file = tmp_path / "pid"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            rt.argv("run", "--bundle", str(bundle(make_config(["sleep", "100"]))),
                    "--pid-file", str(pid_file), cid),
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=rt.env)
        try:
            wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()
                     and rt.status(cid) == "running", what="the container to run")
            rt.ok("kill", cid, "KILL")
            assert proc.wait(timeout=5) == 137
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert_nothing_left(rt, cid)


def test_stdio_reach_the_caller(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(["sh", "-c", "echo to-stdout; echo to-stderr >&2; read line; "
                                      "echo \"got $line\""])
    with tempfile.TemporaryFile() as stdin:
        stdin.write(b"from-stdin\n")
        stdin.seek(0)
        result = rt("run", "--bundle", str(bundle(config)), cid, stdin=stdin)
    assert result.returncode == 0, result
    assert result.stdout == "to-stdout\ngot from-stdin\n"
    assert result.stderr == "to-stderr\n"


def test_signals_are_forwarded(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    program = ("trap 'exit 42' TERM; echo ready > /out/ready; sleep 100 & wait")
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            rt.argv("run", "--bundle", str(bundle(make_config(["sh", "-c", program]))), cid),
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=rt.env)
        try:
            wait_for((out_dir / "ready").exists, what="the trap to be set")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 42
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert_nothing_left(rt, cid)


def test_foreground_run_leaves_nothing(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    result = rt("run", "--bundle", str(bundle(make_config(["sh", "-c", "echo hi > /out/x"]))),
                cid)
    assert result.returncode == 0, result
    assert (out_dir / "x").read_text() == "hi\n"
    assert_nothing_left(rt, cid)
    assert rt.ok("list", "-q").stdout.split() == []
    rt.fails("state", cid)


def test_detach(rt, make_config, bundle, out_dir, tmp_path):
    cid = rt.new_id()
    pid_file = tmp_path / "pid"
    program = "echo ran > /out/marker; sleep 100"
    began = time.monotonic()
    rt.ok("run", "--detach", "--bundle", str(bundle(make_config(["sh", "-c", program]))),
          "--pid-file", str(pid_file), cid)
    assert time.monotonic() - began < 2
    state = rt.state(cid)
    assert state["status"] == "running"
    assert state["pid"] == int(pid_file.read_text())
    assert pid_alive(state["pid"])
    wait_for((out_dir / "marker").exists, what="the program to run")
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_run_existing_id_errors_and_keeps_the_first(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(["sleep", "100"])
    rt.ok("run", "--detach", "--bundle", str(bundle(config)), cid)
    before = rt.state(cid)
    rt.fails("run", "--bundle", str(bundle(config, "second")), cid)
    assert rt.state(cid) == before
    assert pid_alive(before["pid"])


@requires_ocirt
def test_run_keep(rt, make_config, bundle):
    cid = rt.new_id()
    result = rt("run", "--keep", "--bundle", str(bundle(make_config(["sh", "-c", "exit 4"]))),
                cid)
    assert result.returncode == 4, result
    assert rt.status(cid) == "stopped"
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


@requires_ocirt
def test_run_bundle_with_generated_id(rt, make_config, bundle):
    path = bundle(make_config(["sleep", "100"]), "mybundle")
    rt.ok("run", "--detach", str(path))
    listed = json.loads(rt.ok("list", "--format", "json").stdout)
    assert len(listed) == 1
    cid = listed[0]["id"]
    rt.ids.append(cid)
    assert cid.startswith("mybundle-")
    assert listed[0]["bundle"] == str(path)
    assert rt.status(cid) == "running"


@requires_ocirt
def test_run_bundle_with_id_option(rt, make_config, bundle):
    cid = rt.new_id()
    path = bundle(make_config(["sh", "-c", "exit 6"]))
    result = rt("run", "--keep", "--id", cid, str(path))
    assert result.returncode == 6, result
    assert rt.state(cid)["bundle"] == str(path)


@requires_ocirt
def test_run_foreground_bundle_form_leaves_nothing(rt, make_config, bundle):
    result = rt("run", str(bundle(make_config(["sh", "-c", "echo hello"]))))
    assert result.returncode == 0, result
    assert result.stdout == "hello\n"
    assert rt.ok("list", "-q").stdout == ""
