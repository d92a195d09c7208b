"""seccomp(2), and libseccomp: the compiler of seccomp profiles into classic BPF.

Only configs with a seccomp profile come here. libseccomp is loaded on first use with a dlopen
(its version and its syscall names are all a cache hit needs); pyseccomp, which costs ~20 ms to
import (plus an ``ldconfig`` run), is imported only by ``new_filter``, on a cache miss.
prctl(PR_SET_SECCOMP) is the fallback on a machine whose seccomp(2) number ocirt does not know
(it takes no flags).
"""

from __future__ import annotations

import errno
import os

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux.syscalls.consts import (
    PR_SET_SECCOMP,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_MODE_FILTER,
    SECCOMP_SET_MODE_FILTER,
)
from ocirt.linux.syscalls.libc import LIBC, errno_now
from ocirt.linux.syscalls.numbers import MACHINE, NR

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy checks the binding against ctypes' own stubs
    import ctypes as ffi
    from typing import Any
else:
    from ocirt.linux.syscalls import ffi

CALLS = ("install_filter", "flag_supported", "libseccomp_version", "resolve_name", "new_filter")
NR_SCMP_ERROR = -1  # what libseccomp resolves an unknown syscall name to


class _SockFprog(ffi.Structure):
    _fields_ = [("len", ffi.c_ushort), ("filter", ffi.c_void_p)]


def install_filter(bpf: bytes, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): the listener fd with NEW_LISTENER, else -1.

    Needs no_new_privs or CAP_SYS_ADMIN in the process's user namespace (the kernel's rule).
    """
    buffer = ffi.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ffi.addressof(buffer))  # (buffer lives to the return)
    number = NR.get("seccomp")
    if number is not None:
        result: int = LIBC.syscall(ffi.c_long(number), ffi.c_long(SECCOMP_SET_MODE_FILTER),
                                   ffi.c_long(flags), ffi.byref(prog))
    elif flags & ~SECCOMP_FILTER_FLAG_TSYNC == 0:
        result = LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ffi.byref(prog), 0, 0)
    else:
        raise SyscallError(f"seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x})", errno.ENOSYS,
                           f"these flags need seccomp(2), whose number on {MACHINE} ocirt "
                           "does not know")
    if result < 0:
        err = errno_now()
        hint = {errno.EACCES: " (without noNewPrivileges, loading a filter needs CAP_SYS_ADMIN)",
                errno.EINVAL: " (a flag or action this kernel does not support?)"}.get(err, "")
        raise SyscallError(f"seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}, "
                           f"<{len(bpf) // 8} instructions>)", err, "loading the seccomp filter"
                           + hint)
    return result if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1


def flag_supported(flag: int) -> bool:
    """Ask the kernel: seccomp(SET_MODE_FILTER, flag, NULL) fails EFAULT for a known flag."""
    number = NR.get("seccomp")
    if number is None:
        return False
    result = LIBC.syscall(ffi.c_long(number), ffi.c_long(SECCOMP_SET_MODE_FILTER),
                          ffi.c_long(flag), ffi.c_void_p(None))
    return bool(result < 0 and errno_now() == errno.EFAULT)


_lib: ffi.CDLL | None = None
_version: str | None = None


def _libseccomp() -> ffi.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ffi.CDLL("libseccomp.so.2")
        except OSError as err:
            raise OcirtError(f"loading libseccomp (package libseccomp2): {err}") from err
        lib.seccomp_syscall_resolve_name.argtypes = [ffi.c_char_p]
        lib.seccomp_syscall_resolve_name_arch.argtypes = [ffi.c_uint32, ffi.c_char_p]
        _lib = lib
    return _lib


class _Version(ffi.Structure):
    _fields_ = [("major", ffi.c_uint), ("minor", ffi.c_uint), ("micro", ffi.c_uint)]


def libseccomp_version() -> str:
    """"2.5.4": asked of libseccomp itself (a dlopen, not the pyseccomp import)."""
    global _version
    if _version is None:
        lib = _libseccomp()
        lib.seccomp_version.restype = ffi.POINTER(_Version)
        v = lib.seccomp_version().contents
        _version = f"{v.major}.{v.minor}.{v.micro}"
    return _version


def resolve_name(name: str, arch: int = 0) -> int:
    """The syscall number libseccomp knows for ``name`` on the native architecture (or the
    audit architecture token ``arch``); ``NR_SCMP_ERROR`` when it knows none."""
    lib = _libseccomp()
    if arch:
        number: int = lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
    else:
        number = lib.seccomp_syscall_resolve_name(name.encode())
    return number


class Filter:
    """A libseccomp filter being built (through pyseccomp): errors are ``SyscallError``s (an
    OSError with ``errno``) naming the libseccomp call and its arguments."""

    def __init__(self, pyseccomp: Any, default_action: int) -> None:
        self._pyseccomp = pyseccomp
        try:
            self._filter = pyseccomp.SyscallFilter(default_action)
        except OSError as err:
            raise SyscallError(f"seccomp_init({default_action:#x})", err.errno or 0) from None

    def add_arch(self, token: int) -> None:
        try:
            self._filter.add_arch(token)
        except OSError as err:
            raise SyscallError(f"seccomp_arch_add({token:#x})", err.errno or 0) from None

    def add_rule(self, action: int, number: int,
                 conditions: list[tuple[int, int, int, int]]) -> None:
        """One rule; ``conditions`` are (argument index, operator, value, second value)."""
        args = [self._pyseccomp.Arg(*condition) for condition in conditions]
        try:
            self._filter.add_rule(action, number, *args)
        except OSError as err:
            raise SyscallError(f"seccomp_rule_add({action:#x}, {number}, {conditions})",
                               err.errno or 0) from None

    def export(self) -> bytes:
        """The compiled program (seccomp_export_bpf, through a memfd)."""
        fd = os.memfd_create("ocirt-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            with os.fdopen(fd, "r+b", closefd=False) as handle:
                self._filter.export_bpf(handle)
            size = os.lseek(fd, 0, os.SEEK_CUR)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while size > 0 and (chunk := os.read(fd, size)):
                chunks.append(chunk)
                size -= len(chunk)
            return b"".join(chunks)
        except OSError as err:
            raise SyscallError("seccomp_export_bpf", err.errno or 0) from None
        finally:
            os.close(fd)


def new_filter(default_action: int) -> Filter:
    """A new filter whose default action is ``default_action`` (imports pyseccomp)."""
    import pyseccomp

    return Filter(pyseccomp, default_action)
