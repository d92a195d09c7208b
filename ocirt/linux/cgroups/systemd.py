"""The systemd cgroup driver (``--systemd-cgroup``): the container in a transient scope.

As runc's systemd driver does it: cgroupsPath ``slice:prefix:name`` names the scope
``prefix-name.scope`` in ``slice`` (runc's defaults for empty parts: system.slice, or
user.slice for a rootless container; here the prefix ``ocirt`` and the container id). When
stage-1 is forked, ``add`` asks systemd over D-Bus to StartTransientUnit the scope with stage-1's
PID, ``Delegate=yes`` and the properties linux.resources becomes (``sdprops``), and waits for
the job. Then every cgroup file linux.resources needs is written into the delegated cgroup, as
the cgroupfs driver writes v2 (what systemd has no property for, and the exact values where
systemd rounds), and the BPF device filter is attached. ``update`` sets the unit's properties
(SetUnitProperties) and writes the files; ``destroy`` stops the scope and resets it if it
failed, so no unit is left. Pause, resume, ps, kill --all and events work on the scope's cgroup
as on any v2 cgroup (inherited from the cgroupfs ``Manager``).

A rootless runtime (an ordinary user, or root of rootless podman's user namespace) talks to
the user's own systemd, as runc does: its bus ($DBUS_SESSION_BUS_ADDRESS, else
$XDG_RUNTIME_DIR/bus), the slice (``user.slice`` by default) under that manager's cgroup
(``/user.slice/user-UID.slice/user@UID.service``). Only the controllers systemd delegates to the
user (that cgroup's ``cgroup.controllers``, usually ``cpu memory pids``) can hold limits; a limit
needing another is an error before anything is made (runc fails writing its file). No device
rules reach the user's manager or a BPF filter (a user cannot program either; the user namespace
enforces them, as for the cgroupfs driver rootless: ``none.choose``). An exec from outside the
user's subtree (a login session's scope, a system service) cannot write the scope's
cgroup.procs; the user's manager is asked to AttachProcessesToUnit, as runc always does.
"""

from __future__ import annotations

import errno
import os

from ocirt.errors import OcirtError, UnsupportedError
from ocirt.identity import running_rootless
from ocirt.linux.cgroups import sdprops
from ocirt.linux.cgroups.discovery import Hierarchy, discover, pure_v2
from ocirt.linux.cgroups.driver import plain_fork
from ocirt.linux.cgroups.files import CgroupError, read_file, read_text
from ocirt.linux.cgroups.fs import Manager
from ocirt.linux.cgroups.none import check_device_rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.dbus import Systemd
    from ocirt.linux.cgroups.ops import Op
    from ocirt.linux.plan import Note, Step


def _bus(user: bool) -> Systemd:
    from ocirt.linux.cgroups.dbus import Systemd

    return Systemd(user)


