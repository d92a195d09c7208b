"""The phases of create and exec, checked without root: ``--explain`` lists the steps the
phases run, in order; both sides of the parent/child protocol run the same exchanges whatever
the config, on the direct path (the runtime clones init) and through stage-1; and under a
recording double of the kernel calls, stage-1's calls are made by the plan's steps, in order,
and nothing acts outside a step (``plan.Recorder`` knows the step running when a call is
made)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ocirt.config.default import default_spec
from ocirt.container import blocks, phases, protocol
from ocirt.container import plan as planning
from ocirt.container.exec import ExecOptions
from ocirt.container.exec_phases import ExecLive, ExecPlan
from ocirt.container.exec_phases import build as build_exec
from ocirt.container.exec_phases import explain as explain_exec
from ocirt.container.sync import Channel
from ocirt.linux import plan as steps
from ocirt.linux import syscalls as sc
from ocirt.linux.process import ProcessSetup
from ocirt.linux.syscalls.double import Stopped
from ocirt.timings import Timings
from tests.phase_double import explained

HOOK = {"path": "/bin/true"}


def _config(tmp_path: Path, **linux: Any) -> tuple[str, dict[str, Any]]:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    config = default_spec()
    config["linux"].update(linux)
    return str(tmp_path), config


def _with(config: dict[str, Any], kind: str) -> dict[str, Any]:
    config["linux"]["namespaces"].append({"type": kind})
    return config


def _userns(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "cgroup"]
    return _with(config, "user")


def _joined(config: dict[str, Any]) -> dict[str, Any]:
    """A namespace joined by path (setns before the fork of init): stage-1 is needed."""
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "ipc"]
    config["linux"]["namespaces"].append({"type": "ipc", "path": "/proc/self/ns/ipc"})
    return config


def _hooks(config: dict[str, Any]) -> dict[str, Any]:
    config["hooks"] = {kind: [HOOK] for kind in ("prestart", "createRuntime",
                                                 "createContainer", "startContainer")}
    return config


def _recorded(all_phases: list[steps.Phase]) -> list[tuple[str, str]]:
    recorder = steps.Recorder(runs=lambda step: False)
    previous = steps.watch(recorder)
    try:
        for phase in all_phases:
            phase.run()
    finally:
        steps.watch(previous)
    return recorder.ran


CONFIGS = {
    "plain": lambda config: config,
    "hooks": _hooks,
    "userns": _userns,
    "joined": _joined,
    "time": lambda config: {**_with(config, "time"), "linux": {
        **config["linux"], "timeOffsets": {"monotonic": {"secs": 5, "nanosecs": 0}}}},
    "no process": lambda config: {key: value for key, value in config.items()
                                  if key != "process"},
    "terminal": lambda config: {**config, "process": {**config["process"], "terminal": True}},
}


STAGE1 = {"userns", "joined", "time"}  # the configs that need stage-1 (the rest: direct)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_explain_lists_exactly_the_steps_the_phases_run(tmp_path: Path, name: str) -> None:
    bundle, config = _config(tmp_path)
    plan = planning.build("ph", bundle, CONFIGS[name](config),
                          planning.Options(timings=Timings("runtime", 0.0)))
    listed = explained(plan.explain())
    assert listed == _recorded(phases.build(plan, phases.Live()).all())
    assert len(listed) > 20
    texts = [text for _, text in listed]
    assert not any("no-op" in text for text in texts)
    headings = list(dict.fromkeys(heading for heading, _ in listed))
    if name in STAGE1:
        assert not plan.direct
        assert headings == ["runtime, before it forks stage-1",
                            "stage-1, in the new namespaces, forks init",
                            "runtime, while stage-1 and init set up",
                            "init, before it reports ready", "init, on start"]
    else:
        assert plan.direct
        assert headings == ["runtime, before it clones init", "runtime, while init sets up",
                            "init, before it reports ready", "init, on start"]
        assert not any('"go"' in text or '"pid"' in text or "reap" in text
                       for text in texts), texts


def _notify(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                  "listenerPath": "/run/ph-listener.sock",
                                  "syscalls": [{"names": ["mkdirat"],
                                                "action": "SCMP_ACT_NOTIFY"}]}
    return config


@pytest.mark.parametrize("name", ["userns", "joined", "time", "notify", "adopt"])
def test_stage1_stays_where_only_it_can_do_the_work(tmp_path: Path, name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reason in ``ContainerPlan.direct``'s docstring keeps stage-1 (the network
    devices' too: tests/integration/test_net_devices.py runs them)."""
    bundle, config = _config(tmp_path)
    changed = {**CONFIGS, "notify": _notify, "adopt": lambda config: config}[name](config)
    plan = planning.build("ph", bundle, changed, planning.Options())
    if name == "adopt":  # a driver that places the child itself (systemd's create)
        assert plan.direct
        monkeypatch.setattr(plan.cgroup, "waits_for_adopt", lambda: True)
    assert not plan.direct
    assert phases.build(plan, phases.Live()).stage1 is not None


