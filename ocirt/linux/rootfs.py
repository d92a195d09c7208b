"""The container's root filesystem: mount options, safe paths, the mount plan and pivot_root.

Every path from the config is resolved by the kernel inside the rootfs (openat2 with
RESOLVE_IN_ROOT), so a symlink in the rootfs can never make a mount land outside it; the mount
then targets the opened file through /proc/self/fd, so a path swapped after the check cannot
redirect it either. All steps run in the container's own mount namespace, made slave before the
first mount, so nothing reaches the host. A container without a mount namespace of its own gets
no propagation change and a chroot instead of pivot_root (``shared_namespace_steps``).
"""

from __future__ import annotations

import os
import stat
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, OcirtError, SyscallError, access_hint
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.linux import idmap

# option -> (clears the flag?, flag), as mount(8) and runc understand them.
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, sc.MS_SYNCHRONOUS), "atime": (True, sc.MS_NOATIME),
    "bind": (False, sc.MS_BIND), "defaults": (False, 0), "dev": (True, sc.MS_NODEV),
    "diratime": (True, sc.MS_NODIRATIME), "dirsync": (False, sc.MS_DIRSYNC),
    "exec": (True, sc.MS_NOEXEC), "iversion": (False, 1 << 23),
    "lazytime": (False, sc.MS_LAZYTIME), "loud": (True, sc.MS_SILENT),
    "mand": (False, sc.MS_MANDLOCK), "noatime": (False, sc.MS_NOATIME),
    "nodev": (False, sc.MS_NODEV), "nodiratime": (False, sc.MS_NODIRATIME),
    "noexec": (False, sc.MS_NOEXEC), "noiversion": (True, 1 << 23),
    "nolazytime": (True, sc.MS_LAZYTIME), "nomand": (True, sc.MS_MANDLOCK),
    "norelatime": (True, sc.MS_RELATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosuid": (False, sc.MS_NOSUID), "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "rbind": (False, sc.MS_BIND | sc.MS_REC), "relatime": (False, sc.MS_RELATIME),
    "remount": (False, sc.MS_REMOUNT), "ro": (False, sc.MS_RDONLY), "rw": (True, sc.MS_RDONLY),
    "silent": (False, sc.MS_SILENT), "strictatime": (False, sc.MS_STRICTATIME),
    "suid": (True, sc.MS_NOSUID), "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "sync": (False, sc.MS_SYNCHRONOUS),
}
PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Recursive options (mount_setattr(2) with AT_RECURSIVE): option -> (clears?, MOUNT_ATTR_*).
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, sc.MOUNT_ATTR_RDONLY), "rrw": (True, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, sc.MOUNT_ATTR_NOSUID), "rsuid": (True, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, sc.MOUNT_ATTR_NODEV), "rdev": (True, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, sc.MOUNT_ATTR_NOEXEC), "rexec": (True, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, sc.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, sc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, sc.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, sc.MOUNT_ATTR_NOSYMFOLLOW),
}
# The atime family is one field: setting one clears the others.
RECURSIVE_ATIME = {"rrelatime": sc.MOUNT_ATTR_RELATIME, "rnorelatime": sc.MOUNT_ATTR_RELATIME,
                   "rnoatime": sc.MOUNT_ATTR_NOATIME, "ratime": sc.MOUNT_ATTR_RELATIME,
                   "rstrictatime": sc.MOUNT_ATTR_STRICTATIME,
                   "rnostrictatime": sc.MOUNT_ATTR_RELATIME}
# Flags a read-only (or other) remount of a bind mount must keep, or the kernel refuses it
# inside a user namespace (they are locked) and silently drops them outside one.
_KEPT_ON_REMOUNT = (sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
                    | sc.MS_NOATIME | sc.MS_NODIRATIME | sc.MS_RELATIME)
_ST_TO_MS = {1: sc.MS_RDONLY, 2: sc.MS_NOSUID, 4: sc.MS_NODEV, 8: sc.MS_NOEXEC,
             1024: sc.MS_NOATIME, 2048: sc.MS_NODIRATIME, 4096: sc.MS_RELATIME}


class MountOptions:
    """A mount's options split into mount(2) flags, propagation changes and fs data."""

    def __init__(self) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        self.data: list[str] = []
        self.attr_set = 0  # recursive attributes, applied with mount_setattr
        self.attr_clr = 0
        self.copy_up = False  # tmpcopyup: the tmpfs starts with what the directory held
        self.idmap: str | None = None  # "idmap" or "ridmap" (see ocirt.linux.idmap)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)


