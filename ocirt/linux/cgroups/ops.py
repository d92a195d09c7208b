"""The operations a driver plans: a cgroup file write, or a short sequence decided at run time.

An operation names the controller it belongs to (the manager finds the hierarchy that holds
it), describes itself for ``--explain`` and applies itself to a cgroup directory. This module
also says which controllers each part of linux.resources needs, so the manager can place every
part in the hierarchy where that controller lives (v1 mount, or the v2 hierarchy).
"""

from __future__ import annotations

import os

from ocirt.errors import ConfigError
from ocirt.linux.cgroups.files import CgroupError, write_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Op:
    """One thing to do in a cgroup directory."""

    controller: str

    def describe(self, directory: str) -> str:
        raise NotImplementedError

    def apply(self, directory: str) -> None:
        raise NotImplementedError


class Write(Op):
    """Write ``value`` to the first of ``names`` that exists (all missing: an error naming
    them, with ``hint`` saying why a kernel may lack them)."""

    def __init__(self, controller: str, names: str | tuple[str, ...], value: str, field: str,
                 hint: str = "") -> None:
        self.controller = controller
        self.names = (names,) if isinstance(names, str) else names
        self.value, self.field, self.hint = value, field, hint

    def __repr__(self) -> str:
        return f"Write({self.controller}, {'|'.join(self.names)}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Write) and (self.controller, self.names, self.value) == (
            other.controller, other.names, other.value)

    def __hash__(self) -> int:
        return hash((self.controller, self.names, self.value))

    def describe(self, directory: str) -> str:
        name = self.names[0] if len(self.names) == 1 else "{" + ",".join(self.names) + "}"
        return f"write {self.value!r} to {directory}/{name} ({self.field})"

    def apply(self, directory: str) -> None:
        for name in self.names:
            path = os.path.join(directory, name)
            if len(self.names) == 1 or os.path.exists(path):
                write_file(path, self.value, self.field, self.hint)
                return
        raise CgroupError(f"writing {self.value!r}: none of {', '.join(self.names)} exists in",
                          directory, None, self.field, self.hint)


class Custom(Op):
    """A sequence whose order or content depends on what the cgroup holds when it runs."""

    def __init__(self, controller: str, text: str, action: Callable[[str], None]) -> None:
        self.controller, self.text, self.action = controller, text, action

    def __repr__(self) -> str:
        return f"Custom({self.controller}, {self.text!r})"

    def describe(self, directory: str) -> str:
        return f"{self.text} in {directory}"

    def apply(self, directory: str) -> None:
        self.action(directory)


class HierarchyDriver:
    """What one cgroup version does in the directories of its hierarchy: the operations that
    express linux.resources, what a new cgroup needs around its mkdir, the freezer. ``v1`` and
    ``v2`` each have one (``DRIVER``); the manager asks the hierarchy for it, never the version."""

    version: int

    def ops(self, group: str, controller: str, resources: dict[str, Any],
            devices: list[dict[str, Any]], update: bool) -> list[Op]:
        raise NotImplementedError

    def unified_op(self, key: str, value: str, mountpoint: str) -> Op:
        """A linux.resources.unified entry (only v2 has them)."""
        raise NotImplementedError

    def prepare_parent(self, parent: str, wanted: frozenset[str]) -> None:
        """Before a child of ``parent`` is made or written: hand ``wanted`` controllers down."""

    def made(self, directory: str, controllers: frozenset[str]) -> None:
        """Just after ``directory`` was made, before any task joins it."""

    def freeze(self, directory: str) -> None:
        raise NotImplementedError

    def freeze_done(self, directory: str) -> bool:
        raise NotImplementedError

    def thaw(self, directory: str) -> None:
        raise NotImplementedError


# linux.resources, part by part, in the order the manager applies them.
GROUPS = ("cpu", "memory", "pids", "blockIO", "hugepageLimits", "network", "rdma", "devices")
FIELD = {"cpu": "cpu", "memory": "memory", "pids": "pids", "blockIO": "blockIO",
         "hugepageLimits": "hugepageLimits", "network": "network", "rdma": "rdma",
         "devices": "devices"}
CPU_FIELDS = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")


def is_set(section: dict[str, Any], *keys: str) -> bool:
    return any(section.get(key) is not None for key in keys)


