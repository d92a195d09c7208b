"""containerd's runc shim (io.containerd.runc.v2) with ocirt as its runc binary, and with runc
to prove each test.

The shim calls the runtime as ``<binary> --root <root>/<namespace> --log <bundle>/log.json
--log-format json create --bundle B --pid-file P [--console-socket S] ID``, then ``start``,
``exec --process F --detach --pid-file P``, ``kill [--all] ID SIGNAL``, ``ps --format json``,
``pause``, ``resume``, ``delete [--force]`` (and ``update --resources -``, the JSON on stdin,
for a client that has it: this ctr has no ``task update``).
The daemon here runs with no PATH and no HOME, so the shim and the runtime get none either.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .containerd import Containerd
from .helpers import IMAGE, freezer_state, pid_alive, run_in_pty, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the manager tests need root"),
]

CGROUP_V1 = os.path.isdir("/sys/fs/cgroup/memory")
SERVE = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
# Counts in /tmp/count while it runs (renamed into place: a reader never sees it half written).
# ctr 1.6's `task exec` cancels its output copy once the process has exited and may drop the
# last bytes: a process whose output is checked lingers a little after writing it.
LINGER = "sleep 0.2"
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /tmp/next; mv /tmp/next /tmp/count; "
           "sleep 0.02; done")


def new_id(name: str) -> str:
    return f"{name}-{os.urandom(3).hex()}"


def start_detached(containerd: Containerd, container_id: str, *command: str,
                   options: tuple[str, ...] = ()) -> Path:
    """``ctr run -d`` of ``command``; its output goes to the returned file."""
    log = containerd.base / f"{container_id}.log"
    containerd.ok(*containerd.run_args("-d", "--log-uri", f"file://{log}", *options, IMAGE,
                                       container_id, *command))
    wait_for(lambda: containerd.task_status(container_id) == "RUNNING",
             what=f"task {container_id} to run")
    return log


def task_pids(containerd: Containerd, container_id: str) -> list[int]:
    """``ctr task ps``: the shim asks the runtime (``ps --format json``)."""
    lines = containerd.ok("task", "ps", container_id).stdout.splitlines()[1:]
    return [int(line.split()[0]) for line in lines if line.strip()]


def runtime_cli(containerd: Containerd, *args: str) -> subprocess.CompletedProcess[str]:
    """The runtime itself, on the shim's state root: what the shim would see."""
    root = containerd.runc_root() / Containerd.NAMESPACE
    return subprocess.run([containerd.binary, "--root", str(root), *args], env={},
                          capture_output=True, text=True, timeout=20, check=False)


# --- ctr run ----------------------------------------------------------------------------------

def test_run_exit_code_and_output(containerd: Containerd) -> None:
    result = containerd.ctr(*containerd.run_args(
        "--rm", IMAGE, new_id("run"), "sh", "-c",
        "echo out; echo err >&2; ls /proc/$$/fd; exit 3"))
    assert result.returncode == 3, result
    lines = result.stdout.split()
    assert lines[0] == "out", result
    assert lines[1:] == ["0", "1", "2"], result  # stdio only: nothing the shim had open
    assert "err" in result.stderr, result


def test_run_stdin(containerd: Containerd) -> None:
    result = containerd.ctr(*containerd.run_args("--rm", IMAGE, new_id("stdin"), "sh", "-c",
                                                 "read line; echo got:$line; read line; "
                                                 "echo then:$line"),
                            input="hello\nsecond line\n")
    assert result.returncode == 0, result
    assert result.stdout == "got:hello\nthen:second line\n", result


def test_run_tty(containerd: Containerd) -> None:
    code, screen = run_in_pty(containerd.ctr_argv(*containerd.run_args(
        "--rm", "--tty", IMAGE, new_id("tty"), "sh", "-c",
        "tty; test -t 0 && echo stdin-tty; read word; echo got:$word; exit 5")),
        containerd.env, cwd=containerd.base, input=b"typed\r")
    assert code == 5, screen
    lines = screen.splitlines()
    assert "/dev/pts/0" in lines, screen
    assert "stdin-tty" in lines, screen
    assert "got:typed" in screen, screen


def test_missing_program(containerd: Containerd) -> None:
    """The shim reads the runtime's error from log.json (--log-format json) into its own."""
    result = containerd.ctr(*containerd.run_args("--rm", IMAGE, new_id("missing"),
                                                 "no-such-program"))
    assert result.returncode != 0, result
    assert "executable file not found in $PATH" in result.stderr, result
    result = containerd.ctr(*containerd.run_args("--rm", IMAGE, new_id("noexec"),
                                                 "/etc/passwd"))
    assert result.returncode != 0, result
    assert "permission denied" in result.stderr, result


