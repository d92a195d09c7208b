"""A rootless runtime with ``--systemd-cgroup``: the container in a transient scope of the
user's own systemd (user@UID.service), made over the user's bus, as runc does it.

Needs systemd as PID 1 on pure cgroup v2 (the systemd VM lane, scripts/vm/systemd-tests.sh);
skipped elsewhere. The fixture makes the session's user linger (``loginctl enable-linger``), so
that its manager runs with a bus at /run/user/UID/bus, and undoes it if it did it. The runtime
runs as the user from the test's own cgroup, outside the user's subtree, as from a system
service or a login session: systemd must attach the processes (StartTransientUnit's PIDs,
AttachProcessesToUnit for exec). Each test runs with runc too (``OCIRT_TEST_RUNTIME=runc``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import IS_OCIRT, USER, RootlessUser, requires_ocirt, rootless_config, wait_for

pytestmark = pytest.mark.root

CGROUP2 = Path("/sys/fs/cgroup")


def _systemd_on_v2() -> bool:
    try:
        with open("/proc/1/comm") as handle:
            pid1 = handle.read().strip()
    except OSError:
        return False
    return pid1 == "systemd" and (CGROUP2 / "cgroup.controllers").exists()


@pytest.fixture(scope="module")
def user_bus(rootless_user: RootlessUser) -> Iterator[str]:
    """The lingering user's bus address (its manager started for the module if need be)."""
    if not _systemd_on_v2():
        pytest.skip("needs systemd as PID 1 on pure cgroup v2 (the systemd VM lane)")
    bus = Path(f"/run/user/{rootless_user.uid}/bus")
    lingered = Path(f"/var/lib/systemd/linger/{USER}")
    enabled = False
    if not lingered.exists():
        subprocess.run(["loginctl", "enable-linger", USER], check=True,
                       timeout=60)
        enabled = True
    try:
        wait_for(bus.exists, 60.0, what=f"user@{rootless_user.uid}.service's bus {bus}")
        yield f"unix:path={bus}"
    finally:
        if enabled:
            subprocess.run(["loginctl", "disable-linger", USER], timeout=60,
                           check=False)


@pytest.fixture
def surt(urt, user_bus):
    """The runtime as the user, with the user's bus and --systemd-cgroup."""
    urt.env = {"DBUS_SESSION_BUS_ADDRESS": user_bus}
    return urt


def _manager_cgroup(uid: int) -> str:
    return f"/user.slice/user-{uid}.slice/user@{uid}.service"


def _cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            if line.startswith("0::"):
                return line[3:].strip()
    raise AssertionError(f"no cgroup2 line for {pid}")


def _config(surt, rootless_user, args, cgroups_path=None, resources=None):
    config = rootless_config(rootless_user, surt.space.rootfs, args, surt.token)
    if cgroups_path is not None:
        config["linux"]["cgroupsPath"] = cgroups_path
    if resources is not None:
        config["linux"]["resources"] = resources
    return config


def test_scope_under_the_user_manager_with_limits(surt, rootless_user):
    """run -d: the container in user.slice/rl-ID.scope under user@UID.service, its limits
    written there; exec joins the scope; update changes memory.max; delete removes it."""
    cid = surt.new_id("sd")
    resources = {"memory": {"limit": 64 << 20}, "pids": {"limit": 42},
                 "cpu": {"quota": 50000, "period": 100000}}
    config = _config(surt, rootless_user, ["sleep", "60"], f"user.slice:rl:{cid}", resources)
    surt.ok("--systemd-cgroup", "run", "-d", "--bundle", str(surt.bundle(config)), cid)
    pid = surt.state(cid)["pid"]
    cgroup = _cgroup_of(pid)
    assert cgroup == f"{_manager_cgroup(rootless_user.uid)}/user.slice/rl-{cid}.scope", cgroup
    scope = CGROUP2 / cgroup.lstrip("/")
    assert (scope / "memory.max").read_text().strip() == str(64 << 20)
    assert (scope / "pids.max").read_text().strip() == "42"
    assert (scope / "cpu.max").read_text().split() == ["50000", "100000"]
    # The container sees the same limits (a private cgroup namespace is not in this config:
    # its /sys is the host's, bound read-only).
    inside = surt.ok("exec", cid, "cat", f"/sys/fs/cgroup{cgroup}/memory.max").stdout
    assert inside.strip() == str(64 << 20)
    surt.ok("--systemd-cgroup", "update", "--memory", str(32 << 20), cid)
    assert (scope / "memory.max").read_text().strip() == str(32 << 20)
    surt.ok("--systemd-cgroup", "delete", "--force", cid)
    wait_for(lambda: not scope.exists(), 10.0, what=f"{scope} to be removed")


