"""The phases of ``exec``: the runtime forks stage-1, which joins the container's cgroups and
namespaces (create's joining steps: ``phases.join_steps``) and forks the process, which sets
itself up as init would and execs.

As for ``create`` (``ocirt.container.phases``), each process runs a loop over its phase, the
sync exchanges are steps spoken through ``protocol``, and what exists only once ``exec`` runs
(the channel, the fds, the pids) the steps read from ``ExecLive``.
"""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt import log
from ocirt.container import protocol
from ocirt.container.blocks import (
    Joining,
    join_steps,
    labelled,
    new_session,
    not_dumpable,
    runtime_steps,
)
from ocirt.container.init import run_child
from ocirt.container.sync import Channel, reap
from ocirt.errors import OcirtError
from ocirt.linux import affinity, namespaces, pidfd, procfs
from ocirt.linux.plan import Note, Phase, Step
from ocirt.linux.process import close_extra_fds

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket as socket
    from typing import Any

    from ocirt.container.exec import ExecOptions
    from ocirt.linux.cgroups import CgroupDriver
    from ocirt.linux.process import ProcessSetup


class ExecLive(Joining):
    """What exists only once ``exec`` runs: set by ``exec_process`` and the fork steps."""

    parent: protocol.ExecParent
    stage1: protocol.Stage1
    process: protocol.Process
    child_end: Channel
    phases: ExecPhases

    def __init__(self) -> None:
        self.ns_fds = []
        self.in_cgroup2 = False
        self.stage1_pid = self.pid = 0
        self.root_fd: int | None = None  # the container's root, when it shares our mount ns
        self.console_sock: socket.socket | None = None
        self.relay_end: socket.socket | None = None  # a terminal without a console socket
        self.master: int | None = None  # its pty master, received from the process
        self.pidfd_sock: socket.socket | None = None


class ExecPhases:
    def __init__(self, runtime: Phase, stage1: Phase, after_stage1: Phase, process: Phase
                 ) -> None:
        self.runtime, self.stage1, self.after_stage1 = runtime, stage1, after_stage1
        self.process = process

    def all(self) -> list[Phase]:
        return [self.runtime, self.stage1, self.after_stage1, self.process]


class ExecPlan:
    """What ``exec`` decided before it forks: the process, where it goes, what it joins."""

    def __init__(self, setup: ProcessSetup, process: dict[str, Any], options: ExecOptions,
                 manager: CgroupDriver | None, masks: tuple[affinity.Mask | None,
                                                            affinity.Mask | None],
                 joins: list[tuple[str, str]], shared_root: bool) -> None:
        self.setup, self.process, self.options = setup, process, options
        self.manager, (self.initial, self.final) = manager, masks
        self.joins = joins  # (kind, /proc/<init>/ns/<name>), in join order
        self.shared_root = shared_root  # no mount namespace of its own: chroot to init's root
        self.terminal = bool(process.get("terminal"))


def build(plan: ExecPlan, live: ExecLive) -> ExecPhases:
    return ExecPhases(
        Phase("runtime", "before it forks stage-1", [
            *runtime_steps(),
            Step("fork stage-1 with the initial CPU mask (born in the container's cgroup2 "
                 "directory where the kernel lets it)", partial(_fork_stage1, plan, live),
                 "fork stage-1")]),
        Phase("stage-1", "joins the container, forks the process", _stage1_items(plan, live)),
        Phase("runtime", "while the process sets up", _after_stage1_items(plan, live)),
        Phase("process", "sets itself up and execs", _process_items(plan, live)))


def explain(plan: ExecPlan, live: ExecLive | None = None) -> str:
    phases = live.phases if live is not None else build(plan, ExecLive())
    lines = [f"plan for exec of {plan.setup.args!r}"]
    for phase in phases.all():
        lines += phase.explain()
    return "\n".join(lines)


def _fork_stage1(plan: ExecPlan, live: ExecLive) -> None:
    """Stage-1 is born in the container's cgroup2 directory where the kernel lets it
    (``Manager.fork_inside``), with the initial CPU mask, which the child inherits as runc's
    start thread passes it on; the runtime's own mask is restored."""
    manager, initial = plan.manager, plan.initial
    saved = os.sched_getaffinity(0) if initial is not None else None
    if initial is not None:
        affinity.apply(0, initial)
    pid, in_v2 = -1, False
    try:
        pid, in_v2 = manager.fork_inside() if manager is not None else (os.fork(), False)
    finally:
        if pid != 0 and saved is not None:  # the child keeps the initial mask
            os.sched_setaffinity(0, saved)
    if pid == 0:
        live.in_cgroup2 = in_v2
        live.parent.channel.close()
        run_child("stage-1", live.phases.stage1, live.child_end, plan.options.timings,
                  plan.options.debug)
        os._exit(0)
    live.stage1_pid = pid
    if manager is not None and manager.has_v2():
        log.current.debug(f"exec: stage-1 {pid} " + (
            "born in its cgroup (clone3 CLONE_INTO_CGROUP)" if in_v2 else
            "from a plain fork (clone3 CLONE_INTO_CGROUP refused): it joins cgroup.procs"))
    if manager is not None:
        manager.adopt(pid)
    live.child_end.close()
    namespaces.close_all(live.ns_fds)
    if live.root_fd is not None:
        os.close(live.root_fd)
    if live.console_sock is not None:
        live.console_sock.close()


