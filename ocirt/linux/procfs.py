"""A trusted procfs: every file the runtime writes under /proc, reached through a handle that
no container mount can cover.

A path such as ``/proc/sys/net/ipv4/ip_forward`` names whatever is mounted there *now*: a
config mount, a bind a second container made, or a symlink in the rootfs can put a host file
in its place (runc's CVE-2025-52881). The handle is a procfs instance of its own, made with
``fsopen("proc")``/``fsmount`` and never attached anywhere, so nothing can be mounted on or
under it. Where the kernel lacks the new mount API, a detached copy of the current /proc
(``open_tree(OPEN_TREE_CLONE)``) is used, made before any container mount (and, without the
privilege for either, /proc itself, checked to be a procfs root). Each file is then
opened from that root with openat2 (no symlinks, no magic links, no crossing into another
mount, never above the root) and checked to be on procfs before it is written. ``self`` is
replaced by this process's pid as the handle's procfs sees it (it is a symlink, refused).

The handle belongs to the pid namespace of the process that made it: init makes its own
(``renew``) once it is PID 1 of the container, so ``self`` and ``sys/net`` are the
container's. ``magic_path`` names an fd through the handle for mount(2), which takes paths.
``check_mount_destination`` is runc's rule for config mounts that land in /proc.
"""

from __future__ import annotations

import os

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux import syscalls as sc

_handle = -1
_RESOLVE = (sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
            | sc.RESOLVE_NO_XDEV)
_PROC_ROOT_INO = 1


def handle() -> int:
    """The trusted procfs root (an O_PATH-like fd of a private, detached proc mount)."""
    global _handle
    if _handle < 0:
        _handle = _make()
    return _handle


def forget() -> None:
    """After a fork whose child closed every inherited fd: the old handle is gone."""
    global _handle
    _handle = -1


def renew() -> int:
    """A handle of the current pid namespace (init, once it is the container's PID 1)."""
    global _handle
    if _handle >= 0:
        try:
            os.close(_handle)
        except OSError:
            pass
    _handle = -1
    return handle()


def _make() -> int:
    attrs = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC
    try:
        fd = sc.fsmount_new("proc", {}, attrs)
    except SyscallError:
        try:  # no new mount API (or not allowed here): a private copy of today's /proc
            fd = sc.open_tree("/proc", recursive=False)
        except SyscallError:
            try:  # unprivileged (unit tests): /proc itself, checked below to be procfs's root
                fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as err:
                raise SyscallError.of("open('/proc', O_PATH|O_DIRECTORY)", err,
                                      "opening a procfs") from err
    _verify(fd, "/", root=True)
    return fd


def _verify(fd: int, path: str, root: bool = False) -> None:
    try:
        magic = sc.fstatfs_type(fd)
        st = os.fstat(fd)
    except (OSError, SyscallError) as err:
        os.close(fd)
        raise OcirtError(f"checking procfs file {path}: {err}") from err
    if magic != sc.PROC_SUPER_MAGIC or (root and st.st_ino != _PROC_ROOT_INO):
        os.close(fd)
        raise OcirtError(f"procfs file {path} is not on procfs (filesystem {magic:#x}, inode "
                         f"{st.st_ino}): refusing to use it")


def _resolve_self(path: str) -> str:
    """``self/...`` and ``thread-self/...`` with the pid (the handle's view of this process)."""
    head, _, rest = path.lstrip("/").partition("/")
    if head in ("self", "thread-self"):
        target = os.readlink(head, dir_fd=handle())
        return f"{target}/{rest}" if rest else target
    return path.lstrip("/")


def open_file(path: str, flags: int) -> int:
    """Open ``path`` (relative to /proc: ``sys/kernel/...``, ``self/attr/...``, ``1234/uid_map``)
    in the trusted procfs, verified to be a procfs file."""
    relative = _resolve_self(path.removeprefix("/proc/"))
    try:
        fd = sc.openat2(handle(), relative, flags, _RESOLVE)
    except OSError as err:
        raise SyscallError.of(f"openat2(procfs, {relative!r})", err,
                              f"opening /proc/{relative}") from err
    _verify(fd, f"/proc/{relative}")
    return fd


