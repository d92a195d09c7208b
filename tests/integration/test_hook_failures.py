"""Failing hooks: a failing hook fails the operation as runtime.md's lifecycle says (create,
start, or only a warning for poststart of older bundles and poststop), names the hook, and
leaves nothing behind."""

from __future__ import annotations

import pytest

from . import hook_support
from .feature_terminals import wait_gone
from .hook_support import failing, requires_poststart_on_start, start_container_failing
from .support import ROOT_MARKS, assert_nothing_left, pid_alive, requires_ocirt

pytestmark = ROOT_MARKS
# Fixtures of hook_support, used by name below.
hooked = hook_support.hooked
hooks = hook_support.hooks

@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(rt, bundle, hooks, hooked,
                                                             tmp_path, kind):
    cid = rt.new_id()
    config = hooked({kind: [{"path": failing(tmp_path)}],
                     "poststart": [hooks.entry("poststart")]})
    rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert_nothing_left(rt, cid)
    rt.fails("state", cid)
    assert "poststart" not in hooks.kinds()


def test_missing_hook_program_fails_create(rt, bundle, hooked, tmp_path):
    cid = rt.new_id()
    config = hooked({"createRuntime": [{"path": str(tmp_path / "no-such-hook")}]})
    rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert_nothing_left(rt, cid)


def test_failing_create_hook_runs_poststop(rt, bundle, hooks, hooked, tmp_path):
    """runtime.md lifecycle step 4 -> 12 -> 13: the container is destroyed, then poststop."""
    cid = rt.new_id()
    config = hooked({"createRuntime": [{"path": failing(tmp_path)}],
                     "poststop": [hooks.entry("poststop")]})
    rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert hooks.kinds() == ["poststop"]
    assert hooks.calls()[0]["state"]["status"] == "stopped"
    assert_nothing_left(rt, cid)


def test_failing_start_container_hook_stops_the_container(rt, bundle, hooked, private_rootfs,
                                                          out_dir):
    cid, pid = start_container_failing(rt, bundle, hooked, private_rootfs)
    rt("start", cid)  # runc's start returns before the hook runs: only ocirt's fails (below)
    wait_gone(pid)
    assert not (out_dir / "program-ran").exists(), "the program must not run"


@requires_ocirt
def test_failing_start_container_hook_fails_start(rt, bundle, hooked, private_rootfs, out_dir):
    cid, pid = start_container_failing(rt, bundle, hooked, private_rootfs)
    rt.fails("start", cid)
    wait_gone(pid)
    assert not (out_dir / "program-ran").exists()


@requires_ocirt
def test_failing_start_container_hook_destroys_the_container(rt, bundle, hooks, hooked,
                                                              private_rootfs):
    cid, _ = start_container_failing(rt, bundle, hooked, private_rootfs,
                                     {"poststop": [hooks.entry("poststop")]})
    rt.fails("start", cid)
    assert hooks.kinds() == ["poststop"]
    assert_nothing_left(rt, cid)


# runtime.md lifecycle step 9 changed in spec 1.3.0: a failing poststart hook was a warning
# ("the remaining hooks and lifecycle continue"), it is now an error that stops the container.
# ocirt follows the version the bundle declares in its ociVersion.
SPEC_13 = "1.3.0"
SPEC_12 = "1.2.0"


@requires_poststart_on_start
def test_failing_poststart_hook_fails_start_and_stops_the_container(rt, bundle, hooks,
                                                                    hooked, tmp_path, out_dir):
    cid = rt.new_id()
    config = hooked({"poststart": [{"path": failing(tmp_path)}]})
    config["ociVersion"] = SPEC_13
    rt.create(cid, bundle(config))
    pid = rt.state(cid)["pid"]
    rt.fails("start", cid)
    wait_gone(pid)  # runtime.md lifecycle step 9: stop the container
    assert rt("state", cid).returncode != 0 or rt.status(cid) == "stopped"


@requires_poststart_on_start
def test_failing_poststart_hook_destroys_the_container(rt, bundle, hooks, hooked, tmp_path):
    cid = rt.new_id()
    config = hooked({"poststart": [{"path": failing(tmp_path)}],
                     "poststop": [hooks.entry("poststop")]})
    config["ociVersion"] = SPEC_13
    rt.create(cid, bundle(config))
    rt.fails("start", cid)
    assert hooks.kinds() == ["poststop"]
    assert_nothing_left(rt, cid)


@requires_ocirt  # runc 1.1 fails start whatever the bundle's version
@pytest.mark.parametrize("version", ["1.0.2", SPEC_12])
def test_failing_poststart_hook_of_an_older_bundle_is_a_warning(rt, bundle, hooks, hooked,
                                                                tmp_path, version):
    cid = rt.new_id()
    path = failing(tmp_path)
    config = hooked({"poststart": [{"path": path}, hooks.entry("poststart")]})
    config["ociVersion"] = version
    rt.create(cid, bundle(config))
    pid = rt.state(cid)["pid"]
    result = rt.ok("start", cid)
    assert "warning" in result.stderr and "poststart" in result.stderr, result
    assert path in result.stderr
    assert hooks.kinds() == ["poststart"]  # the next hook still ran
    assert rt.status(cid) == "running" and pid_alive(pid)  # and the lifecycle goes on
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_failing_poststop_hook_is_a_warning(rt, bundle, hooks, hooked, tmp_path):
    cid = rt.new_id()
    config = hooked({"poststop": [{"path": failing(tmp_path)}]}, args=("true",))
    rt.create(cid, bundle(config))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    result = rt("delete", cid)
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    assert_nothing_left(rt, cid)


@requires_ocirt  # runc 1.1 stops at the first failing poststop hook too
def test_poststop_hooks_after_a_failing_one_still_run(rt, bundle, hooks, hooked, tmp_path):
    cid = rt.new_id()
    config = hooked({"poststop": [{"path": failing(tmp_path)}, hooks.entry("poststop")]},
                    args=("true",))
    rt.create(cid, bundle(config))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert hooks.kinds() == ["poststop"]


@requires_ocirt
def test_failure_message_names_the_hook(rt, bundle, hooked, tmp_path):
    cid = rt.new_id()
    path = failing(tmp_path)
    config = hooked({"createRuntime": [{"path": path}]})
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert "createRuntime" in result.stderr and path in result.stderr
    assert "exit status 3" in result.stderr
    assert "hook failure reason" in result.stderr


@requires_ocirt
def test_poststop_failure_warning_names_the_hook(rt, bundle, hooked, tmp_path):
    cid = rt.new_id()
    path = failing(tmp_path)
    config = hooked({"poststop": [{"path": path}]}, args=("true",))
    rt.create(cid, bundle(config))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    result = rt.ok("delete", cid)
    assert "warning" in result.stderr and path in result.stderr
