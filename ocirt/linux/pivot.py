"""Around the container's mounts: cutting the mount namespace off the host, switching root.

Before the mounts, ``prepare_steps`` sets the propagation of ``/`` and of the mount holding the
rootfs and makes the rootfs a mount point (or, for a container without a mount namespace of its
own, ``shared_namespace_steps`` changes nothing but a read-only root's bind). Then
``pivot_steps`` makes the rootfs the root: pivot_root and a detached old root, a move and a
chroot (``--no-pivot``), or a plain chroot without a mount namespace. After it,
``finish_steps`` works on the container's own paths: masked and read-only paths (``masking``),
a read-only root, and a shared or unbindable ``linux.rootfsPropagation`` set again on the new
root. The mounts of config.json in between are ``rootfs``'s.
"""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import SyscallError
from ocirt.linux import syscalls as sc
from ocirt.linux.masking import Masker
from ocirt.linux.mountopts import PROPAGATION
from ocirt.linux.plan import Step
from ocirt.linux.rootfs import RootContext, remount_bind


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
