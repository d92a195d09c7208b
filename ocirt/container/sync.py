"""The sync channel the runtime and its children speak on, and what children do on failure.

Messages are JSON objects, one per SOCK_SEQPACKET packet on a socketpair made by the runtime
before it forks. Which messages exist, who sends them and when is ``ocirt.container.protocol``;
docs/architecture.md ("The parent/child protocol") draws them as a diagram.

The start socket is made and bound by the parent before it forks, in the state directory (mode
0700), so only root can start a container. Stage-1 is the calling process's grandchild no longer
than it takes to fork init: init is re-parented to the nearest subreaper (the manager that ran
``ocirt create``, such as conmon or containerd-shim), which therefore reaps it and collects its
exit status.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import os

from ocirt import jsonfast
from ocirt.errors import OcirtError, SyscallError, access_hint, errno_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.timings import Timings

_MAX_MESSAGE = 65536


class Channel:
    """One end of a SOCK_SEQPACKET socket carrying JSON messages."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Messages that came before the one awaited: stage-1 and init share the channel, and a
        # busy machine can hold stage-1 between its fork of init and its {"pid"} for as long as
        # init takes to get {"ready"} out.
        self.early: list[dict[str, Any]] = []

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(parent), cls(child)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: str, **fields: Any) -> None:
        fields["type"] = kind
        try:
            self.sock.send(jsonfast.dumps(fields).encode())
        except OSError as err:
            raise SyscallError.of(f"send({kind!r})", err, "sync") from err

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end-of-file (the other side closed or exec'd)."""
        try:
            data = self.sock.recv(_MAX_MESSAGE)
        except InterruptedError:
            return self.recv()
        except ConnectionResetError:
            # The other side exited with a message of ours unread (a stage-1 that failed before
            # it read "go"): the kernel reports that first, once; what it sent is still queued.
            return self.recv()
        if not data:
            return None
        message: dict[str, Any] = jsonfast.loads(data)
        return message

    def expect(self, kind: str, what: str, later: tuple[str, ...] = ()) -> dict[str, Any]:
        """Wait for ``kind``; an error message from the other side becomes our error. Messages
        of the kinds in ``later`` that come first are kept for the ``expect`` that wants them."""
        for index, early in enumerate(self.early):
            if early["type"] == kind:
                return self.early.pop(index)
        while True:
            message = self.recv()
            if message is None:
                raise OcirtError(f"{what}: the container's process exited before it was set up")
            if message["type"] == "error":
                raise OcirtError(message["msg"])
            if message["type"] == kind:
                return message
            if message["type"] not in later:
                raise OcirtError(f"{what}: unexpected sync message {message['type']!r}")
            self.early.append(message)

    def close(self) -> None:
        self.sock.close()


def child_failed(channel: Channel | None, err: BaseException, debug: bool) -> None:
    """In a child: report ``err`` to the parent and exit without running Python cleanup."""
    try:
        message = str(err) if isinstance(err, OcirtError) else f"{type(err).__name__}: {err}"
        if isinstance(err, OSError) and not isinstance(err, OcirtError):
            # one line that names the errno, the target and (for a denial) what to do
            message = (f"setting up the container: {errno_text(err)} on "
                       f"{err.filename or '(no path)'}{access_hint(err)}")
        if debug:
            import traceback

            message += "\n" + "".join(traceback.format_exception(err))
        if channel is not None:
            channel.send("error", msg=message)
    finally:
        os._exit(1)


def _no_lap(phase: str) -> None:
    pass


def lapper(timings: Timings | None) -> Callable[[str], None]:
    """``timings.lap`` with ``--timings``, else a function that does nothing."""
    return _no_lap if timings is None else timings.lap


def reap(pid: int) -> int:
    """Wait for our child ``pid``; its wait status (0 if it is not, or no longer, ours)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
