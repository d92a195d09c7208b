"""kill: send a signal to the container's process (or, with ``all``, to its whole cgroup)."""

from __future__ import annotations

import os
import signal

from ocirt.container.state import Store
from ocirt.errors import NotRunning, OcirtError
from ocirt.linux import cgroups


def parse_signal(text: str) -> int:
    """``9``, ``KILL``, ``SIGKILL`` or ``sigkill`` -> 9."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        member = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(member, signal.Signals):
            return int(member)
    raise OcirtError(f"invalid signal: {text!r}")


def kill(store: Store, container_id: str, signum: int, all_processes: bool = False) -> None:
    with store.lock(container_id):
        state = store.load(container_id)
        if not state.current_status().can_kill:
            raise NotRunning()
        targets = [state.pid]
        if all_processes and state.cgroup:
            targets = cgroups.Manager.from_state(state.cgroup).pids() or targets
        for pid in targets:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue
            except OSError as err:
                raise OcirtError(f"kill({pid}, {signum}): {err.strerror}") from err