def parse_options(options: list[str]) -> MountOptions:
    """Split mount options into flags, propagation changes and filesystem data."""
    result = MountOptions()
    for option in options:
        if option in MOUNT_FLAGS:
            clear, flag = MOUNT_FLAGS[option]
            result.flags = result.flags & ~flag if clear else result.flags | flag
        elif option in PROPAGATION:
            result.propagation.append(PROPAGATION[option])
        elif option == "tmpcopyup":
            result.copy_up = True
        elif option in ("idmap", "ridmap"):
            result.idmap = option
        elif option in RECURSIVE:
            clear, attr = RECURSIVE[option]
            if clear:
                result.attr_clr |= attr
                result.attr_set &= ~attr
            else:
                result.attr_set |= attr
                result.attr_clr &= ~attr
        elif option in RECURSIVE_ATIME:
            result.attr_clr |= sc.MOUNT_ATTR__ATIME
            result.attr_set = (result.attr_set & ~sc.MOUNT_ATTR__ATIME) | RECURSIVE_ATIME[option]
        else:
            result.data.append(option)
    return result


def describe_flags(flags: int) -> str:
    names = [name for name, (clear, flag) in MOUNT_FLAGS.items()
             if not clear and flag and flags & flag == flag and name not in ("defaults", "rbind")]
    if flags & sc.MS_BIND and flags & sc.MS_REC:
        names = ["rbind"] + [n for n in names if n != "bind"]
    return ",".join(names) or "none"


def open_in_root(rootfd: int, path: str, create: str | None = None) -> int:
    """Open ``path`` (absolute inside the rootfs) as an O_PATH fd without leaving the root.

    ``create`` is ``"dir"`` or ``"file"`` to make a missing destination (and its parent
    directories) the way a mount needs it.
    """
    return _open_in_root(rootfd, path, create, 0)


def _open_in_root(rootfd: int, path: str, create: str | None, depth: int) -> int:
    try:
        return sc.openat2(rootfd, path, os.O_PATH, sc.RESOLVE_IN_ROOT)
    except FileNotFoundError:
        if create is None:
            raise
    if depth > 40:
        raise OSError(40, "too many levels of symbolic links", path)
    parent, _, name = path.rstrip("/").rpartition("/")
    if not name or name in (".", ".."):
        raise OSError(22, "not a valid mount destination", path)
    parentfd = _open_in_root(rootfd, parent or "/", "dir", depth + 1)
    try:
        try:
            link = os.readlink(name, dir_fd=parentfd)
        except OSError:
            link = None
        if link is not None:
            # A dangling symlink: make what it points to, inside the rootfs (an absolute
            # target means the rootfs's own root, as the kernel will resolve it).
            target = link if link.startswith("/") else f"{parent}/{link}"
            return _open_in_root(rootfd, target, create, depth + 1)
        if create == "dir":
            try:
                os.mkdir(name, 0o755, dir_fd=parentfd)
            except FileExistsError:
                pass
        else:
            try:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=parentfd))
            except FileExistsError:
                pass
        return sc.openat2(parentfd, name, os.O_PATH, sc.RESOLVE_IN_ROOT)
    finally:
        os.close(parentfd)


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class RootContext:
    """What the rootfs steps share while they run: the rootfs path and an fd on it."""

    def __init__(self, rootfs: str) -> None:
        self.rootfs = rootfs
        self._fd = -1

    @property
    def fd(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def target(self, destination: str, create: str | None) -> int:
        try:
            return open_in_root(self.fd, destination, create)
        except OSError as err:
            raise OcirtError(f"mount destination {destination!r} in rootfs {self.rootfs!r}: "
                             f"{err.strerror}") from err


def current_mount_flags(path: str) -> int:
    flags = 0
    vfs = os.statvfs(path)
    for st_flag, ms_flag in _ST_TO_MS.items():
        if vfs.f_flag & st_flag:
            flags |= ms_flag
    return flags


def remount_bind(path: str, flags: int) -> None:
    """Change the flags of the bind mount at ``path``, keeping the locked ones it has."""
    kept = current_mount_flags(path) & _KEPT_ON_REMOUNT & ~sc.MS_RDONLY
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | kept | flags)


def mount_steps(ctx: RootContext, mount: dict[str, Any], index: int, bundle: str,
                special: Callable[[RootContext, dict[str, Any], MountOptions], list[Step]] | None,
                ) -> list[Step]:
    """The steps for one entry of config.json ``mounts``."""
    destination = _destination(mount, index)
    fstype: str | None = mount.get("type")
    options = parse_options(mount.get("options", []))
    source: str | None = mount.get("source")
    if options.is_bind or fstype == "bind":
        options.flags |= sc.MS_BIND
        source = _bind_source(mount, index, bundle)
    elif fstype == "cgroup" and special is not None:
        return special(ctx, mount, options)
    data = ",".join(options.data) or None
    recursive = [o for o in mount.get("options", []) if o in RECURSIVE or o in RECURSIVE_ATIME]
    text = (f"mount {source or fstype} on {destination} type {fstype or 'none'} "
            f"({describe_flags(options.flags)}{',' + data if data else ''})"
            + (f"; mount_setattr AT_RECURSIVE {','.join(recursive)}" if recursive else ""))
    return [Step(text, lambda: _do_mount(ctx, source, destination, fstype, options, data))]


