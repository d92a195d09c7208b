"""create: build a container from a bundle, up to the point where it waits for ``start``.

On any failure everything made so far is undone before the error is raised: the processes
are killed and reaped, the cgroups removed and the state directory deleted, so a failed create
leaves nothing behind.

A create killed outright (SIGKILL) cannot undo anything, so it records what it is about to make
before it makes it: the first state document (and its ``cleanup.json`` copy) is written before
any cgroup exists and names the cgroup directories about to be made, the mounts under the rootfs
before init's own (no mount namespace) and this process (PID and start time, so ``state`` says
``stopped`` once it is dead). Stage-1 dies with this process (PR_SET_PDEATHSIG), and so does an
init cloned without stage-1 until it has joined the cgroups; init is inside the container's
cgroup before it exists, so ``delete --force`` finds it there.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import os
import pwd
import time

from ocirt import log
from ocirt.config.load import load_config
from ocirt.container import hooks, phases, protocol
from ocirt.container import plan as planning
from ocirt.container.state import (
    ContainerState,
    Lock,
    Status,
    Store,
    process_start_time,
)
from ocirt.container.statefiles import write_pid_file
from ocirt.container.sync import Channel, lapper, reap
from ocirt.errors import ConfigError, OcirtError
from ocirt.linux import hostmounts, namespaces


class Created:
    """A created container, still locked by this command, with its sync channel open."""

    def __init__(self, state: ContainerState, plan: planning.ContainerPlan, channel: Channel,
                 lock: Lock, terminal: int | None) -> None:
        self.state, self.plan, self.channel, self.lock = state, plan, channel, lock
        self.terminal = terminal  # the pty master, for `run` in the foreground without a socket


def load_plan(container_id: str, bundle: str, options: planning.Options
              ) -> planning.ContainerPlan:
    bundle = os.path.abspath(bundle)
    config = load_config(bundle)
    lap = lapper(options.timings)
    lap("config load and validation")
    try:
        plan = planning.build(container_id, bundle, config, options)
    except ConfigError as err:  # name the file as loading errors do
        raise ConfigError(err.where, err.what, os.path.join(bundle, "config.json")) from None
    lap("plan")
    return plan


def create(store: Store, plan: planning.ContainerPlan, foreground: bool = False) -> Created:
    """Carry out ``plan``: the runtime's phases here, the children's in ``init`` (see
    ``phases``). The caller must release ``Created.lock`` (and close the channel)."""
    lap = lapper(plan.options.timings)
    if plan.terminal or plan.options.console_socket:
        # Only then (termios: ~0.5 ms), and before the fork: init needs it after pivot_root.
        from ocirt.linux import console

        console.check_terminal(plan.terminal, plan.options.console_socket,
                               detach=not foreground)
    lock = store.create(plan.container_id)
    # Without a mount namespace of its own, init mounts in ours: note what was there before.
    mounts_before = (None if plan.namespaces.has("mount")
                     else hostmounts.mounts_under(plan.rootfs))
    me = os.getpid()
    state = ContainerState(id=plan.container_id, bundle=plan.bundle, rootfs=plan.rootfs,
                           created=_now(), owner=_owner(),
                           annotations=dict(plan.config.get("annotations") or {}),
                           cgroup=plan.cgroup.to_state(),
                           config=plan.config, creator=[me, _start_time(me)],
                           mounts_before=[list(m) for m in mounts_before]
                           if mounts_before is not None else None)
    if state.cgroup:  # the directories about to be made, recorded before they are
        state.cgroup["created"] = plan.cgroup.missing_dirs()
    live = phases.Live()
    live.state = state
    channel: Channel | None = None
    pidfd_sock: socket.socket | None = None
    try:
        # From here on `delete --force` can undo whatever happens to us.
        store.save(state, with_cleanup_copy=True)
        lap("state directory, state.json (creating), cleanup.json")
        if plan.options.pidfd_socket:
            from ocirt.linux import pidfd

            pidfd_sock = pidfd.connect(plan.options.pidfd_socket)
        live.ns_fds = namespaces.open_namespaces(plan.namespaces)
        # `run` in the foreground starts init over the sync channel, so init needs no start
        # socket, and it exits if that runtime dies before starting it (nobody else could).
        live.listener = None
        if not foreground:
            live.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            live.listener.bind(store.socket_path(plan.container_id, lock))
            live.listener.listen(1)
        if plan.terminal:
            if plan.options.console_socket:
                plan.console_sock = console.connect(plan.options.console_socket)
            else:
                live.relay_end, plan.console_sock = socket.socketpair()
        channel, live.child_end = Channel.pair()
        timings = plan.options.timings
        live.parent = protocol.Parent(channel, timings)
        live.stage1 = protocol.Stage1(live.child_end, timings)
        live.init = protocol.Init(live.child_end, timings)
        live.phases = phases.build(plan, live)
        lap("namespace fds, sockets; phases")
        live.phases.runtime.run(timings)  # cgroups, idmapped mounts, fork stage-1 (or init)
        live.phases.after_stage1.run(timings)  # until init is ready; stage-1 reaped
        init_pid = live.init_pid
        if pidfd_sock is not None:
            pidfd.send(pidfd_sock, init_pid, "standard")
            pidfd_sock.close()

        state.pid_start = _start_time(init_pid, "the container's init exited during create")
        if mounts_before is not None:
            state.host_mounts = [list(m) for m in hostmounts.made_since(mounts_before,
                                                                        plan.rootfs)]
        state.cgroup = plan.cgroup.to_state()  # the directories made, not those planned
        state.status = Status.CREATED
        state.creator, state.mounts_before = [], None
        store.save(state)
        if plan.options.pid_file:
            write_pid_file(plan.options.pid_file, init_pid)
        lap("state.json (created), pid file")
    except BaseException as err:
        _kill_and_reap(live.stage1_pid, live.init_pid)
        for mapped in plan.idmapped:
            mapped.close()
        if channel is not None:
            channel.close()
        if live.relay_end is not None:
            live.relay_end.close()
        if pidfd_sock is not None:
            pidfd_sock.close()
        try:
            if mounts_before is not None:
                _detach_mounts(hostmounts.made_since(mounts_before, plan.rootfs))
            plan.cgroup.destroy()
        except OcirtError as cleanup_err:  # keep the first error: it is the cause
            log.current.warning(f"cleaning up after a failed create: {cleanup_err}")
        finally:
            store.remove(plan.container_id)
            lock.release()
        if isinstance(err, hooks.HookError):  # lifecycle steps 3-5: on to 12 and 13
            hooks.run_hooks_warning(state.config, "poststop", state.hook_document(Status.STOPPED))
        raise
    if live.relay_end is not None:
        live.relay_end.close()
    return Created(state=state, plan=plan, channel=channel, lock=lock, terminal=live.terminal)


def _detach_mounts(made: list[hostmounts.Mount]) -> None:
    problems = hostmounts.detach(made)
    if problems:
        raise OcirtError("could not detach the mounts made in the runtime's mount namespace: "
                         + "; ".join(problems))


def _owner() -> str:
    """The user creating the container, by name as `list` shows it (runc's OWNER)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def _start_time(pid: int, gone: str = "") -> int:
    start = process_start_time(pid)
    if start is None:
        raise OcirtError(gone or f"process {pid} is gone")
    return start


def _kill_and_reap(stage1_pid: int, init_pid: int) -> None:
    """Kill both children (0: none); once stage-1 is reaped, init is our child too (we are
    a subreaper; without stage-1 it is from the start), so it can be reaped, which takes it
    out of its cgroups."""
    for pid in (init_pid, stage1_pid):
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    for pid in (stage1_pid, init_pid):
        if pid:
            reap(pid)
