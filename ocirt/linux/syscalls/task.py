"""Calls that change the calling process (the kernel's task): namespaces, prctl, names,
keyring, personality, scheduling, NUMA policy, resource limits, a fork into new namespaces
and a cgroup2 directory (clone3), and bringing up the loopback interface of the network
namespace it is in."""

from __future__ import annotations

import _socket  # not ``socket``: it imports enum and selectors (~4 ms)
import errno
import fcntl
from _struct import Struct  # struct.py only re-exports it, and costs a sys.path search

from ocirt.errors import SyscallError
from ocirt.linux.syscalls.consts import (
    CLONE_INTO_CGROUP,
    IOPRIO_WHO_PROCESS,
    KEYCTL_JOIN_SESSION_KEYRING,
    SIGCHLD,
)
from ocirt.linux.syscalls.libc import LIBC, b, errno_now, fail, syscall
from ocirt.linux.syscalls.numbers import NR

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy checks the binding against ctypes' own stubs
    import ctypes as ffi
else:
    from ocirt.linux.syscalls import ffi

_RLIMIT64 = Struct("=QQ")  # struct rlimit64: soft, hard
_IFREQ_FLAGS = Struct("16sh14x")  # struct ifreq: the name, ifr_flags

CALLS = ("unshare", "setns", "prctl", "sethostname", "setdomainname", "join_session_keyring",
         "personality", "set_mempolicy", "ioprio_set", "sched_setattr", "sched_setaffinity",
         "clone3", "setrlimit", "getrlimit", "loopback_up")

_unshare = LIBC.unshare
_unshare.argtypes = [ffi.c_int]
_setns = LIBC.setns
_setns.argtypes = [ffi.c_int, ffi.c_int]
_prctl = LIBC.prctl
_prctl.argtypes = [ffi.c_int, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong]
_sethostname = LIBC.sethostname
_sethostname.argtypes = [ffi.c_char_p, ffi.c_size_t]
_setdomainname = LIBC.setdomainname
_setdomainname.argtypes = [ffi.c_char_p, ffi.c_size_t]
_sched_setaffinity = LIBC.sched_setaffinity
_sched_setaffinity.argtypes = [ffi.c_int, ffi.c_size_t, ffi.c_char_p]


def unshare(flags: int) -> None:
    if _unshare(flags) != 0:
        raise fail(f"unshare({flags:#x})")


def setns(fd: int, nstype: int, detail: str = "") -> None:
    if _setns(fd, nstype) != 0:
        raise fail(f"setns({fd}, {nstype:#x})", detail)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result: int = _prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        raise fail(f"prctl({option}, {arg2}, {arg3})")
    return result


def sethostname(name: str) -> None:
    raw = name.encode()
    if _sethostname(raw, len(raw)) != 0:
        raise fail(f"sethostname({name!r})")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _setdomainname(raw, len(raw)) != 0:
        raise fail(f"setdomainname({name!r})")


def join_session_keyring(name: str) -> None:
    """Give this process a new session keyring (so containers do not share the host's)."""
    result = syscall("keyctl", ffi.c_long(KEYCTL_JOIN_SESSION_KEYRING), b(name))
    if result < 0 and errno_now() != errno.ENOSYS:  # a kernel without keyrings
        raise fail(f"keyctl(KEYCTL_JOIN_SESSION_KEYRING, {name!r})")


def personality(persona: int) -> None:
    if syscall("personality", ffi.c_ulong(persona)) == -1:
        raise fail(f"personality({persona:#x})")


