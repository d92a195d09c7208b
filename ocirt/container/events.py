"""events: a container's statistics and OOM notifications, as JSON lines like runc's.

``--stats`` prints one ``{"type":"stats","id":...,"data":{...}}`` line and exits. Otherwise a
stats line is printed every ``interval`` seconds and an ``{"type":"oom","id":...}`` line each
time the OOM killer kills a process in the container's memory cgroup (the kernel's oom_kill
counter, polled every 50 ms), until the container stops.
"""

from __future__ import annotations

import json
import sys
import time

from ocirt.container.state import Status, Store
from ocirt.errors import OcirtError
from ocirt.linux import cgroups
from ocirt.linux.cgroups.none import NO_CGROUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

POLL = 0.05


def parse_interval(text: str) -> float:
    """A Go duration as runc takes it (``5s``, ``500ms``, ``1m``, ``1m30s``) or seconds."""
    raw = text.strip()
    seconds = _duration(raw)
    if seconds is None:
        raise OcirtError(f"invalid --interval {text!r} (a duration such as 5s or 500ms)")
    if seconds <= 0:
        raise OcirtError("duration interval must be greater than 0")
    return seconds


_UNITS = (("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0),
          ("h", 3600.0))


def _duration(raw: str) -> float | None:
    if raw.replace(".", "", 1).isdigit():
        return float(raw)
    seconds, number, i = 0.0, "", 0
    while i < len(raw):
        if raw[i].isdigit() or raw[i] == ".":
            number += raw[i]
            i += 1
            continue
        unit = next(((u, f) for u, f in _UNITS if raw.startswith(u, i)), None)
        if unit is None or not number or number.count(".") > 1:
            return None
        seconds += float(number) * unit[1]
        number = ""
        i += len(unit[0])
    return None if number or not raw else seconds


def _line(kind: str, container_id: str, data: dict[str, Any] | None = None) -> str:
    event: dict[str, Any] = {"type": kind, "id": container_id}
    if data is not None:
        event["data"] = data
    return json.dumps(event, separators=(",", ":"))


def events(store: Store, container_id: str, interval: float = 5.0, stats_only: bool = False,
           out: TextIO | None = None) -> None:
    out = out or sys.stdout
    state = store.load(container_id)
    if state.current_status() is Status.STOPPED:
        raise OcirtError(f"container with id {container_id} is not running")
    if not state.cgroup:
        raise OcirtError(f"container {container_id} has no cgroup to read{NO_CGROUP}")
    manager = cgroups.load(state.cgroup)
    if stats_only:
        print(_line("stats", container_id, manager.stats()), file=out, flush=True)
        return
    seen = manager.oom_kills()
    next_stats = time.monotonic() + interval
    while True:
        stopped = state.current_status() is Status.STOPPED
        kills = manager.oom_kills()  # read after the status: a kill that stopped it counts
        for _ in range(kills - seen):
            print(_line("oom", container_id), file=out, flush=True)
        seen = max(seen, kills)
        if stopped:
            return
        if time.monotonic() >= next_stats:
            print(_line("stats", container_id, manager.stats()), file=out, flush=True)
            next_stats += interval
        time.sleep(POLL)
