"""Fixtures of the manager tests: podman (with conmon) and containerd (with the runc shim)
driving the runtime under test, which is parametrized: ``ocirt`` and ``runc``.

The managers come from Debian (``install.sh``, run once per session; set
OCIRT_MANAGERS_NO_INSTALL=1 to only use what is installed). Each manager gets a private
directory under /tmp with its own configuration, storage, state and (for containerd) daemon;
the session removes it all at the end. After every test its containers are removed and the host
is checked: no process carrying the session's token (manager helper, runtime or container), no
runtime state left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from .containerd import Containerd
from .helpers import (
    IMAGE,
    INSTALL_SCRIPT,
    cgroup_parents,
    oci_archive,
    processes_with_token,
    remove_cgroup_tree,
    rootfs_tar,
    runtime_binary,
    unmount_all_under,
    wait_for,
)
from .podman import Podman

RUNTIMES = ("ocirt", "runc")


def _install(manager: str) -> None:
    """Install ``manager`` with install.sh, or skip the tests that need it, saying why."""
    if os.geteuid() != 0:
        pytest.skip("the manager tests need root")
    if os.environ.get("OCIRT_MANAGERS_NO_INSTALL"):
        check = {"podman": ("podman", "conmon"),
                 "containerd": ("containerd", "ctr", "containerd-shim-runc-v2")}[manager]
        missing = [tool for tool in check if not shutil.which(tool)]
        if missing:
            pytest.skip(f"{', '.join(missing)} not installed (OCIRT_MANAGERS_NO_INSTALL is set)")
        return
    result = subprocess.run(["bash", str(INSTALL_SCRIPT), manager], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        pytest.skip(f"{manager} is not installed and tests/managers/install.sh could not "
                    f"install it: {(result.stdout + result.stderr).strip()[-800:]}")


@pytest.fixture(scope="session")
def token() -> str:
    return f"{os.getpid()}-{os.urandom(6).hex()}"


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime the manager is told to use: ``ocirt`` or ``runc`` (which proves the test)."""
    name: str = request.param
    if runtime_binary(name) is None:
        hint = " (run scripts/setup.sh)" if name == "ocirt" else ""
        pytest.skip(f"{name} is not installed{hint}")
    return name


def _private_dir(prefix: str) -> Path:
    # Short: conmon's and containerd's unix sockets live below it, and so do the runtimes'
    # state roots: as short as /run/runc plus a namespace, like a manager's own defaults. (A
    # long root is tested on its own: test_containerd.py::test_long_state_root.)
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _remove_private_dir(base: Path) -> None:
    unmount_all_under(base)
    shutil.rmtree(base, ignore_errors=True)


def _kill(pids: Iterable[int]) -> None:
    """SIGKILL processes that carry the session's token (so they are the tests' own)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _force_delete(runtime: list[str], ids: list[str]) -> None:
    """What a test left in a runtime's state: gone, so that the next test starts clean."""
    for container_id in ids:
        subprocess.run([*runtime, "delete", "--force", container_id], capture_output=True,
                       timeout=30, check=False)


def _remove_empty_dirs(*paths: str) -> None:
    """What a manager made outside our directories, if the session made it (and it is empty)."""
    for path in paths:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _remove_new_cgroup_parents(name: str, existed: bool) -> None:
    """A manager's parent cgroup (podman's libpod_parent, containerd's namespace), if the
    session made it."""
    if not existed:
        for path in cgroup_parents(name):
            remove_cgroup_tree(path)


