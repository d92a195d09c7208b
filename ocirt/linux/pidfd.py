"""``--pidfd-socket`` (runc 1.2): the container process's pidfd, handed to a manager.

Like the console socket: the runtime connects to the unix socket at PATH before it forks, and
sends one message whose payload names the kind of process (``standard``: a container's init,
``setns``: an exec'd process, as runc names them) with a pidfd (pidfd_open(2)) attached as
SCM_RIGHTS. The manager can then signal or wait for exactly that process, even after the
runtime exited and whatever happens to the pid number. The pid is stable while it is sent:
the process is the runtime's child (or its subreaper's) and not yet reaped.
"""

from __future__ import annotations

import _socket as socket  # the C module: the socket package costs ~4 ms to import
import array
import os

from ocirt.errors import SyscallError


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise SyscallError.of(f"connect({path!r})", err, f"pidfd socket {path}") from err
    return sock


def send(sock: socket.socket, pid: int, kind: str) -> None:
    """pidfd_open ``pid`` and send it, named ``kind``; the runtime's copy is closed."""
    try:
        fd = os.pidfd_open(pid)
    except OSError as err:
        raise SyscallError.of(f"pidfd_open({pid})", err, "pidfd socket") from err
    try:
        fds = array.array("i", [fd])
        sock.sendmsg([kind.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    except OSError as err:
        raise SyscallError.of(f"sendmsg({kind!r}, SCM_RIGHTS [pidfd of {pid}])", err,
                              "pidfd socket") from err
    finally:
        os.close(fd)
