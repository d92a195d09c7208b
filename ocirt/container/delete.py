"""delete: remove a stopped container and everything its create made.

Without ``force`` a container that is not stopped is an error that changes nothing (as the
runtime spec says; runc also deletes a created container). With ``force`` its processes are
killed first. ``force`` on an ID that does not exist succeeds, as managers expect.

``force`` also deletes a container whose state.json is damaged (empty, truncated, garbage) or
missing, from what it can find (``recover``): the ``cleanup.json`` copy create wrote before it
made anything, or, if that is damaged too, the cgroup a container of this ID gets by default.
Its processes are found in its cgroups, killed, and the cgroups, mounts and directory removed.
"""

from __future__ import annotations

import os
import time

from ocirt import log
from ocirt.container import hooks
from ocirt.container.state import ContainerState, Status, Store
from ocirt.errors import ContainerNotFound, StateDamaged, StateError
from ocirt.linux import cgroups
from ocirt.linux.cgroups import placement

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal


def delete(store: Store, container_id: str, force: bool = False) -> None:
    try:
        lock = store.lock(container_id)
    except ContainerNotFound:
        if force:
            return
        raise
    with lock:
        try:
            state = store.load(container_id)
        except (ContainerNotFound, StateDamaged) as err:
            if not force:
                raise
            recovered = recover(store, container_id, err)
            if recovered is None:
                store.remove(container_id)
                return
            state = recovered
        status = state.current_status()
        if status is not Status.STOPPED and not force:
            raise StateError(f"cannot delete container {container_id} that is "
                             f"{status.value}: stop it first or use --force")
        # Even a stopped container may have left processes in its cgroup (no pid namespace):
        # they go too, as with runc.
        stop(state)
        destroy(store, state)


def recover(store: Store, container_id: str, err: ContainerNotFound | StateDamaged
            ) -> ContainerState | None:
    """What ``delete --force`` undoes when state.json is unusable: the state create recorded
    before it made anything (cleanup.json), else the cgroup this ID gets by default (as this
    runtime would place it now); None if nothing was ever recorded (nothing was made)."""
    try:
        state = store.load(container_id, "cleanup.json")
    except ContainerNotFound:
        if isinstance(err, ContainerNotFound):
            return None  # create died before its first record, which precedes everything
        state = None
    except StateDamaged as copy_err:
        log.current.warning(str(copy_err))
        state = None
    if isinstance(err, StateDamaged):
        log.current.warning(f"{err.path} is damaged ({err.what}): deleting container "
                            f"{container_id} from " + ("cleanup.json" if state else
                                                       "the cgroups of its ID"))
    if state is not None:
        return state
    manager = cgroups.Manager(cgroups.discover(), cgroups.resolve_path(None, container_id))
    manager.created = [d for d in manager.dirs.values() if os.path.isdir(d)]
    return ContainerState(id=container_id, bundle="", rootfs="", status=Status.STOPPED,
                          cgroup=manager.to_state())


def stop(state: ContainerState) -> None:
    """SIGKILL the container's process and everything in its cgroup; wait until gone."""
    manager = cgroups.load(state.cgroup) if state.cgroup else None
    pids = set(manager.pids()) if manager else set()
    # cgroup v2: cgroup.kill takes them all in one write, forks in flight included
    by_cgroup = manager is not None and bool(pids) and placement.kill_all(manager)
    targets = set() if by_cgroup else set(pids)
    if state.pid > 0 and state.current_status() is not Status.STOPPED:
        pids.add(state.pid)
        targets.add(state.pid)
    if not pids:  # nothing in the cgroup and no init (`run` once its program exited)
        return
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if manager and pids:
        manager.thaw_if_frozen()  # a paused (v1-frozen) container dies only once thawed
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = state.current_status() is not Status.STOPPED or (manager and manager.pids())
        if not alive:
            break
        _reap_if_child(state.pid)
        time.sleep(0.002)


def _reap_if_child(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def destroy(store: Store, state: ContainerState) -> None:
    """Undo create, then run the poststop hooks (their failures are only warnings)."""
    if state.host_mounts or state.mounts_before is not None:
        from ocirt.linux import hostmounts

        made = [(m[0], m[1]) for m in state.host_mounts]
        if state.mounts_before is not None:  # create never finished: what appeared since
            made += hostmounts.made_since([(m[0], m[1]) for m in state.mounts_before],
                                          state.rootfs)
        problems = hostmounts.detach(made)
        if problems:
            log.current.warning("delete: mounts the container made in the runtime's mount "
                                "namespace were left: " + "; ".join(problems))
    if state.cgroup:
        cgroups.load(state.cgroup).destroy()
    store.remove(state.id)
    hooks.run_hooks_warning(state.config, "poststop", state.hook_document(Status.STOPPED))
