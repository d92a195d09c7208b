"""The device filter of a cgroup v2 directory: a BPF program (bound in
``ocirt.linux.syscalls.bpf``) loaded and attached, replacing the program attached there before
(atomically, with BPF_F_REPLACE).

Only cgroup v2 hosts with a device list import this module.
"""

from __future__ import annotations

import errno
import os

from ocirt.errors import SyscallError
from ocirt.linux.syscalls import bpf


def _open_dir(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise SyscallError(f"open({directory!r}, O_DIRECTORY)", err.errno or 0) from err


def install(directory: str, code: bytes) -> None:
    """Load ``code`` and make it the cgroup's only device program: it replaces a single
    earlier program atomically; with several earlier ones it is attached first and they are
    detached after, so no moment is left without a filter."""
    prog_fd = bpf.load(code)
    dir_fd = -1
    old: list[int] = []
    try:
        dir_fd = _open_dir(directory)
        old = [bpf.fd_by_id(prog_id) for prog_id in bpf.query(dir_fd)]
        if len(old) == 1:
            try:
                bpf.attach(dir_fd, prog_fd, bpf.BPF_F_ALLOW_MULTI | bpf.BPF_F_REPLACE, old[0])
                return
            except SyscallError as err:
                if err.errno != errno.EINVAL:  # EINVAL: a kernel without BPF_F_REPLACE
                    raise
        bpf.attach(dir_fd, prog_fd, bpf.BPF_F_ALLOW_MULTI)
        for fd in old:
            bpf.detach(dir_fd, fd)
    finally:
        for fd in [prog_fd, dir_fd, *old]:
            if fd >= 0:
                os.close(fd)


def attached(directory: str) -> list[int]:
    """The ids of the device programs on ``directory`` (for tests and diagnostics)."""
    dir_fd = _open_dir(directory)
    try:
        return bpf.query(dir_fd)
    finally:
        os.close(dir_fd)
