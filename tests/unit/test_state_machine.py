"""The status machine and the state document, without containers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ocirt.container.state import (
    ContainerState,
    Status,
    Store,
    check_id,
    process_start_time,
)
from ocirt.container.statefiles import write_atomic
from ocirt.errors import ContainerExists, ContainerNotFound, InvalidID, StateDamaged


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


# --- a create killed mid-way, a damaged state file ----------------------------------------------

def test_creating_holds_only_while_the_creator_lives() -> None:
    me = os.getpid()
    start = process_start_time(me)
    assert start is not None
    state = ContainerState(id="x", bundle="/b", rootfs="/b/r", creator=[me, start])
    assert state.current_status() is Status.CREATING
    state.creator = [me, start + 1]  # our PID, reused by another process
    assert state.current_status() is Status.STOPPED
    state.creator = []  # never recorded
    assert state.current_status() is Status.STOPPED
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    state.creator = [child, start]
    assert state.current_status() is Status.STOPPED
    assert state.document()["status"] == "stopped" and state.document()["pid"] == 0


def _saved(tmp_path: Path, cid: str = "c1") -> tuple[Store, Path, dict[str, object]]:
    store = Store(str(tmp_path / "root"))
    store.create(cid).release()
    hierarchy = {"version": 1, "mountpoint": "/sys/fs/cgroup/pids", "controllers": ["pids"],
                 "own_dir": "/sys/fs/cgroup/pids"}
    state = ContainerState(id=cid, bundle="/b", rootfs="/b/r", creator=[1, 2],
                           cgroup={"path": f"ocirt-{cid}", "hierarchies": [hierarchy],
                                   "dirs": {"pids": f"/sys/fs/cgroup/pids/ocirt-{cid}"},
                                   "created": [f"/sys/fs/cgroup/pids/ocirt-{cid}"]})
    store.save(state, with_cleanup_copy=True)
    path = Path(store.path(cid, "state.json"))
    return store, path, json.loads(path.read_text())


def test_save_writes_a_separate_cleanup_copy(tmp_path: Path) -> None:
    store, path, doc = _saved(tmp_path)
    copy = path.with_name("cleanup.json")
    assert copy.read_bytes() == path.read_bytes()
    assert copy.stat().st_ino != path.stat().st_ino  # truncating one leaves the other
    assert store.load("c1", "cleanup.json").cgroup == doc["cgroup"]
    assert sorted(os.listdir(path.parent)) == ["cleanup.json", "state.json"]


@pytest.mark.parametrize("content, what", [
    (b"", "the file is empty"),
    (b"  \n", "the file is empty"),
    (b'{"id": "c1", "bund', "Unterminated string"),
    (b"\xff\xfe garbage", "can't decode byte 0xff"),
    (b"[1, 2]", "not a JSON object but a list"),
    (b"[" * 100000, "nested too deeply"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r"}', "field 'status' is missing"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "gone"}',
     "'gone' is not a container status"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "created", "pid": "12"}',
     "field 'pid' is a string, not an integer"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "created", "pid": true}',
     "field 'pid' is a boolean, not an integer"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "created", "creator": [1, "x"]}',
     "field 'creator[1]' is a string"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "created", '
     b'"host_mounts": [[1]]}', "field 'host_mounts[0]' has 1 items, not 2"),
    (b'{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "created", "cgroup": {"p": 1}}',
     "field 'cgroup.path' is missing"),
    (b'{"id": "other", "bundle": "/b", "rootfs": "/r", "status": "created"}',
     "it describes container 'other'"),
])
def test_a_damaged_state_file_is_one_error_naming_it(tmp_path: Path, content: bytes,
                                                     what: str) -> None:
    store, path, _ = _saved(tmp_path)
    path.write_bytes(content)
    with pytest.raises(StateDamaged) as caught:
        store.load("c1")
    message = str(caught.value)
    assert message.startswith(f"container c1: state file {path} is damaged: ")
    assert what in message and "\n" not in message
    assert "delete --force c1" in message


@pytest.mark.parametrize("directory", [
    "/sys/fs/cgroup/pids",  # the hierarchy's root: delete would kill every process in it
    "/sys/fs/cgroup/pids/../memory/x",
    "/sys/fs/cgroup/pidsX/y",
    "/etc",
])
def test_cgroup_directories_must_be_below_a_recorded_hierarchy(tmp_path: Path,
                                                               directory: str) -> None:
    store, path, doc = _saved(tmp_path)
    doc["cgroup"]["dirs"]["pids"] = directory  # type: ignore[index]
    path.write_text(json.dumps(doc))
    with pytest.raises(StateDamaged, match="is not below a cgroup hierarchy"):
        store.load("c1")


def test_state_written_before_the_shape_check_loads(tmp_path: Path) -> None:
    """Unknown fields are ignored and missing optional ones take their defaults."""
    store, path, _ = _saved(tmp_path)
    path.write_text('{"id": "c1", "bundle": "/b", "rootfs": "/r", "status": "running", '
                    '"future": {"x": 1}}')
    state = store.load("c1")
    assert state.status is Status.RUNNING and state.creator == [] and state.cgroup == {}


def test_write_atomic_syncs_then_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """The file is whole before the rename makes it the file; with ``sync`` it reaches the
    disk (fsync) first, without it (state files) there is no fsync."""
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        calls.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
        real_fsync(fd)

    def rename(src: str, dst: str) -> None:
        calls.append(f"rename {src} {dst}")
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(str(target), b"new" * 50000, sync=True)
    tmp = f"{target}.tmp{os.getpid()}"
    assert calls == [f"fsync {tmp}", f"rename {tmp} {target}"]
    calls.clear()
    write_atomic(str(target), b"new" * 50000)
    assert calls == [f"rename {tmp} {target}"]
    assert target.read_bytes() == b"new" * 50000
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_atomic_exchange_replaces_in_one_step(tmp_path: Path) -> None:
    """With the binding layer loaded, an existing state file is replaced by swapping names
    (RENAME_EXCHANGE): a reader in a loop never finds it missing or partly written, and no
    temporary file is left."""
    import threading

    import ocirt.linux.syscalls  # noqa: F401  (what create and run have loaded)

    target = tmp_path / "state.json"
    write_atomic(str(target), b"0" * 3000, exchange=True)  # no file yet: a plain rename
    seen: list[bytes] = []
    problems: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(target.read_bytes())
            except FileNotFoundError:
                problems.append("missing")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 300):
            before = target.stat().st_ino
            write_atomic(str(target), str(n % 10).encode() * 3000, exchange=True)
            # a new file each time, never the old one rewritten (both exist for a moment,
            # so the numbers differ; over many writes the kernel may reuse one)
            assert target.stat().st_ino != before
    finally:
        done.set()
        thread.join()
    assert not problems
    assert all(len(data) == 3000 and len(set(data)) == 1 for data in seen)
    assert target.read_bytes() == b"9" * 3000
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_atomic_exchange_into_a_directory_fails(tmp_path: Path) -> None:
    """Without ``exchange`` (the pid file: a path the user names), a directory at the path is
    an error, as with rename, never swapped for the file."""
    import ocirt.linux.syscalls  # noqa: F401

    (tmp_path / "pid").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(str(tmp_path / "pid"), b"1")
    assert (tmp_path / "pid").is_dir()
