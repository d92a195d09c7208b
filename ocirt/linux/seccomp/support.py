"""What this host offers for seccomp: the default profile ``ocirt spec`` writes, and the
``linux.seccomp`` part of ``ocirt features``."""

from __future__ import annotations

import os

from ocirt import jsonfast
from ocirt.errors import OcirtError
from ocirt.linux.seccomp.compile import libseccomp_version
from ocirt.linux.seccomp.rules import (
    ACTIONS,
    ARCHES,
    FLAGS,
    OPERATORS,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
)
from ocirt.linux.syscalls import seccomp as kseccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The architectures a default profile lists, by the host's machine (as Docker's archMap).
_DEFAULT_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}
_OCIRT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The profile ``ocirt spec`` writes (ocirt/config/seccomp_default.json), for this host."""
    path = os.path.join(_OCIRT_DIR, "config", "seccomp_default.json")
    with open(path, "rb") as handle:
        profile: dict[str, Any] = jsonfast.loads(handle.read())
    arches = _DEFAULT_ARCHES.get(machine or os.uname().machine)
    if arches is None:
        profile.pop("architectures", None)  # the native architecture only
    else:
        profile["architectures"] = list(arches)
    return profile


def features() -> dict[str, Any]:
    """linux.seccomp of the Features structure (features-linux.md)."""
    try:
        libseccomp_version()
    except OcirtError:
        return {"enabled": False}
    # WAIT_KILLABLE_RECV is only valid with a listener: asked together with NEW_LISTENER.
    supported = [name for name, flag in FLAGS.items() if kseccomp.flag_supported(
        flag | (SECCOMP_FILTER_FLAG_NEW_LISTENER
                if flag == SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV else 0))]
    return {"enabled": True, "actions": list(ACTIONS), "operators": list(OPERATORS),
            "archs": list(ARCHES), "knownFlags": list(FLAGS), "supportedFlags": supported}