def test_read_only_rootfs_and_capabilities(containerd: Containerd) -> None:
    result = containerd.ok(*containerd.run_args(
        "--rm", "--read-only", "--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_SYS_ADMIN",
        "--cwd", "/etc", IMAGE, new_id("settings"), "sh", "-c",
        "touch /x 2>/dev/null || echo root-ro; pwd; grep -E 'Cap(Eff|Bnd)' /proc/self/status"))
    lines = result.stdout.splitlines()
    assert lines[:2] == ["root-ro", "/etc"], result
    caps = {line.split(":")[0]: int(line.split()[1], 16) for line in lines[2:]}
    assert caps["CapEff"] == caps["CapBnd"], result
    assert caps["CapEff"] & (1 << 21), result  # CAP_SYS_ADMIN added
    assert not caps["CapEff"] & (1 << 0), result  # CAP_CHOWN dropped
    assert caps["CapEff"] & (1 << 5), result  # CAP_KILL, one of containerd's defaults


# --- a detached task --------------------------------------------------------------------------

def test_detached_task_exec_kill_delete(containerd: Containerd) -> None:
    container_id = new_id("task")
    log = start_detached(containerd, container_id, "sh", "-c", f"echo started; {SERVE}")
    pid, _ = containerd.tasks()[container_id]
    assert pid_alive(pid)
    # The pid file named the workload's process, a child of the shim (the subreaper that
    # called create).
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh", b"-c"]
    assert Path(f"/proc/{parent_of(pid)}/comm").read_text().startswith("containerd-shim")
    wait_for(lambda: log.exists() and "started" in log.read_text(),
             what="the task's output in its log")

    result = containerd.ctr(*containerd.exec_args(
        container_id, "sh", "-c", f"echo exec:$$; cat /proc/1/cmdline; {LINGER}; exit 4"))
    assert result.returncode == 4, result
    assert result.stdout.startswith("exec:"), result
    assert "while" in result.stdout, result  # the task's own PID namespace

    result = containerd.ctr(*containerd.exec_args(container_id, "sh", "-c", f"cat; {LINGER}"),
                            input="through exec\n")
    assert result.returncode == 0, result
    assert result.stdout == "through exec\n", result

    missing = containerd.ctr(*containerd.exec_args(container_id, "no-such-program"))
    assert missing.returncode != 0, missing
    assert "executable file not found in $PATH" in missing.stderr, missing

    code, screen = run_in_pty(containerd.ctr_argv(*containerd.exec_args(
        container_id, "sh", "-c", "tty; exit 6", options=["--tty"])), containerd.env,
        cwd=containerd.base)
    assert code == 6, screen
    assert "/dev/pts/" in screen, screen

    assert pid in task_pids(containerd, container_id)

    containerd.ok("task", "kill", container_id)  # SIGTERM: the trap ends it
    wait_for(lambda: containerd.task_status(container_id) == "STOPPED",
             what="the task to stop after SIGTERM")
    assert not pid_alive(pid)
    # The runtime, asked directly as the shim would, knows the container stopped.
    state = runtime_cli(containerd, "state", container_id)
    assert state.returncode == 0, state
    assert json.loads(state.stdout)["status"] == "stopped", state
    log = containerd.base / f"{container_id}-runtime.json"
    not_running = runtime_cli(containerd, "--log", str(log), "--log-format", "json", "kill",
                              container_id, "KILL")
    assert not_running.returncode == 1, not_running
    assert "container not running" in not_running.stderr, not_running
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error", entry
    assert entry["msg"] == "container not running", entry
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                        entry["time"]), entry

    containerd.ok("task", "delete", container_id)
    containerd.ok("container", "delete", container_id)
    assert container_id not in containerd.tasks()
    gone = runtime_cli(containerd, "state", container_id)
    assert gone.returncode != 0, gone


