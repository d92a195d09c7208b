"""run: create and start in one go; in the foreground, wait and return the exit status.

The foreground runtime is a subreaper, so the container's init becomes its child once stage-1
exits; it forwards the signals a terminal sends to init, and when init exits it deletes the
container and returns init's exit status (128+N if a signal N killed it), as runc does.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from ocirt.container import create as creating
from ocirt.container import delete as deleting
from ocirt.container.plan import ContainerPlan
from ocirt.container.start import started
from ocirt.container.state import Status, Store
from ocirt.errors import OcirtError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)


def run(store: Store, plan: ContainerPlan, detach: bool = False, keep: bool = False) -> int:
    created = creating.create(store, plan)
    state = created.state
    try:
        if detach:
            created.channel.close()
            created.lock.release()
            from ocirt.container.start import start

            start(store, state.id)
            return 0
        created.channel.send("start")
        reply = created.channel.recv()  # end-of-file once the program is exec'd
        created.channel.close()
        try:
            started(store, state, reply)
        except OcirtError:
            deleting.stop(state)
            deleting.destroy(store, state)
            raise
        created.lock.release()
        status = wait_forwarding(state.pid)
    finally:
        created.lock.release()
    with store.lock(state.id):
        state.status = Status.STOPPED
        if keep:
            store.save(state)
        else:
            deleting.stop(state)
            deleting.destroy(store, state)
    return status


def wait_forwarding(pid: int) -> int:
    def forward(signum: int, frame: FrameType | None) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
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
