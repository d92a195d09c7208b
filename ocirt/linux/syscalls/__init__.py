"""The one binding layer: every foreign call ocirt makes goes through this package.

Nothing outside it loads a library or calls through ctypes (tests/unit/test_syscalls.py checks
the source). Constants are named as in the kernel headers (``consts``); system call numbers come
from one per-machine table (``numbers``); libc is loaded once (``libc``); the C types come from
``ffi``, made on ``_ctypes`` without importing ``ctypes``. Each wrapper raises
``SyscallError`` naming the call, its arguments and the errno, so callers never check return
values themselves.

  mounts     mount, umount2, pivot_root, openat2, the new mount API, fstatfs,
             renameat2 RENAME_EXCHANGE                               (re-exported here)
  task       unshare, setns, prctl, hostnames, keyring, scheduling, rlimits, clone3,
             bringing up lo
                                                                   (re-exported here)
  capng      libcap-ng, loaded on first use                       (import the module itself)
  seccomp    seccomp(2); libseccomp and pyseccomp, loaded on first use   (import the module)
  bpf        bpf(2) for cgroup v2 device programs                         (import the module)
  ffi        CDLL, PyDLL and the C types the layer uses, on ``_ctypes`` (see its docstring)
  double     the test double: ``with syscalls.recording() as calls:`` records every call
             made through this layer (name, arguments, the plan Step running) instead of
             making it, and returns plausible results

Callers use the module attribute (``sc.mount(...)``, ``capng.apply_sets(...)``), never a name
imported out of it, so the double sees every call.
"""

from __future__ import annotations

import sys

from ocirt.linux.syscalls.consts import *  # noqa: F403
from ocirt.linux.syscalls.mounts import (
    fsmount_new,
    fstatfs_type,
    mount,
    mount_setattr,
    move_mount,
    open_tree,
    openat2,
    pivot_root,
    rename_exchange,
    umount2,
)
from ocirt.linux.syscalls.task import (
    clone3,
    getrlimit,
    ioprio_set,
    join_session_keyring,
    loopback_up,
    personality,
    prctl,
    sched_setaffinity,
    sched_setattr,
    set_mempolicy,
    setdomainname,
    sethostname,
    setns,
    setrlimit,
    unshare,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.linux.syscalls.double import Recorder

__all__ = ["clone3", "fsmount_new", "fstatfs_type", "getrlimit", "ioprio_set",
           "join_session_keyring", "loopback_up",
           "mount", "mount_setattr", "move_mount", "open_tree", "openat2", "personality",
           "pivot_root", "prctl", "recording", "rename_exchange", "sched_setaffinity",
           "sched_setattr",
           "set_mempolicy", "setdomainname", "sethostname", "setns", "setrlimit", "umount2",
           "unshare"]


def recording(results: dict[str, object] | None = None,
              passthrough: tuple[str, ...] = ("openat2", "fstatfs_type", "os.chdir",
                                              "os.fchdir", "rename_exchange"),
              os_calls: tuple[str, ...] | None = None) -> Recorder:
    """A context manager that swaps every binding for a recorder (see ``double``):
    ``results`` gives calls' results by name (a value, an exception, or a function of the
    call's arguments); the calls in ``passthrough`` are recorded and made; ``os_calls`` are
    the ``os`` functions recorded instead of made (default ``double.OS_CALLS``)."""
    from ocirt.linux.syscalls.double import OS_CALLS, Recorder

    return Recorder(results or {}, passthrough, sys.modules[__name__],
                    OS_CALLS if os_calls is None else os_calls)
