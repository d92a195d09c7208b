"""The phases of ``create``: every step of its three processes, in the order each runs them.

``build`` turns a ``ContainerPlan`` into five phases: the runtime before it forks stage-1,
stage-1, the runtime once stage-1 runs, init before it reports ready, and init on start.
``create`` runs the runtime's, ``init.stage1`` and ``init.init`` the children's, each a loop
over its phase; ``--explain`` prints the same phases. The sync exchanges are steps too, spoken
through the role objects of ``protocol``; whether an optional exchange happens (the id maps,
the network devices, the hooks) is decided here, once, for both sides.

The steps are built before anything runs; what only exists later (the sync channel, the
namespace fds, the pids) they read from ``Live`` when they run.
"""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.container import hooks, protocol
from ocirt.container.init import exit_on_signals, init, stage1, state_document
from ocirt.container.sync import Channel, reap
from ocirt.linux import affinity, namespaces, netdevices, procfs
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Note, Phase, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket as socket
    import signal
    from collections.abc import Sequence

    from ocirt.container.plan import ContainerPlan
    from ocirt.container.state import ContainerState
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal


class Joining:
    """The namespace fds a stage-1 joins (opened by the runtime before it forks)."""

    ns_fds: list[tuple[str, int]]
    in_cgroup2: bool  # stage-1 was born in the container's cgroup2 directory


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
    def __init__(self, runtime: Phase, stage1: Phase, after_stage1: Phase, init: Phase,
                 on_start: Phase) -> None:
        self.runtime, self.stage1, self.after_stage1 = runtime, stage1, after_stage1
        self.init, self.on_start = init, on_start

    def all(self) -> list[Phase]:
        """In the order they begin."""
        return [self.runtime, self.stage1, self.after_stage1, self.init, self.on_start]


def build(plan: ContainerPlan, live: Live) -> CreatePhases:
    return CreatePhases(
        Phase("runtime", "before it forks stage-1", [
            *labelled(plan.cgroup_steps, "cgroups: make, write limits"),
            *(Step(m.describe(), m.prepare, "idmapped mounts") for m in plan.idmapped),
            Step("fork stage-1 (born in the container's cgroup2 directory where the kernel "
                 "lets it)", partial(_fork_stage1, plan, live), "fork stage-1")]),
        Phase("stage-1", "in the new namespaces, forks init", _stage1_items(plan, live)),
        Phase("runtime", "while stage-1 and init set up", _after_stage1_items(plan, live)),
        Phase("init", "before it reports ready", _init_items(plan, live)),
        Phase("init", "on start", _on_start_items(plan, live)))


def labelled(steps: Sequence[Step | Note], label: str) -> list[Step | Note]:
    """``steps``, each without a ``--timings`` row of its own put in the row ``label``."""
    for step in steps:
        if isinstance(step, Step) and not step.phase:
            step.phase = label
    return list(steps)


def join_steps(joins: list[tuple[str, str]], live: Joining, new_user: list[Step | Note],
               has_user: bool, label: str) -> list[Step | Note]:
    """Entering existing namespaces (create's stage-1 and exec's): the user namespace first
    (it grants the rights for the rest), then ``new_user`` (create's own user namespace), root
    in it, then the others in ``JOIN_ORDER``; the fds closed."""
    steps: list[Step | Note] = [Step(f"setns {path} (user)", partial(_setns, live, "user"),
                                     label) for kind, path in joins if kind == "user"]
    steps += new_user
    if has_user:
        steps.append(Step("setresgid 0 0 0; setresuid 0 0 0 (root in the user namespace)",
                          _become_root, label))
    steps += [Step(f"setns {path} ({kind})", partial(_setns, live, kind), label)
              for kind, path in joins if kind != "user"]
    if joins:
        steps.append(Step("close the namespace fds", lambda: namespaces.close_all(live.ns_fds),
                          label))
    return steps


def _setns(live: Joining, kind: str) -> None:
    namespaces.join([(k, fd) for k, fd in live.ns_fds if k == kind])


def _become_root() -> None:
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def flag_names(kinds: list[str]) -> str:
    names = {"mount": "NS", "network": "NET"}
    return " | ".join(f"CLONE_NEW{names.get(kind, kind.upper())}" for kind in kinds)


