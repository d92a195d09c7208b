"""kill: send a signal to the container's process (or, with ``all``, to its whole cgroup)."""

from __future__ import annotations

import os

from ocirt.container.state import Status, Store
from ocirt.errors import NotRunning, OcirtError, SyscallError
from ocirt.linux import cgroups
from ocirt.linux.cgroups import placement

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal


def parse_signal(text: str) -> int:
    """``9``, ``KILL``, ``SIGKILL`` or ``sigkill`` -> 9."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        found = getattr(signal, name, None) if name.isidentifier() else None
        if isinstance(found, int) and not name.startswith("SIG_"):  # not SIG_DFL, SIG_BLOCK
            return found
    raise OcirtError(f"invalid signal: {text!r}")


def kill(store: Store, container_id: str, signum: int, all_processes: bool = False) -> None:
    with store.lock(container_id):
        state = store.load(container_id)
        status = state.current_status()
        if all_processes and state.cgroup:
            # A stopped container's init is gone, but without a pid namespace of its own its
            # children may live on in the cgroup: containerd's shim kills them this way.
            if status is Status.STOPPED:
                manager = cgroups.load(state.cgroup)
                if not (signum == signal.SIGKILL and placement.kill_all(manager)):
                    _signal(manager.pids(), signum)
                return
            if not status.can_kill:
                raise NotRunning()
            signal_all(cgroups.load(state.cgroup), signum, state.pid)
            return
        if not status.can_kill:
            raise NotRunning()
        if all_processes:  # no cgroup (rootless): every process of its pid namespace
            from ocirt.linux.cgroups.none import pid_namespace_members

            _signal(pid_namespace_members(state.pid), signum)
            return
        _signal([state.pid], signum)


def signal_all(manager: cgroups.CgroupDriver, signum: int, init_pid: int) -> None:
    """Signal every process in the cgroup. The cgroup is frozen meanwhile (as runc does), so
    no process can fork a child that escapes the list; it is thawed after unless it was paused
    before, and always after SIGKILL, so a v1-frozen process can die. SIGKILL goes through
    cgroup.kill where there is one (cgroup v2): one write, nothing escapes, no freeze."""
    if signum == signal.SIGKILL and placement.kill_all(manager):
        return
    try:
        was_frozen = manager.frozen()
        if not was_frozen:
            manager.freeze()
        frozen_here = not was_frozen
    except OcirtError:
        was_frozen = frozen_here = False
    try:
        _signal(manager.pids() or [init_pid], signum)
    finally:
        if frozen_here or (was_frozen and signum == signal.SIGKILL):
            manager.thaw()


def _signal(targets: list[int], signum: int) -> None:
    for pid in targets:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        except OSError as err:
            raise SyscallError.of(f"kill({pid}, {signum})", err) from err