def set_mempolicy(mode: int, nodes: list[int], text: str) -> None:
    """The calling thread's NUMA policy (inherited by its children and across execve)."""
    bits = 8 * ffi.sizeof(ffi.c_ulong)
    words = (max(nodes, default=0) // bits) + 1
    mask = (ffi.c_ulong * words)()
    for node in nodes:
        mask[node // bits] |= 1 << (node % bits)
    # maxnode counts one more than the bits given (set_mempolicy(2), as numactl passes it)
    if syscall("set_mempolicy", ffi.c_long(mode), mask if nodes else None,
               ffi.c_ulong(words * bits + 1 if nodes else 0)) != 0:
        raise fail(f"set_mempolicy({text})")


def ioprio_set(ioclass: int, level: int) -> None:
    value = (ioclass << 13) | level
    if syscall("ioprio_set", ffi.c_long(IOPRIO_WHO_PROCESS), ffi.c_long(0),
               ffi.c_long(value)) != 0:
        raise fail(f"ioprio_set(IOPRIO_WHO_PROCESS, 0, class={ioclass} level={level})")


class _SchedAttr(ffi.Structure):
    _fields_ = [("size", ffi.c_uint32), ("sched_policy", ffi.c_uint32),
                ("sched_flags", ffi.c_uint64), ("sched_nice", ffi.c_int32),
                ("sched_priority", ffi.c_uint32), ("sched_runtime", ffi.c_uint64),
                ("sched_deadline", ffi.c_uint64), ("sched_period", ffi.c_uint64)]


def sched_setattr(policy: int, flags: int, nice: int, priority: int, runtime: int,
                  deadline: int, period: int) -> None:
    attr = _SchedAttr(ffi.sizeof(_SchedAttr), policy, flags, nice, priority, runtime,
                      deadline, period)
    if syscall("sched_setattr", ffi.c_long(0), ffi.byref(attr), ffi.c_uint(0)) != 0:
        raise fail(f"sched_setattr(policy={policy}, nice={nice}, priority={priority}, "
                   f"flags={flags:#x})")


def sched_setaffinity(pid: int, mask: bytes, cpus: str) -> None:
    """Set ``pid``'s CPU mask (bit N: CPU N); ``cpus`` says which, for the error."""
    if _sched_setaffinity(pid, len(mask), mask) != 0:
        raise fail(f"sched_setaffinity({pid}, [{cpus}])")


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """The calling process's limit ``resource`` (prlimit64; 2**64 - 1 is RLIM_INFINITY)."""
    call = f"setrlimit({resource}, soft={soft}, hard={hard})"
    for value in (soft, hard):
        if not 0 <= value < 1 << 64:
            raise SyscallError(call, errno.EINVAL, "a limit is 0 to 2**64 - 1")
    # struct rlimit64 as bytes: no ffi.Structure class to build at import (page faults)
    if LIBC.prlimit64(0, resource, _RLIMIT64.pack(soft, hard), None) != 0:
        raise fail(call)


def getrlimit(resource: int) -> tuple[int, int]:
    """The calling process's limit ``resource``: (soft, hard)."""
    old = ffi.create_string_buffer(_RLIMIT64.size)
    if LIBC.prlimit64(0, resource, None, old) != 0:
        raise fail(f"getrlimit({resource})")
    soft, hard = _RLIMIT64.unpack(old.raw)
    return soft, hard


class _CloneArgs(ffi.Structure):
    _fields_ = [(name, ffi.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


def clone3(flags: int, cgroup_fd: int = -1, text: str = "") -> int:
    """``os.fork()`` through clone3 with ``flags`` (CLONE_NEW*: the child is born in new
    namespaces) and, given a ``cgroup_fd``, CLONE_INTO_CGROUP (Linux 5.7: the child starts in
    the cgroup2 directory open as ``cgroup_fd``): 0 in the child, its pid in the parent.
    ``text`` names the flags for the error (else they are shown as a number).

    The interpreter is prepared and restored around the call as ``os.fork`` does it
    (PyOS_BeforeFork, PyOS_AfterFork_Child/_Parent), and the call is made with the GIL held
    (through ``ffi.PyDLL``), so the child runs no Python code before it is set right. Only for
    a single-threaded caller, as glibc's own fork handlers do not run.
    """
    names = [text or f"{flags:#x}"] if flags else []
    if cgroup_fd >= 0:
        flags |= CLONE_INTO_CGROUP
        names.append(f"CLONE_INTO_CGROUP, cgroup={cgroup_fd}")
    call = f"clone3({' | '.join(names)})"
    number = NR.get("clone3")
    if number is None:
        raise SyscallError(call, errno.ENOSYS, "ocirt knows no number for clone3 here")
    args = _CloneArgs(flags=flags, exit_signal=SIGCHLD, cgroup=max(cgroup_fd, 0))
    # the interpreter's own symbols (ctypes.pythonapi, which ffi does not build at import),
    # with errno kept for clone3 (the PyOS_* calls do not depend on it)
    api = ffi.PyDLL(None, use_errno=True)
    clone3 = api.syscall
    clone3.restype = ffi.c_long
    clone3.argtypes = [ffi.c_long, ffi.c_void_p, ffi.c_size_t]
    api.PyOS_BeforeFork()
    pid: int = clone3(number, ffi.byref(args), ffi.sizeof(args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    code = ffi.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise SyscallError(call, code)
    return pid


def loopback_up() -> None:
    """Bring up ``lo`` in this process's network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = _IFREQ_FLAGS.pack(b"lo", 0)
        flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, _IFREQ_FLAGS.pack(b"lo", flags | iff_up))
    except OSError as err:
        raise SyscallError.of("ioctl('lo', SIOCGIFFLAGS/SIOCSIFFLAGS, IFF_UP)", err,
                              "bringing up the loopback interface") from err
    finally:
        sock.close()
