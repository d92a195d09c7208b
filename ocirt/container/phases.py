"""The phases of ``create``: every step of its processes, in the order each runs them.

``build`` turns a ``ContainerPlan`` into five phases: the runtime before it forks stage-1,
stage-1, the runtime once stage-1 runs, init before it reports ready, and init on start; or,
where the plan needs no stage-1 (``ContainerPlan.direct``), four: the runtime before it clones
init (one clone3 into the new namespaces and the cgroup2 directory), the runtime while init
sets up, and init's two, the first of which begins with stage-1's own per-process steps.
``create`` runs the runtime's, ``init.stage1`` and ``init.init`` the children's, each a loop
over its phase; ``--explain`` prints the same phases. The sync exchanges are steps too, spoken
through the role objects of ``protocol``; whether an optional exchange happens (the id maps,
the network devices, the hooks) is decided here, once, for both sides.

The steps are built before anything runs; what only exists later (the sync channel, the
namespace fds, the pids) they read from ``Live`` when they run.
"""

from __future__ import annotations

import os
import select
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.container import hooks, init_phases, protocol
from ocirt.container.blocks import (
    Joining,
    dumpable,
    flag_names,
    hooks_text,
    join_steps,
    labelled,
    not_dumpable,
    runtime_steps,
    unshare,
)
from ocirt.container.init import init, stage1
from ocirt.container.state import Status
from ocirt.container.sync import Channel, reap
from ocirt.linux import affinity, namespaces, netdevices, uidmap
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Note, Phase, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket as socket
    import signal

    from ocirt.container.plan import ContainerPlan
    from ocirt.container.state import ContainerState
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal


class Live(Joining):
    """What exists only once ``create`` runs: set by ``create`` and the fork steps."""

    parent: protocol.Parent  # the runtime's end of the sync channel
    stage1: protocol.Stage1  # the children's end
    init: protocol.Init
    child_end: Channel
    listener: socket.socket | None  # the start socket (None: ``run`` in the foreground)
    state: ContainerState  # for the hooks run by the runtime
    phases: CreatePhases

    def __init__(self) -> None:
        self.ns_fds = []
        self.in_cgroup2 = False
        self.runtime_pid = os.getpid()
        self.stage1_pid = self.init_pid = 0
        self.release = -1  # stage-1's end of the pipe init waits on
        self.relay_end: socket.socket | None = None  # a terminal without a console socket
        self.terminal: int | None = None  # its pty master, received from init


class CreatePhases:
    """``stage1`` is None on the direct path (``after_stage1``: the runtime while init sets
    up)."""

    def __init__(self, runtime: Phase, stage1: Phase | None, after_stage1: Phase, init: Phase,
                 on_start: Phase) -> None:
        self.runtime, self.stage1, self.after_stage1 = runtime, stage1, after_stage1
        self.init, self.on_start = init, on_start

    def all(self) -> list[Phase]:
        """In the order they begin."""
        return [phase for phase in (self.runtime, self.stage1, self.after_stage1, self.init,
                                    self.on_start) if phase is not None]


def build(plan: ContainerPlan, live: Live) -> CreatePhases:
    if plan.direct:
        return _build_direct(plan, live)
    return CreatePhases(
        _runtime_phase(plan, "before it forks stage-1", Step(
            "fork stage-1 (born in the container's cgroup2 directory where the kernel lets it)",
            partial(_fork_stage1, plan, live), "fork stage-1")),
        Phase("stage-1", "in the new namespaces, forks init", _stage1_items(plan, live)),
        Phase("runtime", "while stage-1 and init set up", _after_stage1_items(plan, live)),
        Phase("init", "before it reports ready", init_phases.init_items(plan, live)),
        Phase("init", "on start", init_phases.on_start_items(plan, live)))


def _runtime_phase(plan: ContainerPlan, heading: str, fork: Step) -> Phase:
    """The runtime before its first child: cgroups, idmapped mounts, then ``fork``."""
    return Phase("runtime", heading, [
        *runtime_steps(),
        *labelled(plan.cgroup_steps, "cgroups: make, write limits"),
        *(Step(m.describe(), m.prepare, "idmapped mounts") for m in plan.idmapped),
        fork])


