"""AppArmor: ``process.apparmorProfile`` set for the container's next execve, as runc does.

The profile is written as ``exec <profile>`` to the calling thread's
``/proc/thread-self/attr/apparmor/exec`` (``attr/exec`` on kernels before 5.8, which have no
per-LSM directory), from init or the exec'd process, after pivot_root and before the identity
change; the kernel applies it at execve. A profile on a host where AppArmor is not enabled is an
error before anything is made (runc fails too, later, when the write is refused).

``write_attr`` is the one place that opens a procfs file here, through the trusted procfs
handle (``ocirt.linux.procfs``): the container's /proc must not be able to redirect it.
"""

from __future__ import annotations

import os

from ocirt.errors import ConfigError, OcirtError, SyscallError
from ocirt.linux import procfs
from ocirt.linux.plan import Step

ENABLED = "/sys/module/apparmor/parameters/enabled"


def enabled() -> bool:
    """Is AppArmor on in this kernel (as runc decides it)?"""
    if not os.path.isdir("/sys/kernel/security/apparmor"):
        return False
    try:
        with open(ENABLED, "rb") as handle:
            return handle.read(1) == b"Y"
    except OSError:
        return False


def check(profile: str | None, where: str = "$.process.apparmorProfile") -> None:
    if profile and not enabled():
        raise ConfigError(where, f"AppArmor profile {profile!r}: AppArmor is not enabled on "
                          f"this host ({ENABLED} is not Y)")


def write_attr(name: str, value: str) -> None:
    """Write ``value`` to this thread's AppArmor attribute ``name`` (attr/apparmor/NAME, or
    attr/NAME on kernels before 5.8), through the trusted procfs handle: the container's /proc
    cannot redirect it."""
    path = f"thread-self/attr/apparmor/{name}"
    try:
        fd = procfs.open_file(path, os.O_WRONLY | os.O_CLOEXEC)
    except OcirtError:
        path = f"thread-self/attr/{name}"
        fd = procfs.open_file(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise SyscallError.of(f"write(/proc/{path}, {value!r})", err, "apparmor",
                              "is the profile loaded? apparmor_parser -r it first") from err
    finally:
        os.close(fd)


def steps(profile: str | None) -> list[Step]:
    """The step that sets ``profile`` for the next execve (nothing without a profile)."""
    if not profile:
        return []
    return [Step(f"apparmor: write 'exec {profile}' to /proc/thread-self/attr/apparmor/exec "
                 "(applied at execve)", lambda: write_attr("exec", f"exec {profile}"))]
