"""Init's two phases in ``create``: before it reports ready, and on start (see ``phases``)."""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.container import hooks
from ocirt.container.blocks import hooks_text, labelled, new_session, not_dumpable
from ocirt.container.init import exit_on_signals, state_document
from ocirt.errors import OcirtError
from ocirt.linux import netdevices, procfs
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Note, Step
from ocirt.linux.process import close_extra_fds

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.container.phases import Live
    from ocirt.container.plan import ContainerPlan


def init_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    label = "session keyring, signals, close fds"
    items: list[Step | Note] = [
        Step("prctl(PR_SET_DUMPABLE, 0)", not_dumpable, label),
        Step("SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2: exit (PID 1 ignores a signal "
             "it has no handler for)", exit_on_signals, label),
        Step("setsid", new_session, label)]
    if not plan.options.no_new_keyring:
        name = f"_ses.{plan.container_id}"
        items.append(Step(f"join a new session keyring {name}",
                          partial(_join_keyring, name), label))
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
        items.append(Step("bring up lo", _loopback_up, label))
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
        items.append(Step(hooks_text(plan.config, "createContainer"), lambda: hooks.run_hooks(
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


def on_start_items(plan: ContainerPlan, live: Live) -> list[Step | Note]:
    items: list[Step | Note] = []
    if hooks.hooks_of(plan.config, "startContainer"):
        items.append(Step(hooks_text(plan.config, "startContainer"), lambda: hooks.run_hooks(
            plan.config, "startContainer", state_document(plan, "created")),
            "startContainer hooks"))
    if plan.options.timings is not None:
        items.append(Step('sync: --timings rows to run in the foreground (just before the '
                          "exec)", lambda: live.init.send_timings(), "sync: timings"))
    if plan.process is None:  # `start` refuses before it gets here: nothing to run
        return [*items, Step("refuse: config.json has no process to start", _no_process)]
    return items + labelled(plan.process.start_steps(), "execve")


def _no_process() -> None:
    raise OcirtError("config.json has no process to start")


def _join_keyring(name: str) -> None:
    sc.join_session_keyring(name)


def _loopback_up() -> None:
    sc.loopback_up()
