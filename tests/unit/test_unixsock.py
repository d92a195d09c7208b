"""The one place that connects to a manager's unix socket and passes an fd over it (the
console socket, the pidfd socket and a seccomp listener all use it)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from testkit import accept_fd

from ocirt.errors import SyscallError
from ocirt.linux import unixsock


def test_a_missing_socket_is_named_with_the_call_and_errno(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sock"
    with pytest.raises(SyscallError) as err:
        unixsock.connect(str(missing), "pidfd socket")
    assert str(err.value) == (f"pidfd socket {missing}: connect({str(missing)!r}): No such "
                              "file or directory (ENOENT)")


def test_connect_leaks_no_socket_on_failure(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(SyscallError):
            unixsock.connect(str(tmp_path / "nothing.sock"), "console socket")
    assert set(os.listdir("/proc/self/fd")) == before


def test_the_fd_and_payload_arrive(tmp_path: Path) -> None:
    path = str(tmp_path / "listener.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        sock = unixsock.connect(path, "console socket")
        read_end, write_end = os.pipe()
        try:
            unixsock.send_fd(sock, write_end, b"/dev/ptmx", "console socket", "pty master")
            data, received = accept_fd(listener, 3.0, "console socket")
            assert data == b"/dev/ptmx"
            os.write(received, b"x")  # the same pipe, through the fd that arrived
            assert os.read(read_end, 1) == b"x"
            os.close(received)
        finally:
            for fd in (read_end, write_end):
                os.close(fd)
            sock.close()


def test_a_send_to_a_closed_peer_names_what_was_sent() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.close()
    try:
        with pytest.raises(SyscallError) as err:
            unixsock.send_fd(ours, 0, b"x", "pidfd socket", "pidfd of 1")
        assert str(err.value).startswith("pidfd socket: sendmsg(SCM_RIGHTS [pidfd of 1]): ")
        assert "(EPIPE)" in str(err.value)
    finally:
        ours.close()
