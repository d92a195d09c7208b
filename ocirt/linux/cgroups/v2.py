"""The cgroup v2 driver: unified-hierarchy files for linux.resources, and controller enabling."""

from __future__ import annotations

import os

from ocirt.errors import OcirtError
from ocirt.linux.cgroups import Write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _max(value: int) -> str:
    return "max" if value < 0 else str(value)


def writes(resources: dict[str, Any]) -> list[Write]:
    result: list[Write] = []
    memory = resources.get("memory") or {}
    limit = memory.get("limit")
    if limit is not None:
        result.append(("memory", "memory.max", _max(limit)))
    if memory.get("reservation") is not None:
        result.append(("memory", "memory.low", _max(memory["reservation"])))
    swap = memory.get("swap")
    if swap is not None:
        # OCI swap is memory+swap (v1 memsw); v2's swap.max is the swap alone, as runc converts.
        value = "max" if swap < 0 else str(max(swap - (limit or 0), 0)) if limit else str(swap)
        result.append(("memory", "memory.swap.max", value))
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        limit_pids = pids["limit"]
        result.append(("pids", "pids.max", "max" if limit_pids <= 0 else str(limit_pids)))
    return result


def enable_controllers(parent: str, available: frozenset[str]) -> None:
    """Enable in ``parent`` every controller its own parent lets it hand down."""
    try:
        with open(os.path.join(parent, "cgroup.controllers")) as handle:
            offered = set(handle.read().split()) & set(available)
        with open(os.path.join(parent, "cgroup.subtree_control")) as handle:
            enabled = set(handle.read().split())
    except OSError as err:
        raise OcirtError(f"reading controllers of cgroup {parent}: {err.strerror}") from err
    missing = sorted(offered - enabled)
    if not missing:
        return
    text = " ".join(f"+{name}" for name in missing)
    try:
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as handle:
            handle.write(text)
    except OSError as err:
        raise OcirtError(f"enabling {text!r} in {parent}/cgroup.subtree_control: {err.strerror}"
                         " (a cgroup v2 cgroup with processes in it cannot hand controllers "
                         "down: use an absolute cgroupsPath outside the runtime's own cgroup)"
                         ) from err
