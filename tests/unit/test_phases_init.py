"""Init's phases ("before it reports ready", "on start") and the runtime's, checked without
root under the recording double of the kernel calls: every call is made by a step of the phase,
the steps run in the phase's order, and they are the steps ``--explain`` prints for it.

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


def _busybox(tmp_path: Path, with_hooks: bool) -> tuple[str, dict[str, Any]]:
    """The busybox bundle's config, with a copy of its rootfs (the mount steps make their
    mount points in it: never in the checkout)."""
    shutil.copytree(BUSYBOX_ROOTFS, tmp_path / "rootfs", symlinks=True)
    config: dict[str, Any] = json.loads((BUSYBOX_ROOTFS.parent / "config.json").read_text())
    if with_hooks:
        config["hooks"] = {kind: [HOOK] for kind in ("prestart", "createRuntime",
                                                     "createContainer", "startContainer")}
    return str(tmp_path), config


def _run_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooks: bool,
              timings: bool) -> tuple[
        dict[str, Any], planning.ContainerPlan, list[str]]:
    _fake_cgroupfs(tmp_path / "cgroup", monkeypatch)  # (a user's own, as root's)
    bundle, config = _busybox(tmp_path, hooks)
    options = planning.Options(timings=Timings("runtime", 0.0) if timings else None)
    plan = planning.build("ph", bundle, config, options)
    assert plan.process is not None
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


@pytest.mark.parametrize("hooks, timings", [(False, False), (True, True)])
def test_init_calls_are_its_stepsin_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           hooks: bool, timings: bool) -> None:
    report, plan, spoken = _run_init(tmp_path, monkeypatch, hooks, timings)
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


def test_runtime_calls_are_its_stepsin_order(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """create's own phases, in this process (they act on the runtime only): before it forks
    stage-1, then while stage-1 and init set up, the children's side fed on the channel."""
    _fake_cgroupfs(tmp_path / "cgroup", monkeypatch)
    bundle, config = _busybox(tmp_path, False)
    plan = planning.build("ph", bundle, config, planning.Options())
    live = phases.Live()
    parent_end, live.child_end = Channel.pair()
    children = Channel(socket.socket(fileno=os.dup(live.child_end.fileno())))
    live.parent = protocol.Parent(parent_end, None)
    live.listener = None
    live.state = _State()  # type: ignore[assignment]
    built = phases.build(plan, live)
    protocol.Stage1(children, None).report_pid(4343)  # (sent ahead: stage-1, then init)
    protocol.Init(children, None).ready()
    recorder = steps.Recorder()
    try:
        with sc.recording(results={"os.fork": NOT_A_CHILD}) as calls:
            previous = steps.watch(recorder)
            try:
                for phase in (built.runtime, built.after_stage1):
                    phase.run()
            finally:
                steps.watch(previous)
        assert children.expect(protocol.GO, "test")  # the runtime let stage-1 go on
    finally:
        parent_end.close()
        children.close()
    assert live.init_pid == live.state.pid == 4343 and live.stage1_pid == 0
    runtime = ("runtime, before it forks stage-1", "runtime, while stage-1 and init set up")
    listed = [pair for pair in explained(plan.explain()) if pair[0] in runtime]
    assert recorder.ran == listed
    texts = [text for _, text in listed]
    made = [(call.name, call.step.text if isinstance(call.step, steps.Step) else None)
            for call in calls]
    fork = next(text for text in texts if text.startswith("fork stage-1"))
    assert made == [("prctl", "prctl(PR_SET_DUMPABLE, 0) (the runtime)"),
                    ("prctl", "prctl(PR_SET_CHILD_SUBREAPER, 1) (the runtime)"),
                    ("os.fork", fork)]  # nothing else: the exchanges are on the channel
    assert texts.index(fork) > texts.index("mkdir " + str(
        tmp_path / "cgroup" / "memory" / "ocirt-ph"))
    # the cgroupfs driver's steps wrote the limits (file writes: not kernel calls)
    memory = tmp_path / "cgroup" / "memory" / "ocirt-ph"
    assert (memory / "memory.limit_in_bytes").read_text() == "268435456"
    # (a rootless runtime cannot program the device cgroup: it checks the rules instead)
    deny = tmp_path / "cgroup" / "devices" / "ocirt-ph" / "devices.deny"
    assert deny.read_text() == ("" if running_rootless() else "a")
