"""Helpers for the manager tests: ocirt (or runc) driven by podman+conmon and by containerd.

This module: the runtime binaries, processes, mounts and cgroups a test leaves, and the
image archives; the managers themselves are in ``podman`` and ``containerd``.

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
