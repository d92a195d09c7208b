"""Hooks: each of the six kinds runs where (namespaces, path resolution) and when (operation,
status, pid) config.md and runtime.md say, in order, with its args, env and timeout (the
failures are in test_hook_failures)."""

from __future__ import annotations

import time

from . import hook_support
from .feature_support import ns_links
from .hook_support import check_state, requires_poststart_on_start
from .support import ROOT_MARKS, assert_nothing_left

pytestmark = ROOT_MARKS
# Fixtures of hook_support, used by name below.
hooked = hook_support.hooked
hooks = hook_support.hooks

def test_create_hooks_where_and_when(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked(hooks.all_kinds())
    config["annotations"] = {"org.example.key": "value"}
    bundle_dir = bundle(config)
    host = ns_links("self")
    rt.ok("create", "--bundle", str(bundle_dir), cid)
    pid = rt.state(cid)["pid"]
    container = ns_links(pid)
    calls = {call["kind"]: call for call in hooks.calls()}
    assert hooks.kinds()[:3] == ["prestart", "createRuntime", "createContainer"]
    # The runtime namespace, the host pid. prestart sees "created" (as crun, and as the OCI
    # conformance suite's hooks_stdin expects), createRuntime "creating".
    for kind, status in (("prestart", "created"), ("createRuntime", "creating")):
        call = calls[kind]
        assert (call["pidns"], call["mntns"]) == (host["pid"], host["mnt"]), call
        check_state(call, cid, bundle_dir, status, pid)
    # In the container's namespaces, with the pid as the container sees it.
    call = calls["createContainer"]
    assert (call["pidns"], call["mntns"]) == (container["pid"], container["mnt"]), call
    assert container["mnt"] != host["mnt"]
    check_state(call, cid, bundle_dir, "creating", 1)
    assert "startContainer" not in calls
    for call in calls.values():
        assert call["state"]["annotations"] == {"org.example.key": "value"}, call


def test_start_container_hook_where_and_when(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked({"startContainer": [hooks.entry("startContainer")]})
    bundle_dir = bundle(config)
    rt.ok("create", "--bundle", str(bundle_dir), cid)
    container = ns_links(rt.state(cid)["pid"])
    assert hooks.calls() == []
    rt.ok("start", cid)
    [call] = hooks.calls()
    assert (call["pidns"], call["mntns"]) == (container["pid"], container["mnt"]), call
    check_state(call, cid, bundle_dir, "created", 1)


@requires_poststart_on_start
def test_poststart_hook_where_and_when(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked({"poststart": [hooks.entry("poststart")]})
    bundle_dir = bundle(config)
    rt.ok("create", "--bundle", str(bundle_dir), cid)
    pid = rt.state(cid)["pid"]
    assert hooks.calls() == [], "poststart runs on start"
    rt.ok("start", cid)
    [call] = hooks.calls()
    host = ns_links("self")
    assert (call["pidns"], call["mntns"]) == (host["pid"], host["mnt"]), call
    check_state(call, cid, bundle_dir, "running", pid)


def test_poststop_hook_where_and_when(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked({"poststop": [hooks.entry("poststop")]})
    bundle_dir = bundle(config)
    rt.ok("create", "--bundle", str(bundle_dir), cid)
    rt.ok("start", cid)
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    assert hooks.calls() == [], "nothing runs on kill"
    rt.ok("delete", cid)
    [call] = hooks.calls()
    host = ns_links("self")
    assert (call["pidns"], call["mntns"]) == (host["pid"], host["mnt"]), call
    assert call["state"]["status"] == "stopped"
    assert call["state"]["id"] == cid
    assert not rt.state_dir(cid).exists(), "poststop runs after the container is deleted"


def test_poststop_hook_on_forced_delete(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    rt.create(cid, bundle(hooked({"poststop": [hooks.entry("poststop")]})))
    rt.ok("start", cid)
    rt.ok("delete", "--force", cid)
    [call] = hooks.calls()
    assert call["state"]["status"] == "stopped"
    assert_nothing_left(rt, cid)


@requires_poststart_on_start
def test_every_kind_in_order(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    rt.create(cid, bundle(hooked(hooks.all_kinds())))
    assert hooks.kinds() == ["prestart", "createRuntime", "createContainer"]
    rt.ok("start", cid)
    assert hooks.kinds()[3:] == ["startContainer", "poststart"]
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert hooks.kinds() == ["prestart", "createRuntime", "createContainer", "startContainer",
                             "poststart", "poststop"]


def test_start_container_runs_after_pivot_root(rt, bundle, hooks, hooked):
    """The startContainer path exists only in the rootfs: resolved in the container."""
    cid = rt.new_id()
    config = hooked({"startContainer": [hooks.entry("startContainer")]},
                    args=("sh", "-c", "echo program >> /out/hooks.log"))
    rt.create(cid, bundle(config))
    assert hooks.calls() == []
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    lines = hooks.log.read_text().splitlines()
    assert [line.split("|")[0] for line in lines] == ["startContainer", "program"], \
        "the hook runs before the program"


def test_hooks_of_a_kind_run_in_order(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked({
        "createRuntime": [hooks.entry("createRuntime", label=f"createRuntime-{n}")
                          for n in range(3)],
        "prestart": [hooks.entry("prestart", label=f"prestart-{n}") for n in range(2)],
    })
    rt.create(cid, bundle(config))
    assert hooks.kinds() == ["prestart-0", "prestart-1", "createRuntime-0", "createRuntime-1",
                             "createRuntime-2"]


def test_args_and_env(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked({kind: [hooks.entry(kind, "extra", "two words",
                                        env=["HOOK_VAR=value with spaces"])]
                     for kind in ("createRuntime", "createContainer", "startContainer")})
    rt.create(cid, bundle(config))
    rt.ok("start", cid)
    calls = hooks.calls()
    assert [call["kind"] for call in calls] == ["createRuntime", "createContainer",
                                                "startContainer"]
    for call in calls:
        assert call["args"] == "extra two words", call
        assert call["var"] == "value with spaces", call
        # Only the hook's env: nothing of the runtime's own environment.
        assert call["token"] == "unset", call


def test_timeout_fails_create(rt, bundle, hooks, hooked, tmp_path):
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nexec sleep 5\n")
    slow.chmod(0o755)
    cid = rt.new_id()
    config = hooked({"createRuntime": [{"path": str(slow), "timeout": 1}]})
    began = time.monotonic()
    rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert time.monotonic() - began < 4, "the hook was not stopped at its timeout"
    assert_nothing_left(rt, cid)


def test_within_timeout_succeeds(rt, bundle, hooks, hooked):
    cid = rt.new_id()
    config = hooked({"createRuntime": [hooks.entry("createRuntime", timeout=5)]})
    rt.create(cid, bundle(config))
    assert hooks.kinds() == ["createRuntime"]
