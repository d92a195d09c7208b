"""The cgroupfs driver: the container's cgroup made by ocirt in every hierarchy of the host.

``Manager`` places the container's cgroup in each hierarchy, asks each hierarchy's file
driver (``v1`` or ``v2``, through ``Hierarchy.driver``) which operations express
linux.resources there, and removes exactly the directories it made. It also freezes and thaws
the container (``pause``/``resume``), lists its processes, applies ``update`` live and reads
the statistics and OOM counters that ``events`` prints (``stats``). The systemd driver is
this manager on a cgroup systemd made.

cgroupsPath: an absolute path is taken as given (inside each hierarchy); a relative one, and the
default ``ocirt-<id>``, is placed as runc's cgroupfs driver places it: under the runtime's own
cgroup on v1, under its parent on v2 (the runtime's own v2 cgroup has processes, so it cannot
hand controllers down). A runtime running in a container, or a test on a shared machine, thus
stays inside its own subtree.
"""

from __future__ import annotations

import errno
import os
import time
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, OcirtError, SyscallError, UnsupportedError
from ocirt.linux.cgroups.discovery import V2_NAMES, Hierarchy
from ocirt.linux.cgroups.driver import CgroupDriver, plain_fork
from ocirt.linux.cgroups.files import CgroupError, read_text, write_file
from ocirt.linux.plan import Note, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.ops import Op


def resolve_path(cgroups_path: str | None, container_id: str) -> str:
    """A cgroupfs cgroupsPath, checked (the default ``ocirt-<id>`` when empty)."""
    if cgroups_path and ":" in cgroups_path:
        raise UnsupportedError(f"$.linux.cgroupsPath {cgroups_path!r} is a systemd "
                               "slice:prefix:name path, for the systemd cgroup driver "
                               "(--systemd-cgroup); the cgroupfs driver takes a path such "
                               "as /mygroup/ctr or mygroup/ctr")
    path = cgroups_path or f"ocirt-{container_id}"
    if ".." in path.split("/"):
        raise ConfigError("$.linux.cgroupsPath", f"must not contain '..': {path!r}")
    if path.strip("/") == "":
        raise ConfigError("$.linux.cgroupsPath", f"must name a cgroup below the root: {path!r}")
    return path


