"""A private containerd for the manager tests: no CRI, no system paths, its root, state and
socket under one temporary directory, driven through ctr with the runtime under test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .helpers import TOKEN_VAR, Result, run

CONTAINERD_CONFIG = """\
# Written by tests/managers: a private containerd for the tests (no CRI, no system paths).
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[debug]
  level = "debug"
"""


class Containerd:
    """A private containerd daemon and ``ctr`` bound to it and to one runtime."""

    NAMESPACE = "ocirt-tests"

    def __init__(self, base: Path, token: str) -> None:
        self.base = base
        self.token = token
        self.address = str(base / "containerd.sock")
        self.log_path = base / "containerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.runtime = ""
        self.binary = ""
        self.exec_count = 0
        # No PATH, no HOME: what a daemon started by a bare service manager may pass on.
        self.env = {TOKEN_VAR: token}

    def start(self, timeout: float = 20) -> None:
        (self.base / "config.toml").write_text(CONTAINERD_CONFIG.format(base=self.base))
        daemon = shutil.which("containerd") or "/usr/bin/containerd"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [daemon, "--config", str(self.base / "config.toml")], env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=self.base)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited ({self.process.returncode}): "
                                   f"{self.log_tail()}")
            if os.path.exists(self.address):
                probe = self.ctr("version", timeout=10)
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not answer within {timeout}s: "
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def runc_root(self) -> Path:
        return self.base / "runtime-state" / self.runtime

    def ctr_argv(self, *args: str) -> list[str]:
        return [shutil.which("ctr") or "/usr/bin/ctr", "--address", self.address,
                "--namespace", self.NAMESPACE, *args]

    def ctr(self, *args: str, timeout: float = 30, input: str | None = None,
            pass_fds: Iterable[int] = ()) -> Result:
        return run(self.ctr_argv(*args), self.env, cwd=self.base, timeout=timeout,
                   input=input, pass_fds=pass_fds)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self.ctr(*args, **kwargs)
        assert result.returncode == 0, result
        return result

    def runtime_args(self) -> list[str]:
        """``ctr run`` options that make the runc shim call the runtime under test."""
        return ["--runc-binary", self.binary, "--runc-root", str(self.runc_root())]

    def run_args(self, *args: str) -> list[str]:
        """``ctr run`` with the runtime under test, the token in the container, and ctr's IO
        fifos in our directory (ctr leaves some behind, in /run/containerd/fifo by default)."""
        return ["run", *self.runtime_args(), "--fifo-dir", str(self.base / "fifo"),
                "--env", f"{TOKEN_VAR}={self.token}", *args]

    def exec_args(self, container_id: str, *command: str, options: Sequence[str] = ()
                  ) -> list[str]:
        """``ctr task exec`` of ``command`` with a new exec ID."""
        self.exec_count += 1
        exec_id = f"exec-{self.exec_count}-{os.urandom(2).hex()}"
        return ["task", "exec", "--fifo-dir", str(self.base / "fifo"), "--exec-id", exec_id,
                *options, container_id, *command]

    def tasks(self) -> dict[str, tuple[int, str]]:
        """ID -> (pid, status) of the namespace's tasks."""
        found = {}
        for line in self.ok("task", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                found[fields[0]] = (int(fields[1]), fields[2])
        return found

    def task_status(self, container_id: str) -> str:
        return self.tasks().get(container_id, (0, "MISSING"))[1]

    def _stopped_within(self, container_id: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.task_status(container_id) != "STOPPED":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def cleanup(self) -> list[str]:
        """Kill and delete every task, delete every container; return the complaints."""
        problems = []
        for container_id, (_, status) in self.tasks().items():
            if status != "STOPPED":
                self.ctr("task", "kill", "--signal", "SIGKILL", container_id)
                if not self._stopped_within(container_id, 10):
                    problems.append(f"task {container_id} did not stop after SIGKILL")
            result = self.ctr("task", "delete", "--force", container_id)
            if result.returncode != 0:
                problems.append(f"task delete failed: {result!r}")
        for line in self.ok("container", "ls", "--quiet").stdout.split():
            result = self.ctr("container", "delete", line)
            if result.returncode != 0:
                problems.append(f"container delete failed: {result!r}")
        return problems
