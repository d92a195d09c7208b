"""Terminals: a pty made inside the container, its master handed over a unix socket.

With process.terminal the container's init (or an exec'd process) opens /dev/ptmx of the
container's own devpts, makes the slave its stdin, stdout, stderr and controlling terminal, and
sends the master with SCM_RIGHTS over the console socket (``--console-socket``), as runc does;
the caller (conmon, containerd-shim, ``ocirt run`` itself) then owns the terminal. ``Relay`` is
the caller side of ``ocirt run`` in the foreground: the user's terminal in raw mode, bytes
copied both ways, window size changes passed on, the terminal restored afterwards.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import _struct as struct  # struct.py only re-exports it, and costs a sys.path search (~0.15 ms)
import fcntl
import os
import select
import stat
import termios
import tty

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux import procfs, safepath, unixsock
from ocirt.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430


def check_terminal(terminal: bool, console_socket: str | None, detach: bool) -> None:
    """runc's rules (and words) for process.terminal and --console-socket."""
    if terminal and not console_socket and detach:
        raise OcirtError("cannot allocate tty if ocirt will detach without setting console "
                         "socket")
    if not terminal and console_socket:
        raise OcirtError("cannot use console socket if ocirt will not detach or allocate tty")


def open_pty() -> tuple[int, int]:
    """A new pty pair from /dev/ptmx of the current root: (master, slave). /dev/ptmx is
    resolved inside the root without magic links and must be the ptmx device (5:2)."""
    try:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            master = safepath.open_in_root(root, "/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
        finally:
            os.close(root)
    except OSError as err:
        raise SyscallError.of("open('/dev/ptmx', O_RDWR|O_NOCTTY) in the root", err,
                              "opening /dev/ptmx for the terminal", "is devpts mounted on "
                              "/dev/pts with /dev/ptmx -> pts/ptmx?") from err
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (5, 2):
        os.close(master)
        raise OcirtError("/dev/ptmx of the container is not the ptmx device (5:2)")
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        os.close(master)
        raise SyscallError.of("ioctl(ptmx, TIOCSPTLCK/TIOCGPTPEER)", err,
                              "unlocking the pty") from err
    return master, slave


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def become_terminal_owner(slave: int) -> None:
    """Make ``slave`` stdin/stdout/stderr and the controlling terminal (after setsid)."""
    for target in (0, 1, 2):
        os.dup2(slave, target)
    fcntl.ioctl(0, TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)


def connect(path: str) -> socket.socket:
    """The console socket (``--console-socket``), connected."""
    return unixsock.connect(path, "console socket")


def recv_fd(sock: socket.socket) -> int:
    # struct, not array: ``import array`` imports collections.abc (~1.5 ms)
    size = struct.calcsize("i")
    _, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(size))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) >= size:
            fd: int = struct.unpack("i", data[:size])[0]
            return fd
    raise OcirtError("console socket: no terminal received from the container")


def terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


class Relay:
    """``ocirt run`` with a terminal and no console socket: be the terminal's other end."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.saved: list[Any] | None = None
        os.set_blocking(master, True)

    def __enter__(self) -> Relay:
        if os.isatty(0):
            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
            self.resize()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)

    def resize(self) -> None:
        size = terminal_size(0)
        if size:
            set_size(self.master, *size)

    def pump(self, pidfd: int) -> None:
        """Copy stdin to the pty and the pty to stdout until the process ends."""
        watched = [self.master, pidfd, 0]
        while True:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(self.master, data)
                else:
                    watched.remove(0)
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the last slave fd closed
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if pidfd in ready:
                self._drain()
                return

    def _drain(self) -> None:
        os.set_blocking(self.master, False)
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            os.write(1, data)


def take_terminal(sock: socket.socket, size: dict[str, int] | None, console: bool) -> None:
    """In the container: make a pty, send its master over ``sock``, own its slave.

    ``console`` also binds the slave onto /dev/console, as the spec asks for the container's
    init (config-linux.md, "Default Devices").
    """
    master, slave = open_pty()
    try:
        if size:
            set_size(slave, size.get("height", 0), size.get("width", 0))
        if console:
            _bind_console(slave)
        unixsock.send_fd(sock, master, b"/dev/ptmx", "console socket", "pty master")
    finally:
        os.close(master)
        sock.close()
    become_terminal_owner(slave)


def _bind_console(slave: int) -> None:
    """Bind the pty peer (``slave``, from TIOCGPTPEER) onto /dev/console, both by fd:
    /dev is opened with no symlink, /dev/console made or opened O_NOFOLLOW and checked to be
    a file or a character device (CVE-2025-52565)."""
    try:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            dev = safepath.open_beneath(root, "dev", os.O_PATH | os.O_DIRECTORY)
        finally:
            os.close(root)
        try:
            try:
                os.mknod("console", stat.S_IFREG | 0o600, dir_fd=dev)
            except FileExistsError:
                pass
            target = os.open("console", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
        finally:
            os.close(dev)
    except OSError as err:
        raise SyscallError.of(f"mknod/open({err.filename or 'console'!r}) in /dev", err,
                              "creating /dev/console") from err
    try:
        mode = os.fstat(target).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise OcirtError("/dev/console of the container is neither a file nor a device "
                             "(a symlink?): refusing to bind the terminal onto it")
        procfs.mount_on(target, None, None, sc.MS_BIND, source_fd=slave)
    finally:
        os.close(target)
