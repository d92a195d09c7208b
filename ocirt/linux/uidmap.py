"""Who writes a new user namespace's id maps: the runtime itself, or newuidmap/newgidmap.

A runtime with CAP_SETUID/CAP_SETGID where it runs (root, or uid 0 of rootless podman's user
namespace) writes any mapping itself (``namespaces.write_id_maps``). An ordinary user may only
write one line mapping its own effective uid (gid) with size 1, and for gid_map only once
``setgroups`` is denied, which the kernel requires so that a user cannot drop a group it is
kept out of things with. Anything larger (a config's range, or podman's from /etc/subuid and
/etc/subgid) goes through the setuid helpers ``newuidmap``/``newgidmap`` (Debian's ``uidmap``
package), which check the ranges the administrator granted, as runc and crun do.

The child must be dumpable meanwhile, or its /proc files belong to root and neither the
runtime nor the helpers may write them (stage-1 sees to that).
"""

from __future__ import annotations

import os

from ocirt.errors import OcirtError, SyscallError, errno_text
from ocirt.linux import namespaces, procfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# config key -> (the map file, the helper, the caller's own id, the /etc file of ranges)
_KINDS = (("uidMappings", "uid_map", "newuidmap", "geteuid", "/etc/subuid"),
          ("gidMappings", "gid_map", "newgidmap", "getegid", "/etc/subgid"))
# Where the setuid helpers are looked for: fixed, not the caller's PATH.
HELPER_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin"


def own(getter: str) -> int:
    """The caller's effective uid (``geteuid``) or gid (``getegid``)."""
    value: int = getattr(os, getter)()
    return value


def write(pid: int, linux: dict[str, Any]) -> list[str]:
    """Write the maps of ``pid``'s new user namespace; returns how each was written."""
    if os.geteuid() == 0:
        namespaces.write_id_maps(pid, linux)
        return ["directly"]
    how = []
    for key, name, helper, getter, ranges in _KINDS:
        entries = linux.get(key) or []
        if not entries:
            continue
        if _own_only(entries, own(getter)):
            if key == "gidMappings":
                _deny_setgroups(pid)
            namespaces.write_id_maps(pid, {key: entries})
            how.append(f"{name} directly")
        else:
            _run_helper(helper, pid, entries, key, ranges)
            how.append(f"{name} by {helper}")
    return how


def describe(linux: dict[str, Any]) -> str:
    """For ``--explain``: who will write the maps."""
    if os.geteuid() == 0:
        return "the runtime writes uid_map and gid_map"
    parts = []
    for key, name, helper, getter, _ in _KINDS:
        if linux.get(key):
            if _own_only(linux[key], own(getter)):
                extra = " (after setgroups deny)" if key == "gidMappings" else ""
                parts.append(f"the runtime writes {name}{extra}")
            else:
                parts.append(f"{helper} writes {name}")
    return "; ".join(parts) or "no id maps in config.json"


def _own_only(entries: list[dict[str, Any]], own_id: int) -> bool:
    return (len(entries) == 1 and entries[0]["hostID"] == own_id and entries[0]["size"] == 1)


def _deny_setgroups(pid: int) -> None:
    try:
        procfs.write(f"{pid}/setgroups", "deny")  # the trusted procfs, as uid_map
    except OSError as err:
        raise SyscallError.of(f"write(/proc/{pid}/setgroups, 'deny')", err,
                              "denying setgroups (required before an unprivileged user writes "
                              "gid_map)") from err


def _run_helper(helper: str, pid: int, entries: list[dict[str, Any]], key: str,
                ranges: str) -> None:
    import shutil
    import subprocess

    program = shutil.which(helper, path=HELPER_PATH)
    if program is None:
        raise OcirtError(f"$.linux.{key} maps more than this user's own id, which only "
                         f"{helper} may write for a user without root, and {helper} is not "
                         "installed: install it (Debian: apt-get install uidmap) or map only "
                         f"your own id (size 1, as `ocirt spec --rootless` does)")
    argv = [program, str(pid)]
    for entry in entries:
        argv += [str(entry["containerID"]), str(entry["hostID"]), str(entry["size"])]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        why = errno_text(err) if isinstance(err, OSError) else str(err)
        raise OcirtError(f"running {' '.join(argv)}: {why}") from err
    if done.returncode != 0:
        said = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise OcirtError(f"{' '.join(argv)} refused $.linux.{key}: {said}: the ranges must be "
                         f"granted to this user in {ranges} (and {helper} must be setuid "
                         "root or have its file capabilities)")
