"""exec: run a new process inside a running container.

The same three-process dance as ``create`` (see ``sync``), without building anything:

  ocirt exec (parent)          stage-1 (child)                      process (grandchild)
  fork ----------------------> join the container's cgroups (born in the v2 one: clone3)
                               setns into the container's namespaces, user first, mount last
                               (no mount namespace: chroot to the container's root)
  {"go"} --------------------> fork ------------------------------> (in the container's pid ns)
          <------------------- {"pid": N}; exits                    terminal, rlimits, no_new_privs,
                                                                    capabilities, user, cwd,
                                                                    lookup, seccomp, execve
          <-------------------------------------------------------- EOF (exec'd) | {"error": msg}

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

from ocirt import OCI_VERSION, log
from ocirt.container.state import Status, Store, write_pid_file
from ocirt.container.sync import Channel, child_failed, lapper, reap, run_steps
from ocirt.errors import ConfigError, OcirtError, StateError, SyscallError, errno_text
from ocirt.linux import affinity, cgroups, namespaces, pidfd, procfs
from ocirt.linux import syscalls as sc
from ocirt.linux.cgroups import placement
from ocirt.linux.process import ProcessSetup, close_extra_fds
from ocirt.linux.process_attrs import memory_policy_steps, personality_steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.timings import Timings


class ExecOptions:
    def __init__(self, detach: bool = False, pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0,
                 debug: bool = False, timings: Timings | None = None,
                 pidfd_socket: str | None = None, cgroups: list[str] | None = None
                 ) -> None:
        self.detach, self.pid_file, self.console_socket = detach, pid_file, console_socket
        self.preserve_fds, self.debug = preserve_fds, debug
        self.timings = timings  # --timings (see ocirt.timings)
        self.pidfd_socket = pidfd_socket
        self.cgroups = cgroups or []  # --cgroup: sub-cgroups (ocirt.linux.cgroups.placement)


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
    sc.prctl(sc.PR_SET_DUMPABLE, 0)
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
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
        pidfd_sock = pidfd.connect(options.pidfd_socket) if options.pidfd_socket else None
        ns_fds = _container_namespaces(state.pid, state.config)
        root_fd = _shared_root(state.pid, state.config)
        console_sock: socket.socket | None = None
        relay_end: socket.socket | None = None
        if terminal:
            if options.console_socket:
                console_sock = console.connect(options.console_socket)
            else:
                relay_end, console_sock = socket.socketpair()
        channel, child_end = Channel.pair()
        lap("plan: process, seccomp; namespace fds")
        if manager is not None and dirs is not None:
            manager.dirs = dirs  # exec --cgroup: the sub-cgroups to join
        stage1_pid, in_v2 = _fork_with_mask(manager, initial)
        if stage1_pid and manager is not None and manager.has_v2():
            _debug(f"exec: stage-1 {stage1_pid} " + (
                "born in its cgroup (clone3 CLONE_INTO_CGROUP)" if in_v2 else
                "from a plain fork (clone3 CLONE_INTO_CGROUP refused): it joins cgroup.procs"))
        if stage1_pid == 0:
            channel.close()
            if manager is not None:  # first, with the host's credentials (see create)
                _join_cgroups(manager, in_v2, child_end, options.debug, initial, final)
            _stage1(setup, child_end, ns_fds, root_fd, console_sock, process, options.debug,
                    timings)
        if manager is not None:
            manager.adopt(stage1_pid)
        child_end.close()
        namespaces.close_all(ns_fds)
        if root_fd is not None:
            os.close(root_fd)
        if console_sock is not None:
            console_sock.close()
        pid = 0
        lap("fork stage-1")
        try:
            try:
                channel.send("go")
            except OcirtError:
                pass  # stage-1 failed first (a cgroup join, the CPU mask): its error follows
            # the process's --timings message can overtake stage-1's {"pid"}
            message = channel.expect("pid", "exec: forking the process", later=("timings",))
            pid = message["pid"]
            lap("sync wait: stage-1 joins the namespaces, forks the process")
            reap(stage1_pid)
            lap("reap stage-1")
            if pidfd_sock is not None:
                try:
                    pidfd.send(pidfd_sock, pid, "setns")
                except OcirtError:
                    _kill(pid)
                    raise
            # end-of-file once it has exec'd
            reply = channel.early.pop(0) if channel.early else channel.recv()
            if timings is not None:
                timings.merge(message.get("timings"))
                if reply is not None and reply["type"] == "timings":
                    lap("sync wait: the process sets itself up")
                    timings.merge(reply.get("rows"))
                    reply = channel.recv()
                    lap("sync wait: the process execs (seccomp load, execve)")
            if reply is not None and reply.get("type") == "error":
                raise OcirtError(reply["msg"])
            master = console.recv_fd(relay_end) if relay_end is not None else None
        except BaseException:
            if not pid:  # stage-1 still waits for "go" (a failed cgroup join or CPU mask)
                _kill(stage1_pid)
            reap(stage1_pid)
            if pid:
                reap(pid)
            raise
        finally:
            channel.close()
            if relay_end is not None:
                relay_end.close()
            if pidfd_sock is not None:
                pidfd_sock.close()
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


def _exec_affinity(process: dict[str, Any], config: dict[str, Any]
                   ) -> tuple[affinity.Mask | None, affinity.Mask | None]:
    """The exec'd process's execCPUAffinity, else the container's (as runc: --process FILE
    without one keeps the container's)."""
    if process.get("execCPUAffinity"):
        return affinity.exec_masks(process)
    return affinity.exec_masks(config.get("process") or {})


