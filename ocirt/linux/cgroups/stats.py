"""Statistics of a container's cgroups, in the shape ``runc events`` prints them.

cpu (usage, per-CPU usage, throttling), memory (usage, swap, kernel, raw memory.stat), pids and
blkio, read from whichever hierarchy holds each controller (v1 files or v2 ones, converted to
the same fields as runc converts them), and the OOM-kill counter that ``events`` watches.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.fs import Manager

USER_HZ = 100
NS = 1_000_000_000


def _text(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _int(path: str) -> int:
    text = _text(path).strip()
    if text == "max":
        return 0xFFFFFFFFFFFFFFFF
    try:
        return int(text)
    except ValueError:
        return 0


def _pairs(path: str) -> dict[str, int]:
    result = {}
    for line in _text(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def _omit_zero(entry: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Go's omitempty: zero numbers and empty lists are left out (``keep`` stays)."""
    return {k: v for k, v in entry.items() if k in keep or v not in (0, [], None, {})}


def collect(manager: Manager) -> dict[str, Any]:
    data: dict[str, Any] = {
        "cpu": _cpu(manager), "memory": _memory(manager), "pids": _pids(manager),
        "blkio": _blkio(manager), "hugetlb": _hugetlb(manager),
        "intel_rdt": {}, "network_interfaces": None,
    }
    return data


def _cpu(manager: Manager) -> dict[str, Any]:
    usage: dict[str, Any] = {"kernel": 0, "user": 0}
    throttling: dict[str, int] = {}
    acct = manager.where("cpuacct")
    cpu = manager.where("cpu")
    if acct is not None and acct.version == 1:
        directory = manager.dirs[acct.name]
        usage["total"] = _int(os.path.join(directory, "cpuacct.usage"))
        usage["percpu"] = [int(x) for x in _text(os.path.join(directory,
                                                              "cpuacct.usage_percpu")).split()]
        ticks = _pairs(os.path.join(directory, "cpuacct.stat"))
        usage["user"] = ticks.get("user", 0) * NS // USER_HZ
        usage["kernel"] = ticks.get("system", 0) * NS // USER_HZ
    if cpu is not None:
        stat = _pairs(os.path.join(manager.dirs[cpu.name], "cpu.stat"))
        if cpu.version == 2:
            usage["total"] = stat.get("usage_usec", 0) * 1000
            usage["user"] = stat.get("user_usec", 0) * 1000
            usage["kernel"] = stat.get("system_usec", 0) * 1000
            throttled_time = stat.get("throttled_usec", 0) * 1000
        else:
            throttled_time = stat.get("throttled_time", 0)
        throttling = {"periods": stat.get("nr_periods", 0),
                      "throttledPeriods": stat.get("nr_throttled", 0),
                      "throttledTime": throttled_time}
    result: dict[str, Any] = {"usage": _omit_zero(usage, ("kernel", "user"))}
    if any(throttling.values()):
        result["throttling"] = _omit_zero(throttling)
    return result


def _memory(manager: Manager) -> dict[str, Any]:
    hierarchy = manager.where("memory")
    if hierarchy is None:
        return {}
    directory = manager.dirs[hierarchy.name]

    def entry(prefix: str) -> dict[str, Any]:
        return _omit_zero({
            "limit": _int(os.path.join(directory, f"{prefix}limit_in_bytes")),
            "usage": _int(os.path.join(directory, f"{prefix}usage_in_bytes")),
            "max": _int(os.path.join(directory, f"{prefix}max_usage_in_bytes")),
            "failcnt": _int(os.path.join(directory, f"{prefix}failcnt")),
        }, ("limit", "failcnt"))

    raw = _pairs(os.path.join(directory, "memory.stat"))
    if hierarchy.version == 1:
        result = {"cache": raw.get("cache", 0), "usage": entry("memory."),
                  "swap": entry("memory.memsw."), "kernel": entry("memory.kmem."),
                  "kernelTCP": entry("memory.kmem.tcp."), "raw": raw}
    else:
        events = _pairs(os.path.join(directory, "memory.events"))
        usage = _omit_zero({"limit": _int(os.path.join(directory, "memory.max")),
                            "usage": _int(os.path.join(directory, "memory.current")),
                            "max": _int(os.path.join(directory, "memory.peak")),
                            "failcnt": events.get("max", 0)}, ("limit", "failcnt"))
        swap_current = _int(os.path.join(directory, "memory.swap.current"))
        # runc reports v2 swap as memory+swap, like v1's memsw.
        swap = _omit_zero({"limit": _int(os.path.join(directory, "memory.swap.max")),
                           "usage": swap_current + usage.get("usage", 0),
                           "failcnt": 0}, ("limit", "failcnt"))
        result = {"cache": raw.get("file", 0), "usage": usage, "swap": swap,
                  "kernel": {"limit": 0, "failcnt": 0},
                  "kernelTCP": {"limit": 0, "failcnt": 0}, "raw": raw}
    return _omit_zero(result, ("usage", "swap", "kernel", "kernelTCP"))