def _stage1_items(plan: ExecPlan, live: ExecLive) -> list[Step | Note]:
    items: list[Step | Note] = []
    manager = plan.manager
    if manager is not None:  # first, with the host's credentials (see create)
        items += [Step("join the container's cgroups", lambda: manager.join(live.in_cgroup2),
                       "cgroups: join"),
                  Step("sched_setaffinity: the final CPU mask, now inside the cgroup",
                       partial(affinity.after_cgroup_join, 0, plan.initial, plan.final),
                       "cgroups: join")]
    label = "namespaces: join"
    items.append(Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label))
    adj = plan.process.get("oomScoreAdj")
    if adj is not None:  # the host's procfs, inherited
        items.append(Step(f"write {adj} to /proc/self/oom_score_adj",
                          partial(procfs.write, "self/oom_score_adj", str(adj)), label))
    seccomp = plan.setup.seccomp
    if seccomp is not None and seccomp.notify:
        items.append(Step(f"connect to the seccomp listener {seccomp.listener_path} (a host "
                          "path)", seccomp.connect_listener, label))
    has_user = any(kind == "user" for kind, _ in plan.joins)
    items += join_steps(plan.joins, live, [], has_user, label)
    if plan.shared_root:
        items.append(Step("chroot to the container's root (init's: it has no mount namespace "
                          "of its own)", partial(_chroot, live), label))
    return [*items,
            Step('sync: wait for {"go"}', lambda: live.stage1.wait_for_go(),
                 "sync wait: go (runtime moves us into the cgroups)"),
            Step("fork the process", partial(_fork_process, plan, live), "fork the process"),
            Step('sync: {"pid": <process>} to the runtime', lambda: live.stage1.report_pid(
                live.pid), "sync: pid")]


def _chroot(live: ExecLive) -> None:
    assert live.root_fd is not None
    os.fchdir(live.root_fd)
    os.chroot(".")
    os.close(live.root_fd)


def _fork_process(plan: ExecPlan, live: ExecLive) -> None:
    pid = os.fork()
    if pid == 0:
        run_child("process", live.phases.process, live.child_end, plan.options.timings,
                  plan.options.debug)
        os._exit(1)  # (the last step execs)
    live.pid = pid


def _after_stage1_items(plan: ExecPlan, live: ExecLive) -> list[Step | Note]:
    label = "sync wait: stage-1 joins the namespaces, forks the process"
    items: list[Step | Note] = [
        Step('sync: {"go"} to stage-1', lambda: live.parent.go(), label),
        Step('sync: wait for {"pid"} (the process\'s, as the host sees it)',
             partial(_wait_for_pid, live), label),
        Step("reap stage-1 (it exited once it sent the pid)", partial(_reap_stage1, live),
             "reap stage-1")]
    if plan.options.pidfd_socket:
        items.append(Step("send the process's pidfd to --pidfd-socket",
                          partial(_send_pidfd, live), "pidfd"))
    items.append(Step("sync: wait for end-of-file (the process exec'd) or its error",
                      lambda: live.parent.wait_for_exec(), "sync wait: exec"))
    if plan.terminal and not plan.options.console_socket:
        items.append(Step("receive the pty master from the process",
                          partial(_receive_pty, live), "console"))
    return items


def _wait_for_pid(live: ExecLive) -> None:
    live.pid = live.parent.wait_for_pid()


def _reap_stage1(live: ExecLive) -> None:
    reap(live.stage1_pid)
    live.stage1_pid = 0


def _send_pidfd(live: ExecLive) -> None:
    assert live.pidfd_sock is not None
    try:
        pidfd.send(live.pidfd_sock, live.pid, "setns")
    except OcirtError:
        kill(live.pid)
        raise


def _receive_pty(live: ExecLive) -> None:
    from ocirt.linux import console

    assert live.relay_end is not None
    live.master = console.recv_fd(live.relay_end)


def kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _process_items(plan: ExecPlan, live: ExecLive) -> list[Step | Note]:
    label = "close fds, terminal"
    items: list[Step | Note] = [
        Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label),
        Step("close every fd but stdio, the sync channel, the console socket and "
             "--preserve-fds", partial(_close_fds, plan, live), label)]
    if plan.terminal:
        items += [Step("setsid", new_session, label),
                  Step("the console: a new pty, its master sent to the console socket, the "
                       "slave as stdio and controlling terminal", partial(_take_console, plan,
                                                                          live), label)]
    items += labelled([*plan.setup.personality, *plan.setup.steps()], "process")
    if plan.options.timings is not None:
        items.append(Step("sync: --timings rows to the runtime (just before the exec)",
                          lambda: live.process.send_timings(), "sync: timings"))
    return items + labelled(plan.setup.start_steps(), "execve")


def _close_fds(plan: ExecPlan, live: ExecLive) -> None:
    keep = {live.child_end.fileno()}
    if live.console_sock is not None:
        keep.add(live.console_sock.fileno())
    close_extra_fds(plan.setup.inherited, keep)


def _take_console(plan: ExecPlan, live: ExecLive) -> None:
    from ocirt.linux import console  # loaded by exec_process, before the setns

    assert live.console_sock is not None
    console.take_terminal(live.console_sock, plan.process.get("consoleSize"), console=False)