def _fork_stage1(plan: ContainerPlan, live: Live) -> None:
    # Stage-1 is born in the cgroup2 directory (if any) and joins the v1 ones itself, first
    # thing: moved by us through cgroup.procs it would wait ~10 ms for an RCU grace period.
    pid, live.in_cgroup2 = plan.cgroup.fork_inside()
    if pid == 0:
        live.parent.channel.close()
        stage1(plan, live.stage1, live.phases.stage1)
    live.stage1_pid = pid
    plan.cgroup.adopt(pid)  # systemd: the transient scope, with stage-1 in it
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
        Step(f"join the container's cgroups ({plan.cgroup.kind} driver)",
             lambda: plan.cgroup.join(live.in_cgroup2), "cgroups: join"),
        Step("sched_setaffinity: every CPU (init never gets the runtime's CPU mask)",
             partial(affinity.reset, 0), "cgroups: join")]
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
                                 "through our /proc files)", _dumpable, label))
        new_user += [Step("unshare(CLONE_NEWUSER)", partial(sc.unshare, sc.CLONE_NEWUSER), label),
                     Step('sync: {"userns"} to the runtime, wait for {"mapped"}',
                          lambda: live.stage1.request_mapping(), label)]
        if plan.unprivileged:
            new_user.append(Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label))
    items += join_steps(ns.ordered_joins(), live, new_user, ns.has("user"), label)
    early = [kind for kind in ns.create if kind not in ("user", "cgroup")]
    if early:
        flags = ns.unshare_flags() & ~sc.CLONE_NEWCGROUP
        items.append(Step(f"unshare({flag_names(early)})", partial(sc.unshare, flags), label))
    if plan.net_devices:  # the runtime moves them into our network namespace now
        items += [Step("check the network device names are free in the new namespace",
                       partial(netdevices.check_names_free, plan.net_devices), label),
                  Step('sync: {"netns"} to the runtime', lambda: live.stage1.netns_ready(),
                       label)]
    items.append(Step('sync: wait for {"go"}', lambda: live.stage1.wait_for_go(),
                      "sync wait: go"))
    last = "cgroup namespace, fork init"
    if "cgroup" in ns.create:  # its root is the cgroup just joined
        items.append(Step("unshare(CLONE_NEWCGROUP)", partial(sc.unshare, sc.CLONE_NEWCGROUP),
                          last))
    if ns.time_offsets:
        text = "; ".join(f"{clock} {value.get('secs', 0)}s {value.get('nanosecs', 0)}ns"
                         for clock, value in ns.time_offsets.items())
        items.append(Step(f"write /proc/self/timens_offsets: {text} (before init enters the "
                          "time namespace)", partial(namespaces.write_time_offsets,
                                                     ns.time_offsets), last))
    # init speaks on the same channel: it starts only once its pid is sent, or a fast init's
    # "ready" would reach the parent before the "pid" it waits for
    return [*items,
            Step("fork init (pid 1 of a new pid namespace; it waits on a pipe until its pid "
                 "is sent)", partial(_fork_init, plan, live), last),
            Step('sync: {"pid": <init>} to the runtime; release init',
                 partial(_report_init, live), "sync: pid")]


def _die_with(live: Live) -> None:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != live.runtime_pid:
        os._exit(1)


def not_dumpable() -> None:
    sc.prctl(sc.PR_SET_DUMPABLE, 0)


def _dumpable() -> None:
    sc.prctl(sc.PR_SET_DUMPABLE, 1)


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
    items: list[Step | Note] = []
    linux = plan.config.get("linux") or {}
    if plan.namespaces.new_user:
        from ocirt.linux import uidmap

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
    label = "sync wait: stage-1 joins the cgroups, makes namespaces, forks init"
    items += [Step('sync: {"go"} to stage-1', lambda: live.parent.go(), label),
              Step('sync: wait for {"pid"} (init\'s, as the host sees it)',
                   partial(_wait_for_pid, live), label)]
    if plan.runtime_hooks:
        label = "sync wait and prestart, createRuntime hooks"
        items += [Step('sync: wait for {"hooks"}', lambda: live.parent.wait_for_hooks(), label),
                  Step(_hooks_text(plan, "prestart") + " (state: created, as crun and the "
                       "conformance suite expect)", partial(_runtime_hooks, plan, live), label),
                  Step('sync: {"hooks-done"} to init', lambda: live.parent.hooks_done(), label)]
    label = "sync wait: init sets up the container"
    items.append(Step('sync: wait for {"ready"}', lambda: live.parent.wait_for_ready(), label))
    if plan.terminal and not plan.options.console_socket:  # `run` in the foreground
        items.append(Step("receive the pty master from init", partial(_receive_pty, live),
                          label))
    # Reaped only now: its exit overlapped init's work (init was ours from that exit on).
    return [*items, Step("reap stage-1 (it exited once init's pid was sent)",
                         partial(_reap_stage1, live), "reap stage-1")]


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


def _hooks_text(plan: ContainerPlan, kind: str) -> str:
    count = len(hooks.hooks_of(plan.config, kind))
    text = f"{kind} hooks: {count}"
    if kind == "prestart":
        text += f", then createRuntime hooks: {len(hooks.hooks_of(plan.config, 'createRuntime'))}"
    return text


def _runtime_hooks(plan: ContainerPlan, live: Live) -> None:
    # prestart gets "created", as crun and the conformance suite expect; createRuntime runs
    # while the container is still being created.
    from ocirt.container.state import Status

    hooks.run_hooks(plan.config, "prestart", live.state.hook_document(Status.CREATED))
    hooks.run_hooks(plan.config, "createRuntime", live.state.hook_document(Status.CREATING))


