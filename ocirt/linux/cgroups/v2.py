"""The cgroup v2 driver: unified-hierarchy files for linux.resources, and controller enabling.

The spec's resources are v1's; they are converted as runc converts them: memory.swap.max is
the OCI swap (memory+swap) minus the limit; cpu.weight comes from cpu shares by the quadratic
opencontainers/cgroups adopted for runc (and crun) in 2025, which maps 2, 1024 and 262144 to 1,
100 and 10000; io.weight from the blkio weight by runc's linear formula when BFQ's
io.bfq.weight is absent. What v2 cannot express (swappiness, disabling the OOM killer, realtime
CPU time, leaf weights, kernel memory limits, net_cls/net_prio) is an error naming the field,
not silently dropped. The device list becomes a BPF program (``devices``, ``bpf``).
"""

from __future__ import annotations

import errno
import math
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
    limit_text,
    number,
    page_size,
    sections,
)
from ocirt.linux.cgroups.v1 import THROTTLE_FILES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IO_MAX_KEYS = dict(zip((key for key, _ in THROTTLE_FILES), ("rbps", "wbps", "riops", "wiops"),
                       strict=True))


def cpu_weight(shares: int) -> int:
    """cpu shares [2, 262144] -> cpu.weight [1, 10000]; 1024 (the v1 default) -> 100."""
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return math.ceil(10 ** exponent)


def io_weight(weight: int) -> int:
    """blkio weight [10, 1000] -> io.weight [1, 10000] (runc's linear conversion)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_max(swap: int, limit: int) -> int:
    """OCI swap (memory+swap) -> memory.swap.max (swap alone); -1 is max, 0 unset."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    where = "$.linux.resources.memory.swap"
    if limit in (0, -1):
        raise ConfigError(where, "a swap limit needs a memory limit on cgroup v2 (swap is "
                          "memory+swap there)")
    if limit < 0:
        raise ConfigError("$.linux.resources.memory.limit", f"invalid value {limit}")
    if swap < limit:
        raise ConfigError(where, f"memory+swap ({swap}) must be >= the memory limit ({limit})")
    return swap - limit


def _unsupported(field: str, why: str) -> UnsupportedError:
    return UnsupportedError(f"linux.resources.{field}: {why}")


def ops(group: str, controller: str, resources: dict[str, Any],
        devices: list[dict[str, Any]], update: bool) -> list[Op]:
    section = resources.get(group)
    if group == "cpu":
        return _cpu(section or {}) if controller == "cpu" else _cpuset(section or {})
    if group == "devices":
        rules = devrules.rules(resources.get("devices"), devices)
        code = devrules.program(rules)

        def attach(directory: str) -> None:
            from ocirt.linux.cgroups import bpf

            bpf.install(directory, code)

        return [Custom("devices", f"attach a BPF device filter ({len(rules)} rules, "
                       f"{len(code) // 8} instructions), replacing any earlier one", attach)]
    if group == "network":
        raise _unsupported("network", "net_cls and net_prio exist only on cgroup v1")
    return sections(group, section, {
        "memory": lambda memory: _memory(memory or {}),
        "blockIO": lambda block_io: _io(block_io or {}),
        "hugepageLimits": lambda pages: _hugetlb(pages or []),
    })


# --- memory -------------------------------------------------------------------------------