class Manager(CgroupDriver):
    """The container's cgroup in every hierarchy, and what is written there."""

    kind = "cgroupfs"

    def __init__(self, hierarchies: list[Hierarchy], path: str) -> None:
        self.hierarchies = hierarchies
        self.path = path
        self.dirs = {h.name: self._dir_for(h) for h in hierarchies}
        self.created: list[str] = []
        # False for a rootless runtime in a delegated cgroup: programming the device
        # controller needs CAP_SYS_ADMIN (v1) or BPF rights (v2) a user does not have.
        self.device_cgroup = True

    def _dir_for(self, hierarchy: Hierarchy) -> str:
        if self.path.startswith("/"):
            return os.path.join(hierarchy.mountpoint, self.path.lstrip("/")).rstrip("/")
        return os.path.join(hierarchy.own_dir, self.path).rstrip("/")

    def where(self, controller: str) -> Hierarchy | None:
        """The hierarchy that holds ``controller``: a v1 mount of it, else the v2 one."""
        for version in (1, 2):
            for hierarchy in self.hierarchies:
                if hierarchy.version == version and hierarchy.offers(controller):
                    return hierarchy
        return None

    def dir_of(self, controller: str) -> str | None:
        hierarchy = self.where(controller)
        return self.dirs[hierarchy.name] if hierarchy is not None else None

    # --- what linux.resources becomes -------------------------------------------------------

    def ops(self, resources: dict[str, Any], devices: list[dict[str, Any]] | None = None,
            update: bool = False) -> list[tuple[Hierarchy, Op]]:
        """The operations that express ``resources`` (and, unless ``update``, the device
        list: resources.devices then the default devices and ``devices`` of linux.devices),
        each with the hierarchy it applies to, in the order they must run."""
        from ocirt.linux.cgroups import ops as opsmod

        result: list[tuple[Hierarchy, Op]] = []
        for group in opsmod.GROUPS:
            if group == "devices" and (update or not self.device_cgroup):
                continue
            wanted = opsmod.controllers_for(group, resources, devices, update)
            for controller in wanted:
                hierarchy = self.where(controller)
                if hierarchy is None and controller in V2_NAMES:
                    controller = V2_NAMES[controller]
                    hierarchy = self.where(controller)
                if hierarchy is None:
                    raise UnsupportedError(
                        f"linux.resources.{opsmod.FIELD[group]} needs the {controller} cgroup "
                        "controller, which this host does not offer (not mounted on v1, not "
                        "in cgroup.controllers on v2)")
                for op in hierarchy.driver.ops(group, controller, resources, devices or [],
                                               update):
                    result.append((hierarchy, op))
        for key, value in (resources.get("unified") or {}).items():
            controller = opsmod.unified_controller(key)
            hierarchy = self.where(controller)
            if hierarchy is None:
                raise UnsupportedError(
                    f"linux.resources.unified[{key!r}]: the {controller} controller is not "
                    "offered by this host; unified keys need it on cgroup v2")
            result.append((hierarchy, hierarchy.driver.unified_op(key, str(value),
                                                                  hierarchy.mountpoint)))
        return result

    def steps(self, resources: dict[str, Any], devices: list[dict[str, Any]] | None = None
              ) -> list[Step | Note]:
        """mkdir (and join checks) in every hierarchy, then every write, as plan steps."""
        planned = self.ops(resources, devices)
        needed: dict[str, set[str]] = {}
        for hierarchy, op in planned:
            needed.setdefault(hierarchy.name, set()).add(op.controller)
        steps: list[Step | Note] = [Step(f"mkdir {self.dirs[h.name]}",
                                         partial(self._make, h,
                                                 frozenset(needed.get(h.name, ()))))
                                    for h in self.hierarchies]
        for hierarchy, op in planned:
            directory = self.dirs[hierarchy.name]
            steps.append(Step(op.describe(directory), partial(op.apply, directory)))
        return steps

    def update(self, resources: dict[str, Any]) -> None:
        """Apply ``resources`` (all but the device list) to the live cgroup."""
        for hierarchy, op in self.ops(resources, update=True):
            directory = self.dirs[hierarchy.name]
            hierarchy.driver.prepare_parent(os.path.dirname(directory),
                                            frozenset({op.controller}) & hierarchy.controllers)
            op.apply(directory)

    def _make(self, hierarchy: Hierarchy, needed: frozenset[str]) -> None:
        target = self.dirs[hierarchy.name]
        if os.path.isdir(target):
            self._check_joinable(hierarchy, target)
        # Pure v2: hand every controller down, as runc does, so `update` can use any later.
        # Hybrid: only what the resources need, in a hierarchy that is mostly not ours.
        wanted = hierarchy.controllers if self.pure_v2 else needed & hierarchy.controllers
        driver = hierarchy.driver
        chain = []
        probe = target
        while probe.startswith(hierarchy.mountpoint + "/"):
            chain.append(probe)
            probe = os.path.dirname(probe)
        for directory in reversed(chain):
            driver.prepare_parent(os.path.dirname(directory), wanted)
            if os.path.isdir(directory):
                continue
            try:
                os.mkdir(directory)
            except FileExistsError:
                continue
            except OSError as err:
                raise CgroupError("creating", directory, err) from err
            self.created.append(directory)
            driver.made(directory, hierarchy.controllers)

    def _check_joinable(self, hierarchy: Hierarchy, directory: str) -> None:
        """An existing cgroup may be joined only if it is empty and not frozen (the spec lets
        a runtime refuse both; joining either would mix this container with another)."""
        procs = read_text(os.path.join(directory, "cgroup.procs")).split()
        if procs:
            raise OcirtError(f"cgroup {directory} is not empty: {len(procs)} process(es) in "
                             "it (a new container needs a cgroup of its own; use another "
                             "cgroupsPath)")
        if hierarchy.offers("freezer") and hierarchy.frozen(directory):
            raise OcirtError(f"cgroup {directory} is frozen: thaw it or use another "
                             "cgroupsPath")

    # --- processes ------------------------------------------------------------------------

    def fork_inside(self, flags: int = 0, text: str = "") -> tuple[int, bool]:
        """``os.fork()`` (with ``flags``: into new namespaces, see ``CgroupDriver``), its child
        born in the container's cgroup2 directory if there is one (clone3 CLONE_INTO_CGROUP:
        nothing to move later); (pid, whether it was). Where the kernel refuses, a plain fork:
        the child's ``join`` then writes cgroup.procs."""
        v2 = [self.dirs[h.name] for h in self.hierarchies if h.version == 2]
        if v2:
            try:
                fd = os.open(v2[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                fd = -1
            if fd >= 0:
                from ocirt.linux import syscalls

                try:
                    return syscalls.clone3(flags, fd, text), True
                except SyscallError:
                    pass
                finally:
                    os.close(fd)
        return plain_fork(flags, text), False

    def join(self, in_v2: bool = False) -> None:
        """Move the calling process, which must be single-threaded (a freshly forked child),
        into the container's cgroup in every hierarchy: on v1 its one thread through ``tasks``
        ("0": the caller), which the kernel does without the RCU grace period that moving a
        thread group through cgroup.procs waits for (~10 ms); on v2 through cgroup.procs,
        unless ``in_v2`` says it was born there (``fork_inside``)."""
        for hierarchy in self.hierarchies:
            directory = self.dirs[hierarchy.name]
            if hierarchy.version == 1:
                write_file(os.path.join(directory, "tasks"), "0")
            elif not in_v2:
                write_file(os.path.join(directory, "cgroup.procs"), "0")

    def add(self, pid: int) -> None:
        """Move ``pid`` into the container's cgroup in every hierarchy."""
        for directory in self.dirs.values():
            path = os.path.join(directory, "cgroup.procs")
            for attempt in range(5):
                try:
                    write_file(path, str(pid))
                    break
                except CgroupError as err:
                    # EINVAL: a task still being forked (TASK_NEW); it settles quickly.
                    if err.errno != errno.EINVAL or attempt == 4:
                        raise
                    time.sleep(0.01)

    def pids(self) -> list[int]:
        """Every process in the container's cgroup and below it, in every hierarchy."""
        found: set[int] = set()
        pending = list(self.dirs.values())
        while pending:
            directory = pending.pop()
            found.update(int(p) for p in read_text(os.path.join(directory,
                                                                "cgroup.procs")).split())
            try:
                # A cgroup directory links 2 + its subdirectories: one without any is not
                # listed (dozens of control files each: os.walk cost ~1 ms a call).
                if os.stat(directory).st_nlink != 2:
                    pending += [entry.path for entry in os.scandir(directory)
                                if entry.is_dir(follow_symlinks=False)]
            except OSError:
                pass
        return sorted(found)

    # --- freezer ------------------------------------------------------------------------

    def _freezer(self) -> tuple[Hierarchy, str]:
        hierarchy = self.where("freezer")
        if hierarchy is None:
            raise UnsupportedError("pause/resume need the freezer: no v1 freezer hierarchy "
                                   "and no cgroup v2 on this host")
        return hierarchy, self.dirs[hierarchy.name]

    def frozen(self) -> bool:
        hierarchy = self.where("freezer")
        return hierarchy is not None and hierarchy.frozen(self.dirs[hierarchy.name])

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process of the container; return once the kernel says it is frozen."""
        hierarchy, directory = self._freezer()
        driver = hierarchy.driver
        driver.freeze(directory)
        deadline = time.monotonic() + timeout
        while not driver.freeze_done(directory):
            if time.monotonic() > deadline:
                self.thaw()
                raise OcirtError(f"cgroup {directory}: not frozen after {timeout:g}s "
                                 "(thawed again)")
            time.sleep(0.005)

    def thaw(self) -> None:
        hierarchy, directory = self._freezer()
        hierarchy.driver.thaw(directory)

    # --- statistics -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        from ocirt.linux.cgroups import stats

        return stats.collect(self)

    def oom_kills(self) -> int:
        from ocirt.linux.cgroups import stats

        return stats.oom_kills(self)

    # --- the end --------------------------------------------------------------------------

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the directories this container made, deepest first, once they are empty.
        A frozen cgroup is thawed first, so killed processes in it can die. Cgroups that the
        container made inside its own go first; a parent directory that another cgroup has
        meanwhile moved into stays (it is no longer this container's alone)."""
        if self.created:
            self.thaw_if_frozen()
        deadline = time.monotonic() + timeout
        own = set(self.dirs.values())
        for directory in sorted(self.created, key=len, reverse=True):
            if directory not in own:
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as err:  # cgroupfs says EBUSY for a child cgroup
                    if err.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise CgroupError("removing", directory, err) from err
                continue
            try:  # the usual case, nothing inside: one rmdir, no walk of the control files
                os.rmdir(directory)
                continue
            except FileNotFoundError:
                continue
            except OSError as err:  # EBUSY: cgroups inside, or processes not yet gone
                if err.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise CgroupError("removing", directory, err) from err
            for inner, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                _rmdir_when_empty(inner, deadline)
        self.created = []

    def missing_dirs(self) -> list[str]:
        """The directories the mkdir steps will make: the container's cgroup and those of
        its parents that do not exist yet (create records them before it makes them)."""
        missing = []
        for hierarchy in self.hierarchies:
            probe = self.dirs[hierarchy.name]
            while probe.startswith(hierarchy.mountpoint + "/") and not os.path.isdir(probe):
                missing.append(probe)
                probe = os.path.dirname(probe)
        return missing

    def to_state(self) -> dict[str, Any]:
        return {"driver": self.kind, "path": self.path, "dirs": self.dirs,
                "created": self.created, "hierarchies": [h.to_json() for h in self.hierarchies]}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> Manager:
        manager = cls.__new__(cls)
        manager.path = saved["path"]
        manager.dirs = dict(saved["dirs"])
        manager.created = list(saved.get("created", []))
        manager.device_cgroup = True  # only create programs it
        if "hierarchies" in saved:
            manager.hierarchies = [Hierarchy.from_json(h) for h in saved["hierarchies"]]
        else:  # state written before the hierarchies were saved: infer them from the names
            manager.hierarchies = [
                Hierarchy(2 if name == "unified" else 1, "",
                          frozenset(() if name == "unified" else name.split(",")), "")
                for name in manager.dirs]
        return manager

    def mount_steps(self, ctx: Any, mount: dict[str, Any], flags: int) -> list[Step]:
        from ocirt.linux.cgroups.mount import mount_steps

        return mount_steps(self, ctx, mount, flags)


DRIVER_CLASS = Manager


def _rmdir_when_empty(directory: str, deadline: float) -> None:
    """rmdir a cgroup, waiting (until ``deadline``) for its killed processes to be gone."""
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError("removing", directory, err) from err
            time.sleep(0.01)
