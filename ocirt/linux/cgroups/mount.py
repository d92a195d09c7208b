"""A ``cgroup`` mount in the container: what it shows of the container's own cgroup."""

from __future__ import annotations

import os
from functools import partial

from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux.cgroups.driver import CgroupDriver


def mount_steps(manager: CgroupDriver, ctx: Any, mount: dict[str, Any], flags: int) -> list[Step]:
    """cgroup2 itself on a pure v2 host; otherwise a tmpfs holding a bind of the container's
    own cgroup from each hierarchy (as runc shows v1 and hybrid)."""
    from ocirt.linux import rootfs
    from ocirt.linux import syscalls as sc

    destination: str = mount["destination"]
    bind_flags = flags & ~(sc.MS_BIND | sc.MS_REC)
    if manager.pure_v2:
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
    for hierarchy in manager.hierarchies:
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
