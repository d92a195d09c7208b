"""Fixtures of the root integration tests (see ``support`` for the runtime under test).

Each test gets a runtime with a private ``--root``, a host directory bound on ``/out`` in its
containers, and a config factory. Afterwards every container ID the test used is deleted with
``--force`` and the host is checked: the same mounts as before (under /tmp only those that
involve the tests' own directories: others use this machine too), no cgroup named after those
IDs, no process left that carries the test's token in its environment.

Run: ``python -m pytest -q tests/integration`` as root; ``OCIRT_TEST_RUNTIME=runc`` (or any
command) points the same tests at another runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import (
    REPO,
    Runtime,
    apply_overrides,
    base_config,
    bind_mount,
    cgroup_dirs_named,
    cgroup_names,
    mount_points,
    mount_table,
    mounts_that_count,
    processes_with_token,
    write_bundle,
)

# Mount points the tests' shared rootfs needs, made once so no test writes into it.
_ROOTFS_DIRS = ("out", "mnt", "mnt/bind", "mnt/ro", "mnt/opts", "mnt/tmpfs", "home/user")


@pytest.fixture(scope="session")
def rootfs(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the busybox rootfs for the session, with the mount points tests use.

    Configs mount it read-only; a test that must change a rootfs uses ``private_rootfs``.
    """
    path = tmp_path_factory.mktemp("shared") / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path)], check=True)
    for name in _ROOTFS_DIRS:
        (path / name).mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def private_rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A rootfs copy of this test's own (small: one binary and symlinks)."""
    path = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path)], check=True)
    for name in _ROOTFS_DIRS:
        (path / name).mkdir(parents=True, exist_ok=True)
    return path


class HostGuard:
    def __init__(self, token: str) -> None:
        self.token = token
        self.runtimes: list[Runtime] = []


@pytest.fixture(autouse=True)
def host_guard(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[HostGuard]:
    """Check after the test (and after its containers were force-deleted) that the host is
    as it was: its mounts, no cgroup named after the test's IDs, no process with its token.

    Mounts: every mount of the host is compared, except that under /tmp, where others on this
    shared machine mount their own things, only those in or showing the tests' directories
    count (this session's pytest base temp, the test's state roots, the checkout).
    """
    before = mount_table()
    guard = HostGuard(f"{os.getpid()}-{os.urandom(6).hex()}")
    yield guard
    problems = []
    roots = [f"{runtime.root.parent}/" for runtime in guard.runtimes]
    ours = (f"{tmp_path_factory.getbasetemp()}/", f"{REPO}/", *roots)
    after = mounts_that_count(mount_table(), ours)
    counted_before = mounts_that_count(before, ours)
    added, removed = sorted(after - counted_before), sorted(counted_before - after)
    if added:
        problems.append(f"mounts added on the host: {added}")
        # Undo only what sits in this test's own directories.
        own = (f"{tmp_path}/", *roots)
        for point, _ in reversed(added):
            if (point + "/").startswith(own):
                subprocess.run(["umount", "-l", point], check=False)
    if removed:
        problems.append(f"mounts gone from the host: {removed}")
    ids = [cid for runtime in guard.runtimes for cid in runtime.ids]
    names = set().union(*(cgroup_names(cid) for cid in ids)) if ids else set()
    leftover = cgroup_dirs_named(names)
    if leftover:
        problems.append(f"cgroups left behind: {leftover}")
        # Remove them: named after this test's own container IDs, so ours (deepest first;
        # rmdir refuses a cgroup that still has processes or children).
        for directory in sorted(leftover, key=len, reverse=True):
            try:
                os.rmdir(directory)
            except OSError as err:
                problems.append(f"could not remove {directory}: {err.strerror}")
    stray = processes_with_token(guard.token)
    if stray:
        problems.append(f"processes left behind (runtime or container): {stray}")
    if problems:
        pytest.fail("host not clean after the test:\n  " + "\n  ".join(problems))


@pytest.fixture
def rt(host_guard: HostGuard) -> Iterator[Runtime]:
    """The runtime under test, with a private state root; its containers are force-deleted
    after the test, even when it fails."""
    # Short: the root holds unix sockets, whose paths may not exceed 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="ocirt-it-"))
    runtime = Runtime(root / "state", host_guard.token)
    host_guard.runtimes.append(runtime)
    yield runtime
    problems = runtime.cleanup()
    if problems:  # keep the state: what is left can still be found and deleted by hand
        pytest.fail("\n".join([*problems, f"(state root kept: {runtime.root})"]))
    if not any((point + "/").startswith(f"{root}/") for point in mount_points()):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A host directory that containers see on /out (writable by any user)."""
    path = tmp_path / "out"
    path.mkdir()
    path.chmod(0o777)
    return path


MakeConfig = Callable[..., dict[str, Any]]


@pytest.fixture
def make_config(rootfs: Path, out_dir: Path, host_guard: HostGuard) -> MakeConfig:
    """``make_config(args, out=True, rootfs=None, **overrides)``: a config like ``runc spec``
    (terminal false, read-only root) running ``args``; ``out`` binds the test's ``out_dir``
    on /out; overrides are ``process__cwd="/tmp"`` style (None removes a key)."""

    def make(args: list[str], out: bool = True, rootfs_path: Path | None = None,
             **overrides: Any) -> dict[str, Any]:
        config = base_config(rootfs_path or rootfs, args, host_guard.token)
        if out:
            config["mounts"].append(bind_mount(out_dir, "/out"))
        return apply_overrides(config, overrides)

    return make


@pytest.fixture
def bundle(tmp_path: Path) -> Callable[..., Path]:
    """``bundle(config, name="bundle")``: a bundle directory holding that config.json."""

    def make(config: dict[str, Any] | str | bytes, name: str = "bundle") -> Path:
        return write_bundle(tmp_path / name, config)

    return make