def _init_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    label = "session keyring, signals, close fds"
    items: list[Step | Note] = [
        Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label),
        Step("SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2: exit (PID 1 ignores a signal "
             "it has no handler for)", exit_on_signals, label),
        Step("setsid", os.setsid, label)]
    if not plan.options.no_new_keyring:
        name = f"_ses.{plan.container_id}"
        items.append(Step(f"join a new session keyring {name}",
                          partial(sc.join_session_keyring, name), label))
    process = plan.process
    seccomp = process.seccomp if process is not None else None
    if seccomp is not None and seccomp.notify:
        # The state sent with the notify fd: the pid as the runtime sees it, read from the
        # host's /proc while it is still mounted here.
        def seccomp_state() -> None:
            assert seccomp is not None and process is not None
            status = "creating" if process.seccomp_early else "created"
            seccomp.state = {**state_document(plan, status),
                             "pid": int(os.readlink("/proc/self"))}
        items.append(Step("the state for the seccomp listener: init's pid on the host",
                          seccomp_state, label))
    items += [Step("close every fd but stdio, the sync channel, the start and console sockets "
                   "and --preserve-fds", partial(_close_fds, plan, live), label),
              # init's own procfs (its pid namespace), made before any config mount: every
              # write under /proc and every mount onto an fd goes through it
              Step("open a procfs handle of init's own (its pid namespace)", procfs.handle,
                   label)]
    if plan.oom_score_adj is not None:
        items.append(Step(f"write {plan.oom_score_adj} to /proc/self/oom_score_adj",
                          partial(procfs.write, "self/oom_score_adj", str(plan.oom_score_adj)),
                          label))
    label = "network: loopback, devices"
    if "network" in plan.namespaces.create:
        items.append(Step("bring up lo", namespaces.loopback_up, label))
    items += labelled(netdevices.setup_steps(plan.net_devices), label)
    if not plan.namespaces.has("mount"):
        items.append(Note("no mount namespace of its own: these mounts are made in the "
                          "runtime's mount namespace, and detached on delete"))
    items += labelled(plan.mount_steps, "mounts and devices")
    label = "hooks: prestart, createRuntime, createContainer"
    if plan.runtime_hooks:
        items.append(Step('sync: {"hooks"} to the runtime (prestart, createRuntime hooks), '
                          'wait for {"hooks-done"}', lambda: live.init.request_hooks(), label))
    if hooks.hooks_of(plan.config, "createContainer"):
        items.append(Step(_hooks_text(plan, "createContainer"), lambda: hooks.run_hooks(
            plan.config, "createContainer", state_document(plan, "creating")), label))
    items += labelled(plan.root_steps, "masked and read-only paths, hostname")
    if plan.terminal:  # (create connects the console socket, or makes a pair, first)
        items.append(Step("the console: a new pty, its master sent to the console socket, "
                          "the slave as stdio and controlling terminal",
                          partial(_take_console, plan), "console"))
    if process is not None:
        items += labelled(process.steps(), "process")
    return [*items, Step('sync: {"ready"} to the runtime', lambda: live.init.ready(),
                         "sync: ready"),
            Step('sync: wait for {"start"} (on the sync channel for run, else on the start '
                 "socket)", partial(_wait_for_start, live), "sync wait: start")]


def _close_fds(plan: ContainerPlan, live: Live) -> None:
    from ocirt.linux.process import close_extra_fds

    keep = {live.child_end.fileno()} | ({live.listener.fileno()} if live.listener else set())
    process = plan.process
    seccomp = process.seccomp if process is not None else None
    if seccomp is not None and seccomp.listener is not None:
        keep.add(seccomp.listener.fileno())
    if plan.console_sock is not None:
        keep.add(plan.console_sock.fileno())
    keep.update(mapped.fd for mapped in plan.idmapped)  # attached by the mount steps
    close_extra_fds(process.inherited if process is not None else set(), keep)


def _take_console(plan: ContainerPlan) -> None:
    from ocirt.linux import console  # loaded by create, before the fork

    assert plan.console_sock is not None
    console.take_terminal(plan.console_sock, plan.console_size, console=True)


def _wait_for_start(live: Live) -> None:
    live.init.wait_for_start(live.listener)
    if live.listener is not None:
        live.listener.close()


def _on_start_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    items: list[Step | Note] = []
    if hooks.hooks_of(plan.config, "startContainer"):
        items.append(Step(_hooks_text(plan, "startContainer"), lambda: hooks.run_hooks(
            plan.config, "startContainer", state_document(plan, "created")),
            "startContainer hooks"))
    if plan.options.timings is not None:
        items.append(Step('sync: --timings rows to run in the foreground (just before the '
                          "exec)", lambda: live.init.send_timings(), "sync: timings"))
    if plan.process is None:  # `start` refuses before it gets here: nothing to run
        return [*items, Step("refuse: config.json has no process to start", _no_process)]
    return items + labelled(plan.process.start_steps(), "execve")


def _no_process() -> None:
    from ocirt.errors import OcirtError

    raise OcirtError("config.json has no process to start")


def explain(plan: ContainerPlan) -> str:
    lines = [f"plan for container {plan.container_id} (bundle {plan.bundle})"]
    for phase in build(plan, Live()).all():
        lines += phase.explain()
    return "\n".join(lines)

