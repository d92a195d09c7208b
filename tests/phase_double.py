"""Helpers shared by the phase tests under the recording double (tests/unit/test_phases_*.py):
``--explain``'s list of steps, whether the steps that made the calls came in its order, and
running a phase that acts on its own process in a forked child (``run_forked``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ocirt.container.sync import Channel
from ocirt.linux import plan as steps
from ocirt.linux import syscalls as sc
from ocirt.linux.syscalls.double import Stopped

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.linux.syscalls.double import Recorder


def explained(text: str) -> list[tuple[str, str]]:
    """--explain's (phase heading, step text) pairs; notes left out."""
    pairs, heading = [], ""
    for line in text.splitlines()[1:]:
        if not line.startswith("  "):
            heading = line[:-1]
        elif not line.startswith("  # "):
            pairs.append((heading, line[2:]))
    return pairs


def in_order(made_by: list[str], texts: list[str]) -> bool:
    """The steps that made the calls come in the phase's order (a step may make several
    calls, and the same text may be two steps)."""
    at = 0
    for text in made_by:
        if text not in texts[at:]:
            return False
        at += texts[at:].index(text)
    return True


def _child(run: Callable[[], None], answer: int,
           prepare: Callable[[Recorder], None] | None) -> None:
    """In the forked child: ``run`` under the double; the record, as JSON, to ``answer``."""
    recorder = steps.Recorder()
    report: dict[str, Any] = {"stopped": None, "error": None}
    try:
        with sc.recording() as calls:
            if prepare is not None:
                prepare(calls)
            previous = steps.watch(recorder)
            try:
                run()
            except Stopped as stop:
                report["stopped"] = stop.call.name
            finally:
                steps.watch(previous)
        report["calls"] = [(call.name, repr(call.args),
                            call.step.text if isinstance(call.step, steps.Step) else None)
                           for call in calls]
        report["ran"] = recorder.ran
    except BaseException as err:  # (reported to the test in the parent)
        report["error"] = repr(err)
    finally:
        data = json.dumps(report).encode()
        while data:
            data = data[os.write(answer, data):]
        os._exit(0)


def run_forked(run: Callable[[], None], parent_end: Channel, child_end: Channel,
               keep: Callable[[int], None], talk: Callable[[Channel], list[str]],
               prepare: Callable[[Recorder], None] | None = None
               ) -> tuple[dict[str, Any], list[str]]:
    """Run a phase that acts on its own process (closes fds, setsid, drops privileges) in a
    forked child under the double, while ``talk`` plays the other side of the protocol here.
    ``keep`` is handed the fd the child reports on (kept as a --preserve-fds descriptor);
    ``prepare`` gets the recording first. Returns the child's record and what ``talk`` said."""
    reading, answer = os.pipe()
    keep(answer)
    pid = os.fork()
    if pid == 0:
        os.close(reading)
        parent_end.close()
        _child(run, answer, prepare)
    os.close(answer)
    child_end.close()
    spoken: list[str] = []
    failed: BaseException | None = None
    try:
        parent_end.sock.settimeout(30)  # a missing message fails the test, not hangs it
        spoken = talk(parent_end)
    except Exception as err:  # (the child's own report says why, first)
        failed = err
    finally:
        parent_end.close()
        with os.fdopen(reading, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(data)
    assert report["error"] is None, report["error"]
    assert failed is None, failed
    assert os.waitstatus_to_exitcode(status) == 0
    return report, spoken
