"""The status machine and the state document, without containers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirt.container.state import ContainerState, Status, Store, check_id, process_start_time
from ocirt.errors import ContainerExists, ContainerNotFound, InvalidID


def test_transitions() -> None:
    assert Status.CREATED.can_start and not Status.RUNNING.can_start
    assert Status.CREATED.can_kill and Status.RUNNING.can_kill
    assert not Status.STOPPED.can_kill and not Status.CREATING.can_kill
    assert Status.STOPPED.can_delete and not Status.RUNNING.can_delete


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "x" * 250, "a b", "é"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(InvalidID):
        check_id(bad)


@pytest.mark.parametrize("good", ["a", "A-1_b.c+d", "x" * 249])
def test_good_ids(good: str) -> None:
    check_id(good)


def test_status_follows_the_process_and_its_start_time() -> None:
    me = os.getpid()
    start = process_start_time(me)
    assert start is not None
    state = ContainerState(
        id="x", bundle="/b", rootfs="/b/r", pid=me, pid_start=start, status=Status.RUNNING
    )
    assert state.current_status() is Status.RUNNING
    assert state.document()["pid"] == me
    # Same PID, other start time: a reused PID is not our container.
    state.pid_start = start + 1
    assert state.current_status() is Status.STOPPED
    assert state.document()["pid"] == 0


def test_store_round_trip_and_lock(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "root"))
    lock = store.create("c1")
    state = ContainerState(id="c1", bundle="/b", rootfs="/b/r", annotations={"k": "v"})
    store.save(state)
    assert store.load("c1").annotations == {"k": "v"}
    assert store.ids() == ["c1"]
    with pytest.raises(ContainerExists):
        store.create("c1")
    lock.release()
    store.remove("c1")
    with pytest.raises(ContainerNotFound):
        store.load("c1")
    with pytest.raises(ContainerNotFound):
        store.lock("c1")
    assert not os.listdir(store.root)


def test_status_is_one_canonical_string_per_status():
    from ocirt import jsonfast
    from ocirt.container.state import Status

    assert Status("running") is Status.RUNNING and Status.RUNNING == "running"
    assert Status.CREATED.value == "created" and type(Status.CREATED.value) is str
    assert jsonfast.dumps({"status": Status.STOPPED}) == '{"status": "stopped"}'
    with pytest.raises(ValueError, match="'bogus' is not a container status"):
        Status("bogus")
