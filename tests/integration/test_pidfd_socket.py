"""``--pidfd-socket`` on create, run and exec (runc 1.2): the runtime connects to a unix socket
and sends a pidfd of the container's process (init for create/run, the new process for exec)
with SCM_RIGHTS, named ``standard`` or ``setns`` as runc names them. The listener here checks
the pidfd names the right process (/proc/self/fdinfo: ``Pid:``), then uses it: poll(2) on it
says when the process exits, pidfd_send_signal(2) kills exactly that process.

Debian's runc 1.1.5 has no --pidfd-socket: these tests are ocirt's alone.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest
from testkit import accept_fd

from .cgroup_support import SLOW
from .support import ROOT_MARKS, assert_nothing_left, pid_alive, requires_ocirt, wait_for

pytestmark = [*ROOT_MARKS, requires_ocirt]


class PidfdListener:
    """The manager's side: a listening unix socket; ``receive`` accepts the runtime's
    connection (queued by the kernel meanwhile) and returns (payload, pidfd)."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="ocirt-pidfd-")  # short: 107-byte limit
        self.path = os.path.join(self.directory, "pidfd.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.fds: list[int] = []

    def receive(self, timeout: float = 3.0) -> tuple[str, int]:
        data, pidfd = accept_fd(self.sock, timeout, "pidfd socket")
        self.fds.append(pidfd)
        return data.decode(), pidfd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def listener():
    keeper = PidfdListener()
    yield keeper
    keeper.close()


def pid_of_pidfd(fd: int) -> int:
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("Pid:"):
            return int(line.split()[1])
    raise AssertionError(f"fd {fd} is not a pidfd")


def exited(fd: int, timeout: float) -> bool:
    """poll(2) on a pidfd: readable once the process has exited."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def test_create_sends_the_pidfd_of_init(rt, make_config, bundle, listener):
    cid = rt.new_id("pidfd")
    rt.ok("create", "--pidfd-socket", listener.path, "--bundle",
          str(bundle(make_config(["sleep", "100"]))), cid)
    name, fd = listener.receive()
    init = rt.state(cid)["pid"]
    assert name == "standard" and pid_of_pidfd(fd) == init
    rt.ok("start", cid)
    assert not exited(fd, 0.2)
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    assert exited(fd, 5 * SLOW), "poll on the pidfd: the process did not exit"
    rt.wait_status(cid, "stopped")


def test_run_detached_sends_it_too(rt, make_config, bundle, listener):
    cid = rt.new_id("pidfd")
    rt.ok("run", "-d", "--pidfd-socket", listener.path, "--bundle",
          str(bundle(make_config(["sh", "-c", "sleep 0.3"]))), cid)
    name, fd = listener.receive()
    assert name == "standard" and pid_of_pidfd(fd) == rt.state(cid)["pid"]
    assert exited(fd, 5 * SLOW), "the program's own exit shows on the pidfd"


def test_exec_sends_the_pidfd_of_the_new_process(rt, make_config, bundle, listener, tmp_path):
    cid = rt.new_id("pidfd")
    rt.ok("run", "-d", "--bundle", str(bundle(make_config(["sleep", "100"]))), cid)
    pid_file = tmp_path / "exec.pid"
    rt.ok("exec", "-d", "--pidfd-socket", listener.path, "--pid-file", str(pid_file), cid,
          "sleep", "100")
    name, fd = listener.receive()
    pid = int(pid_file.read_text())
    assert name == "setns" and pid_of_pidfd(fd) == pid
    signal.pidfd_send_signal(fd, signal.SIGTERM)
    assert exited(fd, 5 * SLOW)
    wait_for(lambda: not pid_alive(pid), 5 * SLOW, what="the exec'd process to go")
    assert rt.status(cid) == "running", "only the exec'd process got the signal"


def test_foreground_exec_sends_it_before_waiting(rt, make_config, bundle, listener):
    cid = rt.new_id("pidfd")
    rt.ok("run", "-d", "--bundle", str(bundle(make_config(["sleep", "100"]))), cid)
    rt.ok("exec", "--pidfd-socket", listener.path, cid, "true")
    name, fd = listener.receive()
    assert name == "setns" and exited(fd, 0)


@pytest.mark.parametrize("verb", ["create", "exec"])
def test_a_socket_nobody_listens_on_fails_cleanly(rt, make_config, bundle, tmp_path, verb):
    missing = str(tmp_path / "nobody.sock")
    cid = rt.new_id("pidfd")
    if verb == "exec":
        rt.ok("run", "-d", "--bundle", str(bundle(make_config(["sleep", "100"]))), cid)
        result = rt.fails("exec", "--pidfd-socket", missing, cid, "true")
        assert rt.ok("ps", "--format", "json", cid).stdout.strip() == \
            f"[{rt.state(cid)['pid']}]", "the failed exec left a process"
    else:
        result = rt.fails("create", "--pidfd-socket", missing, "--bundle",
                          str(bundle(make_config(["true"]))), cid)
        assert_nothing_left(rt, cid)
    assert f"pidfd socket {missing}" in result.stderr, result
