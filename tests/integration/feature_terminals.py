"""Terminals for the integration tests: a ``--console-socket`` listener, reading a pty master
until a marker, and a driver that runs a command under a new pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import tempfile
import time

import pytest
from testkit import ConsoleSocket

from .support import wait_for


class ConsoleListener(ConsoleSocket):
    """A ``--console-socket`` in a directory of its own, removed with it."""

    def __init__(self):
        # Short: the path of a unix socket may not exceed 107 bytes.
        super().__init__(tempfile.mkdtemp(prefix="ocirt-cs-"))

    def close(self):
        super().close()
        shutil.rmtree(self.directory, ignore_errors=True)


def read_until(fd, marker, timeout=3.0):
    """Read from a pty master until ``marker`` (bytes) shows up, or EOF/EIO; all of it."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out waiting for {marker!r}; got {data!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every slave fd is closed
            chunk = b""
        if not chunk:
            if marker is not None:
                pytest.fail(f"end of terminal before {marker!r}; got {data!r}")
            break
        data += chunk
    return data


def read_to_end(fd, timeout=3.0):
    return read_until(fd, None, timeout)


class UnderPty:
    """``argv`` run with a new pseudo-terminal as its stdin, stdout, stderr and controlling
    terminal (pty.fork), as a user at a terminal would run it."""

    def __init__(self, argv, env, rows=24, cols=80):
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            try:
                import fcntl
                import struct
                import termios

                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.status = None

    def send(self, data):
        os.write(self.master, data)

    def wait(self, timeout=5.0):
        """The exit status; the output left on the terminal is read (and returned) first."""
        rest = read_to_end(self.master, timeout)
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                pytest.fail("the process under the pty did not exit")
            else:
                time.sleep(0.01)
        return self.status, rest

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            os.close(self.master)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_gone(pid, timeout=3.0):
    from .support import pid_alive

    wait_for(lambda: not pid_alive(pid), timeout, what=f"process {pid} to exit")
