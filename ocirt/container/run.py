"""run: create and start in one go; in the foreground, wait and return the exit status.

The foreground runtime is a subreaper, so the container's init is its child (cloned by it, or
once stage-1 exits); it forwards the signals it gets to init (or, with a terminal, relays the
user's terminal to the container's pty), and when init exits it deletes the container and
returns init's exit status (128+N if a signal N killed it), as runc does.
"""

from __future__ import annotations

import os

from ocirt.container import create as creating
from ocirt.container import delete as deleting
from ocirt.container.plan import ContainerPlan
from ocirt.container.protocol import Starter
from ocirt.container.start import start, started
from ocirt.container.state import Status, Store
from ocirt.container.sync import lapper
from ocirt.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from types import FrameType
    from typing import Any
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)


def run(store: Store, plan: ContainerPlan, detach: bool = False, keep: bool = False) -> int:
    if plan.process is None:  # refused before anything exists, not after a create
        raise ConfigError("$.process", "is required to run a container (config.md: REQUIRED "
                          "when start is called)", os.path.join(plan.bundle, "config.json"))
    created = creating.create(store, plan, foreground=not detach)
    state = created.state
    timings = plan.options.timings
    lap = lapper(timings)
    originals: dict[int, Any] = {}  # the handlers to put back
    try:
        if detach:
            created.channel.close()
            created.lock.release()
            start(store, state.id)
            lap("start (the program runs; poststart hooks)")
            return 0
        # From the moment the program may run, a signal to us is for it (wait_for_exit then
        # takes over): a SIGTERM while the state is being saved must not end the runtime.
        for signum in FORWARDED:
            if signum != signal.SIGWINCH:
                originals[signum] = signal.signal(signum, _forward_to(state.pid))
        starter = Starter(created.channel, timings)
        reply = starter.start()  # end-of-file once the program is exec'd
        reply = starter.after_timings(reply)  # --timings: init's rows first
        created.channel.close()
        started(store, state, reply)  # on failure the container is already gone
        created.lock.release()
        lap("state.json (running), poststart hooks")
        status = wait_for_exit(state.pid, created.terminal)
        lap("the container's program runs, exits")
    finally:
        for number, handler in originals.items():
            signal.signal(number, handler)
        created.lock.release()
        if created.terminal is not None:
            os.close(created.terminal)
    with store.lock(state.id):
        state.status = Status.STOPPED
        if keep:
            store.save(state)
        else:
            deleting.stop(state)
            deleting.destroy(store, state)
    lap("delete (cgroups, state directory)" if not keep else "state.json (stopped)")
    return status


def _forward_to(pid: int) -> Callable[[int, FrameType | None], None]:
    def forward(signum: int, frame: FrameType | None) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return forward


def wait_for_exit(pid: int, terminal: int | None = None) -> int:
    """Wait for our child ``pid``, forwarding signals (or relaying ``terminal``)."""
    relay = None
    if terminal is not None:
        from ocirt.linux.console import Relay

        relay = Relay(terminal)

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGWINCH and relay is not None:
            relay.resize()
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        if relay is not None:
            pidfd = os.pidfd_open(pid)
            try:
                with relay:
                    relay.pump(pidfd)
            finally:
                os.close(pidfd)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
