"""The device allow/deny list: the rules a container gets, and their two kernel forms.

The list is: deny everything, then linux.resources.devices in order, then the devices every
container needs (the spec's default devices, the pty devices, mknod of any device) and the
devices of linux.devices, allowed last as runc allows them. On cgroup v1 each rule is one
line written to devices.allow or devices.deny. On cgroup v2 there are no such files: the list
becomes a BPF_PROG_TYPE_CGROUP_DEVICE program, assembled here instruction by instruction and
attached by ``bpf``. The program checks the rules from the last to the first and the first one
that matches decides (so a later rule overrides an earlier one, as the list order means); a
request matches an allow rule when all the access it asks for is allowed, and a deny rule when
it asks for any of the denied access.
"""

from __future__ import annotations

import _struct as struct  # struct.py only re-exports it, and costs a sys.path search (~0.15 ms)

from ocirt.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# A rule: (allow, type "a"|"c"|"b", major or None for any, minor or None for any, access).
Rule = tuple[bool, str, "int | None", "int | None", str]

# What every container needs, after the user's rules (runc's list, same order).
DEFAULT_RULES: list[Rule] = [
    (True, "c", None, None, "m"),    # mknod of any char device (use still needs a rule)
    (True, "b", None, None, "m"),    # mknod of any block device
    (True, "c", 1, 3, "rwm"),        # /dev/null
    (True, "c", 1, 8, "rwm"),        # /dev/random
    (True, "c", 1, 7, "rwm"),        # /dev/full
    (True, "c", 5, 0, "rwm"),        # /dev/tty
    (True, "c", 1, 5, "rwm"),        # /dev/zero
    (True, "c", 1, 9, "rwm"),        # /dev/urandom
    (True, "c", 136, None, "rwm"),   # /dev/pts/*
    (True, "c", 5, 2, "rwm"),        # /dev/ptmx
    (True, "c", 10, 200, "rwm"),     # /dev/net/tun
]
DENY_ALL: Rule = (False, "a", None, None, "rwm")


def rules(resource_devices: list[dict[str, Any]] | None,
          linux_devices: list[dict[str, Any]] | None) -> list[Rule]:
    result = [DENY_ALL]
    for index, entry in enumerate(resource_devices or []):
        where = f"$.linux.resources.devices[{index}]"
        kind = entry.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise ConfigError(where, f"type {kind!r} must be a, c or b")
        access = entry.get("access") or "rwm"
        if not set(access) <= set("rwm"):
            raise ConfigError(where, f"access {access!r} must be made of r, w and m")
        major, minor = entry.get("major"), entry.get("minor")
        for name, value in (("major", major), ("minor", minor)):
            if value is not None and (value < -1 or value > 0xFFFFFFFF):
                raise ConfigError(where, f"{name} {value} is out of range")
        result.append((bool(entry.get("allow")), kind,
                       None if major is None or major < 0 else int(major),
                       None if minor is None or minor < 0 else int(minor),
                       "".join(sorted(set(access), key="rwm".index))))
    if len(result) > 1 and result[1] == DENY_ALL:
        del result[0]  # the list already starts by denying everything
    result += DEFAULT_RULES
    for entry in linux_devices or []:
        kind = entry.get("type")
        if kind in ("c", "b", "u"):
            result.append((True, "c" if kind == "u" else kind, int(entry.get("major", 0)),
                           int(entry.get("minor", 0)), "rwm"))
    return result


def v1_line(rule: Rule) -> tuple[str, str]:
    """(file, line): devices.allow or devices.deny, and what to write there."""
    allow, kind, major, minor, access = rule
    name = "devices.allow" if allow else "devices.deny"
    if kind == "a" and major is None and minor is None:
        return name, "a"
    return name, (f"{kind} {'*' if major is None else major}:{'*' if minor is None else minor}"
                  f" {access}")


# --- the BPF program --------------------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: access_type holds the
# device type in its low 16 bits and the access asked for in its high 16 bits.
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
_ACCESS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
_TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# Opcodes (linux/bpf_common.h, linux/bpf.h): class | op | source.
LDX_MEM_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54    # BPF_ALU | BPF_AND | BPF_K
ALU32_RSH_K = 0x74    # BPF_ALU | BPF_RSH | BPF_K
ALU32_MOV_K = 0xB4    # BPF_ALU | BPF_MOV | BPF_K
ALU32_MOV_X = 0xBC    # BPF_ALU | BPF_MOV | BPF_X
JMP_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
JMP_JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K
JMP_EXIT = 0x95       # BPF_JMP | BPF_EXIT
R0, R1, R2, R3, R4, R5 = range(6)
NEXT = -0x8000  # a jump to the next rule's block, resolved when the block is complete