def _destination(mount: dict[str, Any], index: int) -> str:
    destination: str = mount["destination"]
    if not destination.startswith("/"):
        raise ConfigError(f"$.mounts[{index}].destination",
                          f"must be an absolute path, got {destination!r}")
    return destination


def _bind_source(mount: dict[str, Any], index: int, bundle: str) -> str:
    """A bind mount's source, absolute (a relative one is relative to the bundle)."""
    source: str | None = mount.get("source")
    if source is None:
        raise ConfigError(f"$.mounts[{index}].source", "a bind mount needs a source")
    return source if source.startswith("/") else os.path.join(bundle, source)


def _bind_target_kind(source: str, destination: str) -> str:
    """What a bind mount's destination must be: a directory for a directory, else a file."""
    try:
        return "dir" if stat.S_ISDIR(os.stat(source).st_mode) else "file"
    except OSError as err:
        raise OcirtError(f"bind mount source {source!r} for {destination!r}: "
                         f"{err.strerror}{access_hint(err, 'a source')}") from err


def is_idmapped(mount: dict[str, Any]) -> bool:
    options = mount.get("options") or []
    return bool(mount.get("uidMappings") or mount.get("gidMappings") or "idmap" in options
                or "ridmap" in options)


def idmapped_mount_steps(ctx: RootContext, mount: dict[str, Any], index: int, bundle: str,
                         linux: dict[str, Any], has_userns: bool
                         ) -> tuple[idmap.IdmappedMount, list[Step]]:
    """An idmapped bind mount: what the runtime prepares (the detached, idmapped copy; see
    ``IdmappedMount.prepare``) and init's step that attaches it at the destination."""
    from ocirt.linux import idmap

    options = parse_options(mount.get("options", []))
    if not (options.is_bind or mount.get("type") == "bind"):
        raise ConfigError(f"$.mounts[{index}].options", "ocirt idmaps bind mounts only")
    destination = _destination(mount, index)
    source = _bind_source(mount, index, bundle)
    uid_maps, gid_maps = idmap.mappings(mount, index, linux, has_userns)
    recursive_bind = bool(options.flags & sc.MS_REC)
    mapped = idmap.IdmappedMount(source, recursive_bind, options.idmap == "ridmap" or (
        options.idmap is None and recursive_bind), uid_maps, gid_maps, options.flags)
    attach = Step(f"move_mount the idmapped {source} on {destination}",
                  lambda: _attach(ctx, mapped, source, destination, options))
    return mapped, [attach]


def _attach(ctx: RootContext, mapped: idmap.IdmappedMount, source: str, destination: str,
            options: MountOptions) -> None:
    # the detached copy says what it is: init may not be able to reach the source any more
    fd = ctx.target(destination, "dir" if mapped.is_dir() else "file")
    try:
        mapped.attach(fd, destination)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r}: {err}") from err
    finally:
        os.close(fd)
    _after_mount(ctx, destination, options)


def _after_mount(ctx: RootContext, destination: str, options: MountOptions) -> None:
    """Propagation and recursive attributes, on the new mount (reopened: it covers the old)."""
    if not (options.propagation or options.attr_set or options.attr_clr):
        return
    fd = ctx.target(destination, None)
    try:
        for prop in options.propagation:
            sc.mount(None, fd_path(fd), None, prop)
        if options.attr_set or options.attr_clr:
            sc.mount_setattr(fd, options.attr_set, options.attr_clr)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r}: {err}") from err
    finally:
        os.close(fd)


def _do_mount(ctx: RootContext, source: str | None, destination: str, fstype: str | None,
              options: MountOptions, data: str | None) -> None:
    create = _bind_target_kind(source or "", destination) if options.is_bind else "dir"
    fd = ctx.target(destination, create)
    try:
        target = fd_path(fd)
        flags = options.flags
        if options.is_bind:
            sc.mount(source, target, fstype, flags & (sc.MS_BIND | sc.MS_REC), data)
            extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            if extra:
                # The new mount now covers the old target: reopen to reach it, then remount.
                os.close(fd)
                fd = ctx.target(destination, None)
                remount_bind(fd_path(fd), extra)
        elif options.copy_up:
            _mount_copy_up(ctx, destination, fd, source or fstype or "none", fstype, flags, data)
        else:
            sc.mount(source or fstype or "none", target, fstype, flags, data)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r}: {err}") from err
    finally:
        os.close(fd)
    _after_mount(ctx, destination, options)


