"""The default seccomp profile ``ocirt spec`` writes, as data: ``seccomp_default.json`` beside
this module (an allow-list in the spirit of Docker's; SECURITY.md), with the architectures of
the host's machine. Nothing here compiles or loads a filter: that is ``ocirt.linux.seccomp``'s
work, on whatever profile a config holds."""

from __future__ import annotations

import os

from ocirt import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The architectures a default profile lists, by the host's machine (as Docker's archMap).
DEFAULT_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}
PROFILE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The profile ``ocirt spec`` writes, for ``machine`` (default: this host's)."""
    with open(PROFILE_FILE, "rb") as handle:
        profile: dict[str, Any] = jsonfast.loads(handle.read())
    arches = DEFAULT_ARCHES.get(machine or os.uname().machine)
    if arches is None:
        profile.pop("architectures", None)  # the native architecture only
    else:
        profile["architectures"] = list(arches)
    return profile
