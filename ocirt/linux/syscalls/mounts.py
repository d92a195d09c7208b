"""Mount calls: mount(2), umount2(2), pivot_root(2), the new mount API, openat2 and fstatfs;
and renameat2(2) RENAME_EXCHANGE."""

from __future__ import annotations

import os

from ocirt.linux.syscalls.consts import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_RECURSIVE,
    FSCONFIG_CMD_CREATE,
    FSCONFIG_SET_STRING,
    FSMOUNT_CLOEXEC,
    FSOPEN_CLOEXEC,
    MOVE_MOUNT_F_EMPTY_PATH,
    MOVE_MOUNT_T_EMPTY_PATH,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    RENAME_EXCHANGE,
)
from ocirt.linux.syscalls.libc import LIBC, b, fail, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy checks the binding against ctypes' own stubs
    import ctypes as ffi
else:
    from ocirt.linux.syscalls import ffi

CALLS = ("mount", "umount2", "pivot_root", "openat2", "open_tree", "move_mount",
         "mount_setattr", "fsmount_new", "fstatfs_type", "rename_exchange")

_mount = LIBC.mount
_mount.argtypes = [ffi.c_char_p, ffi.c_char_p, ffi.c_char_p, ffi.c_ulong,
                   ffi.c_char_p]
_umount2 = LIBC.umount2
_umount2.argtypes = [ffi.c_char_p, ffi.c_int]


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    if _mount(b(source), b(target), b(fstype), flags, b(data)) != 0:
        raise fail(f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    if _umount2(b(target), flags) != 0:
        raise fail(f"umount2({target!r}, {flags:#x})")


def pivot_root(new_root: str, put_old: str) -> None:
    if syscall("pivot_root", b(new_root), b(put_old)) != 0:
        raise fail(f"pivot_root({new_root!r}, {put_old!r})")


class _OpenHow(ffi.Structure):
    _fields_ = [("flags", ffi.c_uint64), ("mode", ffi.c_uint64),
                ("resolve", ffi.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open ``path`` relative to ``dirfd`` (close-on-exec); raises ``SyscallError`` (an
    OSError-like error whose ``errno`` callers test: ENOENT, ELOOP, EXDEV...)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = syscall("openat2", ffi.c_long(dirfd), b(path), ffi.byref(how),
                 ffi.c_long(ffi.sizeof(how)))
    if fd < 0:
        raise fail(f"openat2({dirfd}, {path!r}, {flags:#x}, resolve={resolve:#x})")
    return fd


class _MountAttr(ffi.Structure):
    _fields_ = [("attr_set", ffi.c_uint64), ("attr_clr", ffi.c_uint64),
                ("propagation", ffi.c_uint64), ("userns_fd", ffi.c_uint64)]


def open_tree(path: str, recursive: bool) -> int:
    """A detached copy of the mount tree at ``path`` (the first half of a bind mount)."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    fd = syscall("open_tree", ffi.c_long(AT_FDCWD), b(path), ffi.c_uint(flags))
    if fd < 0:
        raise fail(f"open_tree({path!r}, OPEN_TREE_CLONE{'|AT_RECURSIVE' if recursive else ''})")
    return fd


def move_mount(from_fd: int, to_fd: int, what: str) -> None:
    """Attach the detached mount ``from_fd`` onto the file ``to_fd`` refers to."""
    if syscall("move_mount", ffi.c_long(from_fd), b(""), ffi.c_long(to_fd), b(""),
               ffi.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) != 0:
        raise fail(f"move_mount({what})")


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool = True,
                  path: str = "", userns_fd: int = 0) -> None:
    """Change the mount at ``fd`` (and, recursively, all below it)."""
    attr = _MountAttr(attr_set, attr_clr, 0, userns_fd)
    flags = (AT_RECURSIVE if recursive else 0) | AT_EMPTY_PATH
    if syscall("mount_setattr", ffi.c_long(fd), b(path), ffi.c_uint(flags),
               ffi.byref(attr), ffi.c_size_t(ffi.sizeof(attr))) != 0:
        raise fail(f"mount_setattr({path or fd!r}, set={attr_set:#x}, clear={attr_clr:#x}"
                   f"{', AT_RECURSIVE' if recursive else ''})")


def fsmount_new(fstype: str, options: dict[str, str], attrs: int) -> int:
    """A new, detached mount of a fresh ``fstype`` instance (fsopen, fsconfig, fsmount)."""
    fs = syscall("fsopen", b(fstype), ffi.c_uint(FSOPEN_CLOEXEC))
    if fs < 0:
        raise fail(f"fsopen({fstype!r})")
    try:
        for key, value in options.items():
            if syscall("fsconfig", ffi.c_long(fs), ffi.c_uint(FSCONFIG_SET_STRING),
                       b(key), b(value), ffi.c_int(0)) != 0:
                raise fail(f"fsconfig({fstype!r}, FSCONFIG_SET_STRING, {key}={value})")
        if syscall("fsconfig", ffi.c_long(fs), ffi.c_uint(FSCONFIG_CMD_CREATE), None,
                   None, ffi.c_int(0)) != 0:
            raise fail(f"fsconfig({fstype!r}, FSCONFIG_CMD_CREATE)")
        mnt = syscall("fsmount", ffi.c_long(fs), ffi.c_uint(FSMOUNT_CLOEXEC),
                      ffi.c_uint(attrs))
        if mnt < 0:
            raise fail(f"fsmount({fstype!r}, attrs={attrs:#x})")
        return mnt
    finally:
        os.close(fs)


class _Statfs(ffi.Structure):
    _fields_ = [("f_type", ffi.c_long), ("f_bsize", ffi.c_long),
                ("rest", ffi.c_long * 14)]


def fstatfs_type(fd: int) -> int:
    """The filesystem magic (statfs f_type) of the file ``fd`` refers to."""
    buf = _Statfs()
    if syscall("fstatfs", ffi.c_long(fd), ffi.byref(buf)) != 0:
        raise fail(f"fstatfs({fd})")
    return int(buf.f_type) & 0xFFFFFFFF


_renameat2 = LIBC.renameat2
_renameat2.argtypes = [ffi.c_int, ffi.c_char_p, ffi.c_int, ffi.c_char_p,
                       ffi.c_uint]


def rename_exchange(path_a: str, path_b: str) -> None:
    """Swap two existing names in one step (renameat2 with RENAME_EXCHANGE)."""
    if _renameat2(AT_FDCWD, b(path_a), AT_FDCWD, b(path_b), RENAME_EXCHANGE) != 0:
        raise fail(f"renameat2({path_a!r}, {path_b!r}, RENAME_EXCHANGE)")