def _mount_copy_up(ctx: RootContext, destination: str, fd: int, source: str,
                   fstype: str | None, flags: int, data: str | None) -> None:
    """Mount a tmpfs over a directory, then copy the directory's old content into it (the
    ``tmpcopyup`` option podman adds to --tmpfs and --read-only mounts)."""
    import shutil

    old = os.open(fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Writable while we copy: a read-only copy-up tmpfs is made read-only afterwards.
        sc.mount(source, fd_path(fd), fstype, flags & ~sc.MS_RDONLY, data)
        new = ctx.target(destination, None)
        try:
            st = os.fstat(old)
            os.chown(fd_path(new), st.st_uid, st.st_gid)
            os.chmod(fd_path(new), st.st_mode & 0o7777)
            shutil.copytree(fd_path(old), fd_path(new), symlinks=True, dirs_exist_ok=True)
            if flags & sc.MS_RDONLY:
                sc.mount(None, fd_path(new), None, sc.MS_REMOUNT | flags)
        finally:
            os.close(new)
    except OSError as err:
        raise OcirtError(f"tmpcopyup of {destination!r}: {err.strerror or err}") from err
    finally:
        os.close(old)


def prepare_steps(ctx: RootContext, propagation: str | None) -> list[Step]:
    """Cut the mount namespace off from the host, then make the rootfs a mount point."""
    # Always rslave first: pivot_root refuses a shared root, and an unbindable one cannot be
    # bound; linux.rootfsPropagation is applied to the new root after pivot_root (as runc).
    return [
        Step("mount --make-rslave / (nothing propagates back to the host)",
             lambda: sc.mount(None, "/", None, sc.MS_SLAVE | sc.MS_REC)),
        Step(f"mount --rbind {ctx.rootfs} {ctx.rootfs} (rootfs becomes a mount point)",
             lambda: sc.mount(ctx.rootfs, ctx.rootfs, None, sc.MS_BIND | sc.MS_REC)),
    ]


def shared_namespace_steps(ctx: RootContext, readonly: bool) -> list[Step]:
    """Before the mounts of a container without a mount namespace of its own: no propagation
    change (it would be the caller's), and a mount point on the rootfs only when a read-only
    root needs one (see ``hostmounts`` for how these mounts are taken away)."""
    if not readonly:
        return []
    return [Step(f"mount --rbind {ctx.rootfs} {ctx.rootfs} (for the read-only root; in the "
                 "runtime's mount namespace)",
                 lambda: sc.mount(ctx.rootfs, ctx.rootfs, None, sc.MS_BIND | sc.MS_REC))]


def pivot_steps(ctx: RootContext, no_pivot: bool, own_namespace: bool = True) -> list[Step]:
    if not own_namespace:  # pivot_root or a move would change the root of the whole namespace
        return [Step(f"chroot {ctx.rootfs} (no mount namespace of its own: no pivot_root)",
                     lambda: _chroot(ctx), "pivot_root")]
    if no_pivot:
        return [Step(f"mount --move {ctx.rootfs} /; chroot .", lambda: _move_root(ctx),
                     "pivot_root")]
    return [Step(f"pivot_root {ctx.rootfs}; umount -l old root", lambda: _pivot(ctx),
                 "pivot_root")]


def _pivot(ctx: RootContext) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it then leaves
    # the new root alone, with no directory for the old root needed (as runc does).
    ctx.close()
    os.chdir(ctx.rootfs)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def _chroot(ctx: RootContext) -> None:
    ctx.close()
    os.chdir(ctx.rootfs)
    os.chroot(".")
    os.chdir("/")


def _move_root(ctx: RootContext) -> None:
    ctx.close()
    os.chdir(ctx.rootfs)
    sc.mount(ctx.rootfs, "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def finish_steps(readonly: bool, masked: list[str], readonly_paths: list[str],
                 propagation: str | None) -> list[Step]:
    """Steps after pivot_root: paths are now the container's own."""
    steps = [Step(f"mask {path} (bind /dev/null, or a read-only tmpfs on a directory)",
                  partial(_mask, path)) for path in masked]
    steps += [Step(f"make {path} read-only (bind on itself, remount ro)",
                   partial(_readonly, path)) for path in readonly_paths]
    if readonly:
        steps.append(Step("remount / read-only", lambda: remount_bind("/", sc.MS_RDONLY)))
    if propagation:
        flag = PROPAGATION[propagation] | sc.MS_REC
        steps.append(Step(f"mount --make-r{propagation.lstrip('r')} / (linux.rootfsPropagation)",
                          lambda: sc.mount(None, "/", None, flag)))
    return steps


def _mask(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND, None)


def _readonly(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC, None)
    except SyscallError as err:
        if err.errno == 2:
            return
        raise
    remount_bind(path, sc.MS_RDONLY)
