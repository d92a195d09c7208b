"""Helpers for the manager tests: ocirt (or runc) driven by podman+conmon and by containerd.

The runtime under test is a *binary on disk*, as a manager sees it: ``/usr/local/bin/ocirt``
(``$OCIRT_MANAGERS_BINARY`` to point elsewhere) or the host's runc, which proves each test right.

Every manager runs with a private configuration, storage and state under one temporary
directory, with an almost empty environment (no PATH, no HOME: what a daemon or conmon may
give the runtime), and with a token in its environment and in every container's, so that a
process left behind by the manager, the runtime or a container can be found afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import select
import shlex
import shutil
import signal
import struct
import subprocess
import tarfile
import termios
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import testkit

REPO, BUSYBOX_ROOTFS = testkit.REPO, testkit.BUSYBOX_ROOTFS
pid_alive = testkit.pid_alive
INSTALL_SCRIPT = Path(__file__).with_name("install.sh")
TOKEN_VAR = "OCIRT_MANAGER_TEST"
OCIRT_BINARY = os.environ.get("OCIRT_MANAGERS_BINARY", "/usr/local/bin/ocirt")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE = "localhost/ocirt-busybox:test"
# What podman gives root in the tests' containers (containers.conf default_capabilities).
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
                "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")


def runtime_binary(name: str) -> str | None:
    """The binary a manager is told to run for ``name`` (ocirt or runc), if it is there."""
    if name == "ocirt":
        return OCIRT_BINARY if os.access(OCIRT_BINARY, os.X_OK) else None
    return shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")


# --- processes --------------------------------------------------------------------------------

class Result:
    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str,
                 seconds: float) -> None:
        self.argv, self.returncode = list(argv), returncode
        self.stdout, self.stderr, self.seconds = stdout, stderr, seconds

    def __repr__(self) -> str:
        return (f"<{shlex.join(self.argv)}: exit {self.returncode} after {self.seconds:.1f}s\n"
                f"stdout: {self.stdout[-3000:]!r}\nstderr: {self.stderr[-3000:]!r}>")


def run(argv: Sequence[str], env: dict[str, str], *, cwd: Path, timeout: float = 30,
        input: str | None = None, pass_fds: Iterable[int] = ()) -> Result:
    """Run a manager command to completion, its output in pipes, in ``cwd``.

    ``cwd`` is the manager's private directory, never the caller's: conmon drops files (``oom``
    when a container is OOM-killed) into the directory podman runs in, and tests never write
    into the checkout.

    Pipes, not files, on purpose: a runtime that keeps its caller's stdout or stderr open after
    ``create`` returns (runc does not) makes the manager command hang, and the timeout says so.
    """
    started = time.monotonic()
    try:
        proc = subprocess.run(list(argv), env=env, input=input, timeout=timeout, check=False,
                              capture_output=True, text=True, pass_fds=tuple(pass_fds), cwd=cwd,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{shlex.join(argv)} did not finish within {timeout}s "
                    f"(stdout so far: {err.stdout!r}, stderr: {err.stderr!r})")
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def run_in_pty(argv: Sequence[str], env: dict[str, str], *, cwd: Path, timeout: float = 30,
               input: bytes = b"", size: tuple[int, int] = (33, 77)) -> tuple[int, str]:
    """Run ``argv`` in ``cwd`` (as ``run``) with a new pty as its controlling terminal and
    stdio, as from a shell.

    Returns (exit status, everything written to the terminal, without carriage returns).
    """
    master, slave = os.openpty()
    fcntl_winsize = struct.pack("HHHH", size[0], size[1], 0, 0)
    import fcntl

    fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl_winsize)

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(list(argv), env=env, stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=controlling_terminal, close_fds=True, cwd=cwd)
    os.close(slave)
    if input:
        os.write(master, input)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                pytest.fail(f"{shlex.join(argv)} in a pty did not finish within {timeout}s; "
                            f"the terminal showed {bytes(output)!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as err:  # EIO: every slave fd is closed
                    if err.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break
                output += data
            elif proc.poll() is not None:
                # The command is done; take what is left without waiting for other holders.
                while select.select([master], [], [], 0.1)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    output += data
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
    return code, output.decode(errors="replace").replace("\r", "")


def processes_with_token(token: str, exclude: Iterable[int] = ()) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose environment holds our token."""
    needle = f"{TOKEN_VAR}={token}".encode()
    skip = {os.getpid(), *exclude}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
            if needle not in environ or not pid_alive(int(name)):
                continue
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((int(name), cmdline))
    return found


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
             ) -> Any:
    """``testkit.wait_for`` with a manager's pace: 10 s, polled every 50 ms."""
    return testkit.wait_for(predicate, timeout, 0.05, what)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in our mount namespace, deepest first."""
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all_under(path: Path) -> list[str]:
    left = mounts_under(path)
    for point in left:
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    return left


def cgroup_parents(name: str) -> list[Path]:
    """The directories called ``name`` at the top of each cgroup hierarchy (v1 or v2)."""
    top = Path("/sys/fs/cgroup")
    found = [top / name] if (top / name).is_dir() else []
    found += [path / name for path in top.iterdir()
              if path.is_dir() and not path.is_symlink() and (path / name).is_dir()]
    return found


def remove_cgroup_tree(path: Path) -> None:
    """rmdir ``path`` and the cgroups below it, deepest first (only empty ones go)."""
    for root, dirs, _ in os.walk(path, topdown=False):
        for name in dirs:
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def freezer_state(pid: int) -> str:
    """The v1 freezer state (THAWED, FREEZING, FROZEN) of the cgroup holding ``pid``."""
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "freezer" in controllers.split(","):
                return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
    unified = Path("/proc") / str(pid) / "cgroup"
    raise AssertionError(f"no freezer hierarchy in {unified.read_text()!r}")


# --- images -----------------------------------------------------------------------------------

def rootfs_tar(rootfs: Path, destination: Path) -> Path:
    """A plain tar of ``rootfs`` (owners and modes kept), for ``podman import``."""
    with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(rootfs / name, arcname=name)
    return destination


def oci_archive(rootfs: Path, destination: Path, reference: str) -> Path:
    """An OCI image layout in a tar (image-layout.md): one layer holding ``rootfs``, a config
    and a manifest named ``reference``, for ``ctr image import``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(rootfs / name, arcname=name)
    layer_bytes = layer.getvalue()
    with tarfile.open(destination, "w") as out:

        def blob(data: bytes, media_type: str) -> dict[str, Any]:
            digest = hashlib.sha256(data).hexdigest()
            _add(out, f"blobs/sha256/{digest}", data)
            return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

        layer_desc = blob(layer_bytes, "application/vnd.oci.image.layer.v1.tar")
        config = {
            "architecture": _oci_arch(), "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": [f"PATH={CONTAINER_PATH}"],
                       "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = blob(json.dumps(config).encode(),
                           "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = blob(json.dumps(manifest).encode(),
                             "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["annotations"] = {"io.containerd.image.name": reference,
                                        "org.opencontainers.image.ref.name": reference}
        _add(out, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add(out, "index.json",
             json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode())
    return destination


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _oci_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


# --- podman -----------------------------------------------------------------------------------

CONTAINERS_CONF = """\
# Written by tests/managers: a private podman for the tests.
[containers]
# Podman would ask for RLIMIT_NOFILE/NPROC above this host's hard limits, which root without
# CAP_SYS_RESOURCE cannot raise: keep the caller's limits.
default_ulimits = []
netns = "none"
# Pinned, so that the tests do not depend on the host's containers.conf.
default_capabilities = [{capabilities}]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# Container locks in tmp_dir, not in /dev/shm/libpod_lock (shared with the host's podman).
lock_type = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{base}/tmp"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "ocirt"]
# The tests' own commands, not one the host may have set up.
conmon_path = ["/usr/bin/conmon", "/usr/libexec/podman/conmon"]

[engine.runtimes]
{runtimes}

[network]
network_config_dir = "{base}/net"
"""

STORAGE_CONF = """\
[storage]
driver = "{driver}"
graphroot = "{base}/storage"
runroot = "{base}/run"
"""

REGISTRIES_CONF = """\
# No registry is reachable: images come from podman import.
unqualified-search-registries = []
"""

RUNTIME_WRAPPER = """\
#!/bin/sh
# The runtime with a private state root. conmon's exit command (`podman container cleanup`)
# does not pass podman's --runtime-flag on, so the root must come from the runtime command.
exec {binary} --root {root} "$@"
"""


def storage_driver() -> str:
    chosen = os.environ.get("OCIRT_MANAGERS_STORAGE_DRIVER")
    if chosen:
        return chosen
    with open("/proc/filesystems") as handle:
        return "overlay" if any(line.split()[-1] == "overlay" for line in handle) else "vfs"


class Podman:
    """podman with private storage, config and runtime state under ``base``."""

    def __init__(self, base: Path, state: Path, token: str, runtimes: dict[str, str]) -> None:
        self.base = base
        self.state = state  # the runtimes' roots: short, as under /run (see SHORT_STATE)
        self.token = token
        self.runtimes = runtimes  # name -> binary
        self.runtime = ""  # chosen per test
        for name in ("tmp", "net", "bin"):
            (base / name).mkdir(parents=True, exist_ok=True)
        lines = []
        for name, binary in runtimes.items():
            wrapper = base / "bin" / name
            wrapper.write_text(RUNTIME_WRAPPER.format(binary=shlex.quote(binary),
                                                      root=shlex.quote(str(self.root(name)))))
            wrapper.chmod(0o755)
            lines.append(f'{name} = ["{wrapper}"]')
        (base / "containers.conf").write_text(
            CONTAINERS_CONF.format(base=base, runtimes="\n".join(lines),
                                   capabilities=", ".join(f'"{c}"' for c in DEFAULT_CAPS)))
        (base / "storage.conf").write_text(STORAGE_CONF.format(base=base,
                                                               driver=storage_driver()))
        (base / "registries.conf").write_text(REGISTRIES_CONF)
        self.env = {
            "CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(base / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
            TOKEN_VAR: token,
        }

    def root(self, runtime: str) -> Path:
        return self.state / runtime

    def argv(self, *args: str) -> list[str]:
        if args and args[0] in ("run", "create"):
            assert "--network" in args or any(a.startswith("--network=") for a in args), \
                "podman's default network changes the host's iptables: pass --network none"
        return ["podman", "--runtime", self.runtime, "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", *args]

    def __call__(self, *args: str, timeout: float = 30, input: str | None = None,
                 pass_fds: Iterable[int] = ()) -> Result:
        return run(self.argv(*args), self.env, cwd=self.base, timeout=timeout, input=input,
                   pass_fds=pass_fds)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.returncode == 0, result
        return result

    def run_args(self, *args: str) -> list[str]:
        """``run`` with the tests' fixed options: no network, the token in the container."""
        return ["run", "--network", "none", "-e", f"{TOKEN_VAR}={self.token}", *args]

    def inspect(self, name: str, template: str) -> str:
        return self.ok("inspect", "--format", template, name).stdout.strip()

    def cleanup(self) -> list[str]:
        problems = []
        result = self("rm", "--all", "--force", "--time", "0", timeout=60)
        if result.returncode != 0:
            problems.append(f"podman rm --all --force failed: {result!r}")
        left = self("ps", "--all", "--quiet").stdout.split()
        if left:
            problems.append(f"podman still lists containers: {left}")
        return problems


# --- containerd -------------------------------------------------------------------------------

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

