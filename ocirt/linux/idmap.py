"""Idmapped bind mounts: ``mounts[].uidMappings``/``gidMappings`` and the ``idmap``/``ridmap``
options (config.md), with mount_setattr(MOUNT_ATTR_IDMAP) as the spec suggests.

The kernel takes the mapping from a user namespace, and only a process with privilege over
the filesystem may apply it, so the runtime does it before it forks: a helper child makes a user
namespace with the mapping (its uid_map and gid_map written by the runtime, as for a container),
``open_tree(OPEN_TREE_CLONE)`` copies the source into a detached mount, and ``mount_setattr``
idmaps it (and sets ro, nosuid, nodev, noexec). The container's init, which inherits the fd,
attaches it at the destination with ``move_mount`` once that is resolved inside the rootfs.
A file owned by ``containerID + n`` on disk then shows as owned by ``hostID + n``: the same
mapping a container's user namespace applies, so the container sees the disk's owners.
"""

from __future__ import annotations

import os
import stat

from ocirt.errors import ConfigError, OcirtError, SyscallError
from ocirt.linux import namespaces
from ocirt.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# mount(2) flags a bind mount may carry -> mount_setattr(2) attributes, set on the detached copy
_ATTRS = ((sc.MS_RDONLY, sc.MOUNT_ATTR_RDONLY), (sc.MS_NOSUID, sc.MOUNT_ATTR_NOSUID),
          (sc.MS_NODEV, sc.MOUNT_ATTR_NODEV), (sc.MS_NOEXEC, sc.MOUNT_ATTR_NOEXEC),
          (sc.MS_NOSYMFOLLOW, sc.MOUNT_ATTR_NOSYMFOLLOW))


class IdmappedMount:
    """One idmapped bind mount: prepared by the runtime, attached by init."""

    def __init__(self, source: str, recursive_bind: bool, recursive_idmap: bool,
                 uid_maps: list[dict[str, int]], gid_maps: list[dict[str, int]],
                 flags: int) -> None:
        self.source, self.recursive_bind, self.recursive_idmap = (source, recursive_bind,
                                                                  recursive_idmap)
        self.uid_maps, self.gid_maps, self.flags = uid_maps, gid_maps, flags
        self.fd = -1

    def describe(self) -> str:
        maps = ", ".join(f"{m['containerID']}->{m['hostID']} ({m['size']})"
                         for m in self.uid_maps)
        return (f"open_tree {self.source}{' (recursive)' if self.recursive_bind else ''}; "
                f"mount_setattr MOUNT_ATTR_IDMAP{' AT_RECURSIVE' if self.recursive_idmap else ''}"
                f" uids {maps}")

    def prepare(self) -> None:
        userns = user_namespace(self.uid_maps, self.gid_maps)
        try:
            self.fd = sc.open_tree(self.source, self.recursive_bind)
            attrs = sc.MOUNT_ATTR_IDMAP
            for flag, attr in _ATTRS:
                if self.flags & flag:
                    attrs |= attr
            sc.mount_setattr(self.fd, attrs, 0, self.recursive_idmap, userns_fd=userns)
        except SyscallError as err:
            self.close()
            raise OcirtError(f"idmapped mount of {self.source!r}: {err}") from err
        finally:
            os.close(userns)

    def is_dir(self) -> bool:
        return stat.S_ISDIR(os.fstat(self.fd).st_mode)

    def attach(self, target_fd: int, destination: str) -> None:
        try:
            sc.move_mount(self.fd, target_fd, f"idmapped {self.source!r} -> {destination!r}")
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def mappings(mount: dict[str, Any], index: int, linux: dict[str, Any], has_userns: bool
             ) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """The uid and gid mappings of an idmapped mount: its own, else the container's."""
    where = f"$.mounts[{index}]"
    uid_maps, gid_maps = mount.get("uidMappings"), mount.get("gidMappings")
    if uid_maps or gid_maps:
        if not (uid_maps and gid_maps):
            raise ConfigError(where, "uidMappings and gidMappings go together")
        return uid_maps, gid_maps
    if has_userns and linux.get("uidMappings") and linux.get("gidMappings"):
        return linux["uidMappings"], linux["gidMappings"]
    raise ConfigError(where, "an idmapped mount needs uidMappings and gidMappings, or a user "
                      "namespace with mappings to take them from")


def user_namespace(uid_maps: list[dict[str, int]], gid_maps: list[dict[str, int]]) -> int:
    """An fd of a new user namespace with these mappings, made by a short-lived child."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: make the namespace, say so, wait until the parent has it
        try:
            os.close(ready_r)
            os.close(done_w)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OcirtError("idmapped mount: the helper could not make a user namespace")
        try:
            namespaces.write_id_maps(pid, {"uidMappings": uid_maps, "gidMappings": gid_maps})
        except OcirtError as err:
            raise OcirtError(f"idmapped mount: {err}") from err
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)
