"""Paths inside the container's rootfs, opened once by file descriptor and used through it.

Every rootfs operation of the runtime (mount targets and the directories made for them, /dev
nodes and symlinks, masked and read-only paths, the console, the cwd) starts here, because a
second process sharing the rootfs, a volume or ``/dev`` can swap any path for a symlink at any
moment (runc's CVE-2024-45310, CVE-2025-31133, CVE-2025-52565, CVE-2026-41579):

* ``open_in_root`` resolves as the container would (symlinks followed, but ``/`` and ``..``
  stop at the rootfs) with openat2 ``RESOLVE_IN_ROOT``; magic links (``/proc/self/fd/N``) are
  never followed.
* ``open_beneath`` is stricter, for paths the runtime itself sets up (``/dev``): no symlink
  at all (``RESOLVE_NO_SYMLINKS``), optionally no mount crossing (``RESOLVE_NO_XDEV``).
* openat2's EAGAIN (a rename or mount anywhere on the system while it resolved ``..``) is
  retried ``OPENAT2_EAGAIN_RETRIES`` times, then reported naming the path.
* Without openat2 (Linux < 5.6) both walk the path a component at a time with
  ``O_PATH|O_NOFOLLOW``, resolving symlinks themselves under the same rules.

What the caller gets is an fd; a mount onto it goes through ``procfs.magic_path`` (the trusted
procfs), never through a second lookup of the path.
"""

from __future__ import annotations

import errno
import os
import stat

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux import procfs
from ocirt.linux import syscalls as sc

FORCE_WALK = False  # tests: take the component walk even where openat2 exists
_MAX_LINKS = 40
# openat2 with RESOLVE_IN_ROOT/RESOLVE_BENEATH fails with EAGAIN when a rename or a mount
# happens anywhere on the system while it walks ".." (the kernel's mount/rename seqlock
# check): spurious under load, or a second process trying to disturb the lookup. Retry a
# bounded number of times, as pathrs-lite (runc's path library) does with 32; past that we
# fail rather than fall back to the component walk, which an attacker able to keep renaming
# would then pick for us.
OPENAT2_EAGAIN_RETRIES = 32
_O_PATH = os.O_PATH | os.O_CLOEXEC


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open ``path`` as the container would see it, never leaving the root ``rootfd``."""
    return _open(rootfd, path, flags, sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)


def open_beneath(dirfd: int, path: str, flags: int = os.O_PATH, no_xdev: bool = False) -> int:
    """Open ``path`` below ``dirfd`` with no symlink anywhere on the way (and, with
    ``no_xdev``, no mount crossed)."""
    resolve = sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
    return _open(dirfd, path, flags, resolve | (sc.RESOLVE_NO_XDEV if no_xdev else 0))


def _open(dirfd: int, path: str, flags: int, resolve: int) -> int:
    global FORCE_WALK
    if not FORCE_WALK:
        try:
            return _openat2_retrying(dirfd, path, flags, resolve)
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
            FORCE_WALK = True
    return _walk(dirfd, path, flags, resolve)


def _openat2_retrying(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """openat2, retried while a concurrent rename or mount makes it fail with EAGAIN."""
    for _ in range(OPENAT2_EAGAIN_RETRIES):
        try:
            return sc.openat2(dirfd, path, flags, resolve)
        except OSError as err:
            if err.errno != errno.EAGAIN:
                raise
    try:
        return sc.openat2(dirfd, path, flags, resolve)
    except OSError as err:
        if err.errno != errno.EAGAIN:
            raise
        raise SyscallError(
            f"openat2({dirfd}, {path!r}, {flags:#x}, resolve={resolve:#x})", errno.EAGAIN,
            f"resolving {path!r} inside the container",
            f"still failing after {OPENAT2_EAGAIN_RETRIES} retries: renames or mounts "
            "keep racing the lookup") from err


def _walk(rootfd: int, path: str, flags: int, resolve: int) -> int:
    """openat2's rules by hand: one O_PATH|O_NOFOLLOW open per component."""
    in_root = bool(resolve & sc.RESOLVE_IN_ROOT)
    root_dev = os.fstat(rootfd).st_dev
    stack = [os.dup(rootfd)]  # the directories walked so far; [0] is the root
    pending = [c for c in path.split("/") if c not in ("", ".")]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                elif not in_root:
                    raise OSError(errno.EXDEV, "path escapes its root", path)
                continue
            fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=stack[-1])
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink("", dir_fd=fd)  # the link an O_PATH fd is
                os.close(fd)
                links += 1
                if resolve & sc.RESOLVE_NO_SYMLINKS or links > _MAX_LINKS:
                    raise SyscallError(f"open({path!r}) a component at a time", errno.ELOOP)
                if target.startswith("/"):
                    if not in_root:
                        raise OSError(errno.EXDEV, "path escapes its root", path)
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending[:0] = [c for c in target.split("/") if c not in ("", ".")]
                continue
            if resolve & sc.RESOLVE_NO_XDEV and st.st_dev != root_dev:
                os.close(fd)
                raise OSError(errno.EXDEV, "path crosses a mount", path)
            if pending and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise SyscallError(f"open({path!r}) a component at a time", errno.ENOTDIR)
            stack.append(fd)
        last = stack[-1]
        if flags & ~(os.O_CLOEXEC | os.O_NOFOLLOW) == os.O_PATH:
            return os.dup(last) if len(stack) == 1 else stack.pop()
        # reopen the final O_PATH fd for real I/O through the trusted procfs, not by name
        with procfs.magic_path(last) as magic:
            return os.open(magic, flags | os.O_CLOEXEC)
    finally:
        for fd in stack:
            os.close(fd)


