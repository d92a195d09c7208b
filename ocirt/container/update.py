"""update: change a running container's resources live, as ``runc update`` does.

The new values (a linux.resources document from ``--resources FILE|-`` and/or the single-value
options) are merged into the resources saved with the container: a section given replaces the
saved fields it names and keeps the others; a list given replaces the saved list, but for
blockIO's per-device lists (weights, bps and iops limits), where each device given updates its
saved entry or is added, as in runc 1.4 (which takes them from ``--resources`` only). The merged
resources are applied to the cgroup (all but the device list, which is not updated, as with
runc) and saved, so the next update starts from them.
"""

from __future__ import annotations

import copy
import json

from ocirt.container.state import Status, Store
from ocirt.errors import OcirtError, StateError
from ocirt.linux import cgroups
from ocirt.linux.cgroups.none import NO_CGROUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# option dest -> (section, field, kind): kind "bytes" takes 512m / 1g / -1, "int", or "str".
OPTIONS: dict[str, tuple[str, str, str]] = {
    "blkio_weight": ("blockIO", "weight", "int"),
    "cpu_period": ("cpu", "period", "int"),
    "cpu_quota": ("cpu", "quota", "int"),
    "cpu_shares": ("cpu", "shares", "int"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "int"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu_idle": ("cpu", "idle", "int"),
    "cpu_burst": ("cpu", "burst", "int"),
    "cpuset_cpus": ("cpu", "cpus", "str"),
    "cpuset_mems": ("cpu", "mems", "str"),
    "memory": ("memory", "limit", "bytes"),
    "memory_reservation": ("memory", "reservation", "bytes"),
    "memory_swap": ("memory", "swap", "bytes"),
    "kernel_memory": ("memory", "kernel", "bytes"),
    "kernel_memory_tcp": ("memory", "kernelTCP", "bytes"),
    "pids_limit": ("pids", "limit", "int"),
}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(text: str, option: str) -> int:
    """``-1``, ``1048576``, ``512k``, ``64m``, ``1.5g``, ``2GiB`` (binary units, as runc)."""
    raw = text.strip().lower()
    if raw == "-1":
        return -1
    for suffix in ("ib", "b"):
        if raw.endswith(suffix) and raw[:-len(suffix)][-1:].isalpha():
            raw = raw[:-len(suffix)]
            break
    unit = raw[-1:] if raw[-1:].isalpha() else ""
    digits = raw[:-1] if unit else raw
    try:
        value = float(digits)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise OcirtError(f"invalid value for --{option}: {text!r} (bytes, or with a unit: "
                         "512k, 64m, 1g; -1 for unlimited)")
    return int(value * _UNITS[unit])


def parse_int(text: str, option: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise OcirtError(f"invalid value for --{option}: {text!r} (an integer)") from None


def from_options(values: dict[str, Any], resources_text: str | None) -> dict[str, Any]:
    """The resources an ``update`` command line asks for."""
    patch: dict[str, Any] = {}
    if resources_text is not None:
        try:
            loaded = json.loads(resources_text)
        except ValueError as err:
            raise OcirtError(f"--resources: not a JSON linux.resources document: {err}"
                             ) from err
        if not isinstance(loaded, dict):
            raise OcirtError("--resources: must be a JSON object (linux.resources)")
        patch = loaded
    for dest, (section, field, kind) in OPTIONS.items():
        text = values.get(dest)
        if text is None:
            continue
        option = dest.replace("_", "-")
        value: Any = (parse_bytes(text, option) if kind == "bytes" else
                      parse_int(text, option) if kind == "int" else str(text))
        patch.setdefault(section, {})[field] = value
    return patch


# blockIO's per-device lists: a device given updates its saved entry, or is added (runc 1.4).
DEVICE_LISTS = ("weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice")


def merge(saved: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(saved)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            if key == "blockIO":
                value = _merge_device_lists(merged[key], value)
            merged[key].update(copy.deepcopy(value))
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_device_lists(saved: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` with each per-device list upserted into the saved one, keyed by
    major:minor: the last saved entry of a device is updated (a weight entry field by field,
    so a new weight keeps the saved leafWeight), a new device is appended."""
    result = dict(patch)
    for key in DEVICE_LISTS:
        if not isinstance(patch.get(key), list) or not isinstance(saved.get(key), list):
            continue
        entries = copy.deepcopy(saved[key])
        for new in patch[key]:
            same = [entry for entry in entries if isinstance(entry, dict) and isinstance(
                new, dict) and (entry.get("major"), entry.get("minor")) == (
                new.get("major"), new.get("minor"))]
            if same:
                same[-1].update({k: v for k, v in new.items() if v is not None})
            else:
                entries.append(copy.deepcopy(new))
        result[key] = entries
    return result


def _check(resources: dict[str, Any]) -> None:
    memory = resources.get("memory") or {}
    limit, swap = memory.get("limit") or 0, memory.get("swap") or 0
    if limit > 0 and swap > 0 and swap < limit:
        raise OcirtError(f"memory+swap ({swap}) must be >= the memory limit ({limit}): "
                         "give --memory-swap too")


def update(store: Store, container_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Apply ``patch`` to the container; returns the resources now in force."""
    with store.lock(container_id):
        state = store.load(container_id)
        if state.current_status() is Status.STOPPED:
            raise StateError(f"cannot update container {container_id}: it is stopped")
        if not state.cgroup:
            raise StateError(f"container {container_id} has no cgroup to update{NO_CGROUP}")
        linux = state.config.setdefault("linux", {})
        merged = merge(linux.get("resources") or {}, patch)
        _check(merged)
        cgroups.load(state.cgroup).update(merged)
        linux["resources"] = merged
        store.save(state)
        return merged
