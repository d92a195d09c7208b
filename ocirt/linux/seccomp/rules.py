"""seccomp rules as data: the names a profile uses, their kernel values, and one rule checked.

Pure data handling, no foreign calls: the action, architecture, operator and flag tables (the
values linux/seccomp.h, linux/audit.h and libseccomp's enums give them), ``Rule`` (one entry of
``syscalls``) and the checks the schema cannot make, each naming the JSON path that is wrong.
"""

from __future__ import annotations

from ocirt.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Action values (linux/seccomp.h SECCOMP_RET_*, as libseccomp's SCMP_ACT_* encode them).
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the actions that take errnoRet
EPERM = 1

# AUDIT_ARCH_* (linux/audit.h): the ELF machine | 64-bit | little-endian bits.
_64, _LE = 0x80000000, 0x40000000
ARCHES: dict[str, int] = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _64,
    "SCMP_ARCH_MIPS64N32": 8 | _64 | 0x20000000,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | 0x20000000,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _64,
    "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _64 | _LE,
    "SCMP_ARCH_M68K": 4,
    "SCMP_ARCH_SH": 42 | _LE,
    "SCMP_ARCH_SHEB": 42,
}
# Argument comparisons (enum scmp_compare).
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
# seccomp(2) filter flags (linux/seccomp.h).
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}
BPF_MAXINSNS = 4096  # the kernel's limit on one classic BPF program


class Rule:
    """One entry of ``syscalls``: names, the action's value and the argument conditions."""

    __slots__ = ("action", "action_name", "conditions", "index", "names")

    def __init__(self, index: int, names: list[str], action_name: str, action: int,
                 conditions: list[tuple[int, int, int, int]]) -> None:
        self.index, self.names, self.action_name = index, names, action_name
        self.action, self.conditions = action, conditions  # (arg index, op, value, valueTwo)


def parse_rule(index: int, entry: dict[str, Any], where: str) -> Rule:
    """``syscalls[index]`` (at JSON path ``where``), checked."""
    action_name: str = entry["action"]
    action = action_value(action_name, entry.get("errnoRet"), f"{where}.action",
                          f"{where}.errnoRet")
    conditions = []
    for k, arg in enumerate(entry.get("args") or []):
        if arg["index"] > 5:
            raise ConfigError(f"{where}.args[{k}].index",
                              f"{arg['index']}: a syscall has arguments 0 to 5")
        conditions.append((arg["index"], OPERATORS[arg["op"]], arg["value"],
                           arg.get("valueTwo", 0)))
    return Rule(index, list(entry["names"]), action_name, action, conditions)


def action_value(name: str, errno_ret: int | None, where: str, errno_where: str) -> int:
    """The kernel's value of action ``name`` with its errno (EPERM unless ``errno_ret``)."""
    if name not in ACTIONS:
        raise ConfigError(where, f"unknown seccomp action {name!r}")
    if name in WITH_DATA:
        value = EPERM if errno_ret is None else errno_ret
        if not 0 <= value <= 0xFFFF:
            raise ConfigError(errno_where, f"{value}: the kernel keeps 16 bits of it")
        return ACTIONS[name] | value
    if errno_ret is not None:
        raise ConfigError(errno_where, f"{errno_ret}: {name} takes no errno "
                          "(only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
    return ACTIONS[name]


def action_text(name: str, value: int) -> str:
    """``SCMP_ACT_ERRNO(1)``: the action's name, with its errno where it takes one."""
    return f"{name}({value & 0xFFFF})" if name in WITH_DATA else name


def condition_text(rule: Rule) -> str:
    """`` [arg0 EQ 0x1]``: the rule's argument conditions, as ``--explain`` shows them."""
    return "".join(f" [arg{i} & {a:#x} == {b:#x}]" if op == OPERATORS["SCMP_CMP_MASKED_EQ"]
                   else f" [arg{i} {op_name(op)} {a:#x}]"
                   for i, op, a, b in rule.conditions)


def op_name(op: int) -> str:
    """``EQ`` for SCMP_CMP_EQ's value."""
    for name, value in OPERATORS.items():
        if value == op:
            return name[len("SCMP_CMP_"):]
    return str(op)
