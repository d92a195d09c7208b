"""Process attributes the kernel keeps across execve: personality, I/O priority, scheduling.

``personality_steps`` comes from linux.personality (the container's init only, as runc);
``process_steps`` from process.ioPriority and process.scheduler (init and exec'd processes).
Values are checked when the plan is built, so a typo fails ``create`` before anything exists.
"""

from __future__ import annotations

from functools import partial

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
    return [Step(f"personality({domain})", partial(sc.personality, value))]


def process_steps(process: dict[str, Any]) -> list[Step]:
    steps: list[Step] = []
    ioprio = process.get("ioPriority")
    if ioprio:
        ioclass = ioprio.get("class")
        if ioclass not in IOPRIO_CLASSES:
            raise ConfigError("$.process.ioPriority.class", f"unknown class {ioclass!r}")
        level = int(ioprio.get("priority", 0))
        steps.append(Step(f"ioprio_set({ioclass}, {level})",
                          partial(sc.ioprio_set, IOPRIO_CLASSES[ioclass], level)))
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
                          partial(sc.sched_setattr, *args)))
    return steps
