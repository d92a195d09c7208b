"""seccomp in the kernel: a BPF program installed with seccomp(2), and flags asked about.

The seccomp(2) binding lives here rather than in ``ocirt.linux.syscalls`` because it is only
needed with a seccomp profile, like libcap-ng in ``capabilities``. prctl(PR_SET_SECCOMP) is the
fallback on a machine whose seccomp(2) number ocirt does not know (it takes no flags).
"""

from __future__ import annotations

import ctypes
import os

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux.seccomp.rules import (
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_SET_MODE_FILTER,
)

# seccomp(2) by machine.
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348,
                "i686": 354, "armv7l": 383}
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(bpf: bytes, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): the listener fd with NEW_LISTENER, else -1.

    Needs no_new_privs or CAP_SYS_ADMIN in the process's user namespace (the kernel's rule).
    """
    buffer = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    number = _SYS_SECCOMP.get(os.uname().machine)
    if number is not None:
        result: int = libc.syscall(ctypes.c_long(number), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                                   ctypes.c_long(flags), ctypes.byref(prog))
    elif flags & ~SECCOMP_FILTER_FLAG_TSYNC == 0:
        result = libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
    else:
        raise OcirtError(f"seccomp flags {flags:#x} need seccomp(2), whose number on "
                         f"{os.uname().machine} ocirt does not know")
    if result < 0:
        err = ctypes.get_errno()
        hint = {13: " (without noNewPrivileges, loading a filter needs CAP_SYS_ADMIN)",
                22: " (a flag or action this kernel does not support?)"}.get(err, "")
        raise SyscallError(f"seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}, "
                           f"<{len(bpf) // 8} instructions>)", err, "loading the seccomp filter"
                           + hint)
    return result if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1


def flag_supported(flag: int) -> bool:
    """Ask the kernel: seccomp(SET_MODE_FILTER, flag, NULL) fails EFAULT for a known flag."""
    number = _SYS_SECCOMP.get(os.uname().machine)
    if number is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(ctypes.c_long(number), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                          ctypes.c_long(flag), ctypes.c_void_p(None))
    return result < 0 and ctypes.get_errno() == 14
