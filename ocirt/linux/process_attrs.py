"""Process attributes the kernel keeps across execve: personality, NUMA memory policy, I/O
priority, scheduling.

``personality_steps`` comes from linux.personality and ``memory_policy_steps`` from
linux.memoryPolicy (the container's init and processes exec'd into it); ``process_steps`` from
process.ioPriority and process.scheduler (init and exec'd processes).
Values are checked when the plan is built, so a typo fails ``create`` before anything exists.
"""

from __future__ import annotations

from ocirt.errors import ConfigError
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
            "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}


def personality_steps(linux: dict[str, Any]) -> list[Step]:
    persona = linux.get("personality")
    if not persona:
        return []
    domain = persona.get("domain")
    if domain not in PERSONALITIES:
        raise ConfigError("$.linux.personality.domain",
                          f"unknown domain {domain!r} (expected LINUX or LINUX32)")
    if persona.get("flags"):
        raise ConfigError("$.linux.personality.flags",
                          "personality flags are not supported (the spec defines none)")
    value = PERSONALITIES[domain]
    return [Step(f"personality({domain})", lambda: sc.personality(value))]


MEMORY_POLICY_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2,
                       "MPOL_INTERLEAVE": 3, "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5,
                       "MPOL_WEIGHTED_INTERLEAVE": 6}
MEMORY_POLICY_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
                       "MPOL_F_STATIC_NODES": 1 << 15}
_NODES_NEEDED = {"MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                 "MPOL_PREFERRED_MANY"}
_NODES_REFUSED = {"MPOL_DEFAULT", "MPOL_LOCAL"}


def parse_node_list(text: str, where: str) -> list[int]:
    """``0-3,7`` -> [0, 1, 2, 3, 7] (the kernel's list format)."""
    nodes: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ConfigError(where, f"{part!r} is not a node number or range "
                              "(expected a list like 0-3,7)") from None
        if low < 0 or high < low:
            raise ConfigError(where, f"{part!r} is not a valid node range")
        nodes.update(range(low, high + 1))
    return sorted(nodes)


def memory_policy_steps(linux: dict[str, Any],
                        online: str = "/sys/devices/system/node/online") -> list[Step]:
    policy = linux.get("memoryPolicy")
    if not policy:
        return []
    where = "$.linux.memoryPolicy"
    mode = policy.get("mode")
    if mode not in MEMORY_POLICY_MODES:
        raise ConfigError(f"{where}.mode", f"unknown mode {mode!r}")
    nodes = parse_node_list(policy.get("nodes") or "", f"{where}.nodes")
    if mode in _NODES_NEEDED and not nodes:
        raise ConfigError(f"{where}.nodes", f"{mode} needs at least one node")
    if mode in _NODES_REFUSED and nodes:
        raise ConfigError(f"{where}.nodes", f"{mode} takes no nodes")
    flags = 0
    for index, flag in enumerate(policy.get("flags") or []):
        if flag not in MEMORY_POLICY_FLAGS:
            raise ConfigError(f"{where}.flags[{index}]", f"unknown flag {flag!r}")
        flags |= MEMORY_POLICY_FLAGS[flag]
    relative = flags & MEMORY_POLICY_FLAGS["MPOL_F_RELATIVE_NODES"]
    if nodes and not relative:  # relative nodes are positions in the cpuset, not node IDs
        with open(online) as handle:
            host = set(parse_node_list(handle.read(), online))
        missing = [node for node in nodes if node not in host]
        if missing:
            raise ConfigError(f"{where}.nodes", f"node(s) {missing} are not online on this "
                              f"host (online: {sorted(host)})")
    text = " | ".join([mode, *(policy.get("flags") or [])]) + (
        f", nodes {policy['nodes']}" if nodes else "")
    value = MEMORY_POLICY_MODES[mode] | flags
    return [Step(f"set_mempolicy({text})", lambda: sc.set_mempolicy(value, nodes, text))]


def process_steps(process: dict[str, Any]) -> list[Step]:
    steps: list[Step] = []
    ioprio = process.get("ioPriority")
    if ioprio:
        ioclass = ioprio.get("class")
        if ioclass not in IOPRIO_CLASSES:
            raise ConfigError("$.process.ioPriority.class", f"unknown class {ioclass!r}")
        level, number = int(ioprio.get("priority", 0)), IOPRIO_CLASSES[ioclass]
        steps.append(Step(f"ioprio_set({ioclass}, {level})",
                          lambda: sc.ioprio_set(number, level)))
    scheduler = process.get("scheduler")
    if scheduler:
        policy = scheduler.get("policy")
        if policy not in POLICIES:
            raise ConfigError("$.process.scheduler.policy", f"unknown policy {policy!r}")
        flags = 0
        for index, flag in enumerate(scheduler.get("flags") or []):
            if flag not in SCHED_FLAGS:
                raise ConfigError(f"$.process.scheduler.flags[{index}]",
                                  f"unknown flag {flag!r}")
            flags |= SCHED_FLAGS[flag]
        args = (POLICIES[policy], flags, int(scheduler.get("nice", 0)),
                int(scheduler.get("priority", 0)), int(scheduler.get("runtime", 0)),
                int(scheduler.get("deadline", 0)), int(scheduler.get("period", 0)))
        steps.append(Step(f"sched_setattr({policy}, nice={args[2]}, priority={args[3]})",
                          lambda: sc.sched_setattr(*args)))
    return steps