def _fork_with_mask(manager: cgroups.CgroupDriver | None, initial: affinity.Mask | None
                    ) -> tuple[int, bool]:
    """Fork stage-1 (born in the container's cgroup2 directory where the kernel lets it:
    ``Manager.fork_inside``) with the initial CPU mask, which the child inherits as runc's
    start thread passes it on; the runtime's own mask is restored. (pid, born in cgroup2)."""
    saved = os.sched_getaffinity(0) if initial is not None else None
    if initial is not None:
        affinity.apply(0, initial)
    pid, in_v2 = -1, False
    try:
        pid, in_v2 = manager.fork_inside() if manager is not None else (os.fork(), False)
    finally:
        if pid != 0 and saved is not None:  # the child keeps the initial mask
            os.sched_setaffinity(0, saved)
    return pid, in_v2


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _debug(message: str) -> None:
    log.current.debug(message)


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


def _join_cgroups(manager: cgroups.CgroupDriver, in_v2: bool, channel: Channel, debug: bool,
                  initial: affinity.Mask | None, final: affinity.Mask | None) -> None:
    try:
        manager.join(in_v2)
        affinity.after_cgroup_join(0, initial, final)  # now inside: the final CPU mask
    except BaseException as err:
        child_failed(channel, err, debug)


def _stage1(setup: ProcessSetup, channel: Channel, ns_fds: list[tuple[str, int]],
            root_fd: int | None, console_sock: socket.socket | None,
            process: dict[str, Any], debug: bool, timings: Timings | None) -> None:
    if timings is not None:
        timings.forked("stage-1")
    lap = lapper(timings)
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        if process.get("oomScoreAdj") is not None:  # the host's procfs, inherited
            procfs.write("self/oom_score_adj", str(process["oomScoreAdj"]))
        if setup.seccomp is not None:
            setup.seccomp.connect_listener()  # listenerPath is a host path
        namespaces.join(ns_fds, only={"user"})
        if any(kind == "user" for kind, _ in ns_fds):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        namespaces.join([(k, fd) for k, fd in ns_fds if k != "user"])
        namespaces.close_all(ns_fds)
        if root_fd is not None:
            os.fchdir(root_fd)
            os.chroot(".")
            os.close(root_fd)
        lap("namespaces: join")
        channel.expect("go", "exec stage-1")
        lap("sync wait: go (runtime moves us into the cgroups)")
        pid = os.fork()
        if pid == 0:
            _process(setup, channel, console_sock, process, debug, timings)
        lap("fork the process")
        if timings is None:
            channel.send("pid", pid=pid)
        else:
            channel.send("pid", pid=pid, timings=timings.take())
    except BaseException as err:
        child_failed(channel, err, debug)
    os._exit(0)


def _process(setup: ProcessSetup, channel: Channel, console_sock: socket.socket | None,
             process: dict[str, Any], debug: bool, timings: Timings | None) -> None:
    if timings is not None:
        timings.forked("process")
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        keep = {channel.fileno()}
        if console_sock is not None:
            keep.add(console_sock.fileno())
        close_extra_fds(setup.inherited, keep)
        if console_sock is not None:
            from ocirt.linux import console  # loaded by exec_process, before the setns

            os.setsid()
            console.take_terminal(console_sock, process.get("consoleSize"), console=False)
        if timings is not None:
            timings.lap("close fds, terminal")
        run_steps(setup.personality + setup.steps(), timings, "process")
        if timings is not None:
            channel.send("timings", rows=timings.take())
        setup.execute()
    except BaseException as err:
        child_failed(channel, err, debug)