Insn = tuple[int, int, int, int, int]  # opcode, dst, src, offset, imm


def _encode(opcode: int, dst: int, src: int, offset: int, imm: int) -> bytes:
    return struct.pack("<BBhi", opcode, (src << 4) | dst, offset, imm)


def _block(rule: Rule) -> tuple[list[Insn], bool]:
    """The instructions of one rule; and whether it matches every request (is terminal)."""
    allow, kind, major, minor, access = rule
    insns: list[Insn] = []
    if kind != "a":
        insns.append((JMP_JNE_K, R2, 0, NEXT, _TYPES[kind]))
    mask = 0
    for char in access:
        mask |= _ACCESS[char]
    if mask != 7:
        insns.append((ALU32_MOV_X, R1, R3, 0, 0))
        if allow:  # every access asked for must be allowed: (asked & ~mask) == 0
            insns.append((ALU32_AND_K, R1, 0, 0, ~mask & 7))
            insns.append((JMP_JNE_K, R1, 0, NEXT, 0))
        else:  # any denied access asked for: (asked & mask) != 0
            insns.append((ALU32_AND_K, R1, 0, 0, mask))
            insns.append((JMP_JEQ_K, R1, 0, NEXT, 0))
    if major is not None:
        insns.append((JMP_JNE_K, R4, 0, NEXT, major))
    if minor is not None:
        insns.append((JMP_JNE_K, R5, 0, NEXT, minor))
    terminal = not insns
    insns.append((ALU32_MOV_K, R0, 0, 0, 1 if allow else 0))
    insns.append((JMP_EXIT, 0, 0, 0, 0))
    return insns, terminal


def program(rule_list: list[Rule]) -> bytes:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program for ``rule_list``: returns 1 to allow."""
    insns: list[Insn] = [
        (LDX_MEM_W, R2, R1, 0, 0), (ALU32_AND_K, R2, 0, 0, 0xFFFF),   # R2 = device type
        (LDX_MEM_W, R3, R1, 0, 0), (ALU32_RSH_K, R3, 0, 0, 16),       # R3 = access asked
        (LDX_MEM_W, R4, R1, 4, 0),                                    # R4 = major
        (LDX_MEM_W, R5, R1, 8, 0),                                    # R5 = minor
    ]
    terminal = False
    for rule in reversed(rule_list):
        block, terminal = _block(rule)
        for index, (opcode, dst, src, offset, imm) in enumerate(block):
            if offset == NEXT:
                offset = len(block) - index - 1
            insns.append((opcode, dst, src, offset, imm))
        if terminal:  # later blocks would be unreachable, which the verifier refuses
            break
    if not terminal:
        insns += [(ALU32_MOV_K, R0, 0, 0, 0), (JMP_EXIT, 0, 0, 0, 0)]   # default: deny
    return b"".join(_encode(*insn) for insn in insns)


def evaluate(rule_list: list[Rule], kind: str, major: int, minor: int, access: str) -> bool:
    """What the program decides for one request, computed in Python (for tests)."""
    asked = set(access)
    for allow, rkind, rmajor, rminor, raccess in reversed(rule_list):
        if rkind != "a" and rkind != kind:
            continue
        if (rmajor is not None and rmajor != major) or (rminor is not None and rminor != minor):
            continue
        if allow and asked <= set(raccess):
            return True
        if not allow and asked & set(raccess):
            return False
    return False


def interpret(code: bytes, kind: str, major: int, minor: int, access: str) -> bool:
    """Run the assembled program on one request: a tiny eBPF interpreter for the opcodes
    ``program`` emits, so unit tests check the bytes the kernel would run."""
    access_mask = sum(_ACCESS[c] for c in set(access))
    ctx = struct.pack("<III", _TYPES[kind] | (access_mask << 16), major, minor)
    regs = [0] * 11
    pc = 0
    count = len(code) // 8
    while pc < count:
        opcode, regs_byte, offset, imm = struct.unpack_from("<BBhi", code, pc * 8)
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if opcode == LDX_MEM_W:
            regs[dst] = struct.unpack_from("<I", ctx, offset)[0]
        elif opcode == ALU32_AND_K:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif opcode == ALU32_RSH_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif opcode == ALU32_MOV_K:
            regs[dst] = imm & 0xFFFFFFFF
        elif opcode == ALU32_MOV_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif opcode == JMP_JNE_K:
            pc += offset if regs[dst] != imm else 0
        elif opcode == JMP_JEQ_K:
            pc += offset if regs[dst] == imm else 0
        elif opcode == JMP_EXIT:
            return regs[R0] == 1
        else:
            raise ValueError(f"unknown opcode {opcode:#x}")
    raise ValueError("fell off the end of the program")
