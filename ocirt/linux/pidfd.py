"""``--pidfd-socket`` (runc 1.2): the container process's pidfd, handed to a manager.

Like the console socket: the runtime connects to the unix socket at PATH before it forks, and
sends one message whose payload names the kind of process (``standard``: a container's init,
``setns``: an exec'd process, as runc names them) with a pidfd (pidfd_open(2)) attached as
SCM_RIGHTS. The manager can then signal or wait for exactly that process, even after the
runtime exited and whatever happens to the pid number. The pid is stable while it is sent:
the process is the runtime's child (or its subreaper's) and not yet reaped.
"""

from __future__ import annotations

import os

from ocirt.errors import SyscallError
from ocirt.linux import unixsock

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket as socket


def connect(path: str) -> socket.socket:
    """The pidfd socket (``--pidfd-socket``), connected."""
    return unixsock.connect(path, "pidfd socket")


def send(sock: socket.socket, pid: int, kind: str) -> None:
    """pidfd_open ``pid`` and send it, named ``kind``; the runtime's copy is closed."""
    try:
        fd = os.pidfd_open(pid)
    except OSError as err:
        raise SyscallError.of(f"pidfd_open({pid})", err, "pidfd socket") from err
    try:
        unixsock.send_fd(sock, fd, kind.encode(), "pidfd socket", f"pidfd of {pid}")
    finally:
        os.close(fd)
