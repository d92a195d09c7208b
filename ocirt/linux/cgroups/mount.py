"""A ``cgroup`` mount in the container: what it shows of the container's own cgroup."""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.linux import mountopts, procfs, rootfs
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.driver import CgroupDriver


def mount_steps(manager: CgroupDriver, ctx: Any, mount: dict[str, Any], flags: int) -> list[Step]:
    """cgroup2 itself on a pure v2 host; otherwise a tmpfs holding a bind of the container's
    own cgroup from each hierarchy (as runc shows v1 and hybrid)."""
    destination: str = mount["destination"]
    bind_flags = flags & ~(sc.MS_BIND | sc.MS_REC)
    if manager.pure_v2:
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
    for hierarchy in manager.hierarchies:
        name = hierarchy.name.replace("name=", "")
        source = manager.dirs[hierarchy.name]
        steps.append(Step(f"bind {source} on {destination}/{name} "
                          f"({mountopts.describe_flags(bind_flags)})",
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
