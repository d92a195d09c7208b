"""The config.json that ``ocirt spec`` writes: runc's ``spec`` template, with ocirt's choices.

Differences from ``runc spec`` (runc 1.2):
  * ``process.terminal`` is false, so the bundle runs as-is from a script or CI without a
    console socket or a tty (runc writes true). ``ocirt spec --terminal`` style callers can
    flip it;
  * ``hostname`` is "ocirt";
  * ``linux.seccomp`` is ocirt's default profile (ocirt/config/seccomp_default.json: an
    allow-list in the spirit of Docker's, see ``ocirt.config.seccomp_profile``), so a fresh
    bundle is filtered (runc writes none);
  * the cgroup namespace is always listed (runc adds it only on a cgroup v2 host);
  * ``ociVersion`` is the spec version ocirt implements (``ocirt.OCI_VERSION``).

``rootless=True`` applies what ``runc spec --rootless`` does: a user namespace mapping the
caller's effective uid/gid to root, no network namespace, host /sys bind-mounted (sysfs
cannot be mounted without a network namespace of one's own), no uid=/gid= mount options and
no cgroup resources.
"""

from __future__ import annotations

import os

from ocirt import OCI_VERSION
from ocirt.config.seccomp_profile import default_profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
NAMESPACES = ["pid", "network", "ipc", "uts", "mount", "cgroup"]


def default_spec(rootless: bool = False, args: list[str] | None = None) -> dict[str, Any]:
    """A fresh, valid config.json document; ``args`` replaces the default ``["sh"]``."""
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPABILITIES),
                "effective": list(DEFAULT_CAPABILITIES),
                "permitted": list(DEFAULT_CAPABILITIES),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocirt",
        "mounts": _mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_profile(),
        },
    }
    if rootless:
        _make_rootless(spec)
    return spec


def _mount(destination: str, type_: str, source: str, options: str = "") -> dict[str, Any]:
    """One mount entry; ``options`` is space-separated, as in fstab's spirit."""
    mount: dict[str, Any] = {"destination": destination, "type": type_, "source": source}
    if options:
        mount["options"] = options.split()
    return mount


def _mounts() -> list[dict[str, Any]]:
    return [
        _mount("/proc", "proc", "proc"),
        _mount("/dev", "tmpfs", "tmpfs", "nosuid strictatime mode=755 size=65536k"),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid noexec newinstance ptmxmode=0666 mode=0620 gid=5",
        ),
        _mount("/dev/shm", "tmpfs", "shm", "nosuid noexec nodev mode=1777 size=65536k"),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid noexec nodev"),
        _mount("/sys", "sysfs", "sysfs", "nosuid noexec nodev ro"),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid noexec nodev relatime ro"),
    ]


def _make_rootless(spec: dict[str, Any]) -> None:
    """What runc's ``ToRootless`` does to the example spec."""
    linux = spec["linux"]
    kept = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    linux["namespaces"] = [*kept, {"type": "user"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    del linux["resources"]
    mounts = []
    for mount in spec["mounts"]:
        if os.path.normpath(mount["destination"]) == "/sys":
            mounts.append(_mount("/sys", "none", "/sys", "rbind nosuid noexec nodev ro"))
            continue
        if "options" in mount:
            mount["options"] = [o for o in mount["options"] if not o.startswith(("gid=", "uid="))]
        mounts.append(mount)
    spec["mounts"] = mounts
