"""cgroups: one manager over every hierarchy of the host, each controller where it lives.

``discover()`` reads the host's cgroup mounts: pure v2, pure v1, or hybrid (v1 controllers
plus a cgroup2 mount with a few). ``Manager`` places the container's cgroup in each hierarchy,
asks the driver of the right version (``v1`` or ``v2``) which operations express
linux.resources there, and removes exactly the directories it made. It also freezes and thaws
the container (``pause``/``resume``), lists its processes, applies ``update`` live and reads
the statistics and OOM counters that ``events`` prints (``stats``).

cgroupsPath: an absolute path is taken as given (inside each hierarchy); a relative one, and the
default ``ocirt-<id>``, is placed as runc's cgroupfs driver places it: under the runtime's own
cgroup on v1, under its parent on v2 (the runtime's own v2 cgroup has processes, so it cannot
hand controllers down). A runtime running in a container, or a test on a shared machine, thus
stays inside its own subtree. A systemd ``slice:prefix:name`` path is refused until ocirt has a
systemd driver.

Start-up cost matters: this module imports only what ``create`` needs anyway; the drivers,
statistics and the BPF device filter are imported when used.
"""

from __future__ import annotations

import errno
import os
import time
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, OcirtError, UnsupportedError
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.none import NoneManager
    from ocirt.linux.cgroups.ops import Op

# On v2 these are files of every cgroup, not controllers listed in cgroup.controllers.
V2_CORE = frozenset({"cgroup", "freezer", "devices"})
# v1 controllers whose v2 successor has another name.
V2_NAMES = {"blkio": "io"}


class CgroupError(OcirtError):
    """A cgroup file could not be read or written: names the file, the value, the config field
    it expresses and the errno as text (plus a hint where the cause is known)."""

    def __init__(self, action: str, path: str, err: OSError | None = None, field: str = "",
                 hint: str = "") -> None:
        text = f"cgroup: {action} {path}"
        if field:
            text += f" ({field})"
        if err is not None:
            code = errno.errorcode.get(err.errno or 0, str(err.errno))
            text += f": {err.strerror or os.strerror(err.errno or 0)} ({code})"
        if hint:
            text += f": {hint}"
        super().__init__(text)
        self.path = path
        self.errno = err.errno if err is not None else 0


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

    def offers(self, controller: str) -> bool:
        return controller in self.controllers or (self.version == 2 and controller in V2_CORE)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "mountpoint": self.mountpoint,
                "controllers": sorted(self.controllers), "own_dir": self.own_dir}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hierarchy:
        return cls(int(data["version"]), data["mountpoint"], frozenset(data["controllers"]),
                   data["own_dir"])

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version} {self.mountpoint} {self.name})"


