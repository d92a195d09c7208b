"""ps: the processes in a container's cgroup.

``json`` prints a JSON array of their host PIDs (as runc does). ``table`` runs the host's
``ps`` (default arguments ``-ef``) and keeps its header and the lines whose PID column names a
process of the container; without a ``ps`` program a plain PID/CMD table is printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from ocirt.container.state import Status, Store
from ocirt.errors import OcirtError, SyscallError
from ocirt.linux import cgroups
from ocirt.linux.cgroups.none import pid_namespace_members


def container_pids(store: Store, container_id: str) -> list[int]:
    state = store.load(container_id)
    if not state.cgroup:
        # No cgroup (a rootless container): the processes of its pid namespace instead.
        if state.current_status() is Status.STOPPED:
            return []
        return pid_namespace_members(state.pid)
    return cgroups.load(state.cgroup).pids()


def ps(store: Store, container_id: str, fmt: str = "table", ps_args: list[str] | None = None
       ) -> str:
    pids = container_pids(store, container_id)
    if fmt == "json":
        return json.dumps(pids, separators=(",", ":"))
    if fmt != "table":
        raise OcirtError(f"invalid format option {fmt!r}: use table or json")
    program = shutil.which("ps")
    if program is None:
        return _plain_table(pids)
    args = ps_args or ["-ef"]
    try:
        done = subprocess.run([program, *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except OSError as err:
        raise SyscallError.of(f"execve({program!r})", err, f"running {program}") from err
    if done.returncode != 0:
        raise OcirtError(f"{program} {' '.join(args)}: {done.stderr.strip()} "
                         f"(exit status {done.returncode})")
    lines = done.stdout.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise OcirtError(f"ps {' '.join(args)}: its output has no PID column")
    column = header.index("PID")
    wanted = {str(pid) for pid in pids}
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split(None, column + 1)
        if len(fields) > column and fields[column] in wanted:
            kept.append(line)
    return "\n".join(kept)


def _plain_table(pids: list[int]) -> str:
    rows = ["PID     CMD"]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmd = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rows.append(f"{pid:<7} {cmd}")
    return "\n".join(rows)
