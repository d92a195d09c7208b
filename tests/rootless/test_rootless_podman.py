"""Rootless podman driving the runtime: podman run by the unprivileged test user, with its
subordinate ranges (newuidmap/newgidmap), vfs storage, ``--network none`` and the cgroupfs
manager (no systemd here), ``--runtime`` ocirt (the user's copy) and runc (which proves each
test). podman calls the runtime as uid 0 of its own user namespace.

The session installs podman (tests/managers/install.sh), keeps every file of podman's under
the session's directory (config, storage, run root, events), and at the end removes the
containers and image, ends podman's pause process (it carries the session's token) and the
directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from managers.helpers import INSTALL_SCRIPT, rootfs_tar, run_in_pty
from testkit import proc_status

from .support import (
    IS_OCIRT,
    RUNTIME_NAME,
    RootlessUser,
    Workspace,
    as_user,
    processes_with_token,
    run_as_user,
    wait_for,
)

# The session makes the unprivileged user: it needs root (the tests then run as that user).
pytestmark = pytest.mark.root

IMAGE = "localhost/ocirt-rootless:test"
RUNTIMES = ("ocirt", "runc") if IS_OCIRT else (RUNTIME_NAME,)
CONTAINERS_CONF = """\
# Written by tests/rootless: a private rootless podman for the tests.
[containers]
netns = "none"
log_driver = "k8s-file"
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
runtime_supports_json = ["crun", "runc", "ocirt"]
conmon_path = ["/usr/bin/conmon", "/usr/libexec/podman/conmon"]

[engine.runtimes]
{runtimes}
"""
STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{base}/storage"
runroot = "{base}/run"
"""


