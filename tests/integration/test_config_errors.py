"""A bad config.json or container ID: a clear one-line error, exit 1, and nothing left behind
(no state directory, no cgroup, no process), no traceback unless --debug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import IS_OCIRT, ROOT_MARKS, assert_nothing_left, pid_alive, requires_ocirt

pytestmark = ROOT_MARKS


def assert_clean_failure(rt, result, cid, *wanted):
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result
    assert "panic" not in result.stderr, result
    if IS_OCIRT:
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line of error, got {lines}"
        for text in wanted:
            assert text in lines[0], (text, lines[0])
    assert_nothing_left(rt, cid)


def set_args_string(c):
    c["process"]["args"] = "sh"


def drop_version(c):
    del c["ociVersion"]


def version_2(c):
    c["ociVersion"] = "2.0.0"


def bad_namespace(c):
    c["linux"]["namespaces"].append({"type": "bogus"})


def twice_namespace(c):
    c["linux"]["namespaces"].append({"type": "pid"})


def memory_string(c):
    c["linux"]["resources"]["memory"] = {"limit": "lots"}


def relative_destination(c):
    c["mounts"].append({"destination": "relative/path", "type": "tmpfs", "source": "tmpfs"})


def missing_rootfs(c):
    c["root"]["path"] = "/nonexistent/rootfs"


def bad_rlimit(c):
    c["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]


def bind_source_missing(c):
    c["mounts"].append({"destination": "/mnt/bind", "type": "bind",
                        "source": "/nonexistent/source", "options": ["rbind"]})


def bad_cgroups_path(c):
    c["linux"]["cgroupsPath"] = "../../escape"


def apparmor_profile(c):
    c["process"]["apparmorProfile"] = "acme"


def uid_string(c):
    c["process"]["user"]["uid"] = "root"


CASES = [
    pytest.param(set_args_string, ("$.process.args",), id="args-not-array"),
    pytest.param(uid_string, ("$.process.user.uid",), id="uid-not-integer"),
    pytest.param(memory_string, ("$.linux.resources.memory.limit",), id="memory-not-integer"),
    pytest.param(bad_namespace, ("$.linux.namespaces[5].type", "bogus"), id="unknown-ns"),
    pytest.param(missing_rootfs, ("$.root.path", "/nonexistent/rootfs"), id="no-rootfs"),
    pytest.param(bind_source_missing, ("/nonexistent/source",), id="bind-source-missing"),
    # runc accepts these, or reports them differently:
    pytest.param(drop_version, ("ociVersion",), id="no-version", marks=requires_ocirt),
    pytest.param(version_2, ("$.ociVersion", "2.0.0"), id="version-2", marks=requires_ocirt),
    pytest.param(twice_namespace, ("$.linux.namespaces[5]", "pid"), id="ns-twice",
                 marks=requires_ocirt),
    pytest.param(relative_destination, ("$.mounts[", "relative/path"),
                 id="relative-destination", marks=requires_ocirt),
    pytest.param(bad_rlimit, ("RLIMIT_BOGUS",), id="unknown-rlimit", marks=requires_ocirt),
    pytest.param(bad_cgroups_path, ("$.linux.cgroupsPath",), id="cgroups-path-dotdot",
                 marks=requires_ocirt),
    # a field this host cannot honour is an error, never silently ignored (no AppArmor here)
    pytest.param(apparmor_profile, ("$.process.apparmorProfile", "AppArmor"), id="apparmor",
                 marks=requires_ocirt),
]


@pytest.mark.parametrize("verb", ["create", "run"])
@pytest.mark.parametrize("mutate,wanted", CASES)
def test_bad_config(rt, make_config, bundle, mutate, wanted, verb):
    config = make_config(["true"])
    mutate(config)
    cid = rt.new_id()
    result = rt(verb, "--bundle", str(bundle(config)), cid)
    assert_clean_failure(rt, result, cid, *wanted)


@pytest.mark.parametrize("text,where", [
    ('{"ociVersion": "1.0.2",', "line 1 column 24"),
    ('{\n  "ociVersion": "1.0.2"\n  "process": {}\n}', "line 3 column 3"),
    ("", "line 1 column 1"),
    ("[1, 2]", "$"),
    (b'{"ociVersion": "\xff\xfe"}', "byte 16"),
], ids=["truncated", "missing-comma", "empty", "not-an-object", "not-utf8"])
def test_not_json(rt, bundle, text, where):
    cid = rt.new_id()
    result = rt("create", "--bundle", str(bundle(text)), cid)
    assert_clean_failure(rt, result, cid, "config.json", where)


def test_missing_config_names_the_file(rt, tmp_path):
    cid = rt.new_id()
    empty = tmp_path / "empty-bundle"
    empty.mkdir()
    result = rt("create", "--bundle", str(empty), cid)
    assert_clean_failure(rt, result, cid, str(empty / "config.json"))


@pytest.mark.parametrize("version", ["1.0.2", "1.1.0", "1.2.0", "1.3.0"])
def test_supported_versions_are_accepted(rt, make_config, bundle, version):
    cid = rt.new_id()
    config = make_config(["sh", "-c", "echo ok"], ociVersion=version)
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    assert result.stdout == "ok\n"


INVALID_IDS = [
    pytest.param("a/b", id="slash"),
    pytest.param("..", id="dotdot"),
    pytest.param(".", id="dot"),
    pytest.param("", id="empty"),
    pytest.param("x" * 2000, id="2000-chars"),
    pytest.param("y" * 300, id="300-chars"),
    pytest.param("a b", id="space"),
    pytest.param("../escape", id="parent"),
]


@pytest.mark.parametrize("bad_id", INVALID_IDS)
@pytest.mark.parametrize("verb", ["create", "run"])
def test_invalid_id(rt, make_config, bundle, bad_id, verb):
    result = rt(verb, "--bundle", str(bundle(make_config(["true"]))), bad_id)
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    if IS_OCIRT:
        assert result.returncode == 1
        assert "invalid container ID" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    leftovers = list(rt.root.iterdir()) if rt.root.exists() else []
    assert leftovers == []
    assert not (rt.root.parent / "escape").exists()


@pytest.mark.parametrize("args", [
    ("state",), ("start",), ("kill",), ("kill", "KILL"), ("delete",), ("delete", "--force"),
], ids=lambda a: "-".join(a))
def test_invalid_id_never_reaches_outside_the_root(rt, tmp_path, args):
    """``../victim`` must not name a directory next to the state root."""
    rt.root.mkdir(parents=True, exist_ok=True)
    victim = rt.root.parent / "victim"
    victim.mkdir()
    (victim / "state.json").write_text(json.dumps({"id": "victim"}))
    verb, *rest = args
    result = rt(verb, *rest, "../victim")
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    assert (victim / "state.json").exists()


def test_debug_shows_the_traceback(rt, make_config, bundle):
    if not IS_OCIRT:
        pytest.skip("ocirt's --debug output")
    config = make_config(["true"])
    config["process"]["args"] = "sh"
    cid = rt.new_id()
    result = rt("create", "--bundle", str(bundle(config)), cid, global_opts=["--debug"])
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "$.process.args" in result.stderr
    assert_nothing_left(rt, cid)


@requires_ocirt
def test_explain_creates_nothing(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(["true"], linux__resources={"memory": {"limit": 33554432}})
    result = rt.ok("create", "--explain", "--bundle", str(bundle(config)), cid)
    assert "memory.limit_in_bytes" in result.stdout
    assert "pivot_root" in result.stdout
    assert_nothing_left(rt, cid)
    assert not rt.state_dir(cid).exists()


@requires_ocirt
def test_selinux_mount_label_without_selinux_is_a_warning(rt, make_config, bundle):
    """runc and crun skip a label where SELinux is off; ocirt says so instead of ignoring it."""
    if Path("/sys/fs/selinux/enforce").exists():
        pytest.skip("SELinux is enabled here")
    cid = rt.new_id()
    config = make_config(["true"])
    config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    result = rt.ok("run", "--bundle", str(bundle(config)), cid)
    assert "warning" in result.stderr and "$.linux.mountLabel" in result.stderr, result
    assert_nothing_left(rt, cid)


# config.md: "process (object, OPTIONAL) ... REQUIRED when start is called"; runtime.md: start
# "MUST generate an error if process was not set". runc 1.1.5 refuses it at create already.
def without_process(make_config, bundle):
    config = make_config(["true"])
    del config["process"]
    return str(bundle(config))


@requires_ocirt
def test_create_without_process_then_start_is_an_error(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, without_process(make_config, bundle))
    state = rt.state(cid)
    assert state["status"] == "created" and pid_alive(state["pid"])
    result = rt.fails("start", cid)
    assert "no process" in result.stderr and "REQUIRED when start is called" in result.stderr
    assert rt.state(cid) == state  # an error that changes nothing: still created
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


@requires_ocirt
def test_run_without_process_is_refused_before_anything_exists(rt, make_config, bundle):
    cid = rt.new_id()
    result = rt("run", "--bundle", without_process(make_config, bundle), cid)
    assert_clean_failure(rt, result, cid, "$.process", "REQUIRED when start is called")
