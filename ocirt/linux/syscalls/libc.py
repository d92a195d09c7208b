"""libc, loaded once for the whole binding layer, and the helpers every binding shares.

``syscall(name, ...)`` makes a raw system call by name through the per-machine table in
``numbers``; a name this machine has no number for fails as the kernel would for an unknown
call (ENOSYS), saying so. ``fail`` builds the one error shape: ``SyscallError`` naming the
call with its arguments and the errno.
"""

from __future__ import annotations

import errno
import os

from ocirt.errors import SyscallError
from ocirt.linux.syscalls.numbers import MACHINE, NR

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy checks the binding against ctypes' own stubs
    import ctypes as ffi
    from typing import Any
else:
    from ocirt.linux.syscalls import ffi

LIBC = ffi.CDLL(None, use_errno=True)
_syscall = LIBC.syscall
_syscall.restype = ffi.c_long


class UnknownNumber(SyscallError):
    """This machine has no entry for the call in ``numbers.TABLE``."""


def syscall(name: str, *args: Any) -> int:
    """syscall(2) by name: the raw result (-1 with errno set on failure)."""
    number = NR.get(name)
    if number is None:
        raise UnknownNumber(name, errno.ENOSYS,
                            f"ocirt knows no number for {name} on {MACHINE}")
    result: int = _syscall(ffi.c_long(number), *args)
    return result


def fail(call: str, detail: str = "") -> SyscallError:
    """The error for the call that just failed (errno read now)."""
    return SyscallError(call, ffi.get_errno(), detail)


def errno_now() -> int:
    return ffi.get_errno()


def b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)