class UserPodman:
    """podman as the test user, with private config and storage under ``base``."""

    def __init__(self, user: RootlessUser, space: Workspace, token: str) -> None:
        self.user, self.space, self.token = user, space, token
        self.base = space.new_dir("podman")
        runtimes = {"ocirt": str(space.launcher), "runc": "/usr/sbin/runc"}
        if not IS_OCIRT:
            runtimes = {RUNTIME_NAME: shlex.split(os.environ["OCIRT_TEST_RUNTIME"])[0]}
        lines = "\n".join(f'{name} = ["{path}"]' for name, path in runtimes.items())
        for name, text in (("containers.conf", CONTAINERS_CONF), ("storage.conf", STORAGE_CONF),
                           ("registries.conf", "unqualified-search-registries = []\n")):
            (self.base / name).write_text(text.format(base=self.base, runtimes=lines))
        self.env = {"CONTAINERS_CONF": str(self.base / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": str(self.base / "registries.conf")}
        self.runtime = RUNTIMES[0]

    def argv(self, *args: str) -> list[str]:
        if args and args[0] in ("run", "create"):
            assert "--network" in args, "pass --network none"
        podman = ["podman", "--runtime", self.runtime, "--cgroup-manager", "cgroupfs",
                  "--events-backend", "file", *args]
        return as_user(self.user, self.space, podman, self.token, self.env)

    def __call__(self, *args: str, timeout: float = 60, stdin: object = subprocess.DEVNULL):
        podman = ["podman", "--runtime", self.runtime, "--cgroup-manager", "cgroupfs",
                  "--events-backend", "file", *args]
        return run_as_user(self.user, self.space, podman, self.token, timeout=timeout,
                           stdin=stdin, extra_env=self.env)

    def ok(self, *args: str, **kwargs: object):
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, result
        return result


def _install_podman() -> None:
    if os.environ.get("OCIRT_MANAGERS_NO_INSTALL"):
        if not (shutil.which("podman") and shutil.which("conmon")):
            pytest.skip("podman or conmon not installed (OCIRT_MANAGERS_NO_INSTALL is set)")
        return
    done = subprocess.run(["bash", str(INSTALL_SCRIPT), "podman"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:  # as tests/managers does: say why, do not fail the suite
        pytest.skip(f"podman is not installed and tests/managers/install.sh could not "
                    f"install it: {(done.stdout + done.stderr).strip()[-800:]}")


@pytest.fixture(scope="session")
def podman_session(rootless_user: RootlessUser, workspace: Workspace, busybox_rootfs: Path
                   ) -> Iterator[UserPodman]:
    _install_podman()
    token = f"podman-{os.urandom(6).hex()}"
    podman = UserPodman(rootless_user, workspace, token)
    archive = rootfs_tar(busybox_rootfs, podman.base / "rootfs.tar")
    archive.chmod(0o644)
    try:
        podman.ok("import", "--change", 'CMD ["/bin/sh"]', str(archive), IMAGE, timeout=180)
        archive.unlink()
        yield podman
    finally:
        podman("rm", "--all", "--force", "--time", "0")
        podman("rmi", "--all", "--force")
        for pid in processes_with_token(token):  # podman's pause process, and any stray
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(params=RUNTIMES)
def podman(request: pytest.FixtureRequest, podman_session: UserPodman) -> Iterator[UserPodman]:
    podman_session.runtime = request.param
    yield podman_session
    problems = []
    result = podman_session("rm", "--all", "--force", "--time", "0")
    if result.returncode != 0:
        problems.append(f"podman rm --all --force: {result!r}")
    left = podman_session("ps", "--all", "--quiet").stdout.split()
    if left:
        problems.append(f"podman still lists {left}")
    root = podman_session.space.runtime_dir / request.param
    state = sorted(os.listdir(root)) if root.is_dir() else []
    if state:
        problems.append(f"{request.param} state left in {root}: {state}")
    if problems:
        pytest.fail("not clean after the test:\n  " + "\n  ".join(problems))


def run_args(*args: str) -> list[str]:
    return ["run", "--network", "none", *args]


def test_run_as_the_users_root_with_subordinate_ids(podman, rootless_user):
    result = podman.ok(*run_args("--rm", IMAGE, "sh", "-c", "id -u; cat /proc/self/uid_map"))
    fields = result.stdout.split()
    assert fields[0] == "0", result
    # podman's user namespace: the user's own uid as 0, its subordinate range after it
    assert fields[1:4] == ["0", str(rootless_user.uid), "1"], result
    assert fields[4:7] == ["1", str(rootless_user.subuid), "65536"], result


def test_exit_codes(podman):
    assert podman(*run_args("--rm", IMAGE, "sh", "-c", "exit 3")).returncode == 3
    missing = podman(*run_args("--rm", IMAGE, "/no/such/program"))
    assert missing.returncode == 127, missing


def test_interactive(podman):
    with tempfile.TemporaryFile() as stdin:
        stdin.write(b"typed line\n")
        stdin.seek(0)
        result = podman(*run_args("--rm", "-i", IMAGE, "sh", "-c",
                                  "read line; echo got:$line"), stdin=stdin)
    assert result.returncode == 0, result
    assert "got:typed line" in result.stdout, result


def test_tty(podman):
    argv = podman.argv(*run_args("--rm", "-t", IMAGE, "sh", "-c",
                                 "tty; stty size; exit 4"))
    code, output = run_in_pty(argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                              cwd=podman.base, timeout=60,
                              size=(30, 90))
    assert code == 4, output
    assert "/dev/pts/0" in output, output
    assert "30 90" in output, output


def test_detached_exec_stop_rm(podman, rootless_user):
    name = f"d-{os.urandom(3).hex()}"
    podman.ok(*run_args("-d", "--name", name, IMAGE, "sh", "-c",
                        "trap 'exit 0' TERM; while :; do sleep 0.1; done"))
    pid = int(podman.ok("inspect", "--format", "{{.State.Pid}}", name).stdout)
    assert proc_status(pid)["Uid"].split()[0] == str(rootless_user.uid)
    inside = podman.ok("exec", name, "sh", "-c", "echo in:$(id -u); exit 0").stdout
    assert "in:0" in inside
    assert podman("exec", name, "sh", "-c", "exit 6").returncode == 6
    podman.ok("stop", "--time", "5", name)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, what="the container to end")
    assert podman.ok("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    podman.ok("rm", name)


def test_user_option(podman, rootless_user):
    name = f"u-{os.urandom(3).hex()}"
    podman.ok(*run_args("-d", "--name", name, "--user", "1000:1000", IMAGE, "sleep", "60"))
    pid = int(podman.ok("inspect", "--format", "{{.State.Pid}}", name).stdout)
    status = proc_status(pid)
    # uid 1000 in podman's namespace is subordinate id 999 past the start of the range
    assert status["Uid"].split()[0] == str(rootless_user.subuid + 999), status["Uid"]
    assert status["Gid"].split()[0] == str(rootless_user.subgid + 999), status["Gid"]
    assert podman.ok("exec", name, "id", "-u").stdout.strip() == "1000"
    podman.ok("rm", "--force", "--time", "0", name)
