"""Init's phases ("before it reports ready", "on start") and the runtime's, checked without
root under the recording double of the kernel calls: every call is made by a step of the phase,
the steps run in the phase's order, and they are the steps ``--explain`` prints for it. Both
paths: the direct one (the runtime clones init, which then does stage-1's per-process steps
itself, first) and through stage-1 (here for a namespace joined by path).

Init's phase acts on the process that runs it (it closes fds, calls setsid, chdirs into the
rootfs, sets signal handlers), so it runs in a forked child: the runtime's side of the protocol
runs here (ready, hooks, start), and the child sends its record back as JSON on a pipe it
keeps as a --preserve-fds descriptor, then ``os._exit``s. Its last call, execve, is recorded
and not made (``Stopped``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from ocirt.container import hooks as hook_runner
from ocirt.container import phases, protocol
from ocirt.container import plan as planning
from ocirt.container.sync import Channel
from ocirt.identity import running_rootless
from ocirt.linux import cgroups
from ocirt.linux import plan as steps
from ocirt.linux import syscalls as sc
from ocirt.linux.syscalls.double import Recorder
from ocirt.timings import Timings
from tests.phase_double import explained, in_order, run_forked
from tests.testkit import BUSYBOX_ROOTFS

INIT = ("init, before it reports ready", "init, on start")
HOOK = {"path": "/bin/true"}


def _busybox(tmp_path: Path, with_hooks: bool, direct: bool = True
             ) -> tuple[str, dict[str, Any]]:
    """The busybox bundle's config, with a copy of its rootfs (the mount steps make their
    mount points in it: never in the checkout); not ``direct``: its ipc namespace joined by
    path (so the plan needs stage-1)."""
    shutil.copytree(BUSYBOX_ROOTFS, tmp_path / "rootfs", symlinks=True)
    config: dict[str, Any] = json.loads((BUSYBOX_ROOTFS.parent / "config.json").read_text())
    if not direct:
        config["linux"]["namespaces"] = [
            {"type": "ipc", "path": "/proc/self/ns/ipc"} if ns["type"] == "ipc" else ns
            for ns in config["linux"]["namespaces"]]
    if with_hooks:
        config["hooks"] = {kind: [HOOK] for kind in ("prestart", "createRuntime",
                                                     "createContainer", "startContainer")}
    return str(tmp_path), config


def _run_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: bool,
              timings: bool, direct: bool) -> tuple[
        dict[str, Any], planning.ContainerPlan, list[str]]:
    _fake_cgroupfs(tmp_path / "cgroup", monkeypatch)  # (a user's own, as root's)
    bundle, config = _busybox(tmp_path, hooks, direct)
    options = planning.Options(timings=Timings("runtime", 0.0) if timings else None)
    plan = planning.build("ph", bundle, config, options)
    assert plan.process is not None and plan.direct == direct
    live = phases.Live()
    parent_end, live.child_end = Channel.pair()
    live.init = protocol.Init(live.child_end, options.timings)
    live.listener = None  # (start comes on the sync channel, as for `run`)
    built = phases.build(plan, live)

    def keep(fd: int) -> None:
        assert plan.process is not None
        plan.process.inherited = plan.process.inherited | {fd}

    def talk(channel: Channel) -> list[str]:
        spoken: list[str] = []
        parent = protocol.Parent(channel, None)
        if plan.runtime_hooks:
            parent.wait_for_hooks()
            parent.hooks_done()
            spoken += ["hooks", "hooks-done"]
        parent.wait_for_ready()
        spoken.append("ready")
        reply = protocol.Starter(channel, options.timings).start()
        spoken.append("start")
        if reply is not None:
            spoken.append(reply["type"])
        return spoken

    def run() -> None:
        for phase in (built.init, built.on_start):
            phase.run()

    def prepare(calls: Recorder) -> None:
        # a hook is a program the runtime forks and execs: recorded as one call
        hook_runner.run_hook = lambda hook, state, name: calls.record("hook", (name,), {})

    report, spoken = run_forked(run, parent_end, live.child_end, keep, talk, prepare)
    return report, plan, spoken


DIRECT_FIRST = [  # init's first steps on the direct path, and the calls each makes
    ("prctl(PR_SET_PDEATHSIG, SIGKILL); exit if the runtime has gone already (its end of the "
     "sync channel hung up)", "prctl", (sc.PR_SET_PDEATHSIG, 9)),
    ("sched_setaffinity: every CPU (init never gets the runtime's CPU mask)",
     "sched_setaffinity", None),
    ("prctl(PR_SET_PDEATHSIG, 0) (in the container's cgroup: init outlives the runtime)",
     "prctl", (sc.PR_SET_PDEATHSIG, 0)),
    ("prctl(PR_SET_DUMPABLE, 0)", "prctl", (sc.PR_SET_DUMPABLE, 0))]


@pytest.mark.parametrize("hooks, timings, direct", [(False, False, True), (True, True, True),
                                                    (False, False, False)])
def test_init_calls_are_its_stepsin_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           hooks: bool, timings: bool, direct: bool) -> None:
    report, plan, spoken = _run_init(tmp_path, monkeypatch, hooks, timings, direct)
    assert report["stopped"] == "os.execve"  # the last step: the program, not a return
    calls = [tuple(call) for call in report["calls"]]
    assert calls and all(step is not None for _, _, step in calls), [
        call for call in calls if call[2] is None]  # nothing acts outside a step
    listed = [pair for pair in explained(plan.explain()) if pair[0] in INIT]
    assert [tuple(pair) for pair in report["ran"]] == listed  # --explain is what ran
    texts = [text for _, text in listed]
    assert in_order([step for _, _, step in calls], texts)
    made = {name for name, _, _ in calls}
    assert {"prctl", "os.setsid", "join_session_keyring", "loopback_up", "pivot_root",
            "sethostname", "os.umask", "os.execve"} <= made, made
    assert ("os.setsid", "()", "setsid") in calls
    execve = calls[-1]
    assert execve[0] == "os.execve" and execve[2] == texts[-1]
    if hooks:
        assert [(args, step) for name, args, step in calls if name == "hook"] == [
            ("('createContainer hook #0 (/bin/true)',)", "createContainer hooks: 1"),
            ("('startContainer hook #0 (/bin/true)',)", "startContainer hooks: 1")]
    assert spoken == (["hooks", "hooks-done"] if hooks else []) + [
        "ready", "start", *(["timings"] if timings else [])]
    first = [(step, name, args) for name, args, step in calls[:4]]
    tasks = tmp_path / "cgroup" / "memory" / "ocirt-ph" / "tasks"
    if direct:  # stage-1's steps, then init's own: the cgroups joined through "tasks" (v1)
        assert [(step, name) for step, name, _ in first] == [
            (step, name) for step, name, _ in DIRECT_FIRST]
        assert [args for _, _, args in first] == [
            repr(args) if args is not None else args_seen
            for (_, _, args), (_, _, args_seen) in zip(DIRECT_FIRST, first, strict=True)]
        assert texts.index("join the container's cgroups (cgroupfs driver)") == 1
        assert tasks.read_text() == "0"
    else:  # stage-1 did all that (test_phases.py): init begins with its own
        assert first[0][:2] == ("prctl(PR_SET_DUMPABLE, 0)", "prctl")
        assert not any("PDEATHSIG" in text or text.startswith("join the container")
                       for text in texts)
        assert tasks.read_text() == ""


NOT_A_CHILD = 99999999  # stage-1's pid under the double (waitpid: not ours)
FAKE_CGROUPS = {"memory": ["memory.limit_in_bytes"],
                "devices": ["devices.deny", "devices.allow", "devices.list"]}


class _State:  # what the runtime's steps set and read of the container's state
    pid = 0


def _fake_cgroupfs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cgroupfs v1 hierarchies under ``root``, as the kernel would show them once the
    container's cgroup is made (its files exist): the cgroupfs driver writes there."""
    mountinfo = "".join(f"{30 + i} 23 0:{40 + i} / {root}/{name} rw - cgroup cgroup rw,{name}\n"
                        for i, name in enumerate(FAKE_CGROUPS))
    for name, files in FAKE_CGROUPS.items():
        directory = root / name / "ocirt-ph"
        directory.mkdir(parents=True)
        for file in ("cgroup.procs", "tasks", *files):
            (directory / file).write_text("")
    monkeypatch.setattr(cgroups, "select", lambda *args: cgroups.Manager(
        cgroups.discover(mountinfo, "5:devices:/\n4:memory:/\n"), "ocirt-ph"))