def _memory(memory: dict[str, Any]) -> list[Op]:
    field = "linux.resources.memory"
    swappiness = memory.get("swappiness")
    if swappiness is not None and swappiness != -1:
        raise _unsupported("memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
    if memory.get("disableOOMKiller"):
        raise _unsupported("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM "
                           "killer")
    if memory.get("useHierarchy") is False:
        raise _unsupported("memory.useHierarchy", "cgroup v2 is always hierarchical")
    for key in ("kernel", "kernelTCP"):
        if memory.get(key) not in (None, 0, -1):
            raise _unsupported(f"memory.{key}", "cgroup v2 has no kernel memory limits")
    limit = number(memory.get("limit") or 0, f"${field}.limit")
    swap = number(memory.get("swap") or 0, f"${field}.swap")
    reservation = memory.get("reservation")
    check = bool(memory.get("checkBeforeUpdate"))
    swap_value = swap_max(swap, limit)
    swap_text = limit_text(swap_value) if swap_value != 0 else ""
    if not swap_text and swap > 0:
        swap_text = "0"  # memory+swap equal to the limit: no swap at all

    def apply(directory: str) -> None:
        if check and limit > 0:
            current = int(read_file(os.path.join(directory, "memory.current")))
            if limit < current:
                raise CgroupError(f"writing {limit} to", os.path.join(directory, "memory.max"),
                                  None, f"{field}.limit (checkBeforeUpdate)",
                                  f"the container uses {current} bytes, more than the new "
                                  "limit")
        if swap_text:
            path = os.path.join(directory, "memory.swap.max")
            if os.path.exists(path) or swap_text not in ("max", "0"):
                write_file(path, swap_text, f"{field}.swap",
                           "" if os.path.exists(path) else
                           "swap accounting is off in this kernel")
        if limit:
            write_file(os.path.join(directory, "memory.max"), limit_text(limit),
                       f"{field}.limit")
        if reservation:
            write_file(os.path.join(directory, "memory.low"),
                       limit_text(int(reservation)), f"{field}.reservation")

    parts = [f"memory.swap.max={swap_text}" if swap_text else "",
             f"memory.max={limit_text(limit)}" if limit else "",
             f"memory.low={limit_text(int(reservation))}" if reservation else ""]
    text = "write " + ", ".join(p for p in parts if p)
    if check:
        text = "check memory.current, then " + text
    if not any(parts):
        return []
    return [Custom("memory", text, apply)]


# --- cpu ----------------------------------------------------------------------------------

def _cpu(cpu: dict[str, Any]) -> list[Op]:
    field = "linux.resources.cpu"
    if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
        raise _unsupported("cpu.realtimeRuntime", "cgroup v2 has no realtime CPU time "
                           "(cpu.rt_* files are v1 only)")
    result: list[Op] = []
    if cpu.get("idle") is not None:
        result.append(Write("cpu", "cpu.idle", str(cpu["idle"]), f"{field}.idle",
                            "this kernel has no SCHED_IDLE cgroups (Linux 5.15+)"))
    if cpu.get("shares"):
        result.append(Write("cpu", "cpu.weight", str(cpu_weight(int(cpu["shares"]))),
                            f"{field}.shares (as cpu.weight)"))
    quota, period, burst = int(cpu.get("quota") or 0), int(cpu.get("period") or 0), \
        cpu.get("burst")
    if quota or period or burst is not None:
        result.append(_max_and_burst(quota, period, burst))
    return result


def _max_and_burst(quota: int, period: int, burst: int | None) -> Op:
    """cpu.max.burst, then cpu.max; a burst the kernel refuses before the new quota
    (EINVAL) is written again after it, as runc does."""
    max_text = ""
    if quota or period:
        max_text = f"{quota if quota > 0 else 'max'} {period or 100000}"

    def apply(directory: str) -> None:
        burst_path = os.path.join(directory, "cpu.max.burst")
        retry = False
        if burst is not None:
            try:
                write_file(burst_path, str(burst), "linux.resources.cpu.burst")
            except CgroupError as err:
                if err.errno != errno.EINVAL or not quota:
                    raise
                retry = True
        if max_text:
            write_file(os.path.join(directory, "cpu.max"), max_text,
                       "linux.resources.cpu.quota/period")
            if retry:
                write_file(burst_path, str(burst), "linux.resources.cpu.burst")

    parts = [f"cpu.max.burst={burst}" if burst is not None else "",
             f"cpu.max={max_text!r}" if max_text else ""]
    return Custom("cpu", "write " + ", ".join(p for p in parts if p), apply)


def _cpuset(cpu: dict[str, Any]) -> list[Op]:
    return [Write("cpuset", f"cpuset.{key}", str(cpu[key]), f"linux.resources.cpu.{key}")
            for key in ("cpus", "mems") if cpu.get(key) is not None]


# --- io -----------------------------------------------------------------------------------

def _io(blkio: dict[str, Any]) -> list[Op]:
    field = "linux.resources.blockIO"
    if blkio.get("leafWeight") or any(e.get("leafWeight") is not None
                                      for e in blkio.get("weightDevice") or []):
        raise _unsupported("blockIO.leafWeight", "cgroup v2 has no leaf weights (they were "
                           "CFQ's)")
    result: list[Op] = []
    weight = blkio.get("weight")
    if weight:
        result.append(Custom("io", f"write {weight} to io.bfq.weight, or {io_weight(weight)} "
                             "to io.weight without BFQ",
                             partial(_weight, dev="", weight=int(weight),
                                     field=f"{field}.weight")))
    for index, entry in enumerate(blkio.get("weightDevice") or []):
        where = f"{field}.weightDevice[{index}]"
        device = device_number(entry, "$." + where)
        if entry.get("weight") is not None:
            result.append(Custom("io", f"write {device} {entry['weight']} to io.bfq.weight "
                                 "(or converted to io.weight)",
                                 partial(_weight, dev=device, weight=int(entry["weight"]),
                                         field=where)))
    for key, name in IO_MAX_KEYS.items():
        for index, entry in enumerate(blkio.get(key) or []):
            where = f"{field}.{key}[{index}]"
            result.append(Write("io", "io.max",
                                f"{device_number(entry, '$.' + where)} {name}={entry['rate']}",
                                where))
    return result


def _weight(directory: str, dev: str, weight: int, field: str) -> None:
    prefix = f"{dev} " if dev else ""
    bfq = os.path.join(directory, "io.bfq.weight")
    if os.path.exists(bfq):
        write_file(bfq, f"{prefix}{weight}", field)
    else:
        write_file(os.path.join(directory, "io.weight"), f"{prefix}{io_weight(weight)}", field,
                   "this kernel has neither io.bfq.weight nor io.weight (no BFQ, no "
                   "CONFIG_BLK_CGROUP_IOCOST)")


# --- the rest -----------------------------------------------------------------------------

def _hugetlb(limits: list[dict[str, Any]]) -> list[Op]:
    result: list[Op] = []
    for index, entry in enumerate(limits):
        where = f"linux.resources.hugepageLimits[{index}]"
        size = page_size(str(entry.get("pageSize", "")), "$." + where + ".pageSize")
        limit = str(entry["limit"])
        result.append(Write("hugetlb", f"hugetlb.{size}.max", limit, where))

        def rsvd(directory: str, s: str = size, v: str = limit, w: str = where) -> None:
            path = os.path.join(directory, f"hugetlb.{s}.rsvd.max")
            if os.path.exists(path):
                write_file(path, v, w)

        result.append(Custom("hugetlb", f"write {limit} to hugetlb.{size}.rsvd.max if the "
                             "kernel has reservation accounting", rsvd))
    return result


def unified_op(key: str, value: str) -> Op:
    """A linux.resources.unified entry, written verbatim to the file it names, which must
    exist (a typo or a controller not enabled is an error, not a new file)."""
    field = f"linux.resources.unified[{key!r}]"

    def apply(directory: str) -> None:
        path = os.path.join(directory, key)
        if not os.path.isfile(path):
            raise CgroupError(f"writing {value!r} to", path, None, field,
                              "no such file in the container's cgroup (a wrong name, or "
                              f"its controller is not enabled: cgroup.controllers is "
                              f"{read_file(os.path.join(directory, 'cgroup.controllers'))!r})")
        write_file(path, value, field)

    return Custom(key.split(".", 1)[0], f"write {value!r} to {key} (unified)", apply)


def enable_controllers(parent: str, wanted: frozenset[str]) -> None:
    """Enable in ``parent``'s cgroup.subtree_control those of ``wanted`` it can hand down."""
    try:
        with open(os.path.join(parent, "cgroup.controllers")) as handle:
            offered = set(handle.read().split()) & set(wanted)
        with open(os.path.join(parent, "cgroup.subtree_control")) as handle:
            enabled = set(handle.read().split())
    except OSError as err:
        raise CgroupError("reading the controllers of", parent, err) from err
    missing = sorted(offered - enabled)
    if not missing:
        return
    text = " ".join(f"+{name}" for name in missing)
    write_file(os.path.join(parent, "cgroup.subtree_control"), text, "",
               "a cgroup v2 cgroup with processes in it cannot hand controllers down: use a "
               "cgroupsPath whose parent holds no process")


class V2Driver(HierarchyDriver):
    """cgroup v2: one hierarchy; a parent hands controllers down through
    cgroup.subtree_control; the freezer is cgroup.freeze, done when cgroup.events says so."""

    version = 2

    def ops(self, group: str, controller: str, resources: dict[str, Any],
            devices: list[dict[str, Any]], update: bool) -> list[Op]:
        return ops(group, controller, resources, devices, update)

    def unified_op(self, key: str, value: str, mountpoint: str) -> Op:
        return unified_op(key, value)

    def prepare_parent(self, parent: str, wanted: frozenset[str]) -> None:
        if wanted:
            enable_controllers(parent, wanted)

    def freeze(self, directory: str) -> None:
        write_file(os.path.join(directory, "cgroup.freeze"), "1")

    def freeze_done(self, directory: str) -> bool:
        return "frozen 1" in read_file(os.path.join(directory, "cgroup.events")).splitlines()

    def thaw(self, directory: str) -> None:
        write_file(os.path.join(directory, "cgroup.freeze"), "0")


DRIVER = V2Driver()
