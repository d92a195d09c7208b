"""The cgroup v1 driver: which files of which controller express each part of linux.resources.

``ops(group, controller, resources, devices, update)`` returns the operations for one
controller. Orders the kernel insists on are kept: memory limit and memory+swap are written in
the order that never puts memsw below the limit (as runc decides it, from the current limit);
a CFS period the kernel refuses before the quota is retried after it; a new cpuset cgroup gets
its parent's cpus and mems before any task can join it.
"""

from __future__ import annotations

import errno
import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, UnsupportedError
from ocirt.linux.cgroups import devices as devrules
from ocirt.linux.cgroups.files import CgroupError, read_file, write_file
from ocirt.linux.cgroups.ops import (
    Custom,
    HierarchyDriver,
    Op,
    Write,
    device_number,
    number,
    page_size,
    sections,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UNLIMITED = 0x7FFFFFFFFFFFF000  # what v1 memory files read when unlimited (page-rounded)
NO_WEIGHT = ("this kernel has no proportional block IO weight for cgroup v1: CFQ is gone "
             "(Linux 5.0) and BFQ offers blkio.bfq.weight only where it is built in")
NO_LEAF = ("this kernel has no blkio leaf weights: they were CFQ's, which is gone since "
           "Linux 5.0")


def ops(group: str, controller: str, resources: dict[str, Any],
        devices: list[dict[str, Any]], update: bool) -> list[Op]:
    section = resources.get(group)
    if group == "cpu":
        return _cpu(section or {}) if controller == "cpu" else _cpuset(section or {})
    if group == "network":
        return _network(controller, section or {})
    if group == "devices":
        rules = devrules.rules(section, devices)
        return [Write("devices", *devrules.v1_line(rule), "linux.resources.devices")
                for rule in rules]
    return sections(group, section, {
        "memory": lambda memory: _memory(memory or {}),
        "blockIO": lambda block_io: _blkio(block_io or {}),
        "hugepageLimits": lambda pages: _hugetlb(pages or []),
    })


# --- memory -------------------------------------------------------------------------------

def _memory(memory: dict[str, Any]) -> list[Op]:
    field = "linux.resources.memory"
    result: list[Op] = []
    limit, swap = memory.get("limit"), memory.get("swap")
    if limit is not None or swap is not None:
        result.append(_limit_and_swap(
            number(limit, f"${field}.limit") if limit is not None else 0,
            number(swap, f"${field}.swap") if swap is not None else 0))
    if memory.get("reservation") is not None:
        result.append(Write("memory", "memory.soft_limit_in_bytes",
                            str(number(memory["reservation"], f"${field}.reservation")),
                            f"{field}.reservation"))
    if memory.get("kernel") is not None:
        result.append(Write("memory", "memory.kmem.limit_in_bytes", str(memory["kernel"]),
                            f"{field}.kernel", "kernel memory limits are gone since Linux "
                            "5.16 (NOT RECOMMENDED by the spec: remove the field)"))
    if memory.get("kernelTCP") is not None:
        result.append(Write("memory", "memory.kmem.tcp.limit_in_bytes",
                            str(memory["kernelTCP"]), f"{field}.kernelTCP"))
    swappiness = memory.get("swappiness")
    if swappiness is not None and swappiness != -1:
        if not 0 <= number(swappiness, f"${field}.swappiness") <= 100:
            raise ConfigError(f"${field}.swappiness", f"{swappiness} is not within 0..100")
        result.append(Write("memory", "memory.swappiness", str(swappiness),
                            f"{field}.swappiness"))
    if memory.get("disableOOMKiller"):
        result.append(Write("memory", "memory.oom_control", "1", f"{field}.disableOOMKiller"))
    if memory.get("useHierarchy") is not None:
        result.append(Write("memory", "memory.use_hierarchy",
                            "1" if memory["useHierarchy"] else "0", f"{field}.useHierarchy",
                            "since Linux 5.10 every v1 memory cgroup is hierarchical: only "
                            "true can be set"))
    return result


def _limit_and_swap(limit: int, swap: int) -> Op:
    """memory.limit_in_bytes and memory.memsw.limit_in_bytes, in the order the kernel
    accepts: memsw may never be below the limit, so a swap above the current limit goes
    first, otherwise the limit does (runc's rule)."""
    if limit == -1 and swap == 0:
        swap = -1  # an unlimited memory with swap unset: both unlimited, as runc does

    def apply(directory: str) -> None:
        memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
        limit_path = os.path.join(directory, "memory.limit_in_bytes")
        swap_first = False
        if limit != 0 and swap != 0:
            current = int(read_file(limit_path))
            swap_first = swap == -1 or current < swap
        order = ["swap", "limit"] if swap_first else ["limit", "swap"]
        for what in order:
            if what == "limit" and limit != 0:
                _write_limit(limit_path, limit, directory)
            elif what == "swap" and swap != 0:
                if not os.path.exists(memsw):
                    if swap == -1:
                        continue  # swap accounting is off: nothing to lift
                    raise CgroupError(f"writing {swap} to", memsw, None,
                                      "linux.resources.memory.swap",
                                      "swap accounting is off in this kernel "
                                      "(swapaccount=1 / CONFIG_MEMCG_SWAP)")
                write_file(memsw, str(swap), "linux.resources.memory.swap")

    text = (f"write memory.limit_in_bytes={limit or 'unchanged'} and memory.memsw.limit_in_bytes="
            f"{swap or 'unchanged'} (in the order the current limit allows)")
    return Custom("memory", text, apply)


def _write_limit(path: str, limit: int, directory: str) -> None:
    try:
        write_file(path, str(limit), "linux.resources.memory.limit")
    except CgroupError as err:
        if err.errno != errno.EBUSY:
            raise
        usage = read_file(os.path.join(directory, "memory.usage_in_bytes"))
        raise CgroupError(f"writing {limit} to", path, None, "linux.resources.memory.limit",
                          f"Device or resource busy (EBUSY): the container already uses "
                          f"{usage} bytes, more than the new limit") from err


# --- cpu and cpuset -----------------------------------------------------------------------

def _cpu(cpu: dict[str, Any]) -> list[Op]:
    field = "linux.resources.cpu"
    result: list[Op] = []
    shares = cpu.get("shares")
    if shares:
        result.append(Custom("cpu", f"write {shares} to cpu.shares (and read it back)",
                             lambda d: _shares(d, int(shares))))
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota or period:
        result.append(_quota_and_period(int(quota or 0), int(period or 0)))
    if cpu.get("burst") is not None:
        result.append(Write("cpu", "cpu.cfs_burst_us", str(cpu["burst"]), f"{field}.burst",
                            "this kernel has no CFS burst (Linux 5.14+)"))
    if cpu.get("realtimePeriod"):
        result.append(Write("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]),
                            f"{field}.realtimePeriod", "this kernel has no RT group "
                            "scheduling (CONFIG_RT_GROUP_SCHED)"))
    if cpu.get("realtimeRuntime"):
        result.append(Write("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]),
                            f"{field}.realtimeRuntime", "this kernel has no RT group "
                            "scheduling (CONFIG_RT_GROUP_SCHED)"))
    if cpu.get("idle") is not None:
        result.append(Write("cpu", "cpu.idle", str(cpu["idle"]), f"{field}.idle",
                            "this kernel has no SCHED_IDLE cgroups (Linux 5.15+)"))
    return result


def _shares(directory: str, shares: int) -> None:
    path = os.path.join(directory, "cpu.shares")
    write_file(path, str(shares), "linux.resources.cpu.shares")
    got = int(read_file(path))
    if got != shares:
        bound = "maximum" if shares > got else "minimum"
        raise CgroupError(f"writing {shares} to", path, None, "linux.resources.cpu.shares",
                          f"the kernel set {got}: the {bound} allowed cpu shares is {got}")


def _quota_and_period(quota: int, period: int) -> Op:
    """cfs_period_us then cfs_quota_us; a period the kernel refuses (EINVAL, the old quota
    over the new period exceeds the parent's) is written again after the quota."""

    def apply(directory: str) -> None:
        period_path = os.path.join(directory, "cpu.cfs_period_us")
        retry = False
        if period:
            try:
                write_file(period_path, str(period), "linux.resources.cpu.period")
            except CgroupError as err:
                if err.errno != errno.EINVAL or not quota:
                    raise
                retry = True
        if quota:
            write_file(os.path.join(directory, "cpu.cfs_quota_us"), str(quota),
                       "linux.resources.cpu.quota")
            if retry:
                write_file(period_path, str(period), "linux.resources.cpu.period")

    return Custom("cpu", f"write cpu.cfs_period_us={period or 'unchanged'} and "
                  f"cpu.cfs_quota_us={quota or 'unchanged'}", apply)


def _cpuset(cpu: dict[str, Any]) -> list[Op]:
    result: list[Op] = []
    for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        if cpu.get(key) is not None:
            result.append(Write("cpuset", name, str(cpu[key]), f"linux.resources.cpu.{key}"))
    return result


def inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset cgroup starts empty and takes no tasks: copy cpus and mems down, from
    the nearest ancestor that has them (an empty parent made by someone else is filled too,
    as runc does, or nothing below it could ever run)."""
    names = ("cpuset.cpus", "cpuset.mems")
    chain = [directory]
    while not all(read_file(os.path.join(os.path.dirname(chain[-1]), n)) for n in names):
        parent = os.path.dirname(chain[-1])
        if not os.path.isfile(os.path.join(os.path.dirname(parent), "cpuset.cpus")):
            break  # the hierarchy's root: nothing above to copy from
        chain.append(parent)
    for child in reversed(chain):
        parent = os.path.dirname(child)
        for name in names:
            if not read_file(os.path.join(child, name)):
                write_file(os.path.join(child, name), read_file(os.path.join(parent, name)))


# --- block IO -----------------------------------------------------------------------------

def _blkio(blkio: dict[str, Any]) -> list[Op]:
    field = "linux.resources.blockIO"
    result: list[Op] = []
    weight_files = ("blkio.weight", "blkio.bfq.weight")
    if blkio.get("weight"):
        result.append(Write("blkio", weight_files, str(blkio["weight"]), f"{field}.weight",
                            NO_WEIGHT))
    if blkio.get("leafWeight"):
        result.append(Write("blkio", "blkio.leaf_weight", str(blkio["leafWeight"]),
                            f"{field}.leafWeight", NO_LEAF))
    for index, entry in enumerate(blkio.get("weightDevice") or []):
        where = f"{field}.weightDevice[{index}]"
        device = device_number(entry, "$." + where)
        if entry.get("weight") is not None:
            result.append(Write("blkio", ("blkio.weight_device", "blkio.bfq.weight_device"),
                                f"{device} {entry['weight']}", f"{where}.weight", NO_WEIGHT))
        if entry.get("leafWeight") is not None:
            result.append(Write("blkio", "blkio.leaf_weight_device",
                                f"{device} {entry['leafWeight']}", f"{where}.leafWeight",
                                NO_LEAF))
    for key, name in THROTTLE_FILES:
        for index, entry in enumerate(blkio.get(key) or []):
            where = f"{field}.{key}[{index}]"
            result.append(Write("blkio", name,
                                f"{device_number(entry, '$.' + where)} {entry['rate']}",
                                where))
    return result


THROTTLE_FILES = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                  ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                  ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                  ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))


# --- the rest -----------------------------------------------------------------------------

def _hugetlb(limits: list[dict[str, Any]]) -> list[Op]:
    result: list[Op] = []
    for index, entry in enumerate(limits):
        where = f"linux.resources.hugepageLimits[{index}]"
        size = page_size(str(entry.get("pageSize", "")), "$." + where + ".pageSize")
        limit = str(entry["limit"])
        result.append(Write("hugetlb", f"hugetlb.{size}.limit_in_bytes", limit, where))
        result.append(Custom("hugetlb", f"write {limit} to hugetlb.{size}.rsvd.limit_in_bytes"
                             " if the kernel has reservation accounting",
                             partial(_optional, f"hugetlb.{size}.rsvd.limit_in_bytes", limit,
                                     where)))
    return result


def _optional(name: str, value: str, field: str, directory: str) -> None:
    path = os.path.join(directory, name)
    if os.path.exists(path):
        write_file(path, value, field)


def _network(controller: str, network: dict[str, Any]) -> list[Op]:
    if controller == "net_cls":
        return [Write("net_cls", "net_cls.classid", str(network["classID"]),
                      "linux.resources.network.classID")]
    return [Write("net_prio", "net_prio.ifpriomap", f"{p['name']} {p['priority']}",
                  f"linux.resources.network.priorities[{i}]")
            for i, p in enumerate(network.get("priorities") or [])]


class V1Driver(HierarchyDriver):
    """cgroup v1: one hierarchy per controller (or group of them); a new cpuset cgroup gets
    its parent's cpus and mems; the freezer is freezer.state."""

    version = 1

    def ops(self, group: str, controller: str, resources: dict[str, Any],
            devices: list[dict[str, Any]], update: bool) -> list[Op]:
        return ops(group, controller, resources, devices, update)

    def unified_op(self, key: str, value: str, mountpoint: str) -> Op:
        raise UnsupportedError(
            f"linux.resources.unified[{key!r}]: the {key.split('.', 1)[0]} controller is on "
            f"cgroup v1 ({mountpoint}); unified keys need it on cgroup v2")

    def made(self, directory: str, controllers: frozenset[str]) -> None:
        if "cpuset" in controllers:
            inherit_cpuset(directory)

    def freeze(self, directory: str) -> None:
        write_file(os.path.join(directory, "freezer.state"), "FROZEN")

    def freeze_done(self, directory: str) -> bool:
        return read_file(os.path.join(directory, "freezer.state")) == "FROZEN"

    def thaw(self, directory: str) -> None:
        write_file(os.path.join(directory, "freezer.state"), "THAWED")


DRIVER = V1Driver()