def test_kill_all(containerd: Containerd) -> None:
    container_id = new_id("killall")
    start_detached(containerd, container_id, "sh", "-c",
                   "sleep 300 & sleep 300 & trap '' TERM; wait")
    containerd.ok(*containerd.exec_args(container_id, "sleep", "300", options=["--detach"]))
    wait_for(lambda: len(task_pids(containerd, container_id)) == 4,
             what="the task's four processes")
    pids = task_pids(containerd, container_id)
    containerd.ok("task", "kill", "--all", "--signal", "SIGKILL", container_id)
    wait_for(lambda: containerd.task_status(container_id) == "STOPPED",
             what="the task to stop after kill --all")
    wait_for(lambda: not any(pid_alive(pid) for pid in pids),
             what="every process of the task to be gone")
    containerd.ok("task", "delete", container_id)


def test_shared_pid_namespace_children_killed_on_exit(containerd: Containerd) -> None:
    """A task that joins another's PID namespace (a Kubernetes pod with a shared PID
    namespace): when its init exits, the shim kills what it left in its cgroup with
    ``kill --all ID SIGKILL`` on the now stopped container, which runc allows."""
    sandbox = new_id("sandbox")
    start_detached(containerd, sandbox, "sh", "-c", SERVE)
    sandbox_pid, _ = containerd.tasks()[sandbox]
    member = new_id("member")
    mark = f"OCIRT_MEMBER={os.urandom(4).hex()}"
    containerd.ok(*containerd.run_args(
        "-d", "--null-io", "--with-ns", f"pid:/proc/{sandbox_pid}/ns/pid", "--env", mark,
        IMAGE, member, "sh", "-c", "sleep 300 & sleep 0.3"))
    wait_for(lambda: containerd.task_status(member) == "STOPPED",
             what="the member task's init to exit")

    def left() -> list[int]:
        return marked_processes(mark)

    try:
        wait_for(lambda: not left(), 5, what="the member's background sleep to be killed")
    finally:
        for pid in left():
            os.kill(pid, 9)
    containerd.ok("task", "delete", member)


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def marked_processes(mark: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and pid_alive(int(name)):
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark.encode() in environ:
                found.append(int(name))
    return found


def test_pause_resume(containerd: Containerd) -> None:
    container_id = new_id("pause")
    start_detached(containerd, container_id, "sh", "-c", COUNTER)
    pid, _ = containerd.tasks()[container_id]

    def count() -> int:
        result = containerd.ctr(*containerd.exec_args(container_id, "sh", "-c",
                                                      f"cat /tmp/count; {LINGER}"))
        text = result.stdout.strip()
        return int(text) if result.returncode == 0 and text.isdigit() else 0

    wait_for(count, what="the task to start counting")
    containerd.ok("task", "pause", container_id)
    assert containerd.task_status(container_id) == "PAUSED"
    assert freezer_state(pid) == "FROZEN"
    containerd.ok("task", "resume", container_id)
    assert containerd.task_status(container_id) == "RUNNING"
    assert freezer_state(pid) == "THAWED"
    first = count()
    wait_for(lambda: count() > first, what="the task to run again after resume")


def test_memory_limit(containerd: Containerd) -> None:
    container_id = new_id("memory")
    start_detached(containerd, container_id, "sh", "-c", SERVE,
                   options=("--memory-limit", str(64 * 1024 * 1024)))
    pid, _ = containerd.tasks()[container_id]
    assert memory_limit(pid) == 64 * 1024 * 1024
    # (containerd 1.6's ctr has no `task update`: podman drives the runtime's update.)


def memory_limit(pid: int) -> int:
    """The memory limit of the cgroup of ``pid``, read on the host (containerd's default spec
    mounts no cgroup filesystem in the container)."""
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if CGROUP_V1 and "memory" in controllers.split(","):
                return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
                           .read_text())
            if not CGROUP_V1 and controllers == "":
                return int(Path(f"/sys/fs/cgroup{path}/memory.max").read_text())
    raise AssertionError(f"no memory cgroup for {pid}")


# --- state root -----------------------------------------------------------------------------

def test_long_state_root(containerd: Containerd) -> None:
    """A runtime root plus a 64-character ID (what Kubernetes uses) well over unix sockets'
    108-byte limit: a socket in the state directory must not be bound by its full path."""
    root = containerd.runc_root() / ("long-" * 8).rstrip("-")
    container_id = os.urandom(32).hex()
    assert len(str(root / Containerd.NAMESPACE / container_id / "start.sock")) > 107
    args = containerd.run_args("--rm", IMAGE, container_id, "sh", "-c", "echo long; exit 3")
    args[args.index("--runc-root") + 1] = str(root)
    result = containerd.ctr(*args)
    assert result.returncode == 3, result
    assert result.stdout == "long\n", result