@requires_ocirt
def test_exec_from_outside_lands_in_the_scope(surt, rootless_user):
    """exec run from outside the user's subtree (here the test's own cgroup, as from a system
    service or a login session's scope): the process still lands in the scope, which the user
    may not write from there; systemd attaches it (AttachProcessesToUnit). runc 1.5 does that
    too; runc 1.1.5, the reference on this machine, leaves the process where it was (it writes
    cgroup.procs and ignores the EACCES when rootless)."""
    cid = surt.new_id("sdexec")
    config = _config(surt, rootless_user, ["sleep", "60"], f"user.slice:rl:{cid}",
                     {"pids": {"limit": 20}})
    surt.ok("--systemd-cgroup", "run", "-d", "--bundle", str(surt.bundle(config)), cid)
    cgroup = _cgroup_of(surt.state(cid)["pid"])
    with open("/proc/self/cgroup") as handle:
        own = handle.read().strip()
    assert not own.startswith(f"0::{_manager_cgroup(rootless_user.uid)}"), own
    exec_cgroup = surt.ok("exec", cid, "cat", "/proc/self/cgroup").stdout
    assert exec_cgroup.split() == [f"0::{cgroup}"], exec_cgroup
    procs = (CGROUP2 / cgroup.lstrip("/") / "cgroup.procs").read_text().split()
    assert len(procs) == 1, procs  # the exec'd process has gone; init is alone again
    surt.ok("--systemd-cgroup", "delete", "--force", cid)


def test_default_path_is_user_slice(surt, rootless_user):
    """No cgroupsPath: runc's default for rootless, <runtime>-ID.scope in user.slice."""
    cid = surt.new_id("sddef")
    config = _config(surt, rootless_user, ["sleep", "60"])
    surt.ok("--systemd-cgroup", "run", "-d", "--bundle", str(surt.bundle(config)), cid)
    cgroup = _cgroup_of(surt.state(cid)["pid"])
    prefix = "ocirt" if IS_OCIRT else "runc"
    assert cgroup == (f"{_manager_cgroup(rootless_user.uid)}/user.slice/{prefix}-{cid}.scope"
                      ), cgroup
    surt.ok("--systemd-cgroup", "delete", "--force", cid)
    wait_for(lambda: not (CGROUP2 / cgroup.lstrip("/")).exists(), 10.0,
             what="the scope's cgroup to be removed")


def test_bus_found_in_xdg_runtime_dir(urt, rootless_user, user_bus):
    """Without DBUS_SESSION_BUS_ADDRESS the bus is $XDG_RUNTIME_DIR/bus (the user's
    /run/user/UID here; the state stays in the test's own root, given with --root)."""
    cid = urt.new_id("sdxdg")
    config = _config(urt, rootless_user, ["sleep", "60"], f"user.slice:rl:{cid}",
                     {"memory": {"limit": 48 << 20}})
    root = ("--root", str(urt.root), "--systemd-cgroup")
    urt.env = {"XDG_RUNTIME_DIR": f"/run/user/{rootless_user.uid}"}
    try:
        urt.ok(*root, "run", "-d", "--bundle", str(urt.bundle(config)), cid)
        scope = CGROUP2 / _manager_cgroup(rootless_user.uid).lstrip("/") / "user.slice" / (
            f"rl-{cid}.scope")
        assert (scope / "memory.max").read_text().strip() == str(48 << 20)
        urt.ok(*root, "delete", "--force", cid)
        wait_for(lambda: not scope.exists(), 10.0, what=f"{scope} to be removed")
    finally:
        urt.env = {}


