"""Rootless: is the runtime running without the host's root, and where does its state go.

runc's rules: the runtime is rootless when its effective uid is not 0, or when it runs inside
a user namespace that does not map the whole id range (rootless podman calls the runtime as
uid 0 of such a namespace, where cgroups and device nodes stay out of reach). A rootless
runtime keeps its state in ``$XDG_RUNTIME_DIR/ocirt`` unless ``--root`` says otherwise.

Cheap on purpose: every command asks for the default root, so this reads at most one small
/proc file and imports nothing.
"""

from __future__ import annotations

import os

ROOT_STATE = "/run/ocirt"
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


def default_root() -> str:
    """The state root when ``--root`` is not given: runc's ``XDG_RUNTIME_DIR`` rule."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and (os.geteuid() != 0 or (in_user_namespace()
                                             and os.environ.get("USER") != "root")):
        return os.path.join(runtime_dir, "ocirt")
    return ROOT_STATE
