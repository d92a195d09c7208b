"""Which cgroup hierarchies the host has, and where this process sits in each.

``discover()`` reads the host's cgroup mounts: pure v2, pure v1, or hybrid (v1 controllers
plus a cgroup2 mount with a few). A ``Hierarchy`` knows its version, mountpoint, controllers
and the directory relative cgroupsPaths are placed under (``own_dir``); ``driver`` is the
per-version file driver (``v1`` or ``v2``), imported only when a write needs it.
"""

from __future__ import annotations

import os

from ocirt.linux.cgroups.files import read_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.ops import HierarchyDriver

# On v2 these are files of every cgroup, not controllers listed in cgroup.controllers.
V2_CORE = frozenset({"cgroup", "freezer", "devices"})
# v1 controllers whose v2 successor has another name.
V2_NAMES = {"blkio": "io"}
# The freezer's state file and the text it holds when frozen, by version (read by ``state``,
# which must stay light: no driver import for it).
FREEZER = {1: ("freezer.state", "FROZEN"), 2: ("cgroup.freeze", "1")}


class Hierarchy:
    """One mounted cgroup hierarchy. ``controllers``: for v1 what the mount holds, for v2
    cgroup.controllers at its root; ``own_dir``: where relative paths are placed (host path)."""

    def __init__(self, version: int, mountpoint: str, controllers: frozenset[str],
                 own_dir: str) -> None:
        self.version, self.mountpoint = version, mountpoint
        self.controllers, self.own_dir = controllers, own_dir

    @property
    def name(self) -> str:
        return "unified" if self.version == 2 else ",".join(sorted(self.controllers))

    @property
    def driver(self) -> HierarchyDriver:
        """The file driver of this version (module ``v1`` or ``v2``, imported now)."""
        # __import__ with a fromlist returns the module itself; importlib costs ~0.5 ms to import
        module = __import__(f"ocirt.linux.cgroups.v{self.version}", fromlist=["DRIVER"])
        driver: HierarchyDriver = module.DRIVER
        return driver

    def offers(self, controller: str) -> bool:
        return controller in self.controllers or (self.version == 2 and controller in V2_CORE)

    def frozen(self, directory: str) -> bool:
        name, value = FREEZER[self.version]
        return read_text(os.path.join(directory, name)).strip() == value

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "mountpoint": self.mountpoint,
                "controllers": sorted(self.controllers), "own_dir": self.own_dir}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hierarchy:
        return cls(int(data["version"]), data["mountpoint"], frozenset(data["controllers"]),
                   data["own_dir"])

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version} {self.mountpoint} {self.name})"


def pure_v2(hierarchies: list[Hierarchy]) -> bool:
    """One unified hierarchy and nothing else (a modern host)."""
    return len(hierarchies) == 1 and hierarchies[0].version == 2


def own_paths(text: str) -> tuple[dict[frozenset[str], str], str | None]:
    """This process's cgroups from the text of /proc/self/cgroup: the path in each v1
    hierarchy (by its controllers) and the cgroup2 path (None without a ``0::`` line)."""
    v1: dict[frozenset[str], str] = {}
    v2: str | None = None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers:
            v1[frozenset(controllers.split(","))] = path
        else:
            v2 = path
    return v1, v2


def discover(mountinfo: str | None = None, self_cgroup: str | None = None) -> list[Hierarchy]:
    """The hierarchies this process is in, from /proc/self/{mountinfo,cgroup} (or the texts
    given, for tests)."""
    if self_cgroup is None:
        self_cgroup = read_text("/proc/self/cgroup")
    if mountinfo is None:
        mountinfo = read_text("/proc/self/mountinfo")
    own_v1, own_v2 = own_paths(self_cgroup)
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, superopts = fields[sep + 1], fields[sep + 3]
        root, mountpoint = fields[3], fields[4].replace("\\040", " ")
        if fstype == "cgroup2" and own_v2 is not None and not any(
                h.version == 2 for h in found):
            controllers = read_text(os.path.join(mountpoint, "cgroup.controllers")).split()
            # runc's fs2 placement: relative paths go under the parent of our own cgroup.
            parent = os.path.dirname(own_v2.rstrip("/")) or "/"
            found.append(Hierarchy(2, mountpoint, frozenset(controllers),
                                   _join(mountpoint, root, parent)))
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
