"""start: let a created container's init exec the user's program; returns once it has,
after the poststart hooks."""

from __future__ import annotations

import os
import signal
import socket

from ocirt.container import hooks
from ocirt.container.state import ContainerState, Status, Store
from ocirt.container.sync import Channel
from ocirt.errors import OcirtError, StateError


def start(store: Store, container_id: str) -> None:
    with store.lock(container_id):
        state = store.load(container_id)
        status = state.current_status()
        if not status.can_start:
            raise StateError(f"cannot start a container that is {status.value}")
        path = store.path(container_id, "start.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
        except OSError as err:
            sock.close()
            raise OcirtError(f"cannot reach the container's init ({path}): {err.strerror}"
                             ) from err
        channel = Channel(sock)
        try:
            channel.send("start")
            reply = channel.recv()  # end-of-file: the exec happened (the socket is CLOEXEC)
        finally:
            channel.close()
        started(store, state, reply)


def started(store: Store, state: ContainerState, reply: dict[str, object] | None) -> None:
    """After init answered ``start``: record the outcome and run the poststart hooks.

    A poststart hook that fails stops the container and fails the operation (runtime.md,
    lifecycle step 9).
    """
    try:
        os.unlink(store.path(state.id, "start.sock"))
    except FileNotFoundError:
        pass
    if reply is not None and reply.get("type") == "error":
        state.status = Status.STOPPED
        store.save(state)
        raise OcirtError(str(reply["msg"]))
    state.status = Status.RUNNING
    store.save(state)
    try:
        hooks.run_hooks(state.config, "poststart", state.hook_document(Status.RUNNING))
    except hooks.HookError:
        try:
            os.kill(state.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
