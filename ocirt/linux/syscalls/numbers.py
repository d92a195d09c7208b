"""System call numbers by machine: the one table for the calls libc has no wrapper for.

Keys are ``uname -m`` names; the numbers are the kernel's (arch/*/entry/syscalls and
include/uapi/asm-generic/unistd.h), as libseccomp's ``seccomp_syscall_resolve_name_arch``
also reports them (tests/unit/test_syscalls.py compares the two). Calls added since Linux 5.1
(424 and up) have one number on every machine. A machine not in the table has no numbers:
those calls then fail with ENOSYS, naming the machine, instead of calling the wrong thing.
"""

from __future__ import annotations

import os

# Since Linux 5.1, new system calls share one number on every architecture.
_UNIFIED = {"pidfd_send_signal": 424, "open_tree": 428, "move_mount": 429, "fsopen": 430,
            "fsconfig": 431, "fsmount": 432, "pidfd_open": 434, "clone3": 435,
            "close_range": 436, "openat2": 437, "mount_setattr": 442}

# The older calls ocirt makes through syscall(2), per machine.
_ASM_GENERIC = {"ioprio_set": 30, "pivot_root": 41, "fstatfs": 44, "personality": 92,
                "keyctl": 219, "set_mempolicy": 237, "sched_setattr": 274, "seccomp": 277,
                "bpf": 280}
TABLE: dict[str, dict[str, int]] = {
    "x86_64": {"fstatfs": 138, "personality": 135, "pivot_root": 155, "set_mempolicy": 238,
               "keyctl": 250, "ioprio_set": 251, "sched_setattr": 314, "seccomp": 317,
               "bpf": 321, **_UNIFIED},
    "aarch64": {**_ASM_GENERIC, **_UNIFIED},
    "riscv64": {**_ASM_GENERIC, **_UNIFIED},
    "ppc64le": {"fstatfs": 100, "personality": 136, "pivot_root": 203, "set_mempolicy": 261,
                "keyctl": 271, "ioprio_set": 273, "sched_setattr": 355, "seccomp": 358,
                "bpf": 361, **_UNIFIED},
    "s390x": {"fstatfs": 100, "personality": 136, "pivot_root": 217, "set_mempolicy": 270,
              "keyctl": 280, "ioprio_set": 282, "sched_setattr": 345, "seccomp": 348,
              "bpf": 351, **_UNIFIED},
}
# Other names ``uname -m`` gives the same kernel ABI.
ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "ppc64": "ppc64le"}

MACHINE = ALIASES.get(os.uname().machine, os.uname().machine)
NR: dict[str, int] = TABLE.get(MACHINE, {})
"""This machine's numbers (empty on a machine the table does not know)."""