def test_time_offsets_follow_the_unshare_of_the_time_namespace(tmp_path: Path) -> None:
    bundle, config = _config(tmp_path)
    plan = planning.build("ph", bundle, CONFIGS["time"](config), planning.Options())
    listed = explained(plan.explain())
    stage1 = [text for heading, text in listed if heading.startswith("stage-1")]
    unshare = next(i for i, text in enumerate(stage1) if "CLONE_NEWTIME" in text)
    request = stage1.index('sync: {"timens"} to the runtime, wait for {"offsets"}')
    assert unshare < request < stage1.index('sync: wait for {"go"}'), stage1
    # the runtime writes them (into stage-1's /proc), before it lets stage-1 fork init
    runtime = [text for heading, text in listed if heading.startswith("runtime, while")]
    written = runtime.index("write /proc/<stage-1>/timens_offsets: monotonic 5s 0ns (before "
                            "init enters the time namespace)")
    assert runtime.index('sync: wait for {"timens"}') < written < runtime.index(
        'sync: {"offsets"} to stage-1') < runtime.index('sync: {"go"} to stage-1'), runtime


def test_seccomp_rules_are_notes_not_steps(tmp_path: Path) -> None:
    bundle, config = _config(tmp_path)
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    plan = planning.build("ph", bundle, config, planning.Options())
    on_start = phases.build(plan, phases.Live()).on_start
    notes = [item for item in on_start.items if isinstance(item, steps.Note)]
    assert notes and all(item not in on_start.steps for item in notes)
    assert any("mkdirat" in note.text for note in notes)
    assert "  # " + notes[0].text in plan.explain()


def _sync_only(step: steps.Step) -> bool:
    return step.text.startswith("sync")


class _State:  # what the runtime's hooks steps read of the state (not run here)
    pid = 0