class SystemdManager(Manager):
    kind = "systemd"

    def __init__(self, hierarchies: list[Hierarchy], path: str, slice_name: str, unit: str,
                 user: bool, directory: str, annotations: dict[str, str] | None = None
                 ) -> None:
        self.hierarchies, self.path = hierarchies, path
        self.slice, self.unit, self.user = slice_name, unit, user
        self.dirs = {"unified": directory}
        self.created: list[str] = []
        self.device_cgroup = not user  # root only: ocirt's BPF filter in the scope
        self.started = False  # this object started the unit (or loaded an existing one)
        self.annotations = annotations or {}
        self._resources: dict[str, Any] = {}
        self._devices: list[dict[str, Any]] = []
        self._planned: list[tuple[Hierarchy, Op]] = []

    @classmethod
    def for_container(cls, cgroups_path: str | None, container_id: str,
                      annotations: dict[str, str] | None = None) -> SystemdManager:
        if not os.path.isdir("/run/systemd/system"):
            raise UnsupportedError("--systemd-cgroup: systemd is not running on this host "
                                   "(no /run/systemd/system); use the cgroupfs driver")
        hierarchies = discover()
        if not pure_v2(hierarchies):
            raise UnsupportedError("--systemd-cgroup: ocirt's systemd driver needs a pure "
                                   "cgroup v2 host (this one has cgroup v1 hierarchies)")
        user = running_rootless()
        slice_name, unit = sdprops.parse_path(cgroups_path, container_id, user)
        base = ""
        if user:  # the user manager's cgroup: /user.slice/user-1000.slice/user@1000.service
            with _bus(True) as bus:
                base = str(bus.manager_property("ControlGroup")).rstrip("/")
            hierarchies = [_delegated(hierarchies[0], base)]
        directory = (hierarchies[0].mountpoint + base + sdprops.expand_slice(slice_name)
                     ).rstrip("/") + "/" + unit
        return cls(hierarchies, cgroups_path or f":ocirt:{container_id}", slice_name, unit,
                   user, directory, annotations)

    @property
    def directory(self) -> str:
        return self.dirs["unified"]

    # --- create ------------------------------------------------------------------------------

    def steps(self, resources: dict[str, Any], devices: list[dict[str, Any]] | None = None
              ) -> list[Step | Note]:
        """Nothing before the fork: the scope needs stage-1's PID. Everything is checked now
        (the properties and the files), so a bad config fails before anything exists."""
        self._resources, self._devices = resources, devices or []
        if self.user:
            check_device_rules(resources.get("devices") or [], "a rootless runtime cannot "
                               "program the device cgroup (it needs BPF rights)")
        try:
            self._planned = self.ops(resources, devices)
        except UnsupportedError as err:
            if not self.user:
                raise
            offered = " ".join(sorted(self.hierarchies[0].controllers)) or "none"
            raise UnsupportedError(f"{err}; rootless, the container's scope has only the "
                                   "controllers the user's systemd is delegated "
                                   f"({offered}: cgroup.controllers of "
                                   f"{self.hierarchies[0].own_dir})") from None
        self._properties(version=1 << 16)
        return []

    def _properties(self, version: int, pid: int | None = None
                    ) -> list[sdprops.Prop]:
        props: list[sdprops.Prop] = [
            ("Description", ("s", f"ocirt container {self.unit}")),
            ("Slice", ("s", self.slice)),
            ("Delegate", ("b", True)),
            ("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
            ("IOAccounting", ("b", True)), ("TasksAccounting", ("b", True)),
            ("DefaultDependencies", ("b", False)),
        ]
        if pid is not None:
            props.append(("PIDs", ("au", [pid])))
        props += sdprops.annotation_properties(self.annotations)
        oom_group = str((self._resources.get("unified") or {}).get("memory.oom.group", ""))
        if oom_group in ("0", "1"):
            props.append(("OOMPolicy", ("s", "kill" if oom_group == "1" else "continue")))
        if not self.user:  # a user's manager cannot program devices either
            props += sdprops.device_properties(self._resources.get("devices"), self._devices)
        props += sdprops.resource_properties(self._resources, version)
        return props

    def fork_inside(self, flags: int = 0, text: str = "") -> tuple[int, bool]:
        """For exec, cgroupfs's (the scope's cgroup exists); for create a plain fork: the
        scope does not exist until ``adopt`` starts it with the child's PID."""
        if self.started:
            return super().fork_inside(flags, text)
        return plain_fork(flags, text), False

    def waits_for_adopt(self) -> bool:
        """create: the child is in the scope only once ``adopt`` has started it."""
        return not self.started

    def join(self, in_v2: bool = False) -> None:
        if not self.started:
            return
        try:  # exec: the scope's cgroup exists
            super().join(in_v2)
        except CgroupError as err:
            # Rootless from outside the user's subtree: ``adopt`` asks systemd instead.
            if not (self.user and err.errno in (errno.EACCES, errno.EPERM)):
                raise

    def adopt(self, pid: int) -> None:
        """create: start the transient scope with stage-1 in it (``add``). exec, rootless:
        where stage-1 could not move itself into the scope, the user's manager moves it
        (stage-1 waits for the runtime's go after this)."""
        if not self.started:
            self.add(pid)
        elif self.user and not self._holds(pid):
            with _bus(True) as bus:
                bus.attach(self.unit, pid)

    def _holds(self, pid: int) -> bool:
        text = read_text(f"/proc/{pid}/cgroup")
        mountpoint = self.hierarchies[0].mountpoint
        return any(line.startswith("0::") and mountpoint + line[3:] == self.directory
                   for line in text.splitlines())

    def missing_dirs(self) -> list[str]:
        return []  # systemd makes (and removes) the scope's cgroup

    def add(self, pid: int) -> None:
        """The first process (stage-1) starts the scope; later ones (exec) join its cgroup."""
        if self.started:
            super().add(pid)
            return
        from ocirt.linux.cgroups.dbus import SystemdError

        with _bus(self.user) as bus:
            properties = self._properties(bus.version(), pid)
            try:
                bus.start_transient(self.unit, properties)
            except SystemdError as err:
                # Ours to stop unless the name belongs to another live unit.
                self.started = not err.name.endswith(".UnitExists")
                raise
            except BaseException:
                self.started = True  # the unit may exist: destroy() stops it
                raise
        self.started = True
        if not os.path.isdir(self.directory):
            raise OcirtError(f"systemd: {self.unit} started, but its cgroup is not "
                             f"{self.directory}")
        for _, op in self._planned:
            op.apply(self.directory)

    # --- update ------------------------------------------------------------------------------

    def update(self, resources: dict[str, Any]) -> None:
        self._resources = resources
        with _bus(self.user) as bus:
            bus.set_properties(self.unit, sdprops.resource_properties(resources,
                                                                      bus.version()))
        super().update(resources)

    # --- the end -----------------------------------------------------------------------------

    def destroy(self, timeout: float = 5.0) -> None:
        """Stop the scope (systemd removes its cgroup) and reset it if it failed. A unit this
        object did not start (a create that failed before) is never touched."""
        if not self.started:
            return
        self.thaw_if_frozen()
        with _bus(self.user) as bus:
            bus.stop(self.unit)
        # Sub-cgroups the container made in its delegated cgroup: deepest first.
        for root, _, _ in sorted(os.walk(self.directory), key=lambda e: -len(e[0])):
            try:
                os.rmdir(root)
            except OSError:
                pass

    def to_state(self) -> dict[str, Any]:
        return {"driver": self.kind, "path": self.path, "dirs": self.dirs, "created": [],
                "hierarchies": [h.to_json() for h in self.hierarchies], "slice": self.slice,
                "unit": self.unit, "user": self.user}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> SystemdManager:
        manager = cls([Hierarchy.from_json(h) for h in saved["hierarchies"]], saved["path"],
                      saved["slice"], saved["unit"], bool(saved.get("user")),
                      saved["dirs"]["unified"])
        manager.started = True
        return manager


def _delegated(unified: Hierarchy, base: str) -> Hierarchy:
    """The v2 hierarchy as the user's manager sees it: the controllers delegated to it (its
    cgroup's cgroup.controllers), ``own_dir`` that cgroup."""
    directory = unified.mountpoint + base
    controllers = frozenset(read_file(os.path.join(directory, "cgroup.controllers")).split())
    return Hierarchy(2, unified.mountpoint, controllers, directory)


DRIVER_CLASS = SystemdManager