# --- podman -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def podman_session(busybox_rootfs: Path, token: str) -> Iterator[Podman]:
    _install("podman")
    parent_existed = bool(cgroup_parents("libpod_parent"))
    # `podman import` keeps a blob-info cache in /var/lib/containers/cache whatever the
    # configuration: the session removes it when it made it.
    var_dir_existed = os.path.exists("/var/lib/containers")
    base = _private_dir("ocirt-podman-")
    state = _private_dir("ocpm-")
    runtimes = {name: binary for name in RUNTIMES if (binary := runtime_binary(name))}
    podman = Podman(base, state, f"{token}-podman", runtimes)
    podman.runtime = next(iter(runtimes), "runc")
    try:
        archive = rootfs_tar(busybox_rootfs, base / "rootfs.tar")
        podman.ok("import", "--change", 'CMD ["/bin/sh"]', str(archive), IMAGE, timeout=120)
        archive.unlink()
        yield podman
    finally:
        podman("rm", "--all", "--force", "--time", "0", timeout=60)
        podman("rmi", "--all", "--force", timeout=60)
        _remove_private_dir(base)
        _remove_private_dir(state)
        _remove_new_cgroup_parents("libpod_parent", parent_existed)
        if not var_dir_existed:
            shutil.rmtree("/var/lib/containers", ignore_errors=True)


@pytest.fixture
def podman(podman_session: Podman, runtime: str) -> Iterator[Podman]:
    """podman using ``runtime``; every container is removed after the test, and nothing may
    be left: no conmon, runtime or container process, no runtime state."""
    podman_session.runtime = runtime
    yield podman_session
    problems = podman_session.cleanup()
    try:
        wait_for(lambda: not processes_with_token(podman_session.token), 10,
                 what="podman's, conmon's, the runtime's and the containers' processes to end")
    except pytest.fail.Exception:
        stray = processes_with_token(podman_session.token)
        problems.append(f"processes left behind: {stray}")
        _kill(pid for pid, _ in stray)
    root = podman_session.root(runtime)
    left = sorted(os.listdir(root)) if root.is_dir() else []
    if left:
        problems.append(f"{runtime} state left in {root}: {left}")
        _force_delete([str(podman_session.base / "bin" / runtime)], left)
    if problems:
        pytest.fail("not clean after the test:\n  " + "\n  ".join(problems))


# --- containerd -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def containerd_session(busybox_rootfs: Path, token: str) -> Iterator[Containerd]:
    _install("containerd")
    parent_existed = bool(cgroup_parents(Containerd.NAMESPACE))
    # The shim keeps its sockets in /run/containerd/s whatever the configuration says.
    run_dir_existed = os.path.exists("/run/containerd")
    base = _private_dir("ocirt-ctrd-")
    daemon = Containerd(base, f"{token}-containerd")
    try:
        daemon.start()
        archive = oci_archive(busybox_rootfs, base / "image.tar", IMAGE)
        daemon.ok("image", "import", str(archive), timeout=120)
        archive.unlink()
        yield daemon
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.cleanup()
            daemon.ctr("image", "rm", IMAGE)
        daemon.stop()
        # A shim the daemon could not stop: it is ours (it carries our token).
        _kill(pid for pid, _ in processes_with_token(daemon.token))
        _remove_private_dir(base)
        _remove_new_cgroup_parents(Containerd.NAMESPACE, parent_existed)
        if not run_dir_existed:
            _remove_empty_dirs("/run/containerd/s", "/run/containerd/fifo", "/run/containerd")


@pytest.fixture
def containerd(containerd_session: Containerd, runtime: str) -> Iterator[Containerd]:
    """ctr against the private containerd, with the runc shim calling ``runtime``."""
    containerd_session.runtime = runtime
    binary = runtime_binary(runtime)
    assert binary is not None
    containerd_session.binary = binary
    yield containerd_session
    problems = containerd_session.cleanup()
    daemon_pid = containerd_session.process.pid if containerd_session.process else 0

    def strays() -> list[tuple[int, str]]:
        return processes_with_token(containerd_session.token, exclude=[daemon_pid])

    try:
        wait_for(lambda: not strays(), 10,
                 what="the shims', the runtime's and the containers' processes to end")
    except pytest.fail.Exception:
        problems.append(f"processes left behind: {strays()}")
        _kill(pid for pid, _ in strays())
    root = containerd_session.runc_root() / Containerd.NAMESPACE
    left = sorted(os.listdir(root)) if root.is_dir() else []
    if left:
        problems.append(f"{runtime} state left in {root}: {left}")
        _force_delete([binary, "--root", str(root)], left)
    if problems:
        pytest.fail("not clean after the test:\n  " + "\n  ".join(problems))