def _build_direct(plan: ContainerPlan, live: Live) -> CreatePhases:
    # every new namespace but the cgroup namespace, whose root would be the runtime's cgroup
    # (init unshares it once it joined)
    names = flag_names([kind for kind in plan.namespaces.create if kind != "cgroup"])
    clone = f"clone3({names}) init" if names else "fork init"
    return CreatePhases(
        _runtime_phase(plan, "before it clones init", Step(
            f"{clone} (born in the container's cgroup2 directory where the kernel lets it)",
            partial(_clone_init, plan, live, names), "clone init")),
        None,
        Phase("runtime", "while init sets up", _after_stage1_items(plan, live)),
        Phase("init", "before it reports ready",
              [*_direct_init_items(plan, live), *init_phases.init_items(plan, live)]),
        Phase("init", "on start", init_phases.on_start_items(plan, live)))


def _clone_init(plan: ContainerPlan, live: Live, names: str) -> None:
    # Born in the cgroup2 directory (if any): see _fork_stage1. The runtime has init's pid
    # from clone3: no "pid" to wait for, no gate, no stage-1 to reap.
    pid, live.in_cgroup2 = plan.cgroup.fork_inside(
        plan.namespaces.unshare_flags() & ~sc.CLONE_NEWCGROUP, names)
    if pid == 0:
        live.parent.channel.close()  # (its end hangs up when the runtime dies: _die_with_runtime)
        init(plan, live.init, live.phases.init, live.phases.on_start)
    live.init_pid = live.state.pid = pid
    _forked(plan, live, pid)


def _direct_init_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    """Stage-1's per-process steps, run by init itself, first thing, on the direct path."""
    label = "pdeathsig, cgroups: join"
    items: list[Step | Note] = [
        # As stage-1: a runtime killed before init is in the container's cgroup leaves
        # nothing behind. init's parent is outside its pid namespace (getppid() is 0), so a
        # runtime that died before the prctl shows as its end of the sync channel hung up.
        Step("prctl(PR_SET_PDEATHSIG, SIGKILL); exit if the runtime has gone already (its "
             "end of the sync channel hung up)", partial(_die_with_runtime, live), label),
        *_join_cgroups(plan, live, label),
        # init outlives the runtime from here on, as it does once stage-1 has exited
        Step("prctl(PR_SET_PDEATHSIG, 0) (in the container's cgroup: init outlives the "
             "runtime)", _no_pdeathsig, label)]
    if "cgroup" in plan.namespaces.create:  # its root is the cgroup just joined
        items.append(Step("unshare(CLONE_NEWCGROUP)", partial(unshare, sc.CLONE_NEWCGROUP),
                          "cgroup namespace"))
    return items


def _die_with_runtime(live: Live) -> None:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    poller = select.poll()
    poller.register(live.child_end.fileno(), select.POLLIN)
    if any(events & select.POLLHUP for _, events in poller.poll(0)):
        os._exit(1)


def _no_pdeathsig() -> None:
    sc.prctl(sc.PR_SET_PDEATHSIG, 0)


def _fork_stage1(plan: ContainerPlan, live: Live) -> None:
    # Stage-1 is born in the cgroup2 directory (if any) and joins the v1 ones itself, first
    # thing: moved by us through cgroup.procs it would wait ~10 ms for an RCU grace period.
    pid, live.in_cgroup2 = plan.cgroup.fork_inside()
    if pid == 0:
        live.parent.channel.close()
        assert live.phases.stage1 is not None  # (build made one: the plan is not direct)
        stage1(plan, live.stage1, live.phases.stage1)
    live.stage1_pid = pid
    _forked(plan, live, pid)


def _forked(plan: ContainerPlan, live: Live, pid: int) -> None:
    """The runtime, once its child (stage-1, or init on the direct path) exists."""
    plan.cgroup.adopt(pid)  # systemd: the transient scope, with stage-1 in it (never direct)
    live.child_end.close()
    if live.listener is not None:
        live.listener.close()
    if plan.console_sock is not None:
        plan.console_sock.close()
    namespaces.close_all(live.ns_fds)
    for mapped in plan.idmapped:
        mapped.close()


