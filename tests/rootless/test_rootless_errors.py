"""What cannot work without root is one clear line, and nothing is left behind: a resource
limit without a cgroup the user may write, pause without a freezer, a sysctl outside the
container's namespaces, an id range the user was not granted, a state root the user cannot
read. Never a traceback, never "internal error" (``UserRuntime.fails`` checks both).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .support import IS_OCIRT, requires_ocirt, rootless_config

# The session makes the unprivileged user: it needs root (the tests then run as that user).
pytestmark = pytest.mark.root


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if IS_OCIRT:
        assert len(lines) == 1 and lines[0].startswith("ocirt: "), result
    return result.stderr


@pytest.mark.parametrize("resources, field", [
    ({"memory": {"limit": 64 << 20}}, "$.linux.resources.memory"),
    ({"pids": {"limit": 100}}, "$.linux.resources.pids"),
    ({"cpu": {"shares": 512}}, "$.linux.resources.cpu"),
])
def test_resource_limit_without_a_writable_cgroup_fails(urt, rootless_user, resources, field):
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    config["linux"]["resources"] = resources
    cid = urt.new_id("limit")
    result = urt.fails("run", "--bundle", str(urt.bundle(config)), cid)
    text = _one_line(result)
    if IS_OCIRT:
        assert field in text and "rootless" in text and "cgroup" in text, result
    assert urt.left() == []


def test_device_deny_all_is_accepted_a_narrower_deny_is_not(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    urt.ok("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    if IS_OCIRT:  # runc 1.1.5 ignores device rules without a cgroup
        config["linux"]["resources"] = {"devices": [
            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}
        result = urt.fails("run", "--bundle", str(urt.bundle(config)), urt.new_id())
        assert "$.linux.resources.devices[0]" in _one_line(result), result


def test_pause_without_a_freezer_fails_and_the_container_runs_on(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    cid = urt.new_id("pause")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    result = urt.fails("pause", cid)
    text = _one_line(result)
    if IS_OCIRT:
        assert "cgroup" in text and "rootless" in text, result
    assert urt.state(cid)["status"] == "running"
    urt.ok("delete", "--force", cid)


def test_sysctl_outside_the_containers_namespaces_fails(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    config["linux"]["sysctl"] = {"vm.swappiness": "10"}
    result = urt.fails("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    assert "vm.swappiness" in _one_line(result), result
    assert urt.left() == []


def test_namespaced_sysctl_works(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs,
                             ["cat", "/proc/sys/kernel/msgmax"], urt.token)
    config["linux"]["sysctl"] = {"kernel.msgmax": "4242"}
    result = urt.ok("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    assert result.stdout.strip() == "4242", result


def test_id_range_not_granted_is_refused(urt, rootless_user):
    user = rootless_user
    config = rootless_config(user, urt.space.rootfs, ["true"], urt.token)
    outside = user.subuid + 10 * 65536  # never in /etc/subuid for this user
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                      {"containerID": 1, "hostID": outside, "size": 1000}]
    result = urt.fails("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    text = _one_line(result)
    if IS_OCIRT:
        assert "newuidmap" in text and "/etc/subuid" in text, result
    assert urt.left() == []


@requires_ocirt  # runc 1.1.5 allows it and then fails setgroups: "cannot set any additional
def test_additional_gids_with_a_directly_written_gid_map(urt, rootless_user):  # groups"
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    config["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [5]}
    result = urt.fails("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    assert "additionalGids" in _one_line(result) and "setgroups" in result.stderr, result


@pytest.fixture
def unreadable_root(workspace):
    path = workspace.base / "root-only"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


@pytest.mark.parametrize("args", [
    ("list",), ("state", "x"), ("create", "--bundle", "{bundle}", "x"), ("run", "--bundle",
    "{bundle}", "x"), ("start", "x"), ("kill", "x", "KILL"), ("delete", "x"),
    ("delete", "--force", "x"), ("exec", "x", "true"), ("ps", "x"), ("pause", "x"),
    ("events", "--stats", "x"),
])
@pytest.mark.parametrize("below", [False, True])
def test_state_root_the_user_cannot_read(urt, rootless_user, unreadable_root, args, below):
    """--root a directory of root's (0700), or below one: every command is one line naming
    the state root's path, whatever it was asked."""
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    bundle = str(urt.bundle(config))
    root = unreadable_root / "state" if below else unreadable_root
    argv = [arg.format(bundle=bundle) for arg in args]
    result = urt.fails(*argv, global_opts=("--root", str(root)))
    text = _one_line(result)
    assert "permission denied" in text.lower(), result
    if IS_OCIRT:
        assert str(root) in text and "--root" in text and "EACCES" in text, result
    assert os.listdir(unreadable_root) == []


@pytest.mark.parametrize("case", ["config", "pid_file", "console_socket", "bind_source",
                                  "rootfs", "hook"])
def test_denied_paths_are_one_line(urt, rootless_user, unreadable_root, case):
    """Whatever the user may not reach (root's 0700 directory) is named in one line: never an
    internal error or a traceback, and nothing is left behind."""
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    bundle = urt.bundle(config)
    hidden = unreadable_root / "thing"
    hidden.mkdir(exist_ok=True)
    extra: list[str] = []
    if case == "config":
        bundle = unreadable_root
        (bundle / "config.json").write_text(json.dumps(config))
    elif case == "pid_file":
        extra = ["--pid-file", str(hidden / "pid")]
    elif case == "console_socket":
        config["process"]["terminal"] = True
        extra = ["--console-socket", str(hidden / "sock")]
    elif case == "bind_source":
        config["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(hidden),
                                 "options": ["rbind"]})
    elif case == "rootfs":
        config["root"]["path"] = str(hidden)
    elif case == "hook":
        config["hooks"] = {"prestart": [{"path": str(hidden / "hook")}]}
    if case != "config":
        (bundle / "config.json").write_text(json.dumps(config))
    command = "create" if case in ("pid_file", "console_socket") else "run"
    cid = urt.new_id(case)
    result = urt.fails(command, "--bundle", str(bundle), *extra, cid)
    text = _one_line(result)
    assert "permission denied" in text.lower(), result
    if IS_OCIRT:
        assert str(unreadable_root) in text, result
        if case != "hook":  # the hook's own exit status says it
            assert f"uid {rootless_user.uid} may not reach it" in text, result
    assert urt.left() == []


def test_without_xdg_runtime_dir_the_default_root_is_refused_in_one_line(urt, rootless_user):
    """No XDG_RUNTIME_DIR: the default root is root's (/run/<runtime>), which the user may not
    write: one line saying so, and what to pass instead."""
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    argv = ["setpriv", f"--reuid={rootless_user.uid}", f"--regid={rootless_user.gid}",
            "--init-groups", "--reset-env", "env", "-i", "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
            f"HOME={urt.space.home}", *urt.command, "run", "--bundle",
            str(urt.bundle(config)), urt.new_id("noxdg")]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode != 0, done
    assert "permission denied" in done.stderr.lower(), done
    for bad in ("Traceback", "internal error", "panic"):
        assert bad not in done.stderr, done
    if IS_OCIRT:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "/run/ocirt" in lines[0] and "--root" in lines[0], done