def split(path: str) -> tuple[str, str]:
    parent, _, name = path.rstrip("/").rpartition("/")
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, "not a valid path to create", path)
    return parent or "/", name


def mkdir_all(rootfd: int, path: str, strict: bool) -> int:
    """The directory ``path``, made where missing, opened O_PATH. ``strict``: no symlink on
    the way (``/dev``), else symlinks resolve inside the root as the container's would."""
    opened = os.dup(rootfd)
    pending = [c for c in path.split("/") if c not in ("", ".")]
    try:
        for index, name in enumerate(pending):
            if name == ".." and strict:
                raise OSError(errno.EXDEV, "'..' in a path the runtime sets up", path)
            try:
                os.mkdir(name, 0o755, dir_fd=opened)
            except FileExistsError:
                pass
            if strict:
                nextfd = open_beneath(opened, name, os.O_PATH | os.O_DIRECTORY)
            else:  # resolve what is there (maybe a symlink) from the root, as a whole
                nextfd = open_in_root(rootfd, "/".join(pending[:index + 1]),
                                      os.O_PATH | os.O_DIRECTORY)
            os.close(opened)
            opened = nextfd
        return opened
    except BaseException:
        os.close(opened)
        raise


def create_file(dirfd: int, name: str) -> int:
    """An empty regular file ``name`` in ``dirfd`` (kept if there), opened O_PATH; a symlink
    or anything but a regular file there is refused."""
    try:
        os.mknod(name, stat.S_IFREG | 0o644, dir_fd=dirfd)
    except FileExistsError:
        pass
    fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dirfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EEXIST, "exists and is not a regular file", name)
    return fd


def open_null(rootfd: int) -> int:
    """The container's /dev/null, opened O_PATH with no symlink followed and checked to be
    the character device 1:3 (CVE-2025-31133): the source of every masked-file bind."""
    try:
        fd = open_beneath(rootfd, "dev/null")
    except OSError as err:
        raise SyscallError.of("open('dev/null') beneath the rootfs, no symlinks", err,
                              "opening /dev/null of the container",
                              "a symlink or a missing /dev/null is refused") from err
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise OcirtError("/dev/null of the container is not the null device (char 1:3): "
                         "refusing to mask paths with it")
    return fd
