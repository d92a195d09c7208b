"""start: let a created container's init exec the user's program; returns once it has."""

from __future__ import annotations

import os
import socket

from ocirt.container.state import Status, Store
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
        os.unlink(path)
        if reply is not None and reply.get("type") == "error":
            state.status = Status.STOPPED
            store.save(state)
            raise OcirtError(reply["msg"])
        state.status = Status.RUNNING
        store.save(state)
