"""The two forked stages that become the container (see ``sync`` for the protocol).

``stage1`` enters the namespaces and forks ``init``, which becomes PID 1 of a new pid
namespace; ``init`` builds the root filesystem and the process, reports ready, waits for
``start`` and execs the user's program. Both run in forked copies of the runtime and never
return: they exit with ``os._exit`` after reporting any error to the parent.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import os
import select

from ocirt import OCI_VERSION
from ocirt.container import hooks
from ocirt.container.plan import ContainerPlan
from ocirt.container.sync import Channel, child_failed, lapper, run_steps
from ocirt.errors import OcirtError
from ocirt.linux import affinity, namespaces, netdevices, procfs
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import run_all
from ocirt.linux.process import close_extra_fds

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from types import FrameType
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal


def stage1(plan: ContainerPlan, channel: Channel, ns_fds: list[tuple[str, int]],
           listener: socket.socket | None, in_cgroup2: bool = False,
           parent: int = 0) -> None:
    timings = plan.options.timings
    if timings is not None:
        timings.forked("stage-1")
    lap = lapper(timings)
    try:
        # A runtime killed before stage-1 is in the container's cgroup leaves nothing behind:
        # stage-1 dies with it (and checks it did not die before the prctl).
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if parent and os.getppid() != parent:
            os._exit(1)
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        # Into the container's cgroups before anything else (init inherits them), with the
        # host's credentials; ``in_cgroup2``: born in the v2 one (see Manager.fork_inside).
        plan.cgroup.join(in_cgroup2)
        affinity.reset(0)  # inside: init never gets the runtime's CPU mask (runc 1.4)
        lap("cgroups: join")
        if plan.process is not None and plan.process.seccomp is not None:
            plan.process.seccomp.connect_listener()  # listenerPath is a host path
        ns = plan.namespaces
        namespaces.join(ns_fds, only={"user"})
        if ns.new_user:
            # A runtime without root writes our maps (or has newuidmap write them) through
            # our /proc files, which belong to root while we are not dumpable (runc does this).
            unprivileged = os.geteuid() != 0
            if unprivileged:
                sc.prctl(sc.PR_SET_DUMPABLE, 1)
            sc.unshare(sc.CLONE_NEWUSER)
            channel.send("userns")
            channel.expect("mapped", "stage-1")
            if unprivileged:
                sc.prctl(sc.PR_SET_DUMPABLE, 0)
        if ns.has("user"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        namespaces.join([(k, fd) for k, fd in ns_fds if k != "user"])
        namespaces.close_all(ns_fds)
        late = ns.unshare_flags() & sc.CLONE_NEWCGROUP  # its root is the cgroup we join
        sc.unshare(ns.unshare_flags() & ~late)
        if plan.net_devices:  # the runtime moves them into our network namespace now
            netdevices.check_names_free(plan.net_devices)
            channel.send("netns")
        lap("namespaces: join, unshare")
        channel.expect("go", "stage-1")
        lap("sync wait: go")
        if late:
            sc.unshare(late)
        if ns.time_offsets:
            namespaces.write_time_offsets(ns.time_offsets)
        # init speaks on the same channel: it starts only once its pid is sent, or a fast
        # init's "ready" would reach the parent before the "pid" it waits for
        gate, release = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(release)
            if os.read(gate, 1) != b"1":  # stage-1 failed before it sent the pid
                os._exit(1)
            os.close(gate)
            init(plan, channel, listener)
        os.close(gate)
        lap("cgroup namespace, fork init")
        if timings is None:
            channel.send("pid", pid=pid)
        else:
            channel.send("pid", pid=pid, timings=timings.take())
        os.write(release, b"1")
    except BaseException as err:
        child_failed(channel, err, plan.options.debug)
    os._exit(0)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # While init waits for start it is a Python process: PID 1 of its namespace ignores
    # signals it has no handler for, so these make `kill` of a created container work.
    os._exit(128 + signum)


def init(plan: ContainerPlan, channel: Channel, listener: socket.socket | None) -> None:
    if plan.options.debug:  # a traceback after pivot_root needs the module loaded before
        import traceback  # noqa: F401
    timings = plan.options.timings
    if timings is not None:
        timings.forked("init")
    lap = lapper(timings)
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                       signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, _exit_on_signal)
        os.setsid()
        if not plan.options.no_new_keyring:
            sc.join_session_keyring(f"_ses.{plan.container_id}")
        keep = {channel.fileno()} | ({listener.fileno()} if listener else set())
        process = plan.process
        seccomp = process.seccomp if process is not None else None
        if seccomp is not None and seccomp.listener is not None:
            keep.add(seccomp.listener.fileno())
            # The state sent with the notify fd: the pid as the runtime sees it, read from the
            # host's /proc while it is still mounted here.
            seccomp.state = {**_state(plan, "creating" if process and process.seccomp_early
                                      else "created"), "pid": int(os.readlink("/proc/self"))}
        if plan.console_sock is not None:
            keep.add(plan.console_sock.fileno())
        keep.update(mapped.fd for mapped in plan.idmapped)  # attached by the mount steps
        close_extra_fds(process.inherited if process is not None else set(), keep)
        # init's own procfs (its pid namespace), made before any config mount: every write
        # under /proc and every mount onto an fd goes through it
        procfs.handle()
        if plan.oom_score_adj is not None:
            procfs.write("self/oom_score_adj", str(plan.oom_score_adj))
        lap("session keyring, signals, close fds")
        if "network" in plan.namespaces.create:
            namespaces.loopback_up()
        if plan.net_devices:
            run_all(netdevices.setup_steps(plan.net_devices))
        lap("network: loopback, devices")
        run_steps(plan.mount_steps, timings, "mounts and devices")
        config = plan.config
        if hooks.hooks_of(config, "prestart") or hooks.hooks_of(config, "createRuntime"):
            channel.send("hooks")
            channel.expect("hooks-done", "running createRuntime hooks")
        hooks.run_hooks(config, "createContainer", _state(plan, "creating"))
        lap("hooks: prestart, createRuntime, createContainer")
        run_steps(plan.root_steps, timings, "masked and read-only paths, hostname")
        if plan.console_sock is not None:
            from ocirt.linux import console

            console.take_terminal(plan.console_sock, plan.console_size, console=True)
            lap("console")
        if process is not None:
            run_steps(process.steps(), timings, "process")
        if timings is None:
            channel.send("ready")
        else:
            channel.send("ready", timings=timings.take())
        starter = wait_for_start(channel, listener)
        lap("sync wait: start")
    except BaseException as err:
        child_failed(channel, err, plan.options.debug)
    try:
        if listener is not None:
            listener.close()
        if process is None:  # `start` refuses before it gets here: nothing to run
            raise OcirtError("config.json has no process to start")
        hooks.run_hooks(plan.config, "startContainer", _state(plan, "created"))
        if timings is not None and starter is channel:  # `run`: it reads until end-of-file
            lap("startContainer hooks")
            channel.send("timings", rows=timings.take())
        process.execute()
    except BaseException as err:
        child_failed(starter, err, plan.options.debug)


def _state(plan: ContainerPlan, status: str) -> dict[str, object]:
    """The state document for hooks run in the container: its pid as the container sees it."""
    return {"ociVersion": OCI_VERSION, "id": plan.container_id, "status": status,
            "pid": os.getpid(), "bundle": plan.bundle,
            "annotations": plan.config.get("annotations") or {}}


def wait_for_start(channel: Channel, listener: socket.socket | None) -> Channel:
    """Block until ``start`` arrives, on the sync channel (run) or the start socket (create)."""
    watched: list[Channel | socket.socket] = [channel]
    if listener is not None:
        watched.append(listener)
    while True:
        ready, _, _ = select.select(watched, [], [])
        if channel in ready:
            message = channel.recv()
            if message is None:  # the parent has gone: wait on the start socket alone
                watched.remove(channel)
                channel.close()
                if not watched:
                    raise OcirtError("nobody can start this container any more")
                continue
            if message["type"] == "start":
                return channel
        if listener is not None and listener in ready:
            fd, _ = listener._accept()  # type: ignore[attr-defined]  # (socket.accept's core)
            starter = Channel(socket.socket(fileno=fd))
            message = starter.recv()
            if message is not None and message["type"] == "start":
                return starter
            starter.close()
