"""pause and resume: freeze every process of a container, and thaw it again.

The v1 freezer (freezer.state) or v2's cgroup.freeze, through the cgroup manager; each returns
once the kernel reports the new state. ``state`` then shows ``paused``: the status is derived
from the freezer, never saved, so a container thawed behind ocirt's back is running again.
"""

from __future__ import annotations

from ocirt.container.state import Store
from ocirt.errors import NotRunning, StateError
from ocirt.linux import cgroups
from ocirt.linux.cgroups.none import NO_CGROUP


def pause(store: Store, container_id: str) -> None:
    with store.lock(container_id):
        state = store.load(container_id)
        if not state.current_status().can_pause:
            raise NotRunning()
        if not state.cgroup:
            raise StateError(f"container {container_id} has no cgroup to freeze{NO_CGROUP}")
        cgroups.load(state.cgroup).freeze()


def resume(store: Store, container_id: str) -> None:
    with store.lock(container_id):
        state = store.load(container_id)
        if not state.current_status().can_resume:
            raise StateError("container not paused")
        cgroups.load(state.cgroup).thaw()
