"""features: what this runtime implements, as the Features structure of features.md.

Every list is derived from the code that does the work (the mount option table, the namespace
table, libcap-ng's capability names, the seccomp module), so it cannot drift from it.
"""

from __future__ import annotations

from ocirt import OCI_VERSION, __version__
from ocirt.container.hooks import KINDS
from ocirt.linux import mountopts, namespaces, process_attrs, seccomp
from ocirt.linux.syscalls import capng

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION_MIN = "1.0.0"


def _capabilities() -> list[str]:
    names = []
    for number in range(64):
        name = capng.capability_to_name(number)
        if not name:
            break
        names.append("CAP_" + name.upper())
    return names


def features() -> dict[str, Any]:
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(KINDS),
        "mountOptions": sorted({*mountopts.MOUNT_FLAGS, *mountopts.PROPAGATION,
                                *mountopts.RECURSIVE, *mountopts.RECURSIVE_ATIME,
                                "tmpcopyup", "idmap", "ridmap"}),
        "linux": {
            "namespaces": list(namespaces.NAMESPACES),
            "capabilities": _capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True,
                       "rdma": False},
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": True},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
            "memoryPolicy": {"modes": list(process_attrs.MEMORY_POLICY_MODES),
                             "flags": list(process_attrs.MEMORY_POLICY_FLAGS)},
            "netDevices": {"enabled": True},
        },
        "annotations": {"io.github.ocirt.version": __version__},
    }
