"""linux.sysctl: namespaced kernel parameters, written in the container's /proc/sys.

The writes go through ``procfs`` (a procfs instance of init's own), never through the
container's /proc, which a config mount or a symlink could have made a host file.

Only keys that live in a namespace the container has its own copy of may be set (as runc
checks): IPC keys need a new IPC namespace, net.* a new network namespace, and
kernel.hostname/domainname a new UTS namespace. Anything else would change the host, so it is
refused when the plan is built.
"""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, OcirtError, SyscallError
from ocirt.linux import procfs
from ocirt.linux.namespaces import NAMESPACES
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.linux.namespaces import NamespacePlan

_IPC_KEYS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
             "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def namespace_of(key: str) -> str | None:
    if key in _IPC_KEYS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def steps(sysctl: dict[str, str], ns: NamespacePlan) -> list[Step]:
    result = []
    for key, value in sysctl.items():
        where = f"$.linux.sysctl[{key!r}]"
        kind = namespace_of(key)
        if kind is None:
            raise ConfigError(where, f"sysctl {key!r} is not in a separate kernel namespace "
                              "(it would change the host)")
        if kind not in ns.create and not _joined_other_than_ours(ns, kind):
            raise ConfigError(where, f"sysctl {key!r} needs a {kind} namespace of the "
                              "container's own (new, or joined by path: not the host's)")
        if "/" in key or ".." in key.split("."):
            raise ConfigError(where, f"invalid sysctl key {key!r}")
        path = "/proc/sys/" + key.replace(".", "/")
        result.append(Step(f"write {value!r} to {path}", partial(_write, path, value, key)))
    return result


def _joined_other_than_ours(ns: NamespacePlan, kind: str) -> bool:
    """A namespace joined by path counts if it is not the runtime's own (a pod's netns)."""
    path = ns.join.get(kind)
    if not path:
        return False
    try:
        return os.stat(path).st_ino != os.stat(f"/proc/self/ns/{NAMESPACES[kind][1]}").st_ino
    except OSError:
        return False


def _write(path: str, value: str, key: str) -> None:
    """Through the trusted procfs: no mount or symlink in the container's /proc can redirect
    the write (CVE-2025-52881)."""
    try:
        procfs.write(path, value)
    except OcirtError as err:
        raise OcirtError(f"sysctl {key}={value!r}: {err}") from err
    except OSError as err:
        raise SyscallError.of(f"write(/proc/{path.removeprefix('/proc/')}, {value!r})", err,
                              f"sysctl {key}={value!r} ($.linux.sysctl)") from err
