"""The two forked stages that become the container: each a loop over its phase.

``stage1`` enters the namespaces and forks ``init``, which becomes PID 1 of a new pid namespace
(where the plan needs no stage-1, the runtime clones ``init`` into them itself); ``init`` builds
the root filesystem and the process, reports ready, waits for ``start`` and execs the user's
program. What each does is its phase's list of steps (``ocirt.container.phases``; the protocol
they speak: ``ocirt.container.protocol``). Both run in forked copies of the runtime and never
return: they exit with ``os._exit`` after reporting any error to the parent.
"""

from __future__ import annotations

import os

from ocirt import OCI_VERSION
from ocirt.container.sync import Channel, child_failed

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from types import FrameType

    from ocirt.container.plan import ContainerPlan
    from ocirt.container.protocol import Init, Stage1
    from ocirt.linux.plan import Phase
    from ocirt.timings import Timings
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal


def run_child(name: str, phase: Phase, channel: Channel | None, timings: Timings | None,
              debug: bool, forked: bool = True) -> None:
    """In a forked child: run ``phase``; an error goes to ``channel`` and ends the process."""
    if timings is not None and forked:
        timings.forked(name)
    try:
        phase.run(timings)
    except BaseException as err:
        child_failed(channel, err, debug)


def stage1(plan: ContainerPlan, side: Stage1, phase: Phase) -> None:
    run_child("stage-1", phase, side.channel, plan.options.timings, plan.options.debug)
    os._exit(0)


def init(plan: ContainerPlan, side: Init, phase: Phase, on_start: Phase) -> None:
    debug, timings = plan.options.debug, plan.options.timings
    if debug:  # a traceback after pivot_root needs the module loaded before
        import traceback  # noqa: F401
    run_child("init", phase, side.channel, timings, debug)
    # from here on errors go to who sent start (the sync channel, or the start socket's)
    run_child("init", on_start, side.starter, timings, debug, forked=False)
    os._exit(1)  # (the last step execs)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # While init waits for start it is a Python process: PID 1 of its namespace ignores
    # signals it has no handler for, so these make `kill` of a created container work.
    os._exit(128 + signum)


def exit_on_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, _exit_on_signal)


def state_document(plan: ContainerPlan, status: str) -> dict[str, object]:
    """The state document for hooks run in the container: its pid as the container sees it."""
    return {"ociVersion": OCI_VERSION, "id": plan.container_id, "status": status,
            "pid": os.getpid(), "bundle": plan.bundle,
            "annotations": plan.config.get("annotations") or {}}
