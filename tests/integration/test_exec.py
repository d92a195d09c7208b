"""``exec``: a new process in a running container, checked from inside and from the host:
output and exit status, namespaces, cgroup, capabilities, the process flags, detach."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from . import feature_support
from .feature_subreaper import run_as_subreaper
from .feature_support import (
    NS_NAMES,
    ns_links,
    started,
    status_fields,
    status_of,
    unquote,
    userns_config,
)
from .support import CONTAINER_PATH, ROOT_MARKS, TOKEN_VAR

pytestmark = ROOT_MARKS
# Fixtures of feature_support, used by name below.
background = feature_support.background
open_out = feature_support.open_out
open_rootfs = feature_support.open_rootfs


NOT_FOUND = 'exec: "no-such-program": executable file not found in $PATH'
SLEEPER = ["sleep", "100"]
CAP_SYS_ADMIN, CAP_NET_RAW = 21, 13
DEFAULT_CAP_MASK = (1 << 29) | (1 << 5) | (1 << 10)  # AUDIT_WRITE, KILL, NET_BIND_SERVICE


@pytest.fixture
def running(rt, make_config, bundle):
    """A running container (pid, net, ipc, uts, mount and cgroup namespaces): (id, pid)."""
    config = make_config(SLEEPER)
    config["linux"]["namespaces"].append({"type": "cgroup"})
    return started(rt, bundle, config)


def test_output_and_exit_status(rt, running):
    cid, _ = running
    result = rt("exec", cid, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert result.returncode == 3, result
    assert result.stdout == "to-stdout\n"
    assert "to-stderr" in result.stderr
    assert rt("exec", cid, "true").returncode == 0
    assert rt.status(cid) == "running"


def test_stdin_reaches_the_process(rt, running, tmp_path):
    cid, _ = running
    (tmp_path / "input").write_text("line one\nline two\n")
    with open(tmp_path / "input") as stdin:
        result = rt("exec", cid, "sh", "-c", "wc -l", stdin=stdin)
    assert result.returncode == 0, result
    assert result.stdout.strip() == "2"


def test_in_every_namespace_of_the_container(rt, running, tmp_path, background):
    cid, init = running
    pid = background.exec(cid, tmp_path)
    theirs, ours, host = ns_links(init), ns_links(pid), ns_links("self")
    assert ours == theirs
    for kind in ("pid", "mnt", "net", "ipc", "uts", "cgroup"):
        assert ours[kind] != host[kind], f"{kind}: the container has its own"
    # From inside: the same namespaces as pid 1 of the container.
    names = " ".join(sorted(NS_NAMES.values()))
    script = f"for n in {names}; do [ -e /proc/self/ns/$n ] && readlink /proc/self/ns/$n; done"
    inside = rt.ok("exec", cid, "sh", "-c", script).stdout.split()
    init_links = rt.ok("exec", cid, "sh", "-c", script.replace("self", "1")).stdout.split()
    assert inside == init_links
    assert f"pid:[{theirs['pid']}]" in inside


def test_pid_inside_the_pid_namespace(rt, running):
    cid, _ = running
    output = rt.ok("exec", cid, "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '").stdout
    mine, init_cmdline = output.splitlines()
    assert int(mine) > 1
    assert init_cmdline.strip() == "sleep 100"


def test_in_the_cgroup_of_the_container(rt, running, tmp_path, background):
    cid, init = running
    pid = background.exec(cid, tmp_path)
    with open(f"/proc/{init}/cgroup") as a, open(f"/proc/{pid}/cgroup") as b:
        assert b.read() == a.read()
    # With the cgroup namespace, the process sees its cgroup as the root.
    inside = rt.ok("exec", cid, "cat", "/proc/self/cgroup").stdout.splitlines()
    assert inside and all(line.endswith(":/") for line in inside), inside


def test_capabilities_and_no_new_privs_of_the_container(rt, running, tmp_path, background):
    cid, init = running
    pid = background.exec(cid, tmp_path)
    theirs, ours = status_of(init), status_of(pid)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
        assert ours[key] == theirs[key], key
    assert int(ours["CapEff"][0], 16) == DEFAULT_CAP_MASK
    assert ours["NoNewPrivs"] == ["1"]
    assert ours["Uid"] == ["0"] * 4


def test_user(rt, running, tmp_path):
    cid, _ = running
    output = rt.ok("exec", "--user", "1000:1000", cid, "sh", "-c",
                   "id -u; id -g; grep -E '^(Uid|Gid|Groups|CapEff):' /proc/self/status; "
                   "touch /out/by-exec").stdout
    lines = output.splitlines()
    assert lines[:2] == ["1000", "1000"]
    fields = status_fields("\n".join(lines[2:]))
    assert fields["Uid"] == ["1000"] * 4
    assert fields["Gid"] == ["1000"] * 4
    assert fields["Groups"] == []
    assert int(fields["CapEff"][0], 16) == 0, "a non-root user has no effective caps"
    st = (tmp_path / "out" / "by-exec").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_env_adds_to_the_container_env(rt, running):
    cid, _ = running
    output = rt.ok("exec", "--env", "ONE=1", "--env", "SPACED=a b", "--env", "EMPTY=",
                   cid, "env").stdout
    lines = output.splitlines()
    assert {"ONE=1", "SPACED=a b", "EMPTY=", CONTAINER_PATH} <= set(lines)
    assert any(line.startswith(f"{TOKEN_VAR}=") for line in lines), "the config's env stays"


def test_env_overrides_the_container_env(rt, running):
    cid, _ = running
    output = rt.ok("exec", "--env", "PATH=/bin", cid, "env").stdout
    assert [line for line in output.splitlines() if line.startswith("PATH=")] == ["PATH=/bin"]


def test_cwd(rt, running):
    cid, _ = running
    assert rt.ok("exec", "--cwd", "/tmp", cid, "pwd").stdout == "/tmp\n"
    assert rt.ok("exec", cid, "pwd").stdout == "/\n", "the config's cwd without --cwd"


def test_cap_adds_a_capability(rt, running, tmp_path, background):
    cid, init = running
    pid = background.exec(cid, tmp_path, options=["--cap", "CAP_SYS_ADMIN"])
    fields = status_of(pid)
    for key in ("CapPrm", "CapEff", "CapBnd"):
        assert int(fields[key][0], 16) == DEFAULT_CAP_MASK | (1 << CAP_SYS_ADMIN), key
    assert not int(status_of(init)["CapBnd"][0], 16) & (1 << CAP_SYS_ADMIN), \
        "the container's init is unchanged"
    inside = rt.ok("exec", "--cap", "CAP_NET_RAW", cid, "grep", "^CapEff:",
                   "/proc/self/status").stdout.split()[1]
    assert int(inside, 16) == DEFAULT_CAP_MASK | (1 << CAP_NET_RAW)


def test_no_new_privs(rt, make_config, bundle):
    config = make_config(SLEEPER, process__noNewPrivileges=False)
    cid, init = started(rt, bundle, config)
    assert status_of(init)["NoNewPrivs"] == ["0"]
    grep = ("grep", "^NoNewPrivs:", "/proc/self/status")
    assert rt.ok("exec", cid, *grep).stdout.split() == ["NoNewPrivs:", "0"]
    assert rt.ok("exec", "--no-new-privs", cid, *grep).stdout.split() == ["NoNewPrivs:", "1"]


def test_process_file(rt, running, tmp_path):
    cid, _ = running
    process = {
        "terminal": False,
        "user": {"uid": 1234, "gid": 4321, "additionalGids": [10, 20]},
        "args": ["sh", "-c", "echo \"$GREETING\"; pwd; id -u; id -g; id -G"],
        "env": ["PATH=/bin", "GREETING=hello from process.json"],
        "cwd": "/dev",
        "noNewPrivileges": True,
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    output = rt.ok("exec", "--process", str(path), cid).stdout
    assert output.splitlines() == ["hello from process.json", "/dev", "1234", "4321",
                                   "4321 10 20"]


def test_process_file_exit_status(rt, running, tmp_path):
    cid, _ = running
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["sh", "-c", "exit 9"], "cwd": "/",
                                "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}))
    assert rt("exec", "-p", str(path), cid).returncode == 9


def test_detach_pid_file_and_subreaper(rt, running, tmp_path):
    """The detached process runs in the container, is left to the caller (a subreaper) as its
    parent, which reaps it and gets its exit status."""
    cid, init = running
    pid_file = tmp_path / "detached.pid"
    program = "trap 'exit 7' USR1; while :; do sleep 0.05; done"
    argv = rt.argv("exec", "--detach", "--pid-file", str(pid_file), cid, "sh", "-c", program)
    result, log = run_as_subreaper(argv, pid_file, rt.env, tmp_path)
    assert result["rc"] == 0, log
    assert result["ns"] == ns_links(init), "the pid in the pid file is in the container"
    with open(f"/proc/{init}/cgroup") as handle:
        assert result["cgroup"] == handle.read()
    assert result["nspid"][0] == str(result["pid"]), "the pid file holds the host pid"
    assert len(result["nspid"]) == 2 and int(result["nspid"][1]) > 1
    assert result["ppid"] == result["me"], "the subreaper caller is the process's parent"
    assert result["exit"] == 7, "the subreaper reaped it and got its exit status"


def test_preserve_fds(rt, running, tmp_path):
    cid, _ = running
    three, four = tmp_path / "fd3", tmp_path / "fd4"
    argv = rt.argv("exec", "--preserve-fds", "1", cid, "sh", "-c",
                   "echo via-three >&3; echo via-four >&4 || echo no-four")
    # The caller's fd 3 and 4 are open; only 3 (3 + 1 - 1) is passed on.
    proc = subprocess.run(["sh", "-c", 'exec 3>"$0" 4>"$1"; shift; exec "$@"', str(three),
                           str(four), *argv], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=rt.env, timeout=10, check=False)
    assert proc.returncode == 0, proc
    assert three.read_text() == "via-three\n"
    assert four.read_text() == ""
    assert "no-four" in proc.stdout


def test_no_extra_fds_without_preserve(rt, running, tmp_path):
    cid, _ = running
    argv = rt.argv("exec", cid, "ls", "/proc/self/fd")
    proc = subprocess.run(["sh", "-c", 'exec 3>"$0"; exec "$@"', str(tmp_path / "fd3"), *argv],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=rt.env, timeout=10, check=False)
    assert proc.returncode == 0, proc
    # 0, 1, 2 and the directory ls reads (3): the caller's fd 3 did not get through.
    assert proc.stdout.split() == ["0", "1", "2", "3"]
    assert (tmp_path / "fd3").read_text() == ""


def test_missing_program(rt, running):
    cid, _ = running
    result = rt.fails("exec", cid, "no-such-program", "arg")
    assert NOT_FOUND in unquote(result.stderr)
    assert rt.status(cid) == "running"


def test_exec_into_a_stopped_container_fails(rt, make_config, bundle):
    cid = rt.new_id()
    rt.create(cid, bundle(make_config(["true"])))
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    result = rt.fails("exec", cid, "echo", "never")
    assert "never" not in result.stdout
    assert "stopped" in result.stderr
    assert rt.status(cid) == "stopped"


def test_exec_into_a_missing_container_fails(rt):
    result = rt.fails("exec", "it-no-such-container", "true")
    assert "it-no-such-container" in result.stderr or "not exist" in result.stderr


def test_user_namespace_is_joined(rt, make_config, bundle, tmp_path, background, open_rootfs,
                                  open_out):
    config = userns_config(make_config, open_rootfs, open_out, SLEEPER)
    cid, init = started(rt, bundle, config)
    pid = background.exec(cid, tmp_path)
    assert ns_links(pid) == ns_links(init)
    assert ns_links(pid)["user"] != ns_links("self")["user"]
    assert status_of(pid)["Uid"] == ["100000"] * 4, "container root is host uid 100000"
    output = rt.ok("exec", cid, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map").stdout
    lines = output.splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", "100000", "65536"]


def test_user_namespace_exec_as_user(rt, make_config, bundle, tmp_path, background,
                                     open_rootfs, open_out):
    config = userns_config(make_config, open_rootfs, open_out, SLEEPER)
    cid, _ = started(rt, bundle, config)
    pid = background.exec(cid, tmp_path, options=["--user", "1000:1000"])
    fields = status_of(pid)
    assert fields["Uid"] == ["101000"] * 4
    assert fields["Gid"] == ["101000"] * 4


def test_exec_while_another_exec_runs(rt, running, tmp_path, background):
    cid, _ = running
    first = background.exec(cid, tmp_path)
    assert rt.ok("exec", cid, "echo", "second").stdout == "second\n"
    assert Path(f"/proc/{first}/cmdline").read_text().startswith("sleep"), \
        "the first exec still runs"
