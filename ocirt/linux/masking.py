"""linux.maskedPaths and linux.readonlyPaths, after pivot_root, every path by descriptor.

Each path is opened once inside the container's root (``safepath.open_in_root``: symlinks
resolve as the container sees them, magic links never) and the mount lands on that fd:

* a masked **file** is covered by a bind of the container's ``/dev/null``, opened without
  following any symlink and checked to be the character device 1:3 (CVE-2025-31133: a
  ``/dev/null`` swapped for a symlink would make the "mask" a bind of whatever it points to);
* all masked **directories** share one empty read-only tmpfs (runc 1.5): the first is a fresh
  detached tmpfs (fsopen/fsmount) moved onto the directory, the others are binds of it, so
  Kubernetes' dozens of masked sysfs directories cost one superblock;
* a read-only path is cloned (``open_tree``), made read-only on the detached copy
  (``mount_setattr``) and moved onto the same fd: no second lookup, no remount by path.
"""

from __future__ import annotations

import errno
import os
import stat

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux import procfs, safepath
from ocirt.linux import syscalls as sc

_TMPFS_ATTRS = sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV \
    | sc.MOUNT_ATTR_NOEXEC


class Masker:
    """The state masking shares across paths: the root fd, /dev/null, the shared tmpfs."""

    def __init__(self) -> None:
        self.root = -1
        self.null = -1
        self.tmpfs = -1  # the shared tmpfs mount, once the first directory has it

    def _root(self) -> int:
        if self.root < 0:
            self.root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self.root

    def close(self) -> None:
        for fd in (self.root, self.null, self.tmpfs):
            if fd >= 0:
                os.close(fd)
        self.root = self.null = self.tmpfs = -1

    def _open(self, path: str) -> int | None:
        try:
            return safepath.open_in_root(self._root(), path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise SyscallError.of(f"open({path!r}) in the rootfs", err,
                                  f"opening {path} in the container") from err

    def mask(self, path: str) -> None:
        fd = self._open(path)
        if fd is None:
            return
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self._mask_dir(fd)
            else:
                if self.null < 0:
                    self.null = safepath.open_null(self._root())
                procfs.mount_on(fd, None, None, sc.MS_BIND, source_fd=self.null)
        except SyscallError as err:
            raise OcirtError(f"masking {path} ($.linux.maskedPaths): {err}") from err
        finally:
            os.close(fd)

    def _mask_dir(self, fd: int) -> None:
        if self.tmpfs >= 0:
            procfs.mount_on(fd, None, None, sc.MS_BIND, source_fd=self.tmpfs)
            return
        try:
            mnt = sc.fsmount_new("tmpfs", {}, _TMPFS_ATTRS)
        except SyscallError as err:
            if err.errno != errno.ENOSYS:
                raise
            # no new mount API: one tmpfs per directory, as before runc 1.5
            procfs.mount_on(fd, "tmpfs", "tmpfs", sc.MS_RDONLY)
            return
        try:
            sc.move_mount(mnt, fd, "the shared masked-paths tmpfs")
        except BaseException:
            os.close(mnt)
            raise
        self.tmpfs = mnt

    def readonly(self, path: str) -> None:
        fd = self._open(path)
        if fd is None:
            return
        try:
            with procfs.magic_path(fd) as here:
                tree = sc.open_tree(here, recursive=True)
            try:
                sc.mount_setattr(tree, sc.MOUNT_ATTR_RDONLY, 0, recursive=False)
                sc.move_mount(tree, fd, f"read-only {path}")
            finally:
                os.close(tree)
        except SyscallError as err:
            raise OcirtError(f"making {path} read-only ($.linux.readonlyPaths): {err}") from err
        finally:
            os.close(fd)
