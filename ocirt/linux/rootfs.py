"""The container's root filesystem: mount options, safe paths, the mount plan and pivot_root.

Every path from the config is resolved inside the rootfs by ``safepath`` (openat2 with
RESOLVE_IN_ROOT), so a symlink in the rootfs can never make a mount land outside it; the mount
then targets the opened file through the trusted procfs (``procfs.mount_on``), so a path
swapped after the check cannot redirect it either. A destination that resolves into /proc
follows runc's rule (``procfs.check_mount_destination``). All steps run in the container's
own mount namespace, made slave before the first mount, so nothing reaches the host. A
container without a mount namespace of its own gets no propagation change and a chroot
instead of pivot_root (``shared_namespace_steps``).
"""

from __future__ import annotations

import os
import stat
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, OcirtError, SyscallError, access_hint
from ocirt.linux import procfs, safepath
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
            raise OcirtError(f"mount destination {destination!r} in rootfs {self.rootfs!r}: "
                             f"{err.strerror}") from err

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


def current_mount_flags(path: str | int) -> int:
    flags = 0
    vfs = os.fstatvfs(path) if isinstance(path, int) else os.statvfs(path)
    for st_flag, ms_flag in _ST_TO_MS.items():
        if vfs.f_flag & st_flag:
            flags |= ms_flag
    return flags


# mount(2) flags of a bind remount -> mount_setattr(2) attributes
_MS_TO_ATTR = ((sc.MS_RDONLY, sc.MOUNT_ATTR_RDONLY), (sc.MS_NOSUID, sc.MOUNT_ATTR_NOSUID),
               (sc.MS_NODEV, sc.MOUNT_ATTR_NODEV), (sc.MS_NOEXEC, sc.MOUNT_ATTR_NOEXEC),
               (sc.MS_NODIRATIME, sc.MOUNT_ATTR_NODIRATIME),
               (sc.MS_NOSYMFOLLOW, sc.MOUNT_ATTR_NOSYMFOLLOW))
_MS_TO_ATIME = ((sc.MS_NOATIME, sc.MOUNT_ATTR_NOATIME), (sc.MS_RELATIME, sc.MOUNT_ATTR_RELATIME),
                (sc.MS_STRICTATIME, sc.MOUNT_ATTR_STRICTATIME))


def bind_onto(fd: int, source: str, flags: int) -> int:
    """Bind ``source`` onto the target ``fd`` with no second lookup of the target: a detached
    clone (open_tree), the options set on the clone's top mount as a bind remount would
    (read-write unless ``ro``), then move_mount onto the fd. Returns the new mount's fd."""
    tree = sc.open_tree(source, bool(flags & sc.MS_REC))
    try:
        extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if extra:
            attr_set = sum(attr for flag, attr in _MS_TO_ATTR if extra & flag)
            attr_clr = 0 if extra & sc.MS_RDONLY else sc.MOUNT_ATTR_RDONLY
            for flag, attr in _MS_TO_ATIME:
                if extra & flag:
                    attr_clr |= sc.MOUNT_ATTR__ATIME
                    attr_set = (attr_set & ~sc.MOUNT_ATTR__ATIME) | attr
            sc.mount_setattr(tree, attr_set, attr_clr, recursive=False)
        sc.move_mount(tree, fd, f"bind {source!r}")
    except BaseException:
        os.close(tree)
        raise
    return tree


def remount_bind(path: str | int, flags: int) -> None:
    """Change the flags of the bind mount at ``path`` (or the fd on its root), keeping the
    locked ones it has."""
    kept = current_mount_flags(path) & _KEPT_ON_REMOUNT & ~sc.MS_RDONLY
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
        procfs.check_mount_destination(ctx.rootfs, fd, destination, None, source, True)
        mapped.attach(fd, destination)
        _after_mount(ctx, destination, options, fd)
    except SyscallError as err:
        raise OcirtError(f"mounting {destination!r}: {err}") from err
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
              options: MountOptions, data: str | None) -> None:
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
        raise OcirtError(f"mounting {destination!r}: {err}") from err
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
        raise OcirtError(f"tmpcopyup of {destination!r}: {err.strerror or err}") from err
    finally:
        os.close(old)


