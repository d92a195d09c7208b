"""cgroups: one manager over every hierarchy of the host, each controller where it lives.

``discover()`` reads the host's cgroup mounts: pure v2, pure v1, or hybrid (v1 controllers
plus a cgroup2 mount with a few). ``Manager`` places the container's cgroup in each hierarchy,
asks the driver of the right version (``v1`` or ``v2``) which files to write for
linux.resources, and removes exactly the directories it made.

cgroupsPath: an absolute path is taken as given (inside each hierarchy); a relative one, and the
default ``ocirt-<id>``, is placed under the runtime's own cgroup, as runc's cgroupfs driver does,
so a runtime running in a container or a test on a shared machine stays inside its own subtree.
"""

from __future__ import annotations

import errno
import os
import time
from functools import partial

from ocirt.errors import ConfigError, OcirtError, UnsupportedError
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Write = tuple[str, str, str]  # (controller, file, value)


class Hierarchy:
    """One mounted cgroup hierarchy. ``controllers``: for v1 what the mount holds, for v2
    cgroup.controllers at its root; ``own_dir``: the runtime's own cgroup there (host path)."""

    def __init__(self, version: int, mountpoint: str, controllers: frozenset[str],
                 own_dir: str) -> None:
        self.version, self.mountpoint = version, mountpoint
        self.controllers, self.own_dir = controllers, own_dir

    @property
    def name(self) -> str:
        return "unified" if self.version == 2 else ",".join(sorted(self.controllers))


def _own_paths() -> tuple[dict[frozenset[str], str], str | None]:
    v1: dict[frozenset[str], str] = {}
    v2: str | None = None
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers:
                v1[frozenset(controllers.split(","))] = path
            else:
                v2 = path
    return v1, v2


def discover() -> list[Hierarchy]:
    own_v1, own_v2 = _own_paths()
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3]
            root, mountpoint = fields[3], fields[4].replace("\\040", " ")
            if fstype == "cgroup2" and own_v2 is not None and not any(
                    h.version == 2 for h in found):
                controllers = _read(os.path.join(mountpoint, "cgroup.controllers")).split()
                found.append(Hierarchy(2, mountpoint, frozenset(controllers),
                                       _join(mountpoint, root, own_v2)))
            elif fstype == "cgroup":
                options = set(superopts.split(","))
                for key, own in own_v1.items():
                    if key <= options and key not in seen:
                        seen.add(key)
                        found.append(Hierarchy(1, mountpoint, key, _join(mountpoint, root, own)))
    return found


def _join(mountpoint: str, root: str, own: str) -> str:
    relative = own[len(root):] if root != "/" and own.startswith(root) else own
    return os.path.join(mountpoint, relative.lstrip("/")).rstrip("/")


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def resolve_path(cgroups_path: str | None, container_id: str) -> str:
    if cgroups_path and ":" in cgroups_path:
        raise UnsupportedError(f"cgroupsPath {cgroups_path!r} is a systemd slice path; ocirt has "
                               "no systemd cgroup driver yet (use a cgroupfs path)")
    path = cgroups_path or f"ocirt-{container_id}"
    if ".." in path.split("/"):
        raise ConfigError("$.linux.cgroupsPath", f"must not contain '..': {path!r}")
    return path