@pytest.mark.parametrize("name", ["plain", "hooks", "userns", "time", "joined"])
def test_both_sides_run_the_same_exchanges(tmp_path: Path, name: str) -> None:
    """The runtime's phase against stage-1's then init's (one after the other, as the pipe
    init waits on makes them), only the sync steps run: no side waits for a message the other
    does not send, whatever the config."""
    bundle, config = _config(tmp_path)
    plan = planning.build("ph", bundle, CONFIGS[name](config), planning.Options())
    live = phases.Live()
    parent_end, child_end = Channel.pair()
    live.parent = protocol.Parent(parent_end, None)
    live.stage1 = protocol.Stage1(child_end, None)
    live.init = protocol.Init(child_end, None)
    live.state = _State()  # type: ignore[assignment]
    live.listener = None
    gate, live.release = os.pipe()  # (what init would wait on)
    for end in (parent_end, child_end):
        end.sock.settimeout(5)  # a missing message fails the test instead of hanging it
    built = phases.build(plan, live)
    recorder = steps.Recorder(runs=_sync_only)
    errors: list[BaseException] = []

    def children() -> None:
        try:
            for phase in (built.stage1, built.init):
                if phase is not None:  # (none on the direct path: the runtime clones init)
                    phase.run()
        except BaseException as err:  # (reported by the main thread)
            errors.append(err)

    previous = steps.watch(recorder)
    try:
        thread = threading.Thread(target=children)
        thread.start()
        built.after_stage1.steps = [step for step in built.after_stage1.steps
                                    if not step.text.startswith("reap")]
        built.after_stage1.run()
        protocol.Starter(parent_end).channel.send(protocol.START)
        thread.join(5)
        assert not thread.is_alive() and not errors, errors
        assert live.init.starter is child_end
    finally:
        steps.watch(previous)
        for fd in (gate, live.release):
            os.close(fd)
        parent_end.close()
        child_end.close()
    sent = [text for _, text in recorder.ran if text.startswith("sync")]
    assert (name == "userns") == any('"userns"' in text for text in sent)
    assert (name == "hooks") == any('"hooks-done"' in text for text in sent)
    assert (name == "time") == any('"offsets"' in text for text in sent)
    assert (name in STAGE1) == any('"go"' in text for text in sent) == (not plan.direct)


def _also_record(calls: Any, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str,
                 recorded: str) -> None:
    """A call outside the binding layer (Python's own os.fork, a procfs write), recorded by the
    same double, with the step running."""
    monkeypatch.setattr(owner, name, lambda *args: calls.record(recorded, args, {}))


