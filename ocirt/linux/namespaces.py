"""Namespaces: which to create, which to join by path, and in what order.

A user namespace comes first (joined or created) because it owns the others; its id maps are
written by the parent before the child goes on. The pid and time namespaces only apply to
children, so the stage that enters them forks the container's init afterwards.
"""

from __future__ import annotations

import fcntl
import os

from ocirt.errors import ConfigError, SyscallError
from ocirt.linux import procfs
from ocirt.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# OCI type -> (clone flag, name under /proc/<pid>/ns).
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (sc.CLONE_NEWUSER, "user"),
    "pid": (sc.CLONE_NEWPID, "pid"),
    "mount": (sc.CLONE_NEWNS, "mnt"),
    "network": (sc.CLONE_NEWNET, "net"),
    "ipc": (sc.CLONE_NEWIPC, "ipc"),
    "uts": (sc.CLONE_NEWUTS, "uts"),
    "cgroup": (sc.CLONE_NEWCGROUP, "cgroup"),
    "time": (sc.CLONE_NEWTIME, "time"),
}
# The order setns needs: user first (it grants the rights for the rest), mount last among
# those that change what paths mean.
JOIN_ORDER = ["user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount"]
_NS_GET_NSTYPE = 0xB703


class NamespacePlan:
    """Namespaces to create (by type) and to join (type -> path)."""

    def __init__(self) -> None:
        self.create: list[str] = []
        self.join: dict[str, str] = {}
        self.join_where: dict[str, str] = {}  # type -> JSON path of its "path"
        self.time_offsets: dict[str, dict[str, int]] = {}  # linux.timeOffsets

    def has(self, kind: str) -> bool:
        return kind in self.create or kind in self.join

    @property
    def new_user(self) -> bool:
        return "user" in self.create

    def unshare_flags(self, exclude_user: bool = True) -> int:
        flags = 0
        for kind in self.create:
            if not (exclude_user and kind == "user"):
                flags |= NAMESPACES[kind][0]
        return flags

    def describe(self) -> list[str]:
        lines = [f"setns {path} ({kind})" for kind, path in self.ordered_joins()]
        if self.new_user:
            lines.append("unshare(CLONE_NEWUSER), then the parent writes uid_map/gid_map")
        for clock, value in self.time_offsets.items():
            lines.append(f"timens_offsets: {clock} {value.get('secs', 0)}s "
                         f"{value.get('nanosecs', 0)}ns")
        names = {"mount": "NS", "network": "NET"}
        flags = [f"CLONE_NEW{names.get(kind, kind.upper())}"
                 for kind in self.create if kind != "user"]
        if flags:
            lines.append(f"unshare({' | '.join(flags)})")
        return lines

    def ordered_joins(self) -> list[tuple[str, str]]:
        return [(kind, self.join[kind]) for kind in JOIN_ORDER if kind in self.join]


def plan_namespaces(linux: dict[str, Any]) -> NamespacePlan:
    plan = NamespacePlan()
    for index, entry in enumerate(linux.get("namespaces", [])):
        kind = entry["type"]
        if kind not in NAMESPACES:
            raise ConfigError(f"$.linux.namespaces[{index}].type",
                              f"unknown namespace type {kind!r}")
        if plan.has(kind):
            raise ConfigError(f"$.linux.namespaces[{index}]",
                              f"namespace type {kind!r} is given twice")
        path = entry.get("path")
        if path:
            plan.join[kind] = path
            plan.join_where[kind] = f"$.linux.namespaces[{index}].path"
        else:
            plan.create.append(kind)
    offsets = linux.get("timeOffsets") or {}
    for clock in offsets:
        if clock not in ("monotonic", "boottime"):
            raise ConfigError(f"$.linux.timeOffsets.{clock}",
                              "only the monotonic and boottime clocks have offsets")
    if offsets and "time" not in plan.create:
        raise ConfigError("$.linux.timeOffsets", "needs a new time namespace")
    plan.time_offsets = offsets
    return plan


def write_time_offsets(pid: int, offsets: dict[str, dict[str, int]]) -> None:
    """Set the clocks of the time namespace ``pid`` just made, before any process enters it.

    The runtime writes them, through the trusted procfs, as runc does: ``pid`` (stage-1) is not
    dumpable, so its /proc files belong to host root, which a stage-1 inside a new user
    namespace cannot open (EACCES); making it dumpable for the write instead would let any
    process of the same host uid ptrace it while it holds host fds.
    """
    text = "".join(f"{clock} {value.get('secs', 0)} {value.get('nanosecs', 0)}\n"
                   for clock, value in offsets.items())
    try:
        procfs.write(f"{pid}/timens_offsets", text)
    except OSError as err:
        raise SyscallError.of(f"write(/proc/{pid}/timens_offsets, {text.strip()!r})", err,
                              "setting the clocks of the time namespace ($.linux.timeOffsets)"
                              ) from err


def open_namespaces(plan: NamespacePlan) -> list[tuple[str, int]]:
    """Open every namespace to join and check it is of the declared type (in the parent)."""
    opened: list[tuple[str, int]] = []
    try:
        for kind, path in plan.ordered_joins():
            where = plan.join_where.get(kind, "$.linux.namespaces")
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise ConfigError(where, str(SyscallError.of(
                    f"open({path!r}, O_RDONLY)", err, f"the {kind} namespace to join"))) from err
            opened.append((kind, fd))
            try:
                actual = fcntl.ioctl(fd, _NS_GET_NSTYPE)
            except OSError as err:
                raise ConfigError(where, str(SyscallError.of(
                    f"ioctl({path!r}, NS_GET_NSTYPE)", err, f"{path!r} is not a namespace"))
                    ) from err
            if actual != NAMESPACES[kind][0]:
                names = {flag: name for name, (flag, _) in NAMESPACES.items()}
                raise ConfigError(where, f"{path!r} is a {names.get(actual, '?')} "
                                  f"namespace, not {kind}")
    except BaseException:
        close_all(opened)
        raise
    return opened


def close_all(opened: list[tuple[str, int]]) -> None:
    for _, fd in opened:
        os.close(fd)


def join(opened: list[tuple[str, int]], only: set[str] | None = None) -> None:
    for kind, fd in opened:
        if only is None or kind in only:
            sc.setns(fd, NAMESPACES[kind][0], f"joining {kind} namespace")


def write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    """Write uid_map and gid_map of a child that has just made its user namespace."""
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(key, []))
        if not lines:
            continue
        try:
            procfs.write(f"{pid}/{name}", lines)  # the trusted procfs: never a redirected file
        except OSError as err:
            raise SyscallError.of(f"write(/proc/{pid}/{name}, {lines.strip()!r})", err,
                                  f"writing the id map of $.linux.{key}") from err

