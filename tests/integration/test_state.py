"""``state``: the document of runtime.md, the status derived from the process, the state root."""

from __future__ import annotations

import os
import re

import pytest

from .support import IS_OCIRT, ROOT_MARKS, Runtime, pid_alive, wait_for

pytestmark = ROOT_MARKS


def check_state_document(doc, cid, status, bundle):
    """runtime.md#state: required fields and their types."""
    assert isinstance(doc["ociVersion"], str)
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[\w.-]+)?", doc["ociVersion"]), doc["ociVersion"]
    assert doc["id"] == cid
    assert doc["status"] == status
    assert doc["bundle"] == str(bundle)
    assert os.path.isabs(doc["bundle"])
    if status in ("created", "running"):
        assert isinstance(doc["pid"], int) and doc["pid"] > 0
    if "annotations" in doc:
        assert all(isinstance(v, str) for v in doc["annotations"].values())


def test_state_through_the_lifecycle(rt, make_config, bundle, out_dir):
    cid = rt.new_id()
    path = bundle(make_config(["sh", "-c", "while [ ! -e /out/stop ]; do sleep 0.02; done"]))
    rt.create(cid, path)
    created = rt.state(cid)
    check_state_document(created, cid, "created", path)
    rt.ok("start", cid)
    running = rt.state(cid)
    check_state_document(running, cid, "running", path)
    assert running["pid"] == created["pid"]
    (out_dir / "stop").touch()
    rt.wait_status(cid, "stopped")
    check_state_document(rt.state(cid), cid, "stopped", path)


def test_annotations(rt, make_config, bundle):
    cid = rt.new_id()
    annotations = {"org.example.key": "value", "other": "with spaces = and :"}
    rt.create(cid, bundle(make_config(["true"], annotations=annotations)))
    assert rt.state(cid)["annotations"] == annotations


def test_relative_bundle_is_absolute_in_state(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    path = bundle(make_config(["sleep", "100"]), "rel")
    rt.ok("create", "--bundle", "rel", cid, cwd=tmp_path)
    assert rt.state(cid)["bundle"] == str(path)


def test_bundle_defaults_to_current_directory(rt, make_config, bundle):
    cid = rt.new_id()
    path = bundle(make_config(["sleep", "100"]))
    rt.ok("create", cid, cwd=path)
    assert rt.state(cid)["bundle"] == str(path)


def test_process_killed_from_outside_is_stopped(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    rt.ok("start", cid)
    pid = rt.state(cid)["pid"]
    os.kill(pid, 9)  # the PID the runtime reported for this test's own container
    wait_for(lambda: not pid_alive(pid), what="the process to die")
    rt.wait_status(cid, "stopped")
    rt.fails("start", cid)
    rt.ok("delete", cid)


def test_root_is_respected(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    assert (rt.root / cid).is_dir()
    assert (rt.root / cid / "state.json").exists() or not IS_OCIRT
    assert rt.ok("list", "-q").stdout.split() == [cid]
    # The same runtime with another --root does not see the container.
    other = Runtime(tmp_path / "other-root", rt.token)
    assert other.ok("list", "-q").stdout.split() == []
    other.fails("state", cid)
    other("delete", "--force", cid)
    assert rt.status(cid) == "created", "a delete under another root touched the container"
    assert not (other.root / cid).exists()


def test_state_dir_is_private(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    assert rt.state_dir(cid).stat().st_mode & 0o066 == 0, "others may read or change it"
    assert rt.root.stat().st_mode & 0o022 == 0


def test_state_without_id_errors(rt):
    result = rt("state")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("verb", ["state", "start", "kill", "delete"])
def test_unknown_id_errors(rt, verb):
    cid = rt.new_id()
    result = rt.fails(verb, cid)
    if IS_OCIRT:
        assert result.returncode == 1
        assert f"container does not exist: {cid}" in result.stderr
    assert not rt.state_dir(cid).exists()


def test_stopped_state_survives_until_delete(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["true"])))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    for _ in range(3):
        assert rt.status(cid) == "stopped"
    assert rt.state_dir(cid).is_dir()
    rt.ok("delete", cid)
    assert not rt.state_dir(cid).exists()


def test_long_id(rt, make_config, bundle):
    cid = rt.new_id("long-" + "x" * 80)
    assert len(cid) > 90
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    rt.ok("start", cid)
    assert rt.status(cid) == "running"
    rt.ok("delete", "--force", cid)
    assert not rt.state_dir(cid).exists()


def test_containerd_style_id(rt, make_config, bundle):
    cid = os.urandom(32).hex()  # 64 hex digits, as containerd and docker name containers
    rt.ids.append(cid)
    rt.create(cid, bundle(make_config(["sleep", "100"])))
    rt.ok("start", cid)
    assert rt.status(cid) == "running"
    rt.ok("delete", "--force", cid)
    assert not rt.state_dir(cid).exists()
