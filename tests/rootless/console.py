"""A console socket the rootless test user may connect to."""

from __future__ import annotations

import array
import os
import socket

from .support import Workspace


class UserConsoleListener:
    """A ``--console-socket`` the test user may connect to (in the session's directory)."""

    def __init__(self, space: Workspace) -> None:
        self.directory = space.new_dir("cs")
        self.path = str(self.directory / "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chown(self.path, space.user.uid, space.user.gid)
        self.sock.listen(4)
        self.masters: list[int] = []

    def receive(self, timeout: float = 5.0) -> int:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            fds = array.array("i")
            _, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
                self.masters.append(fds[0])
                return fds[0]
        raise AssertionError("the console socket received no file descriptor")

    def close(self) -> None:
        for fd in self.masters:
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()

    def __enter__(self) -> UserConsoleListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