def write(path: str, data: str) -> None:
    """Write ``data`` to a file under /proc through the trusted handle (one write, as the
    kernel wants for uid_map and friends). Raises OSError from the write itself."""
    fd = open_file(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


class magic_path:  # used as a function: ``with magic_path(fd) as path``
    """A path naming ``fd`` for calls that take paths (mount(2)): ``thread-self/fd/N``
    relative to the trusted procfs, made the working directory for the call, so no /proc the
    container can shape is looked up. The old working directory comes back afterwards; other
    fds are named with ``fd_name`` inside the block. (A class, not contextlib: start-up.)"""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.old = -1

    def __enter__(self) -> str:
        proc = handle()
        self.old = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fchdir(proc)
        except BaseException:
            os.close(self.old)
            raise
        return fd_name(self.fd)

    def __exit__(self, *exc: object) -> None:
        try:
            os.fchdir(self.old)
        finally:
            os.close(self.old)


def fd_name(fd: int) -> str:
    return f"thread-self/fd/{fd}"


def mount_on(fd: int, source: str | None, fstype: str | None, flags: int,
             data: str | None = None, source_fd: int | None = None) -> None:
    """mount(2) onto the file ``fd`` refers to (and from ``source_fd`` when given), both named
    through the trusted procfs: the target is never looked up by its path again."""
    with magic_path(fd) as target:
        sc.mount(fd_name(source_fd) if source_fd is not None else source, target, fstype,
                 flags, data)


def mount_id(fd: int) -> int:
    """The id of the mount ``fd`` is on (fdinfo ``mnt_id``), read through the handle."""
    info = open_file(f"thread-self/fdinfo/{fd}", os.O_RDONLY)
    try:
        text = os.read(info, 4096).decode()
    finally:
        os.close(info)
    for line in text.splitlines():
        if line.startswith("mnt_id:"):
            return int(line.split()[1])
    raise OcirtError(f"no mnt_id in the fdinfo of fd {fd}")


def parent_mount_id(mnt_id: int) -> int | None:
    """The parent of mount ``mnt_id`` in this process's mount namespace (mountinfo)."""
    info = open_file("thread-self/mountinfo", os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(info, 65536):
            chunks.append(chunk)
    finally:
        os.close(info)
    prefix = f"{mnt_id} ".encode()
    for line in b"".join(chunks).splitlines():
        if line.startswith(prefix):
            return int(line.split()[1])
    return None


# Mounts runc allows inside /proc (files lxcfs emulates); anything else there must be procfs.
PROC_MOUNTS_ALLOWED = frozenset((
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid", "/proc/sys/crypto/fips_enabled"))


def check_mount_destination(rootfs: str, fd: int, destination: str, fstype: str | None,
                            source: str | None, is_bind: bool) -> None:
    """runc's checkProcMount, on where the destination really resolved to: on /proc itself
    only procfs (a new one, or a bind of one); below it only the lxcfs files. A target that
    is already on procfs (reached through a symlink) counts as below /proc."""
    real = os.readlink(fd_name(fd), dir_fd=handle())
    under = real == rootfs or real.startswith(rootfs.rstrip("/") + "/")
    relative = os.path.relpath(real, rootfs)
    inside = ("/" if relative == "." else "/" + relative) if under else real
    on_proc = sc.fstatfs_type(fd) == sc.PROC_SUPER_MAGIC
    if inside == "/proc" or (on_proc and os.fstat(fd).st_ino == 1):
        if fstype == "proc" or (is_bind and source is not None and _is_procfs(source)):
            return
        raise OcirtError(f"mount destination {destination!r} ({inside} in the rootfs) cannot "
                         "be mounted because it is not of type proc")
    if not (inside.startswith("/proc/") or on_proc) or inside in PROC_MOUNTS_ALLOWED:
        return
    raise OcirtError(f"mount destination {destination!r} ({inside} in the rootfs) cannot be "
                     "mounted because it is inside /proc")


def _is_procfs(path: str) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return sc.fstatfs_type(fd) == sc.PROC_SUPER_MAGIC
    finally:
        os.close(fd)