def test_failed_create_leaves_no_unit(surt, rootless_user):
    """A create that fails after the scope was started (no such program) leaves no scope."""
    cid = surt.new_id("sdfail")
    config = _config(surt, rootless_user, ["/no/such/program"], f"user.slice:rl:{cid}",
                     {"memory": {"limit": 64 << 20}})
    surt.fails("--systemd-cgroup", "create", "--bundle", str(surt.bundle(config)), cid)
    scope = CGROUP2 / _manager_cgroup(rootless_user.uid).lstrip("/") / "user.slice" / (
        f"rl-{cid}.scope")
    wait_for(lambda: not scope.exists(), 10.0, what=f"{scope} to be removed")
    assert surt.left() == []


def test_limit_of_an_undelegated_controller(surt, rootless_user):
    """A limit whose controller systemd does not delegate to the user (io: Debian's
    user@.service gets cpu memory pids) fails, leaving nothing; ocirt says which controller
    before it makes anything."""
    delegated = (CGROUP2 / _manager_cgroup(rootless_user.uid).lstrip("/") /
                 "cgroup.controllers").read_text().split()
    if "io" in delegated:
        pytest.skip(f"io is delegated to the user here ({delegated})")
    cid = surt.new_id("sdio")
    config = _config(surt, rootless_user, ["sleep", "60"], f"user.slice:rl:{cid}",
                     {"blockIO": {"weight": 500}})
    result = surt.fails("--systemd-cgroup", "run", "-d", "--bundle",
                        str(surt.bundle(config)), cid)
    if IS_OCIRT:
        assert "io" in result.stderr and "delegated" in result.stderr, result
        assert len(result.stderr.strip().splitlines()) == 1, result
    scope = CGROUP2 / _manager_cgroup(rootless_user.uid).lstrip("/") / "user.slice" / (
        f"rl-{cid}.scope")
    wait_for(lambda: not scope.exists(), 10.0, what=f"{scope} to be removed")


def test_no_user_bus_is_one_clear_line(urt, rootless_user, user_bus):
    """Without DBUS_SESSION_BUS_ADDRESS and with an XDG_RUNTIME_DIR that has no bus, a
    rootless --systemd-cgroup fails at once, leaving nothing."""
    cid = urt.new_id("sdnobus")
    config = _config(urt, rootless_user, ["true"], f"user.slice:rl:{cid}")
    result = urt.fails("--systemd-cgroup", "run", "--bundle", str(urt.bundle(config)), cid)
    if IS_OCIRT:
        assert "no user bus" in result.stderr and "enable-linger" in result.stderr, result
        assert len(result.stderr.strip().splitlines()) == 1, result
    else:
        assert "dbus" in result.stderr.lower(), result
    assert urt.left() == [] or not os.listdir(urt.root)


def test_without_systemd_is_one_clear_line(urt, rootless_user):
    """On a host without systemd running (this development host), a rootless
    --systemd-cgroup fails at once with one line, leaving nothing."""
    if _systemd_on_v2():
        pytest.skip("systemd runs here; the other tests cover it")
    cid = urt.new_id("sdnone")
    config = _config(urt, rootless_user, ["true"], f"user.slice:rl:{cid}")
    result = urt.fails("--systemd-cgroup", "run", "--bundle", str(urt.bundle(config)), cid)
    assert "systemd" in result.stderr, result
    if IS_OCIRT:
        assert "systemd is not running" in result.stderr, result
        assert len(result.stderr.strip().splitlines()) == 1, result
    assert urt.left() == []
