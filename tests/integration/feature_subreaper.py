"""A subreaper caller for the integration tests: a runtime call that detaches a process, run
by a child that is a subreaper, which checks it became the process's parent, reads the
process from outside, optionally signals it, and reaps it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from .support import wait_for

_SUBREAPER = r"""
import ctypes, json, os, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
argv, pid_file, log, signum = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(log, "wb") as out:
    rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out).returncode
result = {"rc": rc, "me": os.getpid()}
if rc == 0:
    pid = int(open(pid_file).read())
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    result.update(pid=pid, ppid=int(status["PPid"]), nspid=status["NSpid"].split(),
                  ns={n: os.stat(f"/proc/{pid}/ns/{n}").st_ino
                      for n in os.listdir(f"/proc/{pid}/ns") if not n.endswith("_for_children")},
                  cgroup=open(f"/proc/{pid}/cgroup").read())
    open(pid_file + ".seen", "w").close()  # the test may now let the process end
    if signum:  # once the process has its handler (SigCgt), the signal lets it exit
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            caught = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))["SigCgt"]
            if int(caught, 16) & (1 << (signum - 1)):
                break
            time.sleep(0.01)
        os.kill(pid, signum)
    _, wstatus = os.waitpid(pid, 0)  # ours to reap: ECHILD if it were not our child
    result["exit"] = os.waitstatus_to_exitcode(wstatus)
print(json.dumps(result))
"""


class SubreaperCall:
    """``argv`` (a runtime call that detaches a process and writes ``pid_file``) run by a child
    that is a subreaper: it checks it became the process's parent, optionally sends it
    ``signum``, and reaps it. ``finish`` returns {"rc", "me", "pid", "ppid", "nspid", "ns",
    "cgroup", "exit"} (read while the process ran) and the runtime's output. ``seen`` tells
    when those readings are taken and the process may end."""

    def __init__(self, argv, pid_file, env, tmp_path, signum=0):
        self.log = tmp_path / "subreaper.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SUBREAPER, json.dumps(argv), str(pid_file), str(self.log),
             str(signum)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        self.seen_file = Path(f"{pid_file}.seen")

    def seen(self):
        """Wait until the subreaper has read what it reports about the process."""
        wait_for(lambda: self.seen_file.exists() or self.proc.poll() is not None,
                 what="the subreaper to look at the process")

    def finish(self, timeout=10):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        assert self.proc.returncode == 0, (out, err)
        return json.loads(out), self.log.read_text()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_as_subreaper(argv, pid_file, env, tmp_path, signum=signal.SIGUSR1):
    call = SubreaperCall(argv, pid_file, env, tmp_path, signum)
    try:
        return call.finish()
    finally:
        call.close()
