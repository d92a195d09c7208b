"""Exec's phases checked without root under the recording double of the kernel calls: every
call is made by a step of the phase, the steps run in the phase's order, and they are the
steps ``ocirt exec --explain`` prints for it.

The process's phase ("process, sets itself up and execs") acts on the process that runs it
(it closes fds, drops privileges), so it runs in a forked child, which sends its record back
as JSON on a pipe it keeps as a --preserve-fds descriptor, then ``os._exit``s; its last call,
execve, is recorded and not made (``Stopped``). The runtime's phases act on the runtime only:
they run here, stage-1's side fed on the channel.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from ocirt.config.default import default_spec
from ocirt.container import protocol
from ocirt.container.exec import ExecOptions
from ocirt.container.exec_phases import ExecLive, ExecPlan
from ocirt.container.exec_phases import build as build_exec
from ocirt.container.exec_phases import explain as explain_exec
from ocirt.container.sync import Channel
from ocirt.linux import plan as steps
from ocirt.linux import syscalls as sc
from ocirt.linux.process import ProcessSetup
from ocirt.timings import Timings
from tests.phase_double import explained, in_order, run_forked

PROCESS = "process, sets itself up and execs"
NOT_A_CHILD = 99999999  # stage-1's pid under the double (waitpid: not ours)


def _plan(timings: bool) -> ExecPlan:
    process = default_spec()["process"]
    options = ExecOptions(timings=Timings("runtime", 0.0) if timings else None)
    return ExecPlan(ProcessSetup(process, 0), process, options, None, (None, None), [], False)


def _run_process(plan: ExecPlan) -> tuple[dict[str, Any], ExecLive, list[str]]:
    live = ExecLive()
    parent_end, live.child_end = Channel.pair()
    live.process = protocol.Process(live.child_end, plan.options.timings)
    live.phases = build_exec(plan, live)

    def keep(fd: int) -> None:
        plan.setup.inherited = plan.setup.inherited | {fd}

    def talk(channel: Channel) -> list[str]:
        if plan.options.timings is None:
            return []
        return [channel.expect(protocol.TIMINGS, "test")["type"]]

    report, spoken = run_forked(live.phases.process.run, parent_end, live.child_end, keep, talk)
    return report, live, spoken


@pytest.mark.parametrize("timings", [False, True])
def test_exec_process_calls_are_its_steps_in_order(timings: bool) -> None:
    plan = _plan(timings)
    report, live, spoken = _run_process(plan)
    assert report["stopped"] == "os.execve"  # the last step: the program, not a return
    calls = [tuple(call) for call in report["calls"]]
    assert calls and all(step is not None for _, _, step in calls), [
        call for call in calls if call[2] is None]  # nothing acts outside a step
    listed = [pair for pair in explained(explain_exec(plan)) if pair[0] == PROCESS]
    assert listed  # (the phase is in --explain)
    assert [tuple(pair) for pair in report["ran"]] == listed  # --explain is what ran
    assert listed == [pair for pair in explained(explain_exec(plan, live))
                      if pair[0] == PROCESS]  # (the same plan, from the running phases)
    texts = [text for _, text in listed]
    assert in_order([step for _, _, step in calls], texts)
    made = {name for name, _, _ in calls}
    assert {"prctl", "setrlimit", "capng.apply_sets", "os.setgroups", "os.setresgid",
            "os.setresuid", "os.fchdir", "os.umask", "os.execve"} <= made, made
    assert ("os.setresuid", "(0, 0, 0)", "setgroups [(none)]; setresgid 0; setresuid 0") in calls
    assert calls[0][:1] == ("prctl",) and calls[0][2] == "prctl(PR_SET_DUMPABLE, 0)"
    execve = calls[-1]
    assert execve[0] == "os.execve" and execve[2] == texts[-1]
    assert spoken == (["timings"] if timings else [])


def test_exec_runtime_calls_are_its_steps_in_order() -> None:
    """exec's own phases, in this process (they act on the runtime only): before it forks
    stage-1, then while the process sets up, stage-1's and the process's side fed on the
    channel (its pid, then end-of-file: the process exec'd)."""
    plan = _plan(False)
    live = ExecLive()
    parent_end, live.child_end = Channel.pair()
    children = Channel(socket.socket(fileno=os.dup(live.child_end.fileno())))
    live.parent = protocol.ExecParent(parent_end, None)
    live.phases = build_exec(plan, live)
    protocol.Stage1(children, None).report_pid(4343)  # (sent ahead: stage-1's report)
    children.sock.shutdown(socket.SHUT_WR)  # then end-of-file: the process exec'd
    parent_end.sock.settimeout(30)  # a missing message fails the test, not hangs it
    recorder = steps.Recorder()
    try:
        with sc.recording(results={"os.fork": NOT_A_CHILD}) as calls:
            previous = steps.watch(recorder)
            try:
                for phase in (live.phases.runtime, live.phases.after_stage1):
                    phase.run()
            finally:
                steps.watch(previous)
        assert children.expect(protocol.GO, "test")  # the runtime let stage-1 go on
    finally:
        parent_end.close()
        children.close()
    assert live.pid == 4343 and live.stage1_pid == 0
    runtime = ("runtime, before it forks stage-1", "runtime, while the process sets up")
    listed = [pair for pair in explained(explain_exec(plan)) if pair[0] in runtime]
    assert recorder.ran == listed  # --explain is what ran
    texts = [text for _, text in listed]
    made = [(call.name, call.step.text if isinstance(call.step, steps.Step) else None)
            for call in calls]
    assert all(step is not None for _, step in made), made
    assert in_order([step for _, step in made if step is not None], texts)
    fork = next(text for text in texts if text.startswith("fork stage-1"))
    assert made == [("prctl", "prctl(PR_SET_DUMPABLE, 0) (the runtime)"),
                    ("prctl", "prctl(PR_SET_CHILD_SUBREAPER, 1) (the runtime)"),
                    ("os.fork", fork)]  # nothing else: the exchanges are on the channel
