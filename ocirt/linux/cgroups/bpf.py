"""bpf(2) through ctypes: load a cgroup device program and attach it to a cgroup v2 directory,
replacing the program attached there before (atomically, with BPF_F_REPLACE).

Only cgroup v2 hosts with a device list import this module. The attributes of each command are
packed by hand from linux/bpf.h's ``union bpf_attr``; the kernel zero-checks what we do not
pass. A program the verifier refuses is reported with the verifier's log.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from ocirt.errors import SyscallError

SYS_bpf = 321  # x86_64
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

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    while True:
        result: int = _syscall(ctypes.c_long(SYS_bpf), ctypes.c_long(cmd), attr,
                               ctypes.c_ulong(len(attr)))
        if result >= 0:
            return result
        err = ctypes.get_errno()
        if err in (errno.EINTR, errno.EAGAIN):
            continue
        raise SyscallError("bpf", err, what)


def load(code: bytes, license_text: str = "Apache") -> int:
    """BPF_PROG_LOAD a device program; returns its fd (close-on-exec)."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license_text.encode())

    def attr(log: ctypes.Array[ctypes.c_char] | None) -> ctypes.Array[ctypes.c_char]:
        log_addr = ctypes.addressof(log) if log is not None else 0
        log_size = len(log) if log is not None else 0
        packed = struct.pack("<IIQQIIQII", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // INSN_SIZE,
                             ctypes.addressof(insns), ctypes.addressof(lic),
                             1 if log is not None else 0, log_size, log_addr, 0, 0)
        return ctypes.create_string_buffer(packed, len(packed))

    try:
        return _bpf(BPF_PROG_LOAD, attr(None),
                    f"loading the device filter ({len(code) // INSN_SIZE} instructions)")
    except SyscallError as first:
        if first.errno not in (errno.EINVAL, errno.EACCES):
            raise
        log = ctypes.create_string_buffer(256 * 1024)
        try:
            return _bpf(BPF_PROG_LOAD, attr(log), "loading the device filter")
        except SyscallError:
            text = log.value.decode(errors="replace").strip().splitlines()[-5:]
            raise SyscallError("bpf", first.errno,
                               "loading the device filter: the verifier said: "
                               + " | ".join(text)) from None


def query(cgroup_fd: int) -> list[int]:
    """The ids of the device programs attached to the cgroup."""
    count = 64
    while True:
        ids = (ctypes.c_uint32 * count)()
        attr = ctypes.create_string_buffer(
            struct.pack("<IIIIQII", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids),
                        count, 0), 32)
        try:
            _bpf(BPF_PROG_QUERY, attr, "listing the cgroup's device programs")
        except SyscallError as err:
            if err.errno == errno.ENOSPC and count < 65536:
                count *= 8
                continue
            raise
        found = struct.unpack_from("<I", attr.raw, 24)[0]
        return list(ids[:found])


def fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(struct.pack("<III", prog_id, 0, 0), 12)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr, f"opening device program {prog_id}")


def attach(cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int = 0) -> None:
    attr = ctypes.create_string_buffer(
        struct.pack("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags, replace_fd), 20)
    _bpf(BPF_PROG_ATTACH, attr, "attaching the device filter")


def detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = ctypes.create_string_buffer(
        struct.pack("<IIII", cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0), 16)
    _bpf(BPF_PROG_DETACH, attr, "detaching the old device filter")


def install(directory: str, code: bytes) -> None:
    """Load ``code`` and make it the cgroup's only device program: it replaces a single
    earlier program atomically; with several earlier ones it is attached first and they are
    detached after, so no moment is left without a filter."""
    prog_fd = load(code)
    dir_fd = -1
    old: list[int] = []
    try:
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise SyscallError("open", err.errno or 0, directory) from err
        old = [fd_by_id(prog_id) for prog_id in query(dir_fd)]
        if len(old) == 1:
            try:
                attach(dir_fd, prog_fd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, old[0])
                return
            except SyscallError as err:
                if err.errno != errno.EINVAL:  # EINVAL: a kernel without BPF_F_REPLACE
                    raise
        attach(dir_fd, prog_fd, BPF_F_ALLOW_MULTI)
        for fd in old:
            detach(dir_fd, fd)
    finally:
        for fd in [prog_fd, dir_fd, *old]:
            if fd >= 0:
                os.close(fd)


def attached(directory: str) -> list[int]:
    """The ids of the device programs on ``directory`` (for tests and diagnostics)."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return query(dir_fd)
    finally:
        os.close(dir_fd)
