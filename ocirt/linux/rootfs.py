"""The mounts of config.json in the container's rootfs, each made on a path opened by fd.

Every path from the config is resolved inside the rootfs by ``safepath`` (openat2 with
RESOLVE_IN_ROOT), so a symlink in the rootfs can never make a mount land outside it; the mount
then targets the opened file through the trusted procfs (``procfs.mount_on``), so a path
swapped after the check cannot redirect it either. A destination that resolves into /proc
follows runc's rule (``procfs.check_mount_destination``). All steps run in the container's
own mount namespace, made slave before the first mount (``pivot.prepare_steps``), so nothing
reaches the host. What the options mean is ``mountopts``'s; what comes before and after the
mounts (propagation, pivot_root, masked paths) is ``pivot``'s.
"""

from __future__ import annotations

import os
import stat

from ocirt.errors import ConfigError, OcirtError, SyscallError, access_hint
from ocirt.linux import procfs, safepath
from ocirt.linux import syscalls as sc
from ocirt.linux.mountopts import (
    KEPT_ON_REMOUNT,
    MountOptions,
    current_mount_flags,
    describe_flags,
    is_recursive,
    parse_options,
    setattr_of_flags,
)
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.linux import idmap


def open_in_root(rootfd: int, path: str, create: str | None = None) -> int:
    """Open ``path`` (absolute inside the rootfs) as an O_PATH fd without leaving the root.

    ``create`` is ``"dir"`` or ``"file"`` to make a missing destination (and its parent
    directories) the way a mount needs it; see ``safepath`` for the rules.
    """
    return _open_in_root(rootfd, path, create, 0)


def _open_in_root(rootfd: int, path: str, create: str | None, depth: int) -> int:
    try:
        return safepath.open_in_root(rootfd, path)
    except FileNotFoundError:
        if create is None:
            raise
    if depth > 40:
        raise OSError(40, "too many levels of symbolic links", path)
    parent, name = safepath.split(path)
    parentfd = _open_in_root(rootfd, parent, "dir", depth + 1)
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
            # what is there now, resolved again inside the root (a symlink swapped in since
            # still resolves inside the rootfs, as the container would see it)
            return safepath.open_in_root(rootfd, f"{parent}/{name}")
        return safepath.create_file(parentfd, name)
    finally:
        os.close(parentfd)


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
            raise SyscallError.of(f"open({destination!r}) in the rootfs", err,
                                  f"mount destination {destination!r} in rootfs "
                                  f"{self.rootfs!r}") from err

    def mounted(self, destination: str, under: int) -> int:
        """The mount just made on the target ``under`` (an fd that now lies beneath it),
        reached by opening ``destination`` again and checked to be that mount: its parent is
        the mount ``under`` is on. A path swapped in between fails the check."""
        fd = self.target(destination, None)
        if procfs.parent_mount_id(procfs.mount_id(fd)) != procfs.mount_id(under):
            os.close(fd)
            raise OcirtError(f"mount destination {destination!r} changed while it was being "
                             "mounted (a symlink or a rename in the rootfs?): refusing")
        return fd


def bind_onto(fd: int, source: str, flags: int) -> int:
    """Bind ``source`` onto the target ``fd`` with no second lookup of the target: a detached
    clone (open_tree), the options set on the clone's top mount as a bind remount would
    (read-write unless ``ro``), then move_mount onto the fd. Returns the new mount's fd."""
    tree = sc.open_tree(source, bool(flags & sc.MS_REC))
    try:
        extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if extra:
            attr_set, attr_clr = setattr_of_flags(extra)
            sc.mount_setattr(tree, attr_set, attr_clr, recursive=False)
        sc.move_mount(tree, fd, f"bind {source!r}")
    except BaseException:
        os.close(tree)
        raise
    return tree


