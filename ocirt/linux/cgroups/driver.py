"""The cgroup driver interface: what the container lifecycle asks of a container's cgroup.

A driver places the container's cgroup, expresses linux.resources there, moves processes in,
freezes and thaws them, lists them, applies ``update``, reads statistics and removes what it
made. Three implementations: ``cgroupfs`` (``fs.Manager``: directories made and written by
ocirt in every hierarchy, v1, v2 or hybrid), ``systemd`` (a transient scope made by systemd
over D-Bus, then written as cgroupfs writes v2) and ``none`` (no cgroup at all, for a rootless
container without a delegated one). A driver saves itself into the container's state
(``to_state``, with its ``driver`` name) and ``load`` brings the right one back, importing
only that driver's module.
"""

from __future__ import annotations

import os

from ocirt.errors import OcirtError
from ocirt.linux.cgroups.discovery import pure_v2

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.discovery import Hierarchy
    from ocirt.linux.plan import Note, Step

# driver name -> the module that holds its class (``DRIVER_CLASS``), imported on demand
MODULES = {"cgroupfs": "ocirt.linux.cgroups.fs", "systemd": "ocirt.linux.cgroups.systemd",
           "none": "ocirt.linux.cgroups.none"}


class CgroupDriver:
    """The container's cgroup, however it is made."""

    kind = ""
    path = ""
    hierarchies: list[Hierarchy]
    dirs: dict[str, str]  # hierarchy name -> the container's cgroup directory in it

    @property
    def pure_v2(self) -> bool:
        """One unified hierarchy (a ``cgroup`` mount is then cgroup2 itself)."""
        return pure_v2(self.hierarchies)

    def has_v2(self) -> bool:
        """Some hierarchy is cgroup v2 (cgroup.kill, clone3 into it, exec --cgroup's form)."""
        return any(h.version == 2 for h in self.hierarchies)

    def steps(self, resources: dict[str, Any], devices: list[dict[str, Any]] | None = None
              ) -> list[Step | Note]:
        """What ``create`` does before it forks, as plan steps."""
        raise NotImplementedError

    def add(self, pid: int) -> None:
        """Put ``pid`` (stage-1, or an exec'd process) into the container's cgroup."""
        raise NotImplementedError

    def fork_inside(self, flags: int = 0, text: str = "") -> tuple[int, bool]:
        """``os.fork()`` (given ``flags``, CLONE_NEW* named by ``text``: clone3, the child born
        in those new namespaces); (pid, whether the child was born inside the container's
        cgroup2 directory). A driver that can, forks straight into it (clone3
        CLONE_INTO_CGROUP)."""
        return plain_fork(flags, text), False

    def waits_for_adopt(self) -> bool:
        """Whether a new container's first child must wait until the parent's ``adopt`` has
        placed it before it may go on (so ``create`` needs stage-1, which waits for "go").
        Not by default: the child joins itself."""
        return False

    def join(self, in_v2: bool = False) -> None:
        """In the child ``fork_inside`` made, first thing: move itself into the container's
        cgroup (``in_v2``: it was born in the cgroup2 directory). Nothing by default: the
        parent's ``adopt`` places it."""

    def adopt(self, pid: int) -> None:
        """In the parent, right after ``fork_inside`` and before any message to the child:
        the parent's part of placing it. Nothing by default: the child joins itself."""

    def missing_dirs(self) -> list[str]:
        """The cgroup directories ``steps`` will make (create records them first, so that a
        create killed at any moment leaves nothing ``delete --force`` cannot find)."""
        return []

    def update(self, resources: dict[str, Any]) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def freeze(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def thaw_if_frozen(self) -> None:
        """Thaw a frozen container (so killed v1-frozen processes can die); never fails."""
        try:
            if self.frozen():
                self.thaw()
        except OcirtError:
            pass

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove what this driver made; nothing of the container's cgroup is left."""
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def mount_steps(self, ctx: Any, mount: dict[str, Any], flags: int) -> list[Step]:
        """A ``cgroup`` mount in the container: what it shows of the container's cgroup."""
        raise NotImplementedError


def plain_fork(flags: int = 0, text: str = "") -> int:
    """``os.fork()``, or with ``flags`` (CLONE_NEW*, named by ``text``) clone3 into new
    namespaces: 0 in the child, its pid in the parent."""
    if not flags:
        return os.fork()
    from ocirt.linux import syscalls

    return syscalls.clone3(flags, text=text)


def load(saved: dict[str, Any]) -> CgroupDriver:
    """The driver a container's state was saved by (state written before drivers had names
    is cgroupfs)."""
    kind = saved.get("driver", "cgroupfs")
    # __import__ with a fromlist returns the module itself; importlib costs ~0.5 ms to import
    cls: Any = __import__(MODULES[kind], fromlist=["DRIVER_CLASS"]).DRIVER_CLASS
    driver: CgroupDriver = cls.from_state(saved)
    return driver