def _own_paths(text: str) -> tuple[dict[frozenset[str], str], str | None]:
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
        self_cgroup = _read("/proc/self/cgroup")
    if mountinfo is None:
        mountinfo = _read("/proc/self/mountinfo")
    own_v1, own_v2 = _own_paths(self_cgroup)
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, superopts = fields[sep + 1], fields[sep + 3]
        root, mountpoint = fields[3], fields[4].replace("\\040", " ")
        if fstype == "cgroup2" and own_v2 is not None and not any(
                h.version == 2 for h in found):
            controllers = _read(os.path.join(mountpoint, "cgroup.controllers")).split()
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


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def read_file(path: str, field: str = "") -> str:
    """A cgroup file's text, stripped; a missing or unreadable file is a ``CgroupError``."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError as err:
        raise CgroupError("reading", path, err, field) from err


def write_file(path: str, value: str, field: str = "", hint: str = "") -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as err:
        missing = err.errno == errno.ENOENT and os.path.isdir(os.path.dirname(path))
        raise CgroupError(f"writing {value!r} to", path, err, field,
                          hint or ("this kernel has no such cgroup file" if missing else "")
                          ) from err
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise CgroupError(f"writing {value!r} to", path, err, field, hint) from err
    finally:
        os.close(fd)


def resolve_path(cgroups_path: str | None, container_id: str) -> str:
    if cgroups_path and ":" in cgroups_path:
        raise UnsupportedError(f"cgroupsPath {cgroups_path!r} is a systemd slice:prefix:name "
                               "path; ocirt has no systemd cgroup driver yet (use a cgroupfs "
                               "path such as /mygroup/ctr or mygroup/ctr)")
    path = cgroups_path or f"ocirt-{container_id}"
    if ".." in path.split("/"):
        raise ConfigError("$.linux.cgroupsPath", f"must not contain '..': {path!r}")
    if path.strip("/") == "":
        raise ConfigError("$.linux.cgroupsPath", f"must name a cgroup below the root: {path!r}")
    return path


class Manager:
    """The container's cgroup in every hierarchy, and what is written there."""

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

    @property
    def pure_v2(self) -> bool:
        return all(h.version == 2 for h in self.hierarchies) and bool(self.hierarchies)

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
        from ocirt.linux.cgroups import v1, v2

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
                driver = v2 if hierarchy.version == 2 else v1
                for op in driver.ops(group, controller, resources, devices or [], update):
                    result.append((hierarchy, op))
        if resources.get("unified"):
            from ocirt.linux.cgroups import v2 as v2driver

            for key, value in resources["unified"].items():
                controller = opsmod.unified_controller(key)
                hierarchy = self.where(controller)
                if hierarchy is None or hierarchy.version != 2:
                    where = (f"on cgroup v1 ({hierarchy.mountpoint})" if hierarchy
                             else "not offered by this host")
                    raise UnsupportedError(
                        f"linux.resources.unified[{key!r}]: the {controller} controller is "
                        f"{where}; unified keys need it on cgroup v2")
                result.append((hierarchy, v2driver.unified_op(key, str(value))))
        return result

    def steps(self, resources: dict[str, Any], devices: list[dict[str, Any]] | None = None
              ) -> list[Step]:
        """mkdir (and join checks) in every hierarchy, then every write, as plan steps."""
        planned = self.ops(resources, devices)
        needed: dict[str, set[str]] = {}
        for hierarchy, op in planned:
            needed.setdefault(hierarchy.name, set()).add(op.controller)
        steps = [Step(f"mkdir {self.dirs[h.name]}",
                      partial(self._make, h, frozenset(needed.get(h.name, ()))))
                 for h in self.hierarchies]
        for hierarchy, op in planned:
            directory = self.dirs[hierarchy.name]
            steps.append(Step(op.describe(directory), partial(op.apply, directory)))
        return steps

    def update(self, resources: dict[str, Any]) -> None:
        """Apply ``resources`` (all but the device list) to the live cgroup."""
        for hierarchy, op in self.ops(resources, update=True):
            directory = self.dirs[hierarchy.name]
            if hierarchy.version == 2 and op.controller in hierarchy.controllers:
                from ocirt.linux.cgroups.v2 import enable_controllers

                enable_controllers(os.path.dirname(directory), frozenset({op.controller}))
            op.apply(directory)

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

    def _make(self, hierarchy: Hierarchy, needed: frozenset[str]) -> None:
        target = self.dirs[hierarchy.name]
        if os.path.isdir(target):
            self._check_joinable(hierarchy, target)
        # Pure v2: hand every controller down, as runc does, so `update` can use any later.
        # Hybrid: only what the resources need, in a hierarchy that is mostly not ours.
        wanted = hierarchy.controllers if self.pure_v2 else needed & hierarchy.controllers
        chain = []
        probe = target
        while probe.startswith(hierarchy.mountpoint + "/"):
            chain.append(probe)
            probe = os.path.dirname(probe)
        for directory in reversed(chain):
            if hierarchy.version == 2 and wanted:
                from ocirt.linux.cgroups.v2 import enable_controllers

                enable_controllers(os.path.dirname(directory), wanted)
            if os.path.isdir(directory):
                continue
            try:
                os.mkdir(directory)
            except FileExistsError:
                continue
            except OSError as err:
                raise CgroupError("creating", directory, err) from err
            self.created.append(directory)
            if hierarchy.version == 1 and "cpuset" in hierarchy.controllers:
                from ocirt.linux.cgroups.v1 import inherit_cpuset

                inherit_cpuset(directory)

    def _check_joinable(self, hierarchy: Hierarchy, directory: str) -> None:
        """An existing cgroup may be joined only if it is empty and not frozen (the spec lets
        a runtime refuse both; joining either would mix this container with another)."""
        procs = _read(os.path.join(directory, "cgroup.procs")).split()
        if procs:
            raise OcirtError(f"cgroup {directory} is not empty: {len(procs)} process(es) in "
                             "it (a new container needs a cgroup of its own; use another "
                             "cgroupsPath)")
        if hierarchy.offers("freezer") and self._frozen_dir(hierarchy, directory):
            raise OcirtError(f"cgroup {directory} is frozen: thaw it or use another "
                             "cgroupsPath")

    # --- processes ------------------------------------------------------------------------

    def has_v2(self) -> bool:
        return any(h.version == 2 for h in self.hierarchies)

    def fork_inside(self) -> tuple[int, bool]:
        """``os.fork()``, its child born in the container's cgroup2 directory if there is one
        (clone3 CLONE_INTO_CGROUP: nothing to move later); (pid, whether it was). Where the
        kernel refuses, a plain fork: the child's ``join`` then writes cgroup.procs."""
        v2 = [self.dirs[h.name] for h in self.hierarchies if h.version == 2]
        if v2:
            try:
                fd = os.open(v2[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                fd = -1
            if fd >= 0:
                from ocirt.errors import SyscallError
                from ocirt.linux import syscalls

                try:
                    return syscalls.fork_into_cgroup(fd), True
                except SyscallError:
                    pass
                finally:
                    os.close(fd)
        return os.fork(), False

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
            found.update(int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split())
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

    @staticmethod
    def _frozen_dir(hierarchy: Hierarchy, directory: str) -> bool:
        if hierarchy.version == 1:
            return _read(os.path.join(directory, "freezer.state")).strip() == "FROZEN"
        return _read(os.path.join(directory, "cgroup.freeze")).strip() == "1"

    def frozen(self) -> bool:
        hierarchy = self.where("freezer")
        return hierarchy is not None and self._frozen_dir(hierarchy, self.dirs[hierarchy.name])

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process of the container; return once the kernel says it is frozen."""
        hierarchy, directory = self._freezer()
        if hierarchy.version == 1:
            path = os.path.join(directory, "freezer.state")
            write_file(path, "FROZEN")

            def done() -> bool:
                return read_file(path) == "FROZEN"
        else:
            write_file(os.path.join(directory, "cgroup.freeze"), "1")
            events = os.path.join(directory, "cgroup.events")

            def done() -> bool:
                return "frozen 1" in read_file(events).splitlines()
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                self.thaw()
                raise OcirtError(f"cgroup {directory}: not frozen after {timeout:g}s "
                                 "(thawed again)")
            time.sleep(0.005)

    def thaw(self) -> None:
        hierarchy, directory = self._freezer()
        if hierarchy.version == 1:
            write_file(os.path.join(directory, "freezer.state"), "THAWED")
        else:
            write_file(os.path.join(directory, "cgroup.freeze"), "0")

    def thaw_if_frozen(self) -> None:
        """Thaw a frozen container (so killed v1-frozen processes can die); never fails."""
        try:
            if self.frozen():
                self.thaw()
        except OcirtError:
            pass

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
            if os.path.isdir(directory):
                for inner, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                    _rmdir_when_empty(inner, deadline)
        self.created = []

    def to_state(self) -> dict[str, Any]:
        return {"path": self.path, "dirs": self.dirs, "created": self.created,
                "hierarchies": [h.to_json() for h in self.hierarchies]}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> Manager:
        manager = cls.__new__(cls)
        manager.path = saved["path"]
        manager.dirs = dict(saved["dirs"])
        manager.created = list(saved["created"])
        manager.device_cgroup = True  # only create programs it
        if "hierarchies" in saved:
            manager.hierarchies = [Hierarchy.from_json(h) for h in saved["hierarchies"]]
        else:  # state written before the hierarchies were saved: infer them from the names
            manager.hierarchies = [
                Hierarchy(2 if name == "unified" else 1, "",
                          frozenset(() if name == "unified" else name.split(",")), "")
                for name in manager.dirs]
        return manager


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


def mount_steps(manager: Manager | NoneManager, ctx: Any, mount: dict[str, Any],
                flags: int) -> list[Step]:
    """A ``cgroup`` mount: cgroup2 itself on a pure v2 host; otherwise a tmpfs holding a
    bind of the container's own cgroup from each hierarchy (as runc shows v1 and hybrid)."""
    from ocirt.linux import procfs, rootfs
    from ocirt.linux import syscalls as sc

    destination: str = mount["destination"]
    hierarchies = manager.hierarchies
    bind_flags = flags & ~(sc.MS_BIND | sc.MS_REC)
    if len(hierarchies) == 1 and hierarchies[0].version == 2:
        entry = {"destination": destination, "type": "cgroup2", "source": "cgroup",
                 "options": mount.get("options", [])}
        return rootfs.mount_steps(ctx, entry, 0, "/", None)

    under: list[int] = []  # the tmpfs's target, kept for the read-only remount

    def mount_tmpfs() -> None:
        fd = ctx.target(destination, "dir")
        try:
            procfs.mount_on(fd, "tmpfs", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                            "mode=755")
        except BaseException:
            os.close(fd)
            raise
        if flags & sc.MS_RDONLY:
            under.append(fd)
        else:
            os.close(fd)

    def bind(name: str, source: str) -> None:
        inner = f"{destination.rstrip('/')}/{name}"
        fd = ctx.target(inner, "dir")
        try:
            os.close(rootfs.bind_onto(fd, source, sc.MS_BIND | sc.MS_REC | bind_flags))
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
            below = under.pop()
            try:
                fd = ctx.mounted(destination, below)
            finally:
                os.close(below)
            try:
                rootfs.remount_bind(fd, sc.MS_RDONLY | sc.MS_NOSUID
                                    | sc.MS_NODEV | sc.MS_NOEXEC)
            finally:
                os.close(fd)
        steps.append(Step(f"remount {destination} read-only", remount_ro))
    return steps