@pytest.mark.parametrize("direct", [True, False])
def test_runtime_calls_are_its_stepsin_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              direct: bool) -> None:
    """create's own phases, in this process (they act on the runtime only): before it forks
    stage-1 (or clones init), then while stage-1 and init (or init) set up, the children's
    side fed on the channel."""
    _fake_cgroupfs(tmp_path / "cgroup", monkeypatch)
    bundle, config = _busybox(tmp_path, False, direct)
    plan = planning.build("ph", bundle, config, planning.Options())
    assert plan.direct == direct
    live = phases.Live()
    parent_end, live.child_end = Channel.pair()
    children = Channel(socket.socket(fileno=os.dup(live.child_end.fileno())))
    live.parent = protocol.Parent(parent_end, None)
    live.listener = None
    live.state = _State()  # type: ignore[assignment]
    built = phases.build(plan, live)
    if not direct:
        protocol.Stage1(children, None).report_pid(4343)  # (sent ahead: stage-1, then init)
    protocol.Init(children, None).ready()
    recorder = steps.Recorder()
    try:
        with sc.recording(results={"os.fork": NOT_A_CHILD, "clone3": NOT_A_CHILD}) as calls:
            previous = steps.watch(recorder)
            try:
                for phase in (built.runtime, built.after_stage1):
                    phase.run()
            finally:
                steps.watch(previous)
        if not direct:
            assert children.expect(protocol.GO, "test")  # the runtime let stage-1 go on
        children.sock.settimeout(0)
        with pytest.raises(BlockingIOError):  # and said nothing else
            children.recv()
    finally:
        parent_end.close()
        children.close()
    assert live.init_pid == live.state.pid == (NOT_A_CHILD if direct else 4343)
    assert live.stage1_pid == 0
    runtime = (("runtime, before it clones init", "runtime, while init sets up") if direct else
               ("runtime, before it forks stage-1", "runtime, while stage-1 and init set up"))
    listed = [pair for pair in explained(plan.explain()) if pair[0] in runtime]
    assert recorder.ran == listed
    texts = [text for _, text in listed]
    made = [(call.name, call.step.text if isinstance(call.step, steps.Step) else None)
            for call in calls]
    fork = next(text for text in texts if text.startswith(("fork stage-1", "clone3")))
    assert made == [("prctl", "prctl(PR_SET_DUMPABLE, 0) (the runtime)"),
                    ("prctl", "prctl(PR_SET_CHILD_SUBREAPER, 1) (the runtime)"),
                    ("clone3" if direct else "os.fork", fork)]  # the rest is on the channel
    if direct:  # one clone3 into the new namespaces (no cgroup2 here: no CLONE_INTO_CGROUP)
        names = "CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS"
        assert fork.startswith(f"clone3({names}) init")
        assert [(call.args, call.kwargs) for call in calls.of("clone3")] == [
            ((sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS
              | sc.CLONE_NEWNS,), {"text": names})]
        assert texts[-1] == 'sync: wait for {"ready"}'  # no go, no pid, no stage-1 to reap
    assert texts.index(fork) > texts.index("mkdir " + str(
        tmp_path / "cgroup" / "memory" / "ocirt-ph"))
    # the cgroupfs driver's steps wrote the limits (file writes: not kernel calls)
    memory = tmp_path / "cgroup" / "memory" / "ocirt-ph"
    assert (memory / "memory.limit_in_bytes").read_text() == "268435456"
    # (a rootless runtime cannot program the device cgroup: it checks the rules instead)
    deny = tmp_path / "cgroup" / "devices" / "ocirt-ph" / "devices.deny"
    assert deny.read_text() == ("" if running_rootless() else "a")
