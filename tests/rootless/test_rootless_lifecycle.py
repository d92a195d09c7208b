"""A rootless runtime's lifecycle, run by an unprivileged user the session made: ``spec
--rootless`` as is, create/start/state/list/exec/ps/kill/delete, run in the foreground and
detached, --pid-file, a terminal over a console socket and in the foreground, and id maps
written directly or through newuidmap/newgidmap. Each container is looked at from the host:
its credentials, user namespace and cgroups in /proc.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from integration.feature_terminals import UnderPty, read_to_end, read_until
from testkit import proc_status

from .console import UserConsoleListener
from .support import (
    RUNTIME_NAME,
    as_user,
    ns_link,
    requires_ocirt,
    rootless_config,
    wait_for,
)

# The session makes the unprivileged user: it needs root (the tests then run as that user).
pytestmark = pytest.mark.root


def _own_cgroups(pid: int | str) -> str:
    with open(f"/proc/{pid}/cgroup") as handle:
        return handle.read()


def test_spec_rootless_runs_as_is(urt, rootless_user):
    """`spec --rootless` written by the user runs unchanged (only its program is ours), and
    the state goes to $XDG_RUNTIME_DIR/<runtime>, made 0700."""
    bundle = urt.space.new_dir("spec")
    urt.ok("spec", "--rootless", cwd=bundle)
    config = json.loads((bundle / "config.json").read_text())
    assert config["linux"]["uidMappings"] == [
        {"containerID": 0, "hostID": rootless_user.uid, "size": 1}]
    assert config["linux"]["gidMappings"] == [
        {"containerID": 0, "hostID": rootless_user.gid, "size": 1}]
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname; exit 5"]
    config["root"]["path"] = str(urt.space.rootfs)
    (bundle / "config.json").write_text(json.dumps(config))
    cid = urt.new_id("spec")
    result = urt("run", cid, cwd=bundle)
    assert result.returncode == 5, result
    lines = result.stdout.split()
    assert lines[:4] == ["0", "0", str(rootless_user.uid), "1"], result
    root_mode = os.stat(urt.root).st_mode
    assert root_mode & 0o777 == 0o700, oct(root_mode)  # runc adds the sticky bit
    assert os.stat(urt.root).st_uid == rootless_user.uid
    assert urt.left() == []


def test_create_start_exec_ps_kill_delete(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    bundle = urt.bundle(config)
    cid = urt.new_id()
    pid_file = bundle / "init.pid"
    urt.ok("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
    state = urt.state(cid)
    assert state["status"] == "created"
    pid = state["pid"]
    assert int(pid_file.read_text()) == pid
    assert cid in urt.ok("list", "--quiet").stdout.split()
    # From the host: the container runs as the user, in a user namespace of its own, and
    # (no cgroup the user may write here) in the caller's cgroups.
    status = proc_status(pid)
    assert status["Uid"].split()[0] == str(rootless_user.uid), status["Uid"]
    assert ns_link(pid, "user") != ns_link("self", "user")
    assert ns_link(pid, "pid") != ns_link("self", "pid")
    urt.ok("start", cid)
    urt.wait_status(cid, "running")
    inside = urt.ok("exec", cid, "sh", "-c", "id -u; hostname; cat /proc/1/cmdline").stdout
    assert inside.split("\n")[:2] == ["0", "rootless"], inside
    assert "sleep" in inside
    urt.ok("kill", cid, "KILL")
    urt.wait_status(cid, "stopped")
    urt.ok("delete", cid)
    assert cid not in urt.ok("list", "--quiet").stdout.split()
    assert not (urt.root / cid).exists()


@requires_ocirt  # runc 1.1.5's ps needs the container's cgroup: "lstat : no such file"
def test_ps_lists_the_pid_namespace_without_a_cgroup(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    cid = urt.new_id("ps")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    pid = urt.state(cid)["pid"]
    exec_run = subprocess.Popen(as_user(urt.user, urt.space,
                                        [*urt.command, "exec", cid, "sleep", "30"], urt.token),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        def two() -> list[int]:
            found = json.loads(urt.ok("ps", "--format", "json", cid).stdout)
            return found if len(found) == 2 else []

        pids = wait_for(two, 5.0, what="ps to list init and the exec'd process")
        assert pid in pids
        other = next(p for p in pids if p != pid)
        assert ns_link(other, "pid") == ns_link(pid, "pid")
        table = urt.ok("ps", cid).stdout.splitlines()
        assert "PID" in table[0] and len(table) == 3, table
    finally:
        urt.ok("delete", "--force", cid)
        exec_run.wait(10)


def test_container_stays_in_the_callers_cgroups(urt, rootless_user):
    """Without a cgroup the user may write, the container gets none: its processes are in the
    cgroups of the runtime's caller, and no directory is made for it."""
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    cid = urt.new_id()
    urt.ok("run", "--detach", "--bundle", str(urt.bundle(config)), cid)
    pid = urt.state(cid)["pid"]
    assert _own_cgroups(pid) == _own_cgroups(os.getpid())
    urt.ok("delete", "--force", cid)


