"""Mounts made in the runtime's own mount namespace, for a container that has none of its own.

A config without a ``mount`` namespace makes the container inherit the runtime's (config-linux.md
says it MUST). Its rootfs mounts (/proc, /dev, masks...) then land in the caller's mount
namespace, where nothing takes them away when the container ends: runc and crun leave them
there. ocirt notes which mounts under the rootfs are new once the container is set up, and
detaches exactly those on ``delete`` (or when ``create`` fails), never a mount it did not make.

Each mount is found again by its ID: the path is opened without following symlinks, the
open file's mount ID (``/proc/self/fdinfo``) must be the recorded one, and the detach goes
through that file, so a path the container changed cannot make ocirt detach another mount.
"""

from __future__ import annotations

import os

from ocirt.errors import SyscallError
from ocirt.linux import syscalls as sc

# A mount: its ID and its mount point, as /proc/self/mountinfo gives them.
Mount = tuple[int, str]


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def mounts_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """Every mount whose mount point is ``path`` or below it, in mountinfo order."""
    found = []
    prefix = path.rstrip("/") + "/"
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split(" ", 5)
            point = _unescape(fields[4])
            if point == path or point.startswith(prefix):
                found.append((int(fields[0]), point))
    return found


def made_since(before: list[Mount], path: str) -> list[Mount]:
    """The mounts under ``path`` that were not there in ``before``."""
    old = {mount_id for mount_id, _ in before}
    return [mount for mount in mounts_under(path) if mount[0] not in old]


def _mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as handle:
        for line in handle:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    return -1


def detach(recorded: list[Mount]) -> list[str]:
    """Detach (``umount2 MNT_DETACH``) the recorded mounts that are still there, topmost and
    deepest first; returns what could not be detached, in words."""
    wanted = {mount_id for mount_id, _ in recorded}
    problems: list[str] = []
    while wanted:
        present = [m for m in mounts_under("/") if m[0] in wanted]
        if not present:
            break
        progress = False
        # deepest mount points first; among mounts stacked on one point, the newest first
        for mount_id, point in sorted(reversed(present), key=lambda m: -m[1].count("/")):
            if mount_id not in wanted:
                continue  # went with a parent detached in this pass
            try:
                fd = sc.openat2(sc.AT_FDCWD, point, os.O_PATH | os.O_CLOEXEC,
                                sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS)
            except OSError:
                continue
            try:
                if _mount_id(fd) != mount_id:
                    continue  # another mount is on top of ours: it goes first, or stays
                sc.umount2(f"/proc/self/fd/{fd}", sc.MNT_DETACH)
                progress = True
            except SyscallError as err:
                problems.append(f"{point}: {err}")
                wanted.discard(mount_id)
            finally:
                os.close(fd)
        if not progress:
            problems += [f"{point}: another mount covers it" for mount_id, point in present
                         if mount_id in wanted]
            break
        still = {m[0] for m in mounts_under("/")}
        wanted &= still
    return problems