def controllers_for(group: str, resources: dict[str, Any],
                    devices: list[dict[str, Any]] | None, update: bool) -> list[str]:
    """The controllers ``group`` needs, by their v1 name; the manager maps blkio to v2's io."""
    section = resources.get(group)
    if group == "devices":
        return ["devices"]
    if not section:
        return []
    if group == "cpu":
        return ([c for c, keys in (("cpu", CPU_FIELDS), ("cpuset", ("cpus", "mems")))
                 if is_set(section, *keys)])
    if group == "memory":
        return ["memory"] if any(v is not None for v in section.values()) else []
    if group == "pids":
        return ["pids"] if section.get("limit") is not None else []
    if group == "blockIO":
        return ["blkio"] if any(v is not None for v in section.values()) else []
    if group == "network":
        return [c for c, key in (("net_cls", "classID"), ("net_prio", "priorities"))
                if section.get(key) is not None]
    if group == "hugepageLimits":
        return ["hugetlb"]
    if group == "rdma":
        return ["rdma"]
    return []


def unified_controller(key: str) -> str:
    """``memory.high`` -> memory; the key must be a plain file name of a cgroup."""
    if not key or "/" in key or key.startswith(".") or "." not in key:
        raise ConfigError(f"$.linux.resources.unified[{key!r}]",
                          "must name a cgroup v2 file, such as memory.high")
    return key.split(".", 1)[0]


def device_number(entry: dict[str, Any], where: str) -> str:
    major, minor = entry.get("major"), entry.get("minor")
    if major is None or minor is None:
        raise ConfigError(where, "major and minor are required")
    return f"{major}:{minor}"


PAGE_UNITS = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}


def page_size(text: str, where: str) -> str:
    """Check ``2MB``-style sizes against the kernel's huge page sizes; return the name the
    cgroup files use."""
    number, unit = text[:-2], text[-2:]
    if not number.isdigit() or unit not in PAGE_UNITS:
        raise ConfigError(where, f"pageSize {text!r} must look like 2MB or 1GB")
    kib = int(number) * PAGE_UNITS[unit] // 1024
    try:
        known = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        known = []
    if known and f"hugepages-{kib}kB" not in known:
        sizes = sorted(int(k.split("-")[1][:-2]) for k in known)
        raise ConfigError(where, f"pageSize {text!r}: this kernel's huge page sizes are "
                          + ", ".join(_size_name(s * 1024) for s in sizes))
    return _size_name(kib * 1024)


def _size_name(size: int) -> str:
    for unit in ("PB", "TB", "GB", "MB", "KB"):
        if size >= PAGE_UNITS[unit] and size % PAGE_UNITS[unit] == 0:
            return f"{size // PAGE_UNITS[unit]}{unit}"
    return f"{size}B"


def number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"must be an integer, not {value!r}")
    return value


def limit_text(value: int) -> str:
    """-1 (or any negative) is the kernel's ``max``."""
    return "max" if value < 0 else str(value)


def sections(group: str, section: Any, handlers: dict[str, Callable[[Any], list[Op]]]
             ) -> list[Op]:
    """The ops for ``linux.resources.<group>`` (``section``, None when absent): the driver's
    own handler, or the one both versions share (pids, rdma); nothing for an unknown group."""
    handler = handlers.get(group) or SHARED.get(group)
    return handler(section) if handler is not None else []


def _pids(section: dict[str, Any] | None) -> list[Op]:
    limit = number((section or {})["limit"], "$.linux.resources.pids.limit")
    return [Write("pids", "pids.max", limit_text(limit), "linux.resources.pids.limit")]


def _rdma(section: dict[str, Any] | None) -> list[Op]:
    """rdma.max, one line per device (the same file on v1 and v2)."""
    lines = []
    for device, limits in (section or {}).items():
        handles, objects = limits.get("hcaHandles"), limits.get("hcaObjects")
        if handles is None and objects is None:
            raise ConfigError(f"$.linux.resources.rdma[{device!r}]",
                              "needs hcaHandles or hcaObjects")
        lines.append(f"{device} hca_handle={'max' if handles is None else handles} "
                     f"hca_object={'max' if objects is None else objects}")

    def apply(directory: str) -> None:
        for line in lines:
            write_file(os.path.join(directory, "rdma.max"), line, "linux.resources.rdma")

    return [Custom("rdma", "write " + "; ".join(repr(line) for line in lines) + " to rdma.max",
                   apply)]


SHARED: dict[str, Callable[[Any], list[Op]]] = {"pids": _pids, "rdma": _rdma}