def _pids(manager: Manager) -> dict[str, Any]:
    hierarchy = manager.where("pids")
    if hierarchy is None:
        return {}
    directory = manager.dirs[hierarchy.name]
    limit = _text(os.path.join(directory, "pids.max")).strip()
    return _omit_zero({"current": _int(os.path.join(directory, "pids.current")),
                       "limit": 0 if limit in ("max", "") else int(limit)})


def _blkio(manager: Manager) -> dict[str, Any]:
    hierarchy = manager.where("blkio") or manager.where("io")
    if hierarchy is None:
        return {}
    directory = manager.dirs[hierarchy.name]
    if hierarchy.version == 1:
        return _omit_zero({
            "ioServiceBytesRecursive": _blkio_entries(
                os.path.join(directory, "blkio.throttle.io_service_bytes_recursive")),
            "ioServicedRecursive": _blkio_entries(
                os.path.join(directory, "blkio.throttle.io_serviced_recursive")),
        })
    service_bytes: list[dict[str, Any]] = []
    serviced: list[dict[str, Any]] = []
    for line in _text(os.path.join(directory, "io.stat")).splitlines():
        device, *fields = line.split()
        major, _, minor = device.partition(":")
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        for key, op, target in (("rbytes", "Read", service_bytes),
                                ("wbytes", "Write", service_bytes),
                                ("rios", "Read", serviced), ("wios", "Write", serviced)):
            if key in values:
                target.append(_omit_zero({"major": int(major), "minor": int(minor), "op": op,
                                          "value": int(values[key])}))
    return _omit_zero({"ioServiceBytesRecursive": service_bytes,
                       "ioServicedRecursive": serviced})


def _blkio_entries(path: str) -> list[dict[str, Any]]:
    result = []
    for line in _text(path).splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        major, _, minor = fields[0].partition(":")
        result.append(_omit_zero({"major": int(major), "minor": int(minor), "op": fields[1],
                                  "value": int(fields[2])}))
    return result


def _hugetlb(manager: Manager) -> dict[str, Any]:
    hierarchy = manager.where("hugetlb")
    if hierarchy is None:
        return {}
    directory = manager.dirs[hierarchy.name]
    result: dict[str, Any] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    sizes = sorted({n.split(".")[1] for n in names if n.startswith("hugetlb.")
                    and n.count(".") >= 2})
    for size in sizes:
        base = os.path.join(directory, f"hugetlb.{size}.")
        if hierarchy.version == 1:
            result[size] = _omit_zero({"usage": _int(base + "usage_in_bytes"),
                                       "max": _int(base + "max_usage_in_bytes"),
                                       "failcnt": _int(base + "failcnt")}, ("failcnt",))
        else:
            result[size] = _omit_zero({"usage": _int(base + "current"),
                                       "failcnt": _pairs(base + "events").get("max", 0)},
                                      ("failcnt",))
    return result


def oom_kills(manager: Manager) -> int:
    """How many processes the OOM killer has killed in the container's memory cgroup."""
    hierarchy = manager.where("memory")
    if hierarchy is None:
        return 0
    directory = manager.dirs[hierarchy.name]
    if hierarchy.version == 1:
        return _pairs(os.path.join(directory, "memory.oom_control")).get("oom_kill", 0)
    return _pairs(os.path.join(directory, "memory.events")).get("oom_kill", 0)
