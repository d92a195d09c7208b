"""``--timings``: where the time of ``create``, ``run`` and ``exec`` went, phase by phase.

Each process that does part of the work (the runtime, stage-1, init or the exec'd process)
measures its own phases with ``time.perf_counter``, which is CLOCK_MONOTONIC on Linux: one clock
for every process, so their rows line up. A forked child starts a timeline of its own
(``forked``) and sends its rows back over the sync channel with a message it sends anyway
(``pid`` from stage-1, ``ready`` from init) or, just before the last exec, as one ``timings``
message; the runtime merges them and prints one table on stderr (JSON lines with
``--log-format json``).

The runtime's first row, the interpreter start, runs from the fork that made the process to the
first line of ``ocirt`` (``ocirt.ENTERED``). The fork's moment comes from
``/proc/self/schedstat`` (the time the process has been on a CPU or waiting for one: a starting
interpreter does not sleep), read only when ``--timings`` is given; ``/proc/self/stat``'s start
time (10 ms ticks) is the fallback.

The runtime's own rows follow each other without gaps, so they add up to the command's wall
time; the children's rows overlap the runtime's waits (``sync wait: ...``), which is where they
spent it.

This module is imported only with ``--timings``. Without it, the hot path pays one attribute
check per phase (``options.timings is not None``) and nothing else.
"""

from __future__ import annotations

import os
import time

from ocirt import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.linux.plan import Step

    Row = list[object]  # [process, phase, start, end]: seconds on CLOCK_MONOTONIC


class Timings:
    """The phases of one process; ``lap`` ends the current one."""

    def __init__(self, process: str, start: float) -> None:
        self.process = process
        self.last = start
        self.rows: list[Row] = []

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.rows.append([self.process, phase, self.last, now])
        self.last = now

    def forked(self, process: str) -> None:
        """In a child, just after fork: a timeline of its own, to send to the parent."""
        self.process = process
        self.rows = []
        self.last = time.perf_counter()

    def take(self) -> list[Row]:
        """The rows measured so far, to send; they are not kept."""
        rows, self.rows = self.rows, []
        return rows

    def merge(self, rows: object) -> None:
        """Rows a child sent (ignored unless well-formed: they only feed a report)."""
        if isinstance(rows, list):
            self.rows += [row for row in rows if isinstance(row, list) and len(row) == 4]

    def run_steps(self, steps: list[Step], phase: str) -> None:
        """Run ``steps``, one row per run of steps of the same phase (``Step.phase``, else
        ``phase``)."""
        current = ""
        for step in steps:
            label = step.phase or phase
            if current and label != current:
                self.lap(current)
            current = label
            step.run()
        if current:
            self.lap(current)

    def report(self, command: str, fmt: str) -> str:
        """The table (or JSON lines): rows in start order, times in ms from the runtime's
        start, and the runtime's total."""
        own = [row for row in self.rows if row[0] == "runtime"]
        origin = float(own[0][2]) if own else 0.0  # type: ignore[arg-type]
        total = (float(own[-1][3]) - origin) * 1000 if own else 0.0  # type: ignore[arg-type]
        rows = sorted(self.rows, key=lambda row: (row[2], row[3]))
        cells = [(str(p), str(phase), (float(s) - origin) * 1000,  # type: ignore[arg-type]
                  (float(e) - float(s)) * 1000)  # type: ignore[arg-type]
                 for p, phase, s, e in rows]
        if fmt == "json":
            lines = [jsonfast.dumps({"timings": command, "process": p, "phase": phase,
                                     "start_ms": round(start, 3), "ms": round(ms, 3)},
                                    compact=True) for p, phase, start, ms in cells]
            lines.append(jsonfast.dumps({"timings": command, "process": "runtime",
                                         "phase": "total", "start_ms": 0.0,
                                         "ms": round(total, 3)}, compact=True))
            return "\n".join(lines)
        width = max([len(phase) for _, phase, _, _ in cells] + [5])
        lines = [f"ocirt {command} --timings (ms; start: since the runtime process began)",
                 f"{'process':8} {'phase':{width}} {'start':>8} {'ms':>8}"]
        lines += [f"{p:8} {phase:{width}} {start:8.1f} {ms:8.1f}"
                  for p, phase, start, ms in cells if ms >= 0.05]  # not the 0.0 ms rows
        lines.append(f"{'runtime':8} {'total (wall)':{width}} {0.0:8.1f} {total:8.1f}")
        return "\n".join(lines)


def since_fork() -> float:
    """Seconds since this process was forked (see the module docstring)."""
    try:
        with open("/proc/self/schedstat", "rb") as handle:
            on_cpu, waiting = handle.read().split()[:2]
        return (int(on_cpu) + int(waiting)) / 1e9
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/self/stat", "rb") as handle:
            raw = handle.read()
        ticks = int(raw[raw.rfind(b")") + 2:].split()[19])
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME)
                   - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return 0.0


def start(cli_entered: float) -> Timings:
    """The runtime's timings, begun at its fork: the interpreter start up to ``cli_entered``
    (``ocirt.ENTERED``: ``perf_counter`` at the first line of ``ocirt``), then the imports up
    to now."""
    now = time.perf_counter()
    began = now - since_fork()
    timings = Timings("runtime", min(began, cli_entered))
    timings.rows.append(["runtime", "interpreter start", timings.last, cli_entered])
    timings.last = cli_entered
    timings.lap("imports and argv parsing")
    return timings