def _stage1_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    ns, label = plan.namespaces, "namespaces: join, unshare"
    items: list[Step | Note] = [
        # A runtime killed before stage-1 is in the container's cgroup leaves nothing behind:
        # stage-1 dies with it (and checks it did not die before the prctl).
        Step("prctl(PR_SET_PDEATHSIG, SIGKILL); exit if the runtime has gone already",
             partial(_die_with, live), "pdeathsig, dumpable"),
        Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, "pdeathsig, dumpable"),
        # Into the cgroups before anything else (init inherits them), with the host's
        # credentials; born in the v2 one where it could be (see Manager.fork_inside).
        *_join_cgroups(plan, live, "cgroups: join")]
    seccomp = plan.process.seccomp if plan.process is not None else None
    if seccomp is not None and seccomp.notify:
        items.append(Step(f"connect to the seccomp listener {seccomp.listener_path} (a host "
                          "path)", seccomp.connect_listener, label))
    new_user: list[Step | Note] = []
    if ns.new_user:
        # A runtime without root writes our maps (or has newuidmap write them) through our
        # /proc files, which belong to root while we are not dumpable (runc does this).
        if plan.unprivileged:
            new_user.append(Step("prctl(PR_SET_DUMPABLE, 1) (the runtime writes the id maps "
                                 "through our /proc files)", dumpable, label))
        new_user += [Step("unshare(CLONE_NEWUSER)", partial(unshare, sc.CLONE_NEWUSER), label),
                     Step('sync: {"userns"} to the runtime, wait for {"mapped"}',
                          lambda: live.stage1.request_mapping(), label)]
        if plan.unprivileged:
            new_user.append(Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label))
    items += join_steps(ns.ordered_joins(), live, new_user, ns.has("user"), label)
    early = [kind for kind in ns.create if kind not in ("user", "cgroup")]
    if early:
        flags = ns.unshare_flags() & ~sc.CLONE_NEWCGROUP
        items.append(Step(f"unshare({flag_names(early)})", partial(unshare, flags), label))
    if plan.net_devices:  # the runtime moves them into our network namespace now
        items += [Step("check the network device names are free in the new namespace",
                       partial(netdevices.check_names_free, plan.net_devices), label),
                  Step('sync: {"netns"} to the runtime', lambda: live.stage1.netns_ready(),
                       label)]
    if ns.time_offsets:  # the runtime writes them before init, the first to enter, is forked
        if plan.unprivileged:  # (the runtime's uid must own our /proc files, as for id maps)
            items.append(Step("prctl(PR_SET_DUMPABLE, 1) (the runtime writes the clock "
                              "offsets through our /proc files)", dumpable, label))
        items.append(Step('sync: {"timens"} to the runtime, wait for {"offsets"}',
                          lambda: live.stage1.request_time_offsets(), label))
        if plan.unprivileged:
            items.append(Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label))
    items.append(Step('sync: wait for {"go"}', lambda: live.stage1.wait_for_go(),
                      "sync wait: go"))
    last = "cgroup namespace, fork init"
    if "cgroup" in ns.create:  # its root is the cgroup just joined
        items.append(Step("unshare(CLONE_NEWCGROUP)", partial(unshare, sc.CLONE_NEWCGROUP),
                          last))
    # init speaks on the same channel: it starts only once its pid is sent, or a fast init's
    # "ready" would reach the parent before the "pid" it waits for
    return [*items,
            Step("fork init (pid 1 of a new pid namespace; it waits on a pipe until its pid "
                 "is sent)", partial(_fork_init, plan, live), last),
            Step('sync: {"pid": <init>} to the runtime; release init',
                 partial(_report_init, live), "sync: pid")]


def _join_cgroups(plan: ContainerPlan, live: Live, label: str) -> list[Step | Note]:
    """The first child (stage-1, or init on the direct path) moves itself into the
    container's cgroups, and leaves the runtime's CPU mask."""
    return [Step(f"join the container's cgroups ({plan.cgroup.kind} driver)",
                 lambda: plan.cgroup.join(live.in_cgroup2), label),
            Step("sched_setaffinity: every CPU (init never gets the runtime's CPU mask)",
                 partial(affinity.reset, 0), label)]


def _die_with(live: Live) -> None:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != live.runtime_pid:
        os._exit(1)


def _fork_init(plan: ContainerPlan, live: Live) -> None:
    gate, release = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(release)
        if os.read(gate, 1) != b"1":  # stage-1 failed before it sent the pid
            os._exit(1)
        os.close(gate)
        init(plan, live.init, live.phases.init, live.phases.on_start)
    os.close(gate)
    live.init_pid, live.release = pid, release


def _report_init(live: Live) -> None:
    live.stage1.report_pid(live.init_pid)
    os.write(live.release, b"1")


