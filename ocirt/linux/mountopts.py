"""Mount options as config.json writes them: mount(2) flags, propagation, recursive attributes.

``parse_options`` splits a mount's ``options`` the way mount(8) and runc understand them: flags
for mount(2), propagation changes made afterwards, recursive attributes for mount_setattr(2)
(``rro``, ``rnosuid``, ...), ocirt's own (``tmpcopyup``, ``idmap``, ``ridmap``) and whatever is
left, which is the filesystem's data. Also here: the flags a mount has now
(``current_mount_flags``) and the mount_setattr attributes of a bind remount's flags
(``setattr_of_flags``). Nothing here makes a mount.
"""

from __future__ import annotations

import os

from ocirt.linux import syscalls as sc

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
KEPT_ON_REMOUNT = (sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
                   | sc.MS_NOATIME | sc.MS_NODIRATIME | sc.MS_RELATIME)
_ST_TO_MS = {1: sc.MS_RDONLY, 2: sc.MS_NOSUID, 4: sc.MS_NODEV, 8: sc.MS_NOEXEC,
             1024: sc.MS_NOATIME, 2048: sc.MS_NODIRATIME, 4096: sc.MS_RELATIME}
# mount(2) flags of a bind remount -> mount_setattr(2) attributes
_MS_TO_ATTR = ((sc.MS_RDONLY, sc.MOUNT_ATTR_RDONLY), (sc.MS_NOSUID, sc.MOUNT_ATTR_NOSUID),
               (sc.MS_NODEV, sc.MOUNT_ATTR_NODEV), (sc.MS_NOEXEC, sc.MOUNT_ATTR_NOEXEC),
               (sc.MS_NODIRATIME, sc.MOUNT_ATTR_NODIRATIME),
               (sc.MS_NOSYMFOLLOW, sc.MOUNT_ATTR_NOSYMFOLLOW))
_MS_TO_ATIME = ((sc.MS_NOATIME, sc.MOUNT_ATTR_NOATIME), (sc.MS_RELATIME, sc.MOUNT_ATTR_RELATIME),
                (sc.MS_STRICTATIME, sc.MOUNT_ATTR_STRICTATIME))


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


def is_recursive(option: str) -> bool:
    """Is ``option`` one that mount_setattr(2) applies with AT_RECURSIVE?"""
    return option in RECURSIVE or option in RECURSIVE_ATIME


def describe_flags(flags: int) -> str:
    names = [name for name, (clear, flag) in MOUNT_FLAGS.items()
             if not clear and flag and flags & flag == flag and name not in ("defaults", "rbind")]
    if flags & sc.MS_BIND and flags & sc.MS_REC:
        names = ["rbind"] + [n for n in names if n != "bind"]
    return ",".join(names) or "none"


def current_mount_flags(path: str | int) -> int:
    flags = 0
    vfs = os.fstatvfs(path) if isinstance(path, int) else os.statvfs(path)
    for st_flag, ms_flag in _ST_TO_MS.items():
        if vfs.f_flag & st_flag:
            flags |= ms_flag
    return flags


def setattr_of_flags(flags: int) -> tuple[int, int]:
    """The mount_setattr(2) (set, clear) attributes that give a bind mount's top the options
    of a bind remount with ``flags`` (read-write unless ``MS_RDONLY``)."""
    attr_set = sum(attr for flag, attr in _MS_TO_ATTR if flags & flag)
    attr_clr = 0 if flags & sc.MS_RDONLY else sc.MOUNT_ATTR_RDONLY
    for flag, attr in _MS_TO_ATIME:
        if flags & flag:
            attr_clr |= sc.MOUNT_ATTR__ATIME
            attr_set = (attr_set & ~sc.MOUNT_ATTR__ATIME) | attr
    return attr_set, attr_clr