class Manager:
    """The container's cgroup in every hierarchy, and what is written there."""

    def __init__(self, hierarchies: list[Hierarchy], path: str) -> None:
        self.hierarchies = hierarchies
        self.path = path
        self.dirs = {h.name: self._dir_for(h) for h in hierarchies}
        self.created: list[str] = []

    def _dir_for(self, hierarchy: Hierarchy) -> str:
        if self.path.startswith("/"):
            return os.path.join(hierarchy.mountpoint, self.path.lstrip("/")).rstrip("/")
        return os.path.join(hierarchy.own_dir, self.path)

    def where(self, controller: str) -> Hierarchy | None:
        v1 = [h for h in self.hierarchies if h.version == 1 and controller in h.controllers]
        v2 = [h for h in self.hierarchies if h.version == 2 and controller in h.controllers]
        return (v1 or v2)[0] if v1 or v2 else None

    def writes(self, resources: dict[str, Any]) -> list[tuple[Hierarchy, str, str]]:
        from ocirt.linux.cgroups import v1, v2

        by_version = {1: v1.writes(resources), 2: v2.writes(resources)}
        needed = {controller for writes in by_version.values() for controller, _, _ in writes}
        result = []
        for controller in sorted(needed):
            hierarchy = self.where(controller)
            if hierarchy is None:
                raise UnsupportedError(f"linux.resources needs the {controller} cgroup "
                                       "controller, which this host does not offer")
            for ctrl, name, value in by_version[hierarchy.version]:
                if ctrl == controller:
                    result.append((hierarchy, name, value))
        return result

    def steps(self, resources: dict[str, Any]) -> list[Step]:
        steps = [Step(f"mkdir {self.dirs[h.name]}", partial(self._make, h))
                 for h in self.hierarchies]
        for hierarchy, name, value in self.writes(resources):
            path = os.path.join(self.dirs[hierarchy.name], name)
            steps.append(Step(f"write {value!r} to {path}",
                              partial(write_file, path, value)))
        return steps

    def _make(self, hierarchy: Hierarchy) -> None:
        target = self.dirs[hierarchy.name]
        missing = []
        probe = target
        while not os.path.isdir(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        for directory in reversed(missing):
            if hierarchy.version == 2:
                from ocirt.linux.cgroups.v2 import enable_controllers

                enable_controllers(os.path.dirname(directory), hierarchy.controllers)
            try:
                os.mkdir(directory)
            except FileExistsError:
                continue
            except OSError as err:
                raise OcirtError(f"creating cgroup {directory}: {err.strerror}") from err
            self.created.append(directory)
            if hierarchy.version == 1 and "cpuset" in hierarchy.controllers:
                from ocirt.linux.cgroups.v1 import inherit_cpuset

                inherit_cpuset(directory)

    def add(self, pid: int) -> None:
        for hierarchy in self.hierarchies:
            write_file(os.path.join(self.dirs[hierarchy.name], "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for directory in self.dirs.values():
            for root, _, _ in os.walk(directory):
                found.update(int(p) for p in _read(os.path.join(root, "cgroup.procs")).split())
        return sorted(found)

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the directories this container made, deepest first, once they are empty."""
        deadline = time.monotonic() + timeout
        for directory in sorted(self.created, key=len, reverse=True):
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise OcirtError(f"removing cgroup {directory}: {err.strerror}") from err
                    time.sleep(0.01)
        self.created = []

    def to_state(self) -> dict[str, Any]:
        return {"path": self.path, "dirs": self.dirs, "created": self.created}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> Manager:
        manager = cls.__new__(cls)
        manager.hierarchies = []
        manager.path = saved["path"]
        manager.dirs = dict(saved["dirs"])
        manager.created = list(saved["created"])
        return manager


def write_file(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise OcirtError(f"writing {value!r} to {path}: {err.strerror}") from err


def mount_steps(manager: Manager, ctx: Any, mount: dict[str, Any], flags: int) -> list[Step]:
    """A ``cgroup`` mount: cgroup2 itself on a pure v2 host; otherwise a tmpfs holding a
    bind of the container's own cgroup from each hierarchy (as runc shows v1 and hybrid)."""
    from ocirt.linux import rootfs
    from ocirt.linux import syscalls as sc

    destination: str = mount["destination"]
    hierarchies = manager.hierarchies
    bind_flags = flags & ~(sc.MS_BIND | sc.MS_REC)
    if len(hierarchies) == 1 and hierarchies[0].version == 2:
        entry = {"destination": destination, "type": "cgroup2", "source": "cgroup",
                 "options": mount.get("options", [])}
        return rootfs.mount_steps(ctx, entry, 0, "/", None)

    def mount_tmpfs() -> None:
        fd = ctx.target(destination, "dir")
        try:
            sc.mount("tmpfs", rootfs.fd_path(fd), "tmpfs",
                     sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
        finally:
            os.close(fd)

    def bind(name: str, source: str) -> None:
        inner = f"{destination.rstrip('/')}/{name}"
        fd = ctx.target(inner, "dir")
        try:
            sc.mount(source, rootfs.fd_path(fd), None, sc.MS_BIND | sc.MS_REC)
        finally:
            os.close(fd)
        fd = ctx.target(inner, None)
        try:
            rootfs.remount_bind(rootfs.fd_path(fd), bind_flags)
        finally:
            os.close(fd)

    steps = [Step(f"mount tmpfs on {destination} (cgroup v1 view)", mount_tmpfs)]
    for hierarchy in hierarchies:
        name = hierarchy.name.replace("name=", "")
        source = manager.dirs[hierarchy.name]
        steps.append(Step(f"bind {source} on {destination}/{name} "
                          f"({rootfs.describe_flags(bind_flags)})",
                          partial(bind, name, source)))
    if flags & sc.MS_RDONLY:
        def remount_ro() -> None:
            fd = ctx.target(destination, None)
            try:
                rootfs.remount_bind(rootfs.fd_path(fd), sc.MS_RDONLY | sc.MS_NOSUID
                                    | sc.MS_NODEV | sc.MS_NOEXEC)
            finally:
                os.close(fd)
        steps.append(Step(f"remount {destination} read-only", remount_ro))
    return steps