def prepare_steps(ctx: RootContext, propagation: str | None) -> list[Step]:
    """Cut the mount namespace off from the host, then make the rootfs a mount point.

    As runc 1.5: ``linux.rootfsPropagation`` takes the place of the first ``rslave`` of ``/``
    (so an ``rshared`` root keeps the host's peer groups, which a Bidirectional volume needs);
    the mount holding the rootfs is then made private (slave for a slave propagation), so the
    rootfs bind neither leaks to the host nor makes pivot_root refuse a shared parent.
    """
    flag = PROPAGATION[propagation] if propagation else sc.MS_SLAVE | sc.MS_REC
    name, why = (propagation, "linux.rootfsPropagation") if propagation else (
        "rslave", "nothing propagates back to the host")
    # (no value: private, as runc 1.5: the host's later mounts under the rootfs stay out)
    parent_flag = sc.MS_SLAVE if propagation and flag & sc.MS_SLAVE else sc.MS_PRIVATE
    return [
        Step(f"mount --make-{name} / ({why})", lambda: sc.mount(None, "/", None, flag)),
        Step(f"mount --make-{'slave' if parent_flag == sc.MS_SLAVE else 'private'} on the "
             f"mount holding {ctx.rootfs}", lambda: _rootfs_parent_propagation(ctx, parent_flag)),
        Step(f"mount --rbind {ctx.rootfs} {ctx.rootfs} (rootfs becomes a mount point)",
             lambda: sc.mount(ctx.rootfs, ctx.rootfs, None, sc.MS_BIND | sc.MS_REC)),
    ]


def _rootfs_parent_propagation(ctx: RootContext, flag: int) -> None:
    """Change the propagation of the mount the rootfs lives on: EINVAL means "not a mount
    point", so walk up until one accepts it."""
    path = ctx.rootfs
    while True:
        try:
            sc.mount(None, path, None, flag)
            return
        except SyscallError as err:
            if err.errno != 22 or path == "/":
                raise
        path = os.path.dirname(path)


def root_propagation_is_private(propagation: str | None) -> bool:
    """runc refuses an ``[r]private`` rootfsPropagation without pivot_root: nothing would keep
    the container's later umounts of the old root from reaching the host's mounts."""
    return bool(propagation) and bool(PROPAGATION[propagation or ""] & sc.MS_PRIVATE)


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
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(ctx.rootfs)
        sc.pivot_root(".", ".")
        # Stand on the old root itself (the cwd is still the new root's top), then make it
        # rslave, so that detaching it cannot reach the host's mounts through a peer group
        # (linux.rootfsPropagation shared keeps them), and only then detach it.
        os.fchdir(old_root)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(old_root)
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
    """Steps after pivot_root: paths are now the container's own (see ``masking``)."""
    from ocirt.linux.masking import Masker

    masker = Masker()
    steps = [Step(f"mask {path} (bind /dev/null checked to be 1:3, or the shared read-only "
                  "tmpfs on a directory)", partial(masker.mask, path)) for path in masked]
    steps += [Step(f"make {path} read-only (clone, mount_setattr ro, move back by fd)",
                   partial(masker.readonly, path)) for path in readonly_paths]
    steps.append(Step("close the masking fds", masker.close))
    if readonly:
        steps.append(Step("remount / read-only", lambda: remount_bind("/", sc.MS_RDONLY)))
    flag = PROPAGATION[propagation] if propagation else 0
    if flag and not flag & (sc.MS_PRIVATE | sc.MS_SLAVE):
        # Again on the new root (shared, unbindable): the root is the rootfs bind, which the
        # first change could not reach. Private and slave it already is (prepare_steps).
        steps.append(Step(f"mount --make-{propagation} / (linux.rootfsPropagation, again on "
                          "the new root)", lambda: sc.mount(None, "/", None, flag)))
    return steps
