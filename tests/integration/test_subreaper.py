"""A manager that is a subreaper (conmon, containerd-shim) and gives ``create`` pipes for stdio:
after create only the container's init holds them, init is the manager's child, and the
manager's waitpid collects the program's exit status."""

from __future__ import annotations

import json
import subprocess
import sys

from .support import ROOT_MARKS, assert_nothing_left

pytestmark = ROOT_MARKS

# The manager: run as a separate process, so that only it is a subreaper.
MANAGER = r'''
import ctypes, json, os, select, signal, subprocess, sys

runtime, bundle, cid, pid_file = json.loads(sys.argv[1])
signal.alarm(20)
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
report = {"manager": os.getpid()}

out_r, out_w = os.pipe()
err_r, err_w = os.pipe()
create = subprocess.Popen([*runtime, "create", "--bundle", bundle, "--pid-file", pid_file,
                           cid], stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w)
os.close(out_w)
os.close(err_w)
report["create"] = create.wait()
if report["create"] != 0:  # nobody else holds the pipes now: read the error and stop
    report["create_stderr"] = os.read(err_r, 65536).decode()
    print(json.dumps(report))
    sys.exit(0)
pid = int(open(pid_file).read())
report["pid"] = pid


def pipe_inode(fd):
    return os.fstat(fd).st_ino


def holders(inode):
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") == f"pipe:[{inode}]":
                    found.add(int(name))
            except OSError:
                pass
    return sorted(found)


report["stdout_holders"] = holders(pipe_inode(out_r))
report["stderr_holders"] = holders(pipe_inode(err_r))
with open(f"/proc/{pid}/status") as handle:
    report["ppid"] = int(next(l for l in handle if l.startswith("PPid:")).split()[1])

start = subprocess.run([*runtime, "start", cid], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
report["start"] = start.returncode
report["start_stderr"] = start.stderr.decode()

data = {out_r: b"", err_r: b""}
open_fds = [out_r, err_r]
while open_fds:
    ready, _, _ = select.select(open_fds, [], [], 10)
    if not ready:
        report["timeout"] = True
        break
    for fd in ready:
        chunk = os.read(fd, 65536)
        if chunk:
            data[fd] += chunk
        else:
            open_fds.remove(fd)
report["stdout"] = data[out_r].decode()
report["stderr"] = data[err_r].decode()

_, status = os.waitpid(pid, 0)
report["exited"] = os.WIFEXITED(status)
report["status"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
# Reap whatever else was re-parented to us (nothing, ideally).
others = []
while True:
    try:
        child, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if child == 0:
        break
    others.append(child)
report["other_children"] = others
print(json.dumps(report))
'''


def test_manager_as_subreaper(rt, make_config, bundle, tmp_path):
    cid = rt.new_id()
    program = "echo to-stdout; echo to-stderr >&2; exit 7"
    path = bundle(make_config(["sh", "-c", program]))
    args = json.dumps([rt.argv(), str(path), cid, str(tmp_path / "pid")])
    manager = subprocess.run([sys.executable, "-c", MANAGER, args], env=rt.env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=30, check=False)
    assert manager.returncode == 0, manager.stderr
    report = json.loads(manager.stdout)

    assert report["create"] == 0, report["create_stderr"]
    pid = report["pid"]
    assert report["stdout_holders"] == [pid], "only the container's init may hold stdout"
    assert report["stderr_holders"] == [pid], "only the container's init may hold stderr"
    assert report["ppid"] == report["manager"], "init must be the subreaper's child"
    assert report["start"] == 0, report["start_stderr"]
    assert "timeout" not in report, "the stdio pipes never reached end-of-file"
    assert report["stdout"] == "to-stdout\n"
    assert report["stderr"] == "to-stderr\n"
    assert report["exited"] and report["status"] == 7
    assert report["other_children"] == []

    assert rt.status(cid) == "stopped"
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)


def test_manager_sees_a_signal_death(rt, make_config, bundle, tmp_path):
    """A program killed by the runtime's `kill`: the subreaper sees the signal."""
    cid = rt.new_id()
    path = bundle(make_config(["sleep", "100"]))
    script = MANAGER.replace(
        'start = subprocess.run([*runtime, "start", cid]',
        'subprocess.run([*runtime, "start", cid], stdin=subprocess.DEVNULL)\n'
        'start = subprocess.run([*runtime, "kill", cid, "KILL"]')
    args = json.dumps([rt.argv(), str(path), cid, str(tmp_path / "pid")])
    manager = subprocess.run([sys.executable, "-c", script, args], env=rt.env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=30, check=False)
    assert manager.returncode == 0, manager.stderr
    report = json.loads(manager.stdout)
    assert report["create"] == 0, report["create_stderr"]
    assert report["ppid"] == report["manager"]
    assert report["start"] == 0, report["start_stderr"]
    assert not report["exited"] and report["status"] == -9
    rt.ok("delete", cid)
    assert_nothing_left(rt, cid)
