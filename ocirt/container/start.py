"""start: let a created container's init exec the user's program; returns once it has,
after the poststart hooks."""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import os

from ocirt.container import hooks
from ocirt.container.protocol import ERROR, Starter
from ocirt.container.state import ContainerState, Status, Store
from ocirt.container.sync import Channel
from ocirt.errors import OcirtError, StateError, SyscallError


def start(store: Store, container_id: str) -> None:
    with store.lock(container_id) as lock:
        state = store.load(container_id)
        status = state.current_status()
        if not status.can_start:
            raise StateError(f"cannot start a container that is {status.value}")
        if state.config.get("process") is None:  # the container stays as it is: created
            raise StateError(f"cannot start container {container_id}: its config.json has no "
                             "process (config.md: process is REQUIRED when start is called)")
        path = store.socket_path(container_id, lock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
        except OSError as err:
            sock.close()
            raise SyscallError.of(f"connect({store.path(container_id, 'start.sock')!r})", err,
                                  "cannot reach the container's init") from err
        channel = Channel(sock)
        try:
            reply = Starter(channel).start()  # end-of-file: the exec happened (CLOEXEC)
        finally:
            channel.close()
        started(store, state, reply)


def started(store: Store, state: ContainerState, reply: dict[str, object] | None) -> None:
    """After init answered ``start``: record the outcome and run the poststart hooks.

    If the program could not start (a startContainer hook or the exec failed), the container
    is stopped and destroyed, poststop hooks included, and the operation fails (runtime.md,
    lifecycle steps 7, 12 and 13). So does a failing poststart hook for a bundle of spec 1.3
    or later (step 9); for an older bundle it is a warning, as its spec said.
    """
    try:
        os.unlink(store.path(state.id, "start.sock"))
    except FileNotFoundError:
        pass
    try:
        if reply is not None and reply.get("type") == ERROR:
            raise OcirtError(str(reply["msg"]))
        state.status = Status.RUNNING
        store.save(state)
        document = state.hook_document(Status.RUNNING)
        if hooks.poststart_failure_stops(state.config):
            hooks.run_hooks(state.config, "poststart", document)
        else:
            hooks.run_hooks_warning(state.config, "poststart", document)
    except OcirtError:
        from ocirt.container import delete

        delete.stop(state)
        delete.destroy(store, state)
        raise