def test_run_detached_then_exec_and_delete_force(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    cid = urt.new_id("d")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    urt.wait_status(cid, "running")
    result = urt("exec", cid, "sh", "-c", "exit 9")
    assert result.returncode == 9, result
    urt.ok("delete", "--force", cid)
    assert not (urt.root / cid).exists()


def test_id_maps_of_subordinate_ranges_go_through_newuidmap(urt, rootless_user):
    """A mapping larger than the user's own id is written by newuidmap/newgidmap from the
    ranges in /etc/subuid and /etc/subgid: the container's uid 1000 is a subordinate id."""
    user = rootless_user
    config = rootless_config(user, urt.space.rootfs, ["sh", "-c", "id; sleep 60"], urt.token)
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                      {"containerID": 1, "hostID": user.subuid, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1},
                                      {"containerID": 1, "hostID": user.subgid, "size": 65536}]
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    cid = urt.new_id("map")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    pid = urt.state(cid)["pid"]
    status = proc_status(pid)
    assert status["Uid"].split()[0] == str(user.subuid + 999), status["Uid"]
    assert status["Gid"].split()[0] == str(user.subgid + 999), status["Gid"]
    with open(f"/proc/{pid}/uid_map") as handle:
        assert handle.read().split() == ["0", str(user.uid), "1", "1", str(user.subuid),
                                         "65536"]
    with open(f"/proc/{pid}/setgroups") as handle:
        assert handle.read().strip() == "allow"  # newgidmap, not a direct write
    urt.ok("delete", "--force", cid)


def test_own_gid_written_directly_denies_setgroups(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs,
                             ["cat", "/proc/self/setgroups"], urt.token)
    cid = urt.new_id()
    result = urt.ok("run", "--bundle", str(urt.bundle(config)), cid)
    assert result.stdout.strip() == "deny", result


def terminal_config(urt, user, script):
    """A config running ``sh -c script`` as the user, on a terminal."""
    config = rootless_config(user, urt.space.rootfs, ["sh", "-c", script], urt.token)
    config["process"]["terminal"] = True
    return config


def test_terminal_over_console_socket(urt, rootless_user):
    config = terminal_config(urt, rootless_user, "read line; echo \"got:$line\"; tty; exit 4")
    cid = urt.new_id("tty")
    with UserConsoleListener(urt.space) as listener:
        master = listener.master_from(urt, "create", "--bundle", str(urt.bundle(config)), cid)
        urt.ok("start", cid)
        os.write(master, b"typed\n")
        output = read_to_end(master, 5.0).replace(b"\r", b"")
        urt.wait_status(cid, "stopped")
    assert b"got:typed\n" in output, output
    assert b"/dev/pts/" in output, output
    urt.ok("delete", cid)


def test_exec_with_a_terminal_over_a_console_socket(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    cid = urt.new_id("exectty")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    with UserConsoleListener(urt.space) as listener:
        master = listener.master_from(urt, "exec", "-t", "-d", cid, "sh", "-c",
                                      "tty; read line; echo \"got:$line\"")
        os.write(master, b"via exec\n")
        output = read_to_end(master, 5.0).replace(b"\r", b"")
    assert b"/dev/pts/" in output and b"got:via exec\n" in output, output
    urt.ok("delete", "--force", cid)


def test_run_in_the_foreground_with_a_terminal(urt, rootless_user):
    config = terminal_config(urt, rootless_user,
                             "echo ready; read line; echo \"got:$line\"; exit 7")
    cid = urt.new_id("fg")
    argv = as_user(urt.user, urt.space, [*urt.command, "run", "--bundle",
                                         str(urt.bundle(config)), cid], urt.token)
    with UnderPty(argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}) as caller:
        seen = read_until(caller.master, b"ready", 10.0)
        caller.send(b"hello\n")
        status, rest = caller.wait(10.0)
    assert status == 7, seen + rest
    assert b"got:hello" in (seen + rest).replace(b"\r", b"")


def test_hooks_run_as_the_user(urt, rootless_user):
    out = urt.space.new_dir("hooks")
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f'id -u >> {out}/"$0"']}
    config["hooks"] = {kind: [{**hook, "args": [*hook["args"], kind]}]
                       for kind in ("prestart", "createRuntime", "poststart", "poststop")}
    cid = urt.new_id("hooks")
    urt.ok("run", "--bundle", str(urt.bundle(config)), cid)
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        assert (out / kind).read_text().split() == [str(rootless_user.uid)], kind
    wait_for(lambda: not (urt.root / cid).exists(), 5.0, what=f"{RUNTIME_NAME} to delete")


@requires_ocirt  # runc 1.1.5's kill --all needs the container's cgroup: "lstat : no such file"
def test_kill_all_reaches_every_process_without_a_cgroup(urt, rootless_user):
    out = urt.space.new_dir("killall")
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    config["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(out),
                             "options": ["rbind", "rw"]})
    cid = urt.new_id("killall")
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    trap = ("trap 'touch /mnt/got-usr1; exit 0' USR1; touch /mnt/ready; "
            "while :; do sleep 0.05; done")
    exec_run = subprocess.Popen(as_user(urt.user, urt.space,
                                        [*urt.command, "exec", cid, "sh", "-c", trap],
                                        urt.token),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / "ready").exists(), 5.0, what="the exec'd process to start")
        urt.ok("kill", "--all", cid, "USR1")
        wait_for(lambda: (out / "got-usr1").exists(), 5.0,
                 what="the exec'd process to get SIGUSR1")
    finally:
        urt.ok("delete", "--force", cid)
        exec_run.wait(10)
