"""bpf(2): load a cgroup device program, list, attach and detach the programs of a cgroup v2
directory.

The attributes of each command are packed by hand from linux/bpf.h's ``union bpf_attr``; the
kernel zero-checks what we do not pass. A program the verifier refuses is reported with the
verifier's log.
"""

from __future__ import annotations

import _struct as struct  # struct.py only re-exports it, and costs a sys.path search (~0.15 ms)
import errno

from ocirt.errors import SyscallError
from ocirt.linux.syscalls.libc import errno_now, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy checks the binding against ctypes' own stubs
    import ctypes as ffi
else:
    from ocirt.linux.syscalls import ffi

CALLS = ("load", "query", "fd_by_id", "attach", "detach")

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
INSN_SIZE = 8
_COMMANDS = {BPF_PROG_LOAD: "BPF_PROG_LOAD", BPF_PROG_ATTACH: "BPF_PROG_ATTACH",
             BPF_PROG_DETACH: "BPF_PROG_DETACH", BPF_PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID",
             BPF_PROG_QUERY: "BPF_PROG_QUERY"}


def _bpf(cmd: int, attr: ffi.Array[ffi.c_char], args: str, what: str) -> int:
    while True:
        result = syscall("bpf", ffi.c_long(cmd), attr, ffi.c_ulong(len(attr)))
        if result >= 0:
            return result
        err = errno_now()
        if err in (errno.EINTR, errno.EAGAIN):
            continue
        raise SyscallError(f"bpf({_COMMANDS[cmd]}, {args})", err, what)


def load(code: bytes, license_text: str = "Apache") -> int:
    """BPF_PROG_LOAD a device program; returns its fd (close-on-exec)."""
    insns = ffi.create_string_buffer(code, len(code))
    lic = ffi.create_string_buffer(license_text.encode())
    count = len(code) // INSN_SIZE

    def attr(log: ffi.Array[ffi.c_char] | None) -> ffi.Array[ffi.c_char]:
        log_addr = ffi.addressof(log) if log is not None else 0
        log_size = len(log) if log is not None else 0
        packed = struct.pack("<IIQQIIQII", BPF_PROG_TYPE_CGROUP_DEVICE, count,
                             ffi.addressof(insns), ffi.addressof(lic),
                             1 if log is not None else 0, log_size, log_addr, 0, 0)
        return ffi.create_string_buffer(packed, len(packed))

    args = f"BPF_PROG_TYPE_CGROUP_DEVICE, <{count} instructions>"
    try:
        return _bpf(BPF_PROG_LOAD, attr(None), args, "loading the device filter")
    except SyscallError as first:
        if first.errno not in (errno.EINVAL, errno.EACCES):
            raise
        log = ffi.create_string_buffer(256 * 1024)
        try:
            return _bpf(BPF_PROG_LOAD, attr(log), args, "loading the device filter")
        except SyscallError:
            text = log.value.decode(errors="replace").strip().splitlines()[-5:]
            raise SyscallError(f"bpf(BPF_PROG_LOAD, {args})", first.errno or 0,
                               "loading the device filter: the verifier said: "
                               + " | ".join(text)) from None


def query(cgroup_fd: int) -> list[int]:
    """The ids of the device programs attached to the cgroup."""
    count = 64
    while True:
        ids = (ffi.c_uint32 * count)()
        attr = ffi.create_string_buffer(
            struct.pack("<IIIIQII", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ffi.addressof(ids),
                        count, 0), 32)
        try:
            _bpf(BPF_PROG_QUERY, attr, f"cgroup fd {cgroup_fd}, BPF_CGROUP_DEVICE",
                 "listing the cgroup's device programs")
        except SyscallError as err:
            if err.errno == errno.ENOSPC and count < 65536:
                count *= 8
                continue
            raise
        found = struct.unpack_from("<I", attr.raw, 24)[0]
        return list(ids[:found])


def fd_by_id(prog_id: int) -> int:
    attr = ffi.create_string_buffer(struct.pack("<III", prog_id, 0, 0), 12)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, f"id {prog_id}",
                f"opening device program {prog_id}")


def attach(cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int = 0) -> None:
    attr = ffi.create_string_buffer(
        struct.pack("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags, replace_fd), 20)
    _bpf(BPF_PROG_ATTACH, attr, f"cgroup fd {cgroup_fd}, prog fd {prog_fd}, flags {flags:#x}",
         "attaching the device filter")


def detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = ffi.create_string_buffer(
        struct.pack("<IIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0), 16)
    _bpf(BPF_PROG_DETACH, attr, f"cgroup fd {cgroup_fd}, prog fd {prog_fd}",
         "detaching the old device filter")