def remount_bind(path: str | int, flags: int) -> None:
    """Change the flags of the bind mount at ``path`` (or the fd on its root), keeping the
    locked ones it has."""
    kept = current_mount_flags(path) & KEPT_ON_REMOUNT & ~sc.MS_RDONLY
    if isinstance(path, int):
        procfs.mount_on(path, None, None, sc.MS_BIND | sc.MS_REMOUNT | kept | flags)
    else:
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
    recursive = [o for o in mount.get("options", []) if is_recursive(o)]
    text = (f"mount {source or fstype} on {destination} type {fstype or 'none'} "
            f"({describe_flags(options.flags)}{',' + data if data else ''})"
            + (f"; mount_setattr AT_RECURSIVE {','.join(recursive)}" if recursive else ""))
    return [Step(text, lambda: _do_mount(ctx, source, destination, fstype, options, data,
                                         f"$.mounts[{index}]"))]


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
        raise SyscallError.of(f"stat({source!r})", err, f"bind mount source {source!r} for "
                              f"{destination!r}", access_hint(err, "a source").removeprefix(": ")
                              ) from err


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
                  lambda: _attach(ctx, mapped, source, destination, options, index))
    return mapped, [attach]


def _attach(ctx: RootContext, mapped: idmap.IdmappedMount, source: str, destination: str,
            options: MountOptions, index: int) -> None:
    # the detached copy says what it is: init may not be able to reach the source any more
    fd = ctx.target(destination, "dir" if mapped.is_dir() else "file")
    try:
        procfs.check_mount_destination(ctx.rootfs, fd, destination, None, source, True)
        mapped.attach(fd, destination)
        _after_mount(ctx, destination, options, fd)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r} ($.mounts[{index}]): {err}") from err
    finally:
        os.close(fd)


def _after_mount(ctx: RootContext, destination: str, options: MountOptions, under: int,
                 new: int = -1) -> None:
    """Propagation and recursive attributes, on the new mount: ``new`` when the caller holds
    it, else reopened and checked to sit on ``under`` (``RootContext.mounted``)."""
    if not (options.propagation or options.attr_set or options.attr_clr):
        return
    fd = os.dup(new) if new >= 0 else ctx.mounted(destination, under)
    try:
        for prop in options.propagation:
            procfs.mount_on(fd, None, None, prop)
        if options.attr_set or options.attr_clr:
            sc.mount_setattr(fd, options.attr_set, options.attr_clr)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r}: {err}") from err
    finally:
        os.close(fd)


def _do_mount(ctx: RootContext, source: str | None, destination: str, fstype: str | None,
              options: MountOptions, data: str | None, where: str = "$.mounts") -> None:
    create = _bind_target_kind(source or "", destination) if options.is_bind else "dir"
    fd = ctx.target(destination, create)
    new = -1
    try:
        procfs.check_mount_destination(ctx.rootfs, fd, destination, fstype, source,
                                       options.is_bind)
        flags = options.flags
        if options.is_bind:
            new = bind_onto(fd, source or "", flags)
        elif options.copy_up:
            _mount_copy_up(ctx, destination, fd, source or fstype or "none", fstype, flags, data)
        else:
            procfs.mount_on(fd, source or fstype or "none", fstype, flags, data)
        _after_mount(ctx, destination, options, fd, new)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r} ({where}): {err}") from err
    finally:
        os.close(fd)
        if new >= 0:
            os.close(new)


def _mount_copy_up(ctx: RootContext, destination: str, fd: int, source: str,
                   fstype: str | None, flags: int, data: str | None) -> None:
    """Mount a tmpfs over a directory, then copy the directory's old content into it (the
    ``tmpcopyup`` option podman adds to --tmpfs and --read-only mounts). Both sides are named
    through the trusted procfs, never by their path in the rootfs."""
    import shutil

    with procfs.magic_path(fd) as here:
        old = os.open(here, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Writable while we copy: a read-only copy-up tmpfs is made read-only afterwards.
        procfs.mount_on(fd, source, fstype, flags & ~sc.MS_RDONLY, data)
        new = ctx.mounted(destination, fd)
        try:
            st = os.fstat(old)
            with procfs.magic_path(new) as there:
                os.chown(there, st.st_uid, st.st_gid)
                os.chmod(there, st.st_mode & 0o7777)
                shutil.copytree(procfs.fd_name(old), there, symlinks=True, dirs_exist_ok=True)
            if flags & sc.MS_RDONLY:
                procfs.mount_on(new, None, None, sc.MS_REMOUNT | flags)
        finally:
            os.close(new)
    except OSError as err:
        raise SyscallError.of(f"copying into the tmpfs on {destination!r}", err,
                              f"tmpcopyup of {destination!r}") from err
    finally:
        os.close(old)
