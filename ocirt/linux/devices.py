"""Device nodes in the container's /dev: the defaults every container needs, linux.devices,
and the /dev symlinks (fd, stdin, stdout, stderr, ptmx).

Nodes are made with mknod inside the rootfs; in a user namespace, where mknod is not allowed,
the host's node is bind-mounted onto an empty file instead. Their directories (``/dev`` and
below) are walked with no symlink allowed (``safepath.mkdir_all`` strict): a ``/dev`` swapped
for a symlink into a volume would otherwise make the runtime unlink and create files there
(CVE-2026-41579, crun's CVE-2026-47766).
"""

from __future__ import annotations

import os
import stat
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import SyscallError
from ocirt.linux import procfs, safepath
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Step
from ocirt.linux.rootfs import RootContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Device:
    """A device node to make: ``kind`` is "c", "b", "u" or "p"."""

    def __init__(self, path: str, kind: str, major: int, minor: int, mode: int, uid: int,
                 gid: int) -> None:
        self.path, self.kind, self.major, self.minor = path, kind, major, minor
        self.mode, self.uid, self.gid = mode, uid, gid


DEFAULT_DEVICES = [
    Device("/dev/null", "c", 1, 3, 0o666, 0, 0),
    Device("/dev/zero", "c", 1, 5, 0o666, 0, 0),
    Device("/dev/full", "c", 1, 7, 0o666, 0, 0),
    Device("/dev/random", "c", 1, 8, 0o666, 0, 0),
    Device("/dev/urandom", "c", 1, 9, 0o666, 0, 0),
    Device("/dev/tty", "c", 5, 0, 0o666, 0, 0),
]
DEV_SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
]
_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def devices_from_config(linux: dict[str, Any]) -> list[Device]:
    devices = {dev.path: dev for dev in DEFAULT_DEVICES}
    for entry in linux.get("devices", []):
        devices[entry["path"]] = Device(
            entry["path"], entry["type"], entry.get("major", 0), entry.get("minor", 0),
            entry.get("fileMode", 0o666), entry.get("uid", 0), entry.get("gid", 0))
    return list(devices.values())


def device_steps(ctx: RootContext, devices: list[Device], bind_from_host: bool,
                 has_devpts: bool) -> list[Step]:
    how = "bind from host" if bind_from_host else "mknod"
    steps = [Step(f"{how} {dev.path} ({dev.kind} {dev.major}:{dev.minor} "
                  f"mode {dev.mode:o} uid {dev.uid} gid {dev.gid})",
                  partial(_make_device, ctx, dev, bind_from_host)) for dev in devices]
    links = list(DEV_SYMLINKS)
    if has_devpts:
        links.append(("pts/ptmx", "/dev/ptmx"))
    steps += [Step(f"symlink {link} -> {target}", partial(_symlink, ctx, target, link))
              for target, link in links]
    return steps


def _split(ctx: RootContext, path: str) -> tuple[int, str]:
    parent, name = safepath.split(path)
    try:
        return safepath.mkdir_all(ctx.fd, parent, strict=True), name
    except OSError as err:
        raise SyscallError.of(f"mkdir/open({parent!r}) in the rootfs", err,
                              f"opening {parent} for {path}", "no symlink is allowed there"
                              ) from err


def _make_device(ctx: RootContext, dev: Device, bind_from_host: bool) -> None:
    parentfd, name = _split(ctx, dev.path)
    try:
        try:
            os.unlink(name, dir_fd=parentfd)
        except FileNotFoundError:
            pass
        if bind_from_host:
            fd = safepath.create_file(parentfd, name)
            try:
                procfs.mount_on(fd, dev.path, None, sc.MS_BIND)
            finally:
                os.close(fd)
            return
        mode = (dev.mode & 0o7777) | _TYPE_BITS[dev.kind]
        os.mknod(name, mode, os.makedev(dev.major, dev.minor), dir_fd=parentfd)
        os.chown(name, dev.uid, dev.gid, dir_fd=parentfd, follow_symlinks=False)
        _chmod_at(parentfd, name, dev.mode & 0o7777)
    except OSError as err:
        raise SyscallError.of(f"mknod({dev.path!r}, {dev.kind} {dev.major}:{dev.minor}, "
                              f"{dev.mode & 0o7777:#o}) / chown({dev.uid}, {dev.gid})", err,
                              f"creating device {dev.path}") from err
    finally:
        os.close(parentfd)


def _chmod_at(parentfd: int, name: str, mode: int) -> None:
    # mknod applies the umask; set the mode the config asks for exactly. fchmodat cannot skip
    # symlinks, so go through an O_PATH fd of the node we just made.
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parentfd)
    try:
        with procfs.magic_path(fd) as path:
            os.chmod(path, mode)
    finally:
        os.close(fd)


def _symlink(ctx: RootContext, target: str, link: str) -> None:
    parentfd, name = _split(ctx, link)
    try:
        os.symlink(target, name, dir_fd=parentfd)
    except FileExistsError:
        pass
    except OSError as err:
        raise SyscallError.of(f"symlink({target!r}, {link!r})", err,
                              f"creating symlink {link}") from err
    finally:
        os.close(parentfd)
