"""exec: run a new process inside a running container.

The same three-process dance as ``create``, without building anything: stage-1 joins the
container's cgroups and namespaces with create's joining steps and forks the process, which
sets itself up and execs. Their phases are in ``exec_phases``, the messages in ``protocol``
(docs/architecture.md draws them).

The process gets the capabilities, no_new_privs, rlimits and user that its process object
names (the container's own process object, changed by the command line, or ``--process``).
With ``--detach`` it is left to the caller's subreaper, as ``create`` leaves init; otherwise the
runtime waits and returns its exit status.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import copy
import json
import os

from ocirt import OCI_VERSION
from ocirt.container import exec_phases, protocol
from ocirt.container.exec_phases import ExecLive, ExecPlan
from ocirt.container.state import Status, Store
from ocirt.container.statefiles import write_pid_file
from ocirt.container.sync import Channel, lapper, reap
from ocirt.errors import ConfigError, OcirtError, StateError, SyscallError, errno_text
from ocirt.linux import affinity, cgroups, namespaces, pidfd
from ocirt.linux.cgroups import placement
from ocirt.linux.process import ProcessSetup
from ocirt.linux.process_attrs import memory_policy_steps, personality_steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.timings import Timings


class ExecOptions:
    def __init__(self, detach: bool = False, pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0,
                 debug: bool = False, timings: Timings | None = None,
                 pidfd_socket: str | None = None, cgroups: list[str] | None = None,
                 explain: bool = False) -> None:
        self.detach, self.pid_file, self.console_socket = detach, pid_file, console_socket
        self.preserve_fds, self.debug = preserve_fds, debug
        self.timings = timings  # --timings (see ocirt.timings)
        self.pidfd_socket = pidfd_socket
        self.cgroups = cgroups or []  # --cgroup: sub-cgroups (ocirt.linux.cgroups.placement)
        self.explain = explain  # --explain: print the phases, run nothing


def process_from_file(path: str) -> dict[str, Any]:
    """A process object from ``--process FILE``, checked against the schema."""
    from ocirt.config.validate import validate_config

    try:
        with open(path, "rb") as handle:
            process = json.loads(handle.read())
    except OSError as err:
        raise ConfigError("cannot read", errno_text(err), path) from err
    except ValueError as err:
        raise ConfigError("not JSON", str(err), path) from err
    validate_config({"ociVersion": OCI_VERSION, "process": process}, path)
    result: dict[str, Any] = process
    return result


def process_from_args(config: dict[str, Any], args: list[str], tty: bool, cwd: str | None,
                      env: list[str], user: str | None, additional_gids: list[str],
                      caps: list[str], no_new_privs: bool) -> dict[str, Any]:
    """The container's own process object, changed as runc's exec flags say."""
    if not args:
        raise OcirtError("exec needs a command (or --process FILE)")
    process: dict[str, Any] = copy.deepcopy(config.get("process") or {})
    process["args"] = args
    process["terminal"] = tty
    if cwd:
        process["cwd"] = cwd
    process["env"] = list(process.get("env", [])) + env
    if user:
        uid, _, gid = user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise OcirtError(f"--user {user!r}: expected UID[:GID] as numbers") from None
    if additional_gids:
        process.setdefault("user", {})["additionalGids"] = [int(g) for g in additional_gids]
    if caps:
        sets = process.setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted"):
            sets[name] = list(sets.get(name, [])) + caps
    if no_new_privs:
        process["noNewPrivileges"] = True
    return process


def exec_process(store: Store, container_id: str, process: dict[str, Any],
                 options: ExecOptions) -> int:
    timings = options.timings
    lap = lapper(timings)
    terminal = bool(process.get("terminal"))
    if terminal or options.console_socket:
        # Only then (termios: ~0.5 ms), and before the fork: the process needs it after setns.
        from ocirt.linux import console

        console.check_terminal(terminal, options.console_socket, options.detach)
    with store.lock(container_id):
        state = store.load(container_id)
        # The container's seccomp filter applies to every process in it.
        linux = state.config.get("linux") or {}
        lap("lock, state.json")
        setup = ProcessSetup(process, options.preserve_fds, seccomp=linux.get("seccomp"))
        # as runc: exec'd processes get the container's personality (and memory policy) too
        setup.personality = personality_steps(linux) + memory_policy_steps(linux)
        status = state.current_status()
        if status not in (Status.CREATED, Status.RUNNING):
            raise StateError(f"cannot exec in a container that is {status.value}")
        initial, final = _exec_affinity(process, state.config)
        manager = cgroups.load(state.cgroup) if state.cgroup else None
        if manager is None and options.cgroups:
            raise OcirtError("exec --cgroup: the container has no cgroup")
        dirs = (placement.exec_dirs(manager, placement.sub_paths(options.cgroups))
                if manager is not None else None)
        live = ExecLive()
        live.pidfd_sock = pidfd.connect(options.pidfd_socket) if options.pidfd_socket else None
        live.ns_fds = _container_namespaces(state.pid, state.config)
        live.root_fd = _shared_root(state.pid, state.config)
        if terminal:
            if options.console_socket:
                live.console_sock = console.connect(options.console_socket)
            else:
                live.relay_end, live.console_sock = socket.socketpair()
        channel, live.child_end = Channel.pair()
        live.parent = protocol.ExecParent(channel, timings)
        live.stage1 = protocol.Stage1(live.child_end, timings, "exec stage-1")
        live.process = protocol.Process(live.child_end, timings)
        if manager is not None and dirs is not None:
            manager.dirs = dirs  # exec --cgroup: the sub-cgroups to join
        joins = [(kind, f"/proc/{state.pid}/ns/{namespaces.NAMESPACES[kind][1]}")
                 for kind, _ in live.ns_fds]
        plan = ExecPlan(setup, process, options, manager, (initial, final), joins,
                        live.root_fd is not None)
        live.phases = exec_phases.build(plan, live)
        lap("plan: process, seccomp; namespace fds")
        if options.explain:
            print(exec_phases.explain(plan, live))
            _close(live, channel)
            live.child_end.close()
            namespaces.close_all(live.ns_fds)
            if live.root_fd is not None:
                os.close(live.root_fd)
            return 0
        try:
            live.phases.runtime.run(timings)  # fork stage-1
            live.phases.after_stage1.run(timings)  # until the process has exec'd
        except BaseException:
            if live.stage1_pid and not live.pid:  # it still waits for "go" (a failed cgroup
                exec_phases.kill(live.stage1_pid)  # join or CPU mask)
            if live.stage1_pid:
                reap(live.stage1_pid)
            if live.pid:
                reap(live.pid)
            raise
        finally:
            _close(live, channel)
        pid, master = live.pid, live.master
        if options.pid_file:
            write_pid_file(options.pid_file, pid)
    lap("pid file, unlock")
    if options.detach:
        return 0
    from ocirt.container.run import wait_for_exit

    try:
        return wait_for_exit(pid, master)
    finally:
        if master is not None:
            os.close(master)
        lap("the process runs, exits")


def _close(live: ExecLive, channel: Channel) -> None:
    channel.close()
    for sock in (live.relay_end, live.pidfd_sock):
        if sock is not None:
            sock.close()


def _exec_affinity(process: dict[str, Any], config: dict[str, Any]
                   ) -> tuple[affinity.Mask | None, affinity.Mask | None]:
    """The exec'd process's execCPUAffinity, else the container's (as runc: --process FILE
    without one keeps the container's)."""
    if process.get("execCPUAffinity"):
        return affinity.exec_masks(process)
    return affinity.exec_masks(config.get("process") or {})


def _container_namespaces(pid: int, config: dict[str, Any]) -> list[tuple[str, int]]:
    """Open the container's namespaces, in join order, skipping those we already share."""
    kinds = {entry["type"] for entry in (config.get("linux") or {}).get("namespaces", [])}
    opened: list[tuple[str, int]] = []
    for kind in namespaces.JOIN_ORDER:
        if kind not in kinds:
            continue
        name = namespaces.NAMESPACES[kind][1]
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            opened.append((kind, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
        except OSError as err:
            namespaces.close_all(opened)
            raise SyscallError.of(f"open({theirs!r}, O_RDONLY)", err,
                                  "exec: the container's namespace") from err
    return opened


def _shared_root(pid: int, config: dict[str, Any]) -> int | None:
    """For a container without a mount namespace of its own, its root (init chroot'ed there):
    joining namespaces would leave the process at the runtime's root."""
    if any(entry["type"] == "mount"
           for entry in (config.get("linux") or {}).get("namespaces", [])):
        return None
    try:
        return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise SyscallError.of(f"open('/proc/{pid}/root', O_PATH)", err,
                              "exec: the container's root") from err
