"""The command line: list, --log, --version, --help, spec, and commands racing on one ID."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time

import pytest

from .support import (
    IS_OCIRT,
    ROOT_MARKS,
    assert_nothing_left,
    pid_alive,
    requires_ocirt,
    wait_for,
)

pytestmark = ROOT_MARKS


def test_list_formats(rt, make_config, bundle):
    assert rt.ok("list", "-q").stdout == ""
    empty = rt.ok("list", "--format", "json").stdout.strip()
    assert json.loads(empty) in ([], None)  # runc prints null

    created, running = rt.new_id("a"), rt.new_id("b")
    path = bundle(make_config(["sleep", "100"]))
    rt.create(created, path)
    rt.create(running, path)
    rt.ok("start", running)

    assert sorted(rt.ok("list", "-q").stdout.split()) == sorted([created, running])

    docs = {doc["id"]: doc for doc in json.loads(rt.ok("list", "--format", "json").stdout)}
    assert set(docs) == {created, running}
    assert docs[created]["status"] == "created"
    assert docs[running]["status"] == "running"
    for cid, doc in docs.items():
        assert doc["pid"] == rt.state(cid)["pid"]
        assert doc["bundle"] == str(path)

    lines = rt.ok("list").stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {created, running}
    assert rows[created][1:4] == [str(docs[created]["pid"]), "created", str(path)]
    assert rows[running][1:4] == [str(docs[running]["pid"]), "running", str(path)]


def test_list_shows_stopped(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["true"])))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    (doc,) = json.loads(rt.ok("list", "--format", "json").stdout)
    assert (doc["id"], doc["status"]) == (cid, "stopped")


def test_log_json_on_error(rt, tmp_path):
    log = tmp_path / "runtime.log"
    cid = rt.new_id()
    rt.fails("state", cid, global_opts=["--log", str(log), "--log-format", "json"])
    lines = log.read_text().splitlines()
    assert lines, "nothing was logged"
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"level", "msg", "time"} <= set(entry), entry
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", entry["time"]), entry
    errors = [entry for entry in entries if entry["level"] == "error"]
    assert errors
    assert "does not exist" in errors[-1]["msg"]
    if IS_OCIRT:
        assert cid in errors[-1]["msg"]


def test_log_text_on_error(rt, tmp_path):
    log = tmp_path / "runtime.log"
    rt.fails("state", rt.new_id(), global_opts=["--log", str(log)])
    text = log.read_text()
    assert "level=error" in text
    assert 'msg="' in text


def test_log_appends(rt, tmp_path):
    log = tmp_path / "runtime.log"
    log.write_text("")
    for _ in range(2):
        rt.fails("state", rt.new_id(), global_opts=["--log", str(log), "--log-format", "json"])
    errors = [json.loads(line) for line in log.read_text().splitlines()]
    assert len([e for e in errors if e["level"] == "error"]) >= 2


def test_version(rt):
    result = rt.ok("--version")
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\S+ version \S+", lines[0]), lines
    assert any(re.fullmatch(r"spec: \d+\.\d+\.\d+(-\S+)?", line) for line in lines), lines


def test_help_lists_the_commands(rt):
    result = rt.ok("--help")
    for command in ("create", "start", "state", "kill", "delete", "run", "list", "spec"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), command


def test_unknown_command_errors(rt):
    rt.fails("no-such-command")


@pytest.mark.parametrize("verb", ["create", "start", "state", "kill", "delete"])
def test_missing_id_errors(rt, verb, tmp_path):
    result = rt.fails(verb, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert not rt.root.exists() or list(rt.root.iterdir()) == [], result


def test_spec_writes_a_runnable_config(rt, tmp_path, rootfs):
    path = tmp_path / "specbundle"
    path.mkdir()
    rt.ok("spec", "--bundle", str(path))
    config = json.loads((path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"]
    assert config["root"]["path"] == "rootfs"
    assert {ns["type"] for ns in config["linux"]["namespaces"]} >= {"pid", "mount"}
    # It does not overwrite what is there.
    (path / "config.json").write_text("{}")
    rt.fails("spec", "--bundle", str(path))
    assert (path / "config.json").read_text() == "{}"


@requires_ocirt  # runc's spec asks for a terminal, so it does not run without one
@pytest.mark.parametrize("rootless", [False, True], ids=["default", "rootless"])
def test_spec_runs_as_is(rt, tmp_path, rootfs, rootless):
    """What `spec` writes runs unchanged on this machine (with a rootfs beside it)."""
    path = tmp_path / "asis"
    path.mkdir()
    rt.ok("spec", "--bundle", str(path), *(["--rootless"] if rootless else []))
    os.symlink(rootfs, path / "rootfs")
    cid = rt.new_id()
    result = rt("run", "--bundle", str(path), cid)  # `sh` with stdin at /dev/null: exits 0
    assert result.returncode == 0, result
    assert not rt.state_dir(cid).exists()


# --- two commands on one ID at once -------------------------------------------------------------

def parallel(rt, *commands):
    """Start every command at once; (exit code, stdout, stderr) of each, in order."""
    with contextlib.ExitStack() as stack:
        procs = []
        for args in commands:
            out = stack.enter_context(tempfile.TemporaryFile())
            err = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen(rt.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, env=rt.env)
            procs.append((proc, out, err))
        results = []
        for proc, out, err in procs:
            try:
                proc.wait(timeout=15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            err.seek(0)
            results.append((proc.returncode, out.read().decode(), err.read().decode()))
        return results


def no_crash(results):
    for _, _, err in results:
        assert "Traceback" not in err and "panic" not in err, err


@pytest.mark.parametrize("round_", range(3))
def test_parallel_force_deletes(rt, make_config, bundle, round_):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    rt.ok("start", cid)
    pid = rt.state(cid)["pid"]
    results = parallel(rt, ("delete", "--force", cid), ("delete", "--force", cid))
    no_crash(results)
    for code, _, err in results:
        assert code == 0 or "not exist" in err, err
    assert any(code == 0 for code, _, _ in results)
    assert not pid_alive(pid)
    assert_nothing_left(rt, cid)


# runc 1.1.5 fails here: parallel creates of one ID can all fail ("exec fifo ... exists"),
# and a second `start` blocks on the exec fifo forever. ocirt locks the container directory.
runc_races = pytest.mark.skipif(not IS_OCIRT, reason="runc 1.1.5 races on this")


@runc_races
@pytest.mark.parametrize("round_", range(3))
def test_parallel_creates_of_one_id(rt, make_config, bundle, out_dir, round_):
    cid = rt.new_id()
    path = bundle(make_config(["sh", "-c", "echo once >> /out/count; sleep 100"]))
    results = parallel(rt, *[("create", "--bundle", str(path), cid)] * 3)
    no_crash(results)
    assert sorted(code == 0 for code, _, _ in results) == [False, False, True], results
    state = rt.state(cid)
    assert state["status"] == "created"
    assert pid_alive(state["pid"])
    rt.ok("start", cid)
    wait_for(lambda: (out_dir / "count").exists(), what="the program to run")
    time.sleep(0.1)
    assert (out_dir / "count").read_text() == "once\n"


@runc_races
@pytest.mark.parametrize("round_", range(3))
def test_parallel_starts(rt, make_config, bundle, out_dir, round_):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sh", "-c", "echo once >> /out/count; sleep 100"])))
    results = parallel(rt, *[("start", cid)] * 3)
    no_crash(results)
    assert sorted(code == 0 for code, _, _ in results) == [False, False, True], results
    wait_for(lambda: (out_dir / "count").exists(), what="the program to run")
    time.sleep(0.1)
    assert (out_dir / "count").read_text() == "once\n", "the program ran more than once"
    assert rt.status(cid) == "running"


def test_parallel_kill_and_delete(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    rt.ok("start", cid)
    results = parallel(rt, ("kill", cid, "KILL"), ("delete", "--force", cid),
                       ("state", cid))
    no_crash(results)
    assert results[1][0] == 0, results[1]
    assert_nothing_left(rt, cid)


def test_pid_file_in_a_missing_directory_fails_cleanly(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    target = tmp_path / "no-such-dir" / "pid"
    rt.fails("create", "--bundle", str(bundle(make_config(["sleep", "100"]))),
             "--pid-file", str(target), cid)
    assert_nothing_left(rt, cid)


@requires_ocirt
def test_pid_file_error_names_the_file(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    target = tmp_path / "no-such-dir" / "pid"
    result = rt.fails("create", "--bundle", str(bundle(make_config(["sleep", "100"]))),
                      "--pid-file", str(target), cid)
    assert "internal error" not in result.stderr
    assert f"{target}:" in result.stderr or f"{target} " in result.stderr
