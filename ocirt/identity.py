"""Who this runtime runs as: the host's root, or rootless (runc's rule), and its uid on the host.

The runtime is rootless when its effective uid is not 0, or when it runs inside a user
namespace that does not map the whole id range (rootless podman calls the runtime as uid 0 of
such a namespace, where cgroups and device nodes stay out of reach). Every layer may ask, the
error messages included (``ocirt.errors.access_hint``), so this module sits beside
``ocirt.errors`` at the bottom and imports nothing of ocirt. Cheap on purpose: it reads at most
one small /proc file.
"""

from __future__ import annotations

import os

# /proc/self/uid_map of the initial user namespace: everything, mapped onto itself.
_FULL_MAP = ("0", "0", "4294967295")

_cached: bool | None = None


def in_user_namespace() -> bool:
    """True inside a user namespace other than the host's (its uid_map is not the full one)."""
    try:
        with open("/proc/self/uid_map", "rb") as handle:
            fields = handle.read().split()
    except OSError:
        return False
    return tuple(field.decode() for field in fields) != _FULL_MAP


def running_rootless() -> bool:
    """Is this runtime without the host's root (see the module's docstring)?"""
    global _cached
    if _cached is None:
        _cached = os.geteuid() != 0 or in_user_namespace()
    return _cached


def host_uid() -> int:
    """Our effective uid as the host sees it (through the user namespaces' uid maps)."""
    uid = os.geteuid()
    try:
        with open("/proc/self/uid_map", "rb") as handle:
            for line in handle:
                inside, outside, count = (int(field) for field in line.split())
                if inside <= uid < inside + count:
                    return outside + uid - inside
    except (OSError, ValueError):
        pass
    return uid
