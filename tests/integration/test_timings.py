"""``--timings`` on create, run and exec: one row per phase, from the processes that did the
work, adding up to the command's wall time (an ocirt-only option: runc has none)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time

from .feature_support import started
from .support import ROOT_MARKS, Result, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]

# The machine is shared: a neighbour's burst can land between the runtime's last row and its
# exit. One of a few tries must add up within the tolerance.
TRIES = 4
TOLERANCE = 0.10


def _timed(rt, *args: str, global_opts: tuple[str, ...] = ()) -> tuple[Result, float]:
    """Run the runtime; its result and wall time in ms, from before the fork to its exit.

    Its exit is awaited on a pidfd: ``subprocess.run(timeout=...)`` polls with sleeps that
    double from 0.5 ms and would round the wall time up by as much as half of it.
    """
    argv = rt.argv(*args, global_opts=global_opts)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=rt.env)
        pidfd = os.pidfd_open(proc.pid)
        try:
            ready = select.select([pidfd], [], [], 30)[0]
        finally:
            os.close(pidfd)
        wall = (time.perf_counter() - start) * 1000
        if not ready:
            proc.kill()
        proc.wait()
        out.seek(0)
        err.seek(0)
        return Result(argv, proc.returncode, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace")), wall


def _rows(result: Result) -> list[dict]:
    """The JSON lines of --log-format json on stderr."""
    rows = [json.loads(line) for line in result.stderr.splitlines()
            if line.startswith('{"timings"')]
    assert rows, result
    return rows


def _check_adds_up(rows: list[dict], wall_ms: float) -> bool:
    """The runtime's rows follow each other and sum to its total; every child row lies within
    it; the total is the wall time within TOLERANCE."""
    total = [r for r in rows if r["phase"] == "total"]
    assert len(total) == 1, rows
    own = [r for r in rows if r["process"] == "runtime" and r["phase"] != "total"]
    assert abs(sum(r["ms"] for r in own) - total[0]["ms"]) < 0.5, rows
    ends = [r["start_ms"] + r["ms"] for r in own]
    for before, after in zip(ends, own[1:], strict=False):
        assert abs(after["start_ms"] - before) < 0.01, (before, after)  # no gaps, no overlap
    for row in rows:
        assert row["ms"] >= 0 and row["start_ms"] >= 0, row
        assert row["start_ms"] + row["ms"] <= total[0]["ms"] + 0.01, row
    return abs(total[0]["ms"] - wall_ms) <= TOLERANCE * wall_ms


def test_run_phases_add_up_to_the_wall_time(rt, make_config, bundle):
    path = bundle(make_config(["true"], out=False))
    seen = []
    for _ in range(TRIES):
        cid = rt.new_id("timings")
        result, wall = _timed(rt, "run", "--timings", "--bundle", str(path), cid,
                              global_opts=("--log-format", "json"))
        assert result.returncode == 0, result
        rows = _rows(result)
        seen.append((wall, [r["ms"] for r in rows if r["phase"] == "total"]))
        if _check_adds_up(rows, wall):
            break
    else:
        raise AssertionError(f"--timings total never within {TOLERANCE:.0%} of the wall "
                             f"time: {seen}")
    phases = {(r["process"], r["phase"]) for r in rows}
    for expected in [("runtime", "interpreter start"),
                     ("runtime", "config load and validation"), ("runtime", "plan"),
                     ("runtime", "cgroups: make, write limits"),
                     ("runtime", "clone init"),  # (no stage-1: nothing needs it here)
                     ("init", "pdeathsig, cgroups: join"),
                     ("init", "mounts and devices"), ("init", "pivot_root"),
                     ("init", "capabilities"), ("init", "no_new_privs"),
                     ("runtime", "sync wait: init sets up the container"),
                     ("runtime", "sync wait: init execs (signals, umask, seccomp load, execve)"),
                     ("runtime", "delete (cgroups, state directory)")]:
        assert expected in phases, (expected, sorted(phases))


def test_run_table_on_stderr_and_the_program_output_untouched(rt, make_config, bundle):
    path = bundle(make_config(["echo", "hello"], out=False))
    result = rt("run", "--timings", "--bundle", str(path), rt.new_id("timings"))
    assert result.returncode == 0, result
    assert result.stdout == "hello\n"
    lines = result.stderr.splitlines()
    assert lines[0].startswith("ocirt run --timings"), result
    assert lines[-1].split()[:3] == ["runtime", "total", "(wall)"], result
    assert any(line.split()[0] == "init" and "pivot_root" in line for line in lines), result


def test_without_timings_nothing_is_printed(rt, make_config, bundle):
    path = bundle(make_config(["true"], out=False))
    result = rt("run", "--bundle", str(path), rt.new_id("timings"))
    assert result.returncode == 0 and result.stderr == "", result


def test_create_reports_up_to_created(rt, make_config, bundle):
    path = bundle(make_config(["true"], out=False))
    cid = rt.new_id("timings")
    result, wall = _timed(rt, "create", "--timings", "--bundle", str(path), cid,
                          global_opts=("--log-format", "json"))
    assert result.returncode == 0, result
    rows = _rows(result)
    _check_adds_up(rows, wall)
    processes = {r["process"] for r in rows}
    assert processes == {"runtime", "init"}, rows  # (the runtime clones init: no stage-1)
    assert rt.status(cid) == "created"
    assert rt("start", cid).returncode == 0  # init was not changed by the option


def test_exec_reports_every_process(rt, make_config, bundle):
    cid, _ = started(rt, bundle, make_config(["sleep", "100"], out=False))
    result = rt("exec", "--timings", cid, "sh", "-c", "echo in; exit 4",
                global_opts=("--log-format", "json"))
    assert result.returncode == 4, result
    assert result.stdout == "in\n"
    rows = _rows(result)
    phases = {(r["process"], r["phase"]) for r in rows}
    assert ("stage-1", "namespaces: join") in phases, rows
    assert ("process", "capabilities") in phases, rows
    assert ("runtime", "the process runs, exits") in phases, rows