def _after_stage1_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    items = [] if plan.direct else _stage1_exchanges(plan, live)
    if plan.runtime_hooks:
        label = "sync wait and prestart, createRuntime hooks"
        items += [Step('sync: wait for {"hooks"}', lambda: live.parent.wait_for_hooks(), label),
                  Step(hooks_text(plan.config, "prestart") + " (state: created, as crun and the "
                       "conformance suite expect)", partial(_runtime_hooks, plan, live), label),
                  Step('sync: {"hooks-done"} to init', lambda: live.parent.hooks_done(), label)]
    label = "sync wait: init sets up the container"
    items.append(Step('sync: wait for {"ready"}', lambda: live.parent.wait_for_ready(), label))
    if plan.terminal and not plan.options.console_socket:  # `run` in the foreground
        items.append(Step("receive the pty master from init", partial(_receive_pty, live),
                          label))
    if plan.direct:  # init is our child: nothing to reap
        return items
    # Reaped only now: its exit overlapped init's work (init was ours from that exit on).
    return [*items, Step("reap stage-1 (it exited once init's pid was sent)",
                         partial(_reap_stage1, live), "reap stage-1")]


def _stage1_exchanges(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    """The runtime's side of stage-1's exchanges, up to init's pid."""
    items: list[Step | Note] = []
    linux = plan.config.get("linux") or {}
    if plan.namespaces.new_user:
        label = "sync wait: user namespace; uid and gid maps"
        items += [Step('sync: wait for {"userns"}', lambda: live.parent.wait_for_userns(),
                       label),
                  Step(f"id maps of stage-1: {uidmap.describe(linux)}",
                       lambda: uidmap.write(live.stage1_pid, linux), label),
                  Step('sync: {"mapped"} to stage-1', lambda: live.parent.mapping_written(),
                       label)]
    if plan.net_devices:
        label = "sync wait: network namespace; network devices"
        items.append(Step('sync: wait for {"netns"}', lambda: live.parent.wait_for_netns(),
                          label))
        planned = netdevices.move_steps(plan.net_devices, "/proc/<stage-1>/ns/net")
        items += [Step(step.text, partial(_move_device, plan, live, index), label)
                  for index, step in enumerate(planned)]
    offsets = plan.namespaces.time_offsets
    if offsets:
        label = "sync wait: time namespace; clock offsets"
        text = "; ".join(f"{clock} {value.get('secs', 0)}s {value.get('nanosecs', 0)}ns"
                         for clock, value in offsets.items())
        items += [Step('sync: wait for {"timens"}', lambda: live.parent.wait_for_timens(),
                       label),
                  Step(f"write /proc/<stage-1>/timens_offsets: {text} (before init enters "
                       "the time namespace)",
                       lambda: namespaces.write_time_offsets(live.stage1_pid, offsets), label),
                  Step('sync: {"offsets"} to stage-1', lambda: live.parent.offsets_written(),
                       label)]
    label = "sync wait: stage-1 joins the cgroups, makes namespaces, forks init"
    return [*items, Step('sync: {"go"} to stage-1', lambda: live.parent.go(), label),
            Step('sync: wait for {"pid"} (init\'s, as the host sees it)',
                 partial(_wait_for_pid, live), label)]


def _receive_pty(live: Live) -> None:
    from ocirt.linux import console  # loaded by create, before the fork

    assert live.relay_end is not None
    live.terminal = console.recv_fd(live.relay_end)


def _reap_stage1(live: Live) -> None:
    reap(live.stage1_pid)
    live.stage1_pid = 0


def _move_device(plan: ContainerPlan, live: Live, index: int) -> None:
    netdevices.move_steps(plan.net_devices, f"/proc/{live.stage1_pid}/ns/net")[index].action()


def _wait_for_pid(live: Live) -> None:
    live.init_pid = live.state.pid = live.parent.wait_for_pid()


def _runtime_hooks(plan: ContainerPlan, live: Live) -> None:
    # prestart gets "created", as crun and the conformance suite expect; createRuntime runs
    # while the container is still being created.
    hooks.run_hooks(plan.config, "prestart", live.state.hook_document(Status.CREATED))
    hooks.run_hooks(plan.config, "createRuntime", live.state.hook_document(Status.CREATING))


def explain(plan: ContainerPlan) -> str:
    lines = [f"plan for container {plan.container_id} (bundle {plan.bundle})"]
    for phase in build(plan, Live()).all():
        lines += phase.explain()
    return "\n".join(lines)

