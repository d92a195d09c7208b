"""Hooks: each of the six kinds runs where (namespaces, path resolution) and when (operation,
status, pid) config.md and runtime.md say, in order, with its args, env and timeout; a
failing hook fails the operation as the lifecycle says, and leaves nothing behind."""

from __future__ import annotations

import json
import time

import pytest

from .feature_support import ns_links, wait_gone
from .support import (
    IS_OCIRT,
    ROOT_MARKS,
    RUNTIME_NAME,
    assert_nothing_left,
    pid_alive,
    requires_ocirt,
)

pytestmark = ROOT_MARKS

# Appends one line per call: kind|pid ns|mount ns|extra args|HOOK_VAR|token var|state JSON.
# It runs on the host (dash) and, as a startContainer hook, in the container (busybox).
HOOK = """#!/bin/sh
kind=$1 log=$2
shift 2
state=$(cat | tr -d '\\n')
echo "$kind|$(readlink /proc/self/ns/pid)|$(readlink /proc/self/ns/mnt)|$*|\
${HOOK_VAR-unset}|${OCIRT_ITEST-unset}|$state" >> "$log"
"""
# The startContainer hook lives in the rootfs only: its path resolves in the container.
IN_ROOTFS = "/hook-in-rootfs.sh"
HOOK_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
HOST_KINDS = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")


class Hooks:
    """The hook script on the host and in a private rootfs, the log they append to, and
    config entries for them."""

    def __init__(self, tmp_path, rootfs, out_dir):
        self.host = tmp_path / "hook.sh"
        self.host.write_text(HOOK)
        self.host.chmod(0o755)
        inside = rootfs / IN_ROOTFS.lstrip("/")
        inside.write_text(HOOK)
        inside.chmod(0o755)
        self.log = out_dir / "hooks.log"  # /out/hooks.log in the container

    def entry(self, kind, *extra, label=None, env=(), timeout=None):
        path = IN_ROOTFS if kind == "startContainer" else str(self.host)
        log = "/out/hooks.log" if kind == "startContainer" else str(self.log)
        hook = {"path": path, "args": [path, label or kind, log, *extra],
                "env": [HOOK_PATH, *env]}
        if timeout is not None:
            hook["timeout"] = timeout
        return hook

    def all_kinds(self):
        return {kind: [self.entry(kind)] for kind in (*HOST_KINDS, "startContainer")}

    def calls(self):
        """The log: a list of dicts (kind, pidns, mntns, args, var, token, state)."""
        if not self.log.exists():
            return []
        calls = []
        for line in self.log.read_text().splitlines():
            kind, pidns, mntns, args, var, token, state = line.split("|", 6)
            calls.append({"kind": kind, "pidns": ns_number(pidns), "mntns": ns_number(mntns),
                          "args": args, "var": var, "token": token,
                          "state": json.loads(state)})
        return calls

    def kinds(self):
        return [call["kind"] for call in self.calls()]


def ns_number(link):
    return int(link.split("[")[1].rstrip("]"))


@pytest.fixture
def hooks(tmp_path, private_rootfs, out_dir):
    return Hooks(tmp_path, private_rootfs, out_dir)


@pytest.fixture
def hooked(make_config, private_rootfs):
    """``hooked(hooks_dict, args=...)``: a config on the private rootfs with those hooks."""

    def make(hook_config, args=("sleep", "100")):
        config = make_config(list(args), rootfs_path=private_rootfs)
        config["hooks"] = hook_config
        return config

    return make


RUNC_POSTSTART = ("runc 1.1 runs poststart hooks during create, before the program runs "
                  "(status created); config.md wants them after the program is executed")
requires_poststart_on_start = pytest.mark.skipif(
    not IS_OCIRT, reason=f"the runtime is {RUNTIME_NAME}: {RUNC_POSTSTART}")


def check_state(call, cid, bundle_dir, status, pid):
    state = call["state"]
    assert state["id"] == cid and state["bundle"] == str(bundle_dir), call
    assert state["status"] == status, call
    assert state.get("pid") == pid, call


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


def failing(tmp_path, name="fail.sh"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\necho hook failure reason >&2\nexit 3\n")
    path.chmod(0o755)
    return str(path)


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


def start_container_failing(rt, bundle, hooked, private_rootfs, extra=None):
    (private_rootfs / "fail.sh").write_text("#!/bin/sh\nexit 3\n")
    (private_rootfs / "fail.sh").chmod(0o755)
    cid = rt.new_id()
    config = hooked({"startContainer": [{"path": "/fail.sh"}], **(extra or {})},
                    args=("sh", "-c", "touch /out/program-ran"))
    rt.create(cid, bundle(config))
    return cid, rt.state(cid)["pid"]


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
