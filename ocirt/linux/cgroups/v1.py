"""The cgroup v1 driver: which files of which controller express linux.resources."""

from __future__ import annotations

import os

from ocirt.linux.cgroups import Write, write_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def writes(resources: dict[str, Any]) -> list[Write]:
    result: list[Write] = []
    memory = resources.get("memory") or {}
    if memory.get("limit") is not None:
        result.append(("memory", "memory.limit_in_bytes", str(memory["limit"])))
    if memory.get("reservation") is not None:
        result.append(("memory", "memory.soft_limit_in_bytes", str(memory["reservation"])))
    if memory.get("swap") is not None:
        # memsw can only be written once the plain limit allows it: after limit_in_bytes.
        result.append(("memory", "memory.memsw.limit_in_bytes", str(memory["swap"])))
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        limit = pids["limit"]
        result.append(("pids", "pids.max", "max" if limit <= 0 else str(limit)))
    return result


def inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset cgroup starts empty and takes no tasks: copy cpus and mems down."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(directory, name)) as handle:
            if handle.read().strip():
                continue
        with open(os.path.join(parent, name)) as handle:
            write_file(os.path.join(directory, name), handle.read().strip())
