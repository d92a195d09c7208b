"""The parent/child protocol: its messages, defined once, and one object per role speaking it.

The messages travel on the sync ``Channel`` (``ocirt.container.sync``). Each exchange is listed
below in the order it happens, with who sends it and the condition under which it happens;
docs/architecture.md draws the same list as a diagram (a unit test compares the two). The
conditions are decided once, in the plan (``ocirt.container.phases``): both sides run the steps
of the same plan, so they always agree on which exchanges happen.

The roles: ``Parent`` is the runtime in ``create`` (and ``run``), ``Stage1`` the child that
enters the namespaces (for ``create`` and ``exec``; ``create`` has none where the runtime
clones init itself: ``CREATE_DIRECT``), ``Init`` the container's init, ``Starter``
the runtime in ``start`` (or ``run``), ``ExecParent`` the runtime in ``exec`` and ``Process``
the process ``exec`` starts.
"""

from __future__ import annotations

import _socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import select

from ocirt.container.sync import Channel
from ocirt.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket as socket
    from typing import Any

    from ocirt.timings import Timings

# The messages (plain strings: no enum on the hot path).
USERNS = "userns"  # stage-1 has unshared its user namespace: write its id maps
MAPPED = "mapped"  # the id maps are written
NETNS = "netns"  # stage-1 has its network namespace: move the devices into it
TIMENS = "timens"  # stage-1 has its time namespace: write its clock offsets
OFFSETS = "offsets"  # the clock offsets are written
GO = "go"  # stage-1 may go on (it is in its cgroups, its namespaces are set up)
PID = "pid"  # stage-1 forked init (or the exec'd process): its pid as the host sees it
HOOKS = "hooks"  # init is ready for the prestart and createRuntime hooks
HOOKS_DONE = "hooks-done"  # they ran
READY = "ready"  # init has set the container up and waits for start
START = "start"  # exec the program
TIMINGS = "timings"  # --timings: a child's rows, sent just before its last exec
ERROR = "error"  # a child failed: {"msg": ...}; every expecting side raises it

# (message, sender, receiver, when): the exchanges of create, start and exec, in order.
CREATE = (
    (USERNS, "stage-1", "runtime", "a new user namespace"),
    (MAPPED, "runtime", "stage-1", "a new user namespace"),
    (NETNS, "stage-1", "runtime", "linux.netDevices"),
    (TIMENS, "stage-1", "runtime", "linux.timeOffsets"),
    (OFFSETS, "runtime", "stage-1", "linux.timeOffsets"),
    (GO, "runtime", "stage-1", "always"),
    (PID, "stage-1", "runtime", "always"),
    (HOOKS, "init", "runtime", "prestart or createRuntime hooks"),
    (HOOKS_DONE, "runtime", "init", "prestart or createRuntime hooks"),
    (READY, "init", "runtime", "always"),
)
# create without stage-1 (``ContainerPlan.direct``): the runtime clones init and has its pid
# from clone3, so there is no "go" and no "pid".
CREATE_DIRECT = tuple(row for row in CREATE if row[1] != "stage-1" and row[2] != "stage-1")
START_EXCHANGES = (
    (START, "runtime", "init", "always"),
)
EXEC = (
    (GO, "runtime", "stage-1", "always"),
    (PID, "stage-1", "runtime", "always"),
    (TIMINGS, "process", "runtime", "--timings"),
)


class Parent:
    """The runtime's side of ``create``."""

    def __init__(self, channel: Channel, timings: Timings | None) -> None:
        self.channel, self.timings = channel, timings

    def wait_for_userns(self) -> None:
        self.channel.expect(USERNS, "creating the user namespace")

    def mapping_written(self) -> None:
        self.channel.send(MAPPED)

    def wait_for_netns(self) -> None:
        self.channel.expect(NETNS, "creating the network namespace")

    def wait_for_timens(self) -> None:
        self.channel.expect(TIMENS, "creating the time namespace")

    def offsets_written(self) -> None:
        self.channel.send(OFFSETS)

    def go(self) -> None:
        self.channel.send(GO)

    def wait_for_pid(self) -> int:
        # init's first message can overtake stage-1's (they share the channel)
        message = self.channel.expect(PID, "forking the container's init",
                                      later=(HOOKS, READY))
        self._merge(message)
        pid: int = message["pid"]
        return pid

    def wait_for_hooks(self) -> None:
        self.channel.expect(HOOKS, "setting up the container")

    def hooks_done(self) -> None:
        self.channel.send(HOOKS_DONE)

    def wait_for_ready(self) -> None:
        self._merge(self.channel.expect(READY, "setting up the container"))

    def _merge(self, message: dict[str, Any]) -> None:
        if self.timings is not None:
            self.timings.merge(message.get("timings"))


