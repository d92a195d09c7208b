"""The one ctypes binding module: Linux system calls the standard library does not offer.

Constants are named as in the kernel headers. Each wrapper raises ``SyscallError`` naming the
call, its arguments and the errno as text, so callers never check return values themselves.
Nothing above this module touches ctypes.
"""

from __future__ import annotations

import ctypes
import os

from ocirt.errors import SyscallError

# Clone flags (linux/sched.h).
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_pivot_root = 155  # x86_64
_SYS_setns = 308

_libc = ctypes.CDLL(None, use_errno=True)

_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_sethostname = _libc.sethostname
_sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_setdomainname = _libc.setdomainname
_setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_syscall = _libc.syscall


def _fail(call: str, detail: str = "") -> SyscallError:
    return SyscallError(call, ctypes.get_errno(), detail)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    if _umount2(_b(target), flags) != 0:
        raise _fail(f"umount2({target!r}, {flags:#x})")


def unshare(flags: int) -> None:
    if _unshare(flags) != 0:
        raise _fail(f"unshare({flags:#x})")


def setns(fd: int, nstype: int, detail: str = "") -> None:
    if _setns(fd, nstype) != 0:
        raise _fail(f"setns({fd}, {nstype:#x})", detail)


def pivot_root(new_root: str, put_old: str) -> None:
    if _syscall(ctypes.c_long(_SYS_pivot_root), _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root({new_root!r}, {put_old!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result: int = _prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        raise _fail(f"prctl({option}, {arg2}, {arg3})")
    return result


def sethostname(name: str) -> None:
    raw = name.encode()
    if _sethostname(raw, len(raw)) != 0:
        raise _fail(f"sethostname({name!r})")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _setdomainname(raw, len(raw)) != 0:
        raise _fail(f"setdomainname({name!r})")


# clone3(2) (linux/sched.h): a fork whose child is born in a cgroup2 directory.
CLONE_INTO_CGROUP = 0x200000000
_SYS_clone3 = 435
_SIGCHLD = 17


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


def fork_into_cgroup(cgroup_fd: int) -> int:
    """``os.fork()`` whose child starts in the cgroup2 directory open as ``cgroup_fd``
    (clone3 with CLONE_INTO_CGROUP, Linux 5.7): 0 in the child, its pid in the parent.

    The interpreter is prepared and restored around the call as ``os.fork`` does it
    (PyOS_BeforeFork, PyOS_AfterFork_Child/_Parent), and the call is made with the GIL held
    (through ``pythonapi``), so the child runs no Python code before it is set right. Only for
    a single-threaded caller, as glibc's own fork handlers do not run.
    """
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=_SIGCHLD, cgroup=cgroup_fd)
    api = ctypes.pythonapi
    clone3 = ctypes.PyDLL(None, use_errno=True).syscall
    clone3.restype = ctypes.c_long
    clone3.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t]
    api.PyOS_BeforeFork()
    pid: int = clone3(_SYS_clone3, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    code = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise SyscallError(f"clone3(CLONE_INTO_CGROUP, cgroup={cgroup_fd})", code)
    return pid


# openat2(2) (linux/openat2.h): resolve a path with the kernel keeping it inside a root.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_openat2 = 437


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open ``path`` relative to ``dirfd``; raises OSError (callers add context)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd: int = _syscall(ctypes.c_long(_SYS_openat2), ctypes.c_long(dirfd), _b(path),
                       ctypes.byref(how), ctypes.c_long(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


KEYCTL_JOIN_SESSION_KEYRING = 1
_SYS_keyctl = 250


def join_session_keyring(name: str) -> None:
    """Give this process a new session keyring (so containers do not share the host's)."""
    result = _syscall(ctypes.c_long(_SYS_keyctl), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                      _b(name))
    if result < 0 and ctypes.get_errno() != 38:  # ENOSYS: kernel without keyrings
        raise _fail(f"keyctl(KEYCTL_JOIN_SESSION_KEYRING, {name!r})")


# mount_setattr(2) (linux/mount.h): change the attributes of a whole mount tree at once.
_SYS_mount_setattr = 442
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


AT_EMPTY_PATH = 0x1000


MOUNT_ATTR_IDMAP = 0x100000
_SYS_open_tree, _SYS_move_mount = 428, 429
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40


def open_tree(path: str, recursive: bool) -> int:
    """A detached copy of the mount tree at ``path`` (the first half of a bind mount)."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    fd: int = _syscall(ctypes.c_long(_SYS_open_tree), ctypes.c_long(AT_FDCWD), _b(path),
                       ctypes.c_uint(flags))
    if fd < 0:
        raise _fail(f"open_tree({path!r}, OPEN_TREE_CLONE{'|AT_RECURSIVE' if recursive else ''})")
    return fd


def move_mount(from_fd: int, to_fd: int, what: str) -> None:
    """Attach the detached mount ``from_fd`` onto the file ``to_fd`` refers to."""
    if _syscall(ctypes.c_long(_SYS_move_mount), ctypes.c_long(from_fd), _b(""),
                ctypes.c_long(to_fd), _b(""),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) != 0:
        raise _fail(f"move_mount({what})")


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool = True,
                  path: str = "", userns_fd: int = 0) -> None:
    """Change the mount at ``fd`` (and, recursively, all below it)."""
    attr = _MountAttr(attr_set, attr_clr, 0, userns_fd)
    flags = (AT_RECURSIVE if recursive else 0) | AT_EMPTY_PATH
    if _syscall(ctypes.c_long(_SYS_mount_setattr), ctypes.c_long(fd), _b(path),
                ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))
                ) != 0:
        raise _fail(f"mount_setattr({path or fd!r}, set={attr_set:#x}, clear={attr_clr:#x}, "
                    f"AT_RECURSIVE)")


_SYS_personality = 135
_SYS_ioprio_set = 251
_SYS_sched_setattr = 314
_SYS_set_mempolicy = 238
IOPRIO_WHO_PROCESS = 1


def personality(persona: int) -> None:
    if _syscall(ctypes.c_long(_SYS_personality), ctypes.c_ulong(persona)) == -1:
        raise _fail(f"personality({persona:#x})")


def set_mempolicy(mode: int, nodes: list[int], text: str) -> None:
    """The calling thread's NUMA policy (inherited by its children and across execve)."""
    bits = 8 * ctypes.sizeof(ctypes.c_ulong)
    words = (max(nodes, default=0) // bits) + 1
    mask = (ctypes.c_ulong * words)()
    for node in nodes:
        mask[node // bits] |= 1 << (node % bits)
    # maxnode counts one more than the bits given (set_mempolicy(2), as numactl passes it)
    if _syscall(ctypes.c_long(_SYS_set_mempolicy), ctypes.c_long(mode),
                mask if nodes else None, ctypes.c_ulong(words * bits + 1 if nodes else 0)) != 0:
        raise _fail(f"set_mempolicy({text})")


def ioprio_set(ioclass: int, level: int) -> None:
    value = (ioclass << 13) | level
    if _syscall(ctypes.c_long(_SYS_ioprio_set), ctypes.c_long(IOPRIO_WHO_PROCESS),
                ctypes.c_long(0), ctypes.c_long(value)) != 0:
        raise _fail(f"ioprio_set(IOPRIO_WHO_PROCESS, 0, class={ioclass} level={level})")


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64)]


def sched_setattr(policy: int, flags: int, nice: int, priority: int, runtime: int,
                  deadline: int, period: int) -> None:
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime,
                      deadline, period)
    if _syscall(ctypes.c_long(_SYS_sched_setattr), ctypes.c_long(0), ctypes.byref(attr),
                ctypes.c_uint(0)) != 0:
        raise _fail(f"sched_setattr(policy={policy}, nice={nice}, priority={priority}, "
                    f"flags={flags:#x})")


# The new mount API (linux/mount.h): a filesystem instance made without a path, and statfs.
_SYS_fsopen, _SYS_fsconfig, _SYS_fsmount = 430, 431, 432
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
PROC_SUPER_MAGIC = 0x9FA0
_SYS_fstatfs = 138


def fsmount_new(fstype: str, options: dict[str, str], attrs: int) -> int:
    """A new, detached mount of a fresh ``fstype`` instance (fsopen, fsconfig, fsmount)."""
    fs: int = _syscall(ctypes.c_long(_SYS_fsopen), _b(fstype), ctypes.c_uint(FSOPEN_CLOEXEC))
    if fs < 0:
        raise _fail(f"fsopen({fstype!r})")
    try:
        for key, value in options.items():
            if _syscall(ctypes.c_long(_SYS_fsconfig), ctypes.c_long(fs),
                        ctypes.c_uint(FSCONFIG_SET_STRING), _b(key), _b(value),
                        ctypes.c_int(0)) != 0:
                raise _fail(f"fsconfig({fstype!r}, {key}={value})")
        if _syscall(ctypes.c_long(_SYS_fsconfig), ctypes.c_long(fs),
                    ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None, ctypes.c_int(0)) != 0:
            raise _fail(f"fsconfig({fstype!r}, FSCONFIG_CMD_CREATE)")
        mnt: int = _syscall(ctypes.c_long(_SYS_fsmount), ctypes.c_long(fs),
                            ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attrs))
        if mnt < 0:
            raise _fail(f"fsmount({fstype!r}, attrs={attrs:#x})")
        return mnt
    finally:
        os.close(fs)


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
                ("rest", ctypes.c_long * 14)]


def fstatfs_type(fd: int) -> int:
    """The filesystem magic (statfs f_type) of the file ``fd`` refers to."""
    buf = _Statfs()
    if _syscall(ctypes.c_long(_SYS_fstatfs), ctypes.c_long(fd), ctypes.byref(buf)) != 0:
        raise _fail(f"fstatfs({fd})")
    return int(buf.f_type) & 0xFFFFFFFF


_sched_setaffinity = _libc.sched_setaffinity
_sched_setaffinity.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p]


def sched_setaffinity(pid: int, mask: bytes, cpus: str) -> None:
    """Set ``pid``'s CPU mask (bit N: CPU N); ``cpus`` says which, for the error."""
    if _sched_setaffinity(pid, len(mask), mask) != 0:
        raise _fail(f"sched_setaffinity({pid}, [{cpus}])")
