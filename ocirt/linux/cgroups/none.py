"""The "none" cgroup driver: a rootless container without a cgroup of its own.

runc's rule for a runtime without root: when the user may not write the cgroup the container
would get (cgroup v1, or v2 without a delegated subtree), the container gets no cgroup and
stays in the caller's; any resource limit it asks for is then an error naming the field, as
there is nowhere to write it. Where the user owns a delegated cgroup (v2 under the user's
systemd session), ``choose`` keeps the ordinary manager and limits work there.

``NoneManager`` is a cgroup driver (``driver.CgroupDriver``) so that the lifecycle needs no
special case: it makes nothing, adds no process anywhere, removes nothing, and what needs a cgroup
(pause, update, statistics) is an error that says why. Its hierarchies and directories are
the caller's own cgroups: what a ``cgroup`` mount in the container shows (read-only binds,
as runc shows a rootless container its cgroups).
"""

from __future__ import annotations

import os

from ocirt.errors import ConfigError, UnsupportedError
from ocirt.linux.cgroups.discovery import Hierarchy, own_paths
from ocirt.linux.cgroups.driver import CgroupDriver, plain_fork
from ocirt.linux.cgroups.fs import Manager
from ocirt.linux.plan import Note, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WHY = ("ocirt runs rootless and this user may not write {where}, where the container's "
       "cgroup would be made, so the container gets no cgroup: remove the limit, or run where "
       "the user owns a delegated cgroup (docs/rootless.md)")

# The end of a "has no cgroup" message about a container created this way.
NO_CGROUP = (": it was created rootless, where the user may not write the cgroup it would "
             "get, so it has none (docs/rootless.md)")


class NoneManager(CgroupDriver):
    """The container has no cgroup: every operation that needs one says so."""

    kind = "none"

    def __init__(self, hierarchies: list[Hierarchy], reason: str,
                 own_cgroups: str | None = None) -> None:
        self.hierarchies = hierarchies
        self.path = ""
        self.reason = reason  # which directory the user could not write
        self.dirs = _own_dirs(hierarchies, own_cgroups)
        self.created: list[str] = []

    pure_v2 = False

    def where(self, controller: str) -> Hierarchy | None:
        return None

    def dir_of(self, controller: str) -> str | None:
        return None

    def steps(self, resources: dict[str, Any], devices: list[dict[str, Any]] | None = None
              ) -> list[Step | Note]:
        check_no_limits(resources, self.reason)
        return [Note(f"no cgroup: {WHY.format(where=self.reason)}")]

    def update(self, resources: dict[str, Any]) -> None:
        raise self._refuse("update")

    def add(self, pid: int) -> None:
        """The process stays in the caller's cgroups."""

    def fork_inside(self, flags: int = 0, text: str = "") -> tuple[int, bool]:
        """A plain fork: the child stays in the caller's cgroups."""
        return plain_fork(flags, text), False

    def join(self, in_v2: bool = False) -> None:
        """The process stays in the caller's cgroups."""

    def pids(self) -> list[int]:
        return []

    def frozen(self) -> bool:
        return False

    def freeze(self, timeout: float = 10.0) -> None:
        raise self._refuse("pause")

    def thaw(self) -> None:
        raise self._refuse("resume")

    def thaw_if_frozen(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        raise self._refuse("statistics")

    def oom_kills(self) -> int:
        return 0

    def destroy(self, timeout: float = 5.0) -> None:
        pass

    def missing_dirs(self) -> list[str]:
        return []

    def to_state(self) -> dict[str, Any]:
        # Empty: the lifecycle's "no cgroup" case (kill, delete, ps, events, pause, update).
        return {}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> NoneManager:
        return cls([], saved.get("reason", "the container's cgroup"))

    def mount_steps(self, ctx: Any, mount: dict[str, Any], flags: int) -> list[Step]:
        """The caller's own cgroups, bound read-only (as runc shows a rootless container)."""
        from ocirt.linux.cgroups.mount import mount_steps

        return mount_steps(self, ctx, mount, flags)

    def _refuse(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} needs the container's cgroup, and it has none: "
                                + WHY.format(where=self.reason))


