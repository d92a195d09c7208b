"""The unix sockets a manager hands the runtime: connect to one, pass an fd over it.

Three sockets work this way: the console socket (a terminal's master, ``console``), the pidfd
socket (the container process's pidfd, ``pidfd``) and a seccomp listener (the notify fd,
``seccomp.filter``). Each is a stream socket at a path the caller names; the runtime connects
before it forks and sends one message with the fd attached as SCM_RIGHTS. A failure names the
socket, its path, the call and the errno, and the socket is closed.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import _struct as struct  # not array (collections.abc, ~1.5 ms), nor struct.py (a sys.path search)

from ocirt.errors import SyscallError, access_hint


def connect(path: str, what: str) -> socket.socket:
    """A stream socket connected to ``path``; ``what`` names it in an error (``console
    socket``), which also says how to fix a denial."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise SyscallError.of(f"connect({path!r})", err, f"{what} {path}",
                              access_hint(err, "a socket").removeprefix(": ")) from err
    return sock


def send_fd(sock: socket.socket, fd: int, payload: bytes, what: str, fd_name: str) -> None:
    """Send ``payload`` with ``fd`` attached (SCM_RIGHTS); the caller keeps its copy of
    ``fd``. An error names the socket (``what``) and the fd (``fd_name``)."""
    try:
        sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    except OSError as err:
        raise SyscallError.of(f"sendmsg(SCM_RIGHTS [{fd_name}])", err, what) from err
