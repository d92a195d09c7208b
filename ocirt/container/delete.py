"""delete: remove a stopped container and everything its create made.

Without ``force`` a container that is not stopped is an error that changes nothing (as the
runtime spec says; runc also deletes a created container). With ``force`` its processes are
killed first. ``force`` on an ID that does not exist succeeds, as managers expect.
"""

from __future__ import annotations

import os
import signal
import time

from ocirt.container import hooks
from ocirt.container.state import ContainerState, Status, Store
from ocirt.errors import ContainerNotFound, StateError
from ocirt.linux import cgroups


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
        except ContainerNotFound:
            if force:
                store.remove(container_id)
                return
            raise
        status = state.current_status()
        if status is not Status.STOPPED and not force:
            raise StateError(f"cannot delete container {container_id} that is "
                             f"{status.value}: stop it first or use --force")
        # Even a stopped container may have left processes in its cgroup (no pid namespace):
        # they go too, as with runc.
        stop(state)
        destroy(store, state)


def stop(state: ContainerState) -> None:
    """SIGKILL the container's process and everything in its cgroup; wait until gone."""
    manager = cgroups.load(state.cgroup) if state.cgroup else None
    pids = set(manager.pids()) if manager else set()
    if state.pid > 0 and state.current_status() is not Status.STOPPED:
        pids.add(state.pid)
    for pid in pids:
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
    if state.host_mounts:
        from ocirt.linux import hostmounts

        problems = hostmounts.detach([(m[0], m[1]) for m in state.host_mounts])
        if problems:
            from ocirt import log

            log.current.warning("delete: mounts the container made in the runtime's mount "
                                "namespace were left: " + "; ".join(problems))
    if state.cgroup:
        cgroups.load(state.cgroup).destroy()
    store.remove(state.id)
    hooks.run_hooks_warning(state.config, "poststop", state.hook_document(Status.STOPPED))