def pid_namespace_members(init_pid: int) -> list[int]:
    """``init_pid`` and, when it has a pid namespace of its own, every process in it: what a
    container without a cgroup has (``ps``, ``kill --all``)."""
    try:
        wanted = os.readlink(f"/proc/{init_pid}/ns/pid")
        if wanted == os.readlink("/proc/self/ns/pid"):
            return [init_pid]  # the host's pid namespace: only init is known to be ours
    except OSError:
        return [init_pid]
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == wanted:
                    found.append(int(name))
            except OSError:
                continue
    return sorted(found)


def _own_dirs(hierarchies: list[Hierarchy], own_cgroups: str | None) -> dict[str, str]:
    """Hierarchy name -> the host path of the caller's own cgroup in it."""
    if own_cgroups is None:
        try:
            with open("/proc/self/cgroup") as handle:
                own_cgroups = handle.read()
        except OSError:
            own_cgroups = ""
    own_v1, own_v2 = own_paths(own_cgroups)
    own_v1[frozenset()] = own_v2 or "/"  # cgroup2: no controllers in /proc/self/cgroup
    dirs = {}
    for hierarchy in hierarchies:
        key = frozenset() if hierarchy.version == 2 else hierarchy.controllers
        path = own_v1.get(key, "/")
        dirs[hierarchy.name] = os.path.join(hierarchy.mountpoint, path.lstrip("/")).rstrip("/")
    return dirs


def check_no_limits(resources: dict[str, Any], reason: str) -> None:
    """Refuse every part of linux.resources that needs a cgroup; name the first field."""
    from ocirt.linux.cgroups import ops

    why = WHY.format(where=reason)
    for group in ops.GROUPS:
        if group == "devices":
            check_device_rules(resources.get("devices") or [], why)
        elif ops.controllers_for(group, resources, None, False):
            raise ConfigError(f"$.linux.resources.{ops.FIELD[group]}", f"a limit, but {why}")
    for key in resources.get("unified") or {}:
        raise ConfigError(f"$.linux.resources.unified[{key!r}]", f"a cgroup file, but {why}")


def check_device_rules(rules: list[dict[str, Any]], why: str) -> None:
    """Allow rules grant nothing a user namespace does not already give (its device nodes are
    the host's, bound with the host's permissions, and mknod is refused), and denying every
    device is what a user namespace does anyway; a narrower deny needs a device cgroup."""
    for index, rule in enumerate(rules):
        if rule.get("allow"):
            continue
        everything = (rule.get("type") in (None, "a") and rule.get("major") in (None, -1)
                      and rule.get("minor") in (None, -1))
        if not everything:
            raise ConfigError(f"$.linux.resources.devices[{index}]",
                              f"denies a device, which needs a device cgroup, but {why}")


def writable(manager: Manager) -> str | None:
    """None when the user may make (or join) the container's cgroup in every hierarchy;
    otherwise the directory it may not write."""
    for hierarchy in manager.hierarchies:
        target = manager.dirs[hierarchy.name]
        probe = target
        while not os.path.isdir(probe) and probe.startswith(hierarchy.mountpoint + "/"):
            probe = os.path.dirname(probe)
        check = os.path.join(target, "cgroup.procs") if probe == target else probe
        if not os.access(check, os.W_OK):
            return check
    return None


def choose(manager: Manager, rootless: bool, resources: dict[str, Any] | None = None
           ) -> CgroupDriver:
    """The ordinary manager, unless a rootless runtime may not write its cgroups. In a cgroup
    delegated to the user, limits work but the device controller cannot be programmed without
    root: its rules are held to what a user namespace enforces anyway (see
    ``check_device_rules``)."""
    if not rootless:
        return manager
    denied = writable(manager)
    if denied is None:
        check_device_rules((resources or {}).get("devices") or [],
                            "a rootless runtime cannot program the device cgroup (it needs "
                            "CAP_SYS_ADMIN on cgroup v1, BPF rights on v2)")
        manager.device_cgroup = False
        return manager
    return NoneManager(manager.hierarchies, denied)


DRIVER_CLASS = NoneManager
