"""Where a process joins the container's cgroups, and killing all of them at once.

- ``exec --cgroup`` (runc 1.1): an exec'd process may go to an existing sub-cgroup of the
  container's. ``sub_paths`` reads runc's argument forms: ``controller[,controller...]:path``
  (cgroup v1, repeatable) or one plain ``path`` (any hierarchy; on cgroup v2 the only form).
- The exec'd process is born in the cgroup2 directory ``exec_dirs`` names (clone3
  CLONE_INTO_CGROUP, ``Manager.fork_inside``; runc 1.4), so a sub-cgroup works there too.
- ``kill_all``: ``cgroup.kill`` (cgroup v2, Linux 5.14) kills every process of the cgroup and
  its descendants in one write, forks in flight included (runc 1.2).

Small functions over a cgroup driver's directories (``CgroupDriver.dirs``).
"""

from __future__ import annotations

import os

from ocirt import log
from ocirt.errors import OcirtError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.linux.cgroups import CgroupDriver


def sub_paths(args: list[str]) -> dict[str, str]:
    """``--cgroup`` arguments -> controller -> sub-path (``""``: every hierarchy)."""
    paths: dict[str, str] = {}
    for arg in args:
        controllers, colon, path = arg.partition(":")
        if not colon:
            if len(args) != 1:
                raise OcirtError(f"invalid --cgroup argument: {arg} (missing <controller>: "
                                 "prefix)")
            paths[""] = arg
            continue
        for controller in controllers.split(","):
            if not controller:
                raise OcirtError(f"invalid --cgroup argument: {arg} (empty <controller> "
                                 "prefix)")
            if controller in paths:
                raise OcirtError(f"invalid --cgroup argument(s): controller {controller} "
                                 "specified multiple times")
            paths[controller] = path
    return paths


def _below(base: str, sub: str) -> str:
    path = os.path.normpath(os.path.join(base, sub.lstrip("/")))
    if path != base and not path.startswith(base + "/"):
        raise OcirtError(f"exec --cgroup: bad sub-cgroup path {sub!r}: it leaves the "
                         f"container's cgroup {base}")
    return path


def exec_dirs(manager: CgroupDriver, subs: dict[str, str]) -> dict[str, str]:
    """The directories (hierarchy name -> path) an exec'd process joins: the container's,
    or the existing sub-cgroups ``subs`` names."""
    dirs = dict(manager.dirs)
    if not subs:
        return dirs
    if manager.pure_v2 and "" not in subs:
        raise OcirtError("exec --cgroup: cgroup v2 takes a plain path, without a "
                         f"<controller>: prefix (got {', '.join(sorted(subs))})")
    if "" in subs:
        dirs = {name: _below(base, subs[""]) for name, base in dirs.items()}
    else:
        for controller, sub in subs.items():
            found = [h for h in manager.hierarchies
                     if h.version == 1 and controller in h.controllers]
            if not found or found[0].name not in dirs:
                raise OcirtError(f"exec --cgroup: unknown controller {controller!r} (the "
                                 f"container's: {', '.join(sorted(manager.dirs))})")
            name = found[0].name
            path = _below(manager.dirs[name], sub)
            if dirs[name] != manager.dirs[name] and dirs[name] != path:
                raise OcirtError(f"exec --cgroup: controllers of one hierarchy ({name}) "
                                 "given different paths")
            dirs[name] = path
    for name, path in dirs.items():
        if path != manager.dirs[name] and not os.path.isdir(path):
            raise OcirtError(f"exec --cgroup: sub-cgroup {path} does not exist")
    return dirs


def kill_all(manager: CgroupDriver) -> bool:
    """SIGKILL every process of the container's cgroup through ``cgroup.kill`` (v2 only);
    False where there is none (v1, hybrid, Linux < 5.14): the caller signals each pid."""
    if not manager.pure_v2:
        return False
    path = os.path.join(manager.dirs["unified"], "cgroup.kill")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise SyscallError.of(f"open({path!r}, O_WRONLY)", err, "killing the cgroup") from err
    try:
        os.write(fd, b"1")
    except OSError as err:
        raise SyscallError.of(f"write({path!r}, '1')", err, "killing the cgroup") from err
    finally:
        os.close(fd)
    log.current.debug(f"SIGKILL to every process of the cgroup: wrote 1 to {path}")
    return True
