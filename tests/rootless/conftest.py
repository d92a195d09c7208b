"""Fixtures of the rootless tests: the runtime run by an unprivileged user the session makes.

The session needs root to make the user (see ``support``); the tests themselves run every
runtime command as that user. After each test every container it used is deleted with
``--force`` as the user, and the host is checked: nothing left in the state root, no process
carrying the test's token, the same mounts as before (under /tmp only those involving the
session's directory: others use this machine too).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import (
    RUNTIME_NAME,
    RootlessUser,
    UserRuntime,
    Workspace,
    install_uidmap,
    mount_table,
    processes_with_token,
    wait_for,
)


@pytest.fixture(scope="session")
def rootless_user() -> Iterator[RootlessUser]:
    if os.geteuid() != 0:
        pytest.skip("the rootless tests need root to make their unprivileged user")
    install_uidmap()
    user = RootlessUser()
    try:
        yield user
    finally:
        user.remove()


@pytest.fixture(scope="session")
def workspace(rootless_user: RootlessUser, busybox_rootfs: Path) -> Iterator[Workspace]:
    space = Workspace(rootless_user, busybox_rootfs)
    try:
        yield space
    finally:
        space.remove()


@pytest.fixture
def token() -> str:
    return os.urandom(8).hex()


def _counted(table: set[tuple[str, str]], base: str) -> set[tuple[str, str]]:
    return {(point, root) for point, root in table
            if not point.startswith("/tmp/") or point.startswith(base)}


@pytest.fixture
def urt(rootless_user: RootlessUser, workspace: Workspace, token: str) -> Iterator[UserRuntime]:
    """The runtime under test as the unprivileged user; checks the host afterwards."""
    before = _counted(mount_table(), str(workspace.base))
    runtime = UserRuntime(rootless_user, workspace, token)
    probe = runtime("--version")
    if probe.returncode != 0:
        pytest.fail(f"{RUNTIME_NAME} cannot run as {rootless_user.uid}: {probe!r}")
    yield runtime
    problems = runtime.cleanup()
    try:
        wait_for(lambda: not processes_with_token(token), 5.0,
                 what="the runtime's and the containers' processes to end")
    except pytest.fail.Exception:
        stray = processes_with_token(token)
        problems.append(f"processes left behind: {stray}")
        for pid in stray:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if runtime.left():
        problems.append(f"state left in {runtime.root}: {runtime.left()}")
    after = _counted(mount_table(), str(workspace.base))
    if after != before:
        problems.append(f"host mounts changed: +{sorted(after - before)} "
                        f"-{sorted(before - after)}")
    if problems:
        pytest.fail("not clean after the test:\n  " + "\n  ".join(problems))