class Stage1:
    """Stage-1's side, for ``create`` and ``exec``."""

    def __init__(self, channel: Channel, timings: Timings | None, what: str = "stage-1"
                 ) -> None:
        self.channel, self.timings, self.what = channel, timings, what

    def request_mapping(self) -> None:
        self.channel.send(USERNS)
        self.channel.expect(MAPPED, self.what)

    def netns_ready(self) -> None:
        self.channel.send(NETNS)

    def request_time_offsets(self) -> None:
        self.channel.send(TIMENS)
        self.channel.expect(OFFSETS, self.what)

    def wait_for_go(self) -> None:
        self.channel.expect(GO, self.what)

    def report_pid(self, pid: int) -> None:
        if self.timings is None:
            self.channel.send(PID, pid=pid)
        else:
            self.channel.send(PID, pid=pid, timings=self.timings.take())


class Init:
    """Init's side: the hooks, ready, then waiting for start (on the sync channel for a ``run``
    in the foreground, else on the start socket)."""

    def __init__(self, channel: Channel, timings: Timings | None) -> None:
        self.channel, self.timings = channel, timings
        self.starter: Channel | None = None  # who sent start: errors after it go there

    def request_hooks(self) -> None:
        self.channel.send(HOOKS)
        self.channel.expect(HOOKS_DONE, "running createRuntime hooks")

    def ready(self) -> None:
        if self.timings is None:
            self.channel.send(READY)
        else:
            self.channel.send(READY, timings=self.timings.take())

    def wait_for_start(self, listener: socket.socket | None) -> Channel:
        """Block until {"start"} arrives, on the sync channel (run) or the start socket."""
        channel = self.channel
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
                if message["type"] == START:
                    self.starter = channel
                    return channel
            if listener is not None and listener in ready:
                fd, _ = listener._accept()  # type: ignore[attr-defined]  # (socket.accept's core)
                starter = Channel(_socket.socket(fileno=fd))
                message = starter.recv()
                if message is not None and message["type"] == START:
                    self.starter = starter
                    return starter
                starter.close()

    def send_timings(self) -> None:
        """``run`` reads until end-of-file: init's rows go just before the exec."""
        if self.timings is not None and self.starter is self.channel:
            self.channel.send(TIMINGS, rows=self.timings.take())


class Starter:
    """``start``'s side (and ``run``'s in the foreground): start, then the reply (None at
    end-of-file: the program was exec'd), with init's rows first under --timings."""

    def __init__(self, channel: Channel, timings: Timings | None = None) -> None:
        self.channel, self.timings = channel, timings

    def start(self) -> dict[str, Any] | None:
        self.channel.send(START)
        return self.channel.recv()

    def after_timings(self, reply: dict[str, Any] | None) -> dict[str, Any] | None:
        """Past init's rows (merged), to the reply to ``start``."""
        if reply is not None and reply["type"] == TIMINGS:
            if self.timings is not None:
                self.timings.lap("sync wait: start (startContainer hooks)")
                self.timings.merge(reply.get("rows"))
            reply = self.channel.recv()
            if self.timings is not None:
                self.timings.lap("sync wait: init execs (signals, umask, seccomp load, execve)")
        return reply


class ExecParent:
    """The runtime's side of ``exec``."""

    def __init__(self, channel: Channel, timings: Timings | None) -> None:
        self.channel, self.timings = channel, timings

    def go(self) -> None:
        try:
            self.channel.send(GO)
        except OcirtError:
            pass  # stage-1 failed first (a cgroup join, the CPU mask): its error follows

    def wait_for_pid(self) -> int:
        # the process's --timings message can overtake stage-1's {"pid"}
        message = self.channel.expect(PID, "exec: forking the process", later=(TIMINGS,))
        if self.timings is not None:
            self.timings.merge(message.get("timings"))
        pid: int = message["pid"]
        return pid

    def wait_for_exec(self) -> None:
        """Until end-of-file (the process exec'd); its error becomes ours."""
        channel = self.channel
        reply = channel.early.pop(0) if channel.early else channel.recv()
        if self.timings is not None and reply is not None and reply["type"] == TIMINGS:
            self.timings.lap("sync wait: the process sets itself up")
            self.timings.merge(reply.get("rows"))
            reply = channel.recv()
            self.timings.lap("sync wait: the process execs (seccomp load, execve)")
        if reply is not None and reply.get("type") == ERROR:
            raise OcirtError(reply["msg"])


class Process:
    """The exec'd process's side: its rows under --timings, just before its last exec."""

    def __init__(self, channel: Channel, timings: Timings | None) -> None:
        self.channel, self.timings = channel, timings

    def send_timings(self) -> None:
        if self.timings is not None:
            self.channel.send(TIMINGS, rows=self.timings.take())