def test_stage1_calls_are_its_steps_in_order(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, config = _config(tmp_path)  # (its namespaces include cgroup)
    plan = planning.build("ph", bundle, CONFIGS["time"](config), planning.Options())
    live = phases.Live()
    live.runtime_pid = os.getppid()
    parent_end, child_end = Channel.pair()
    live.stage1 = protocol.Stage1(child_end, None)
    built = phases.build(plan, live)
    parent_end.send(protocol.OFFSETS)  # (the runtime's answers, sent ahead)
    parent_end.send(protocol.GO)
    recorder = steps.Recorder()
    with sc.recording(results={"fork": 4242, "write": 1}) as calls:
        _also_record(calls, monkeypatch, plan.cgroup, "join", "cgroup join")
        _also_record(calls, monkeypatch, os, "fork", "fork")
        _also_record(calls, monkeypatch, os, "write", "write")  # (init's end is closed)
        previous = steps.watch(recorder)
        try:
            built.stage1.run()
        finally:
            steps.watch(previous)
            monkeypatch.undo()
    parent_end.expect(protocol.TIMENS, "test")  # stage-1 asked for its offsets to be written
    assert parent_end.expect(protocol.PID, "test")["pid"] == 4242
    os.close(live.release)
    parent_end.close()
    child_end.close()
    assert [text for _, text in recorder.ran] == [step.text for step in built.stage1.steps]
    made = [(call.step.text if call.step else None, call.name) for call in calls]
    # (run without root, the runtime writes the clock offsets through stage-1's /proc files,
    # which stage-1 makes its own for that while; and its cgroup driver may be "none")
    unprivileged = [
        ("prctl(PR_SET_DUMPABLE, 1) (the runtime writes the clock offsets through our /proc "
         "files)", "prctl"), ("prctl(PR_SET_DUMPABLE, 0)", "prctl")] if plan.unprivileged else []
    assert made == [
        ("prctl(PR_SET_PDEATHSIG, SIGKILL); exit if the runtime has gone already", "prctl"),
        ("prctl(PR_SET_DUMPABLE, 0)", "prctl"),
        (f"join the container's cgroups ({plan.cgroup.kind} driver)", "cgroup join"),
        ("sched_setaffinity: every CPU (init never gets the runtime's CPU mask)",
         "sched_setaffinity"),
        ("unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS | "
         "CLONE_NEWTIME)", "unshare"),
        *unprivileged,
        ("unshare(CLONE_NEWCGROUP)", "unshare"),
        ("fork init (pid 1 of a new pid namespace; it waits on a pipe until its pid is sent)",
         "fork"),
        ('sync: {"pid": <init>} to the runtime; release init', "write")]
    assert [call.args for call in calls.of("unshare")] == [
        (plan.namespaces.unshare_flags() & ~sc.CLONE_NEWCGROUP,), (sc.CLONE_NEWCGROUP,)]
    assert calls.of("prctl")[0].args[:2] == (sc.PR_SET_PDEATHSIG, 9)


def test_exec_joins_with_creates_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    process = default_spec()["process"]
    setup = ProcessSetup(process, 0)
    joins = [("user", "/proc/9/ns/user"), ("network", "/proc/9/ns/net"),
             ("mount", "/proc/9/ns/mnt")]
    plan = ExecPlan(setup, process, ExecOptions(), None, (None, None), joins, False)
    live = ExecLive()
    live.ns_fds = [(kind, os.open("/dev/null", os.O_RDONLY)) for kind, _ in joins]
    parent_end, live.child_end = Channel.pair()
    live.stage1 = protocol.Stage1(live.child_end, None)
    live.phases = build_exec(plan, live)
    parent_end.send(protocol.GO)
    recorder = steps.Recorder()
    with sc.recording(results={"fork": 77}) as calls:
        for name in ("setresgid", "setresuid", "fork"):
            _also_record(calls, monkeypatch, os, name, name)
        previous = steps.watch(recorder)
        try:
            live.phases.stage1.run()
        finally:
            steps.watch(previous)
            monkeypatch.undo()
    assert parent_end.expect(protocol.PID, "test")["pid"] == 77
    parent_end.close()
    live.child_end.close()
    assert all(call.step is not None for call in calls), calls
    joined = [(call.step.text, call.args[1]) for call in calls.of("setns")]  # type: ignore
    assert joined == [("setns /proc/9/ns/user (user)", sc.CLONE_NEWUSER),
                      ("setns /proc/9/ns/net (network)", sc.CLONE_NEWNET),
                      ("setns /proc/9/ns/mnt (mount)", sc.CLONE_NEWNS)]
    assert [call.name for call in calls] == ["prctl", "setns", "setresgid", "setresuid",
                                             "setns", "setns", "fork"]
    # the same block as create's stage-1: root in the user namespace between the joins
    created = blocks.join_steps(joins, live, [], True, "")
    assert [step.text for step in created] == [
        text for _, text in recorder.ran if text.startswith(("setns", "setresgid", "close"))]
    assert explained(explain_exec(plan)) == _recorded(build_exec(plan, ExecLive()).all())


def test_direct_init_exits_if_the_runtime_has_gone(tmp_path: Path) -> None:
    """init's first step on the direct path: PR_SET_PDEATHSIG, then, as its parent is outside
    its pid namespace, the sync channel tells whether the runtime died before the prctl (its
    end hung up): init goes on while the runtime holds its end, exits once it does not."""
    bundle, config = _config(tmp_path)
    plan = planning.build("ph", bundle, config, planning.Options())
    live = phases.Live()
    parent_end, live.child_end = Channel.pair()
    first = phases.build(plan, live).init.steps[0]
    assert plan.direct and first.text.startswith("prctl(PR_SET_PDEATHSIG, SIGKILL)")
    try:
        with sc.recording() as calls:
            first.run()  # the runtime is there
            parent_end.close()
            with pytest.raises(Stopped):
                first.run()
    finally:
        live.child_end.close()
    assert [(call.name, call.args) for call in calls] == [
        ("prctl", (sc.PR_SET_PDEATHSIG, 9)), ("prctl", (sc.PR_SET_PDEATHSIG, 9)),
        ("os._exit", (1,))]
