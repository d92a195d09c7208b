"""Paths swapped for symlinks while the runtime works: one race test per class.

A second process plays the neighbour that shares the container's rootfs, its ``/dev`` or a
volume (another container, or one of this container's own processes from an earlier run): it
swaps a path the runtime is about to use for a symlink, in a tight loop, while the runtime
creates containers again and again. Each try either fails with one clean line or gives a
container whose set-up is exactly what the config asked for; the host is never touched:

* masked files covered by something that is not the null device (CVE-2025-31133),
* the pty bound somewhere other than /dev/console (CVE-2025-52565),
* a sysctl written into a host file (CVE-2025-52881),
* a mount or its directories made outside the rootfs (CVE-2021-30465, CVE-2024-45310), or
  its options (``ro``) applied to another mount,
* /dev nodes and symlinks made, or files unlinked, in a volume (CVE-2026-41579),
* a cwd outside the container's root (CVE-2024-21626).

Each test races for ``OCIRT_RACE_SECONDS`` (default 3); ``scripts/stress-paths.sh`` runs them
for longer. The attacker is a forked process, ended by its pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .feature_terminals import ConsoleListener
from .support import IS_OCIRT, ROOT_MARKS, bind_mount

pytestmark = ROOT_MARKS

SECONDS = float(os.environ.get("OCIRT_RACE_SECONDS", "3"))
_libc = ctypes.CDLL(None, use_errno=True)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): the two names swap atomically (dir <-> symlink)."""
    _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)


def replace_with_symlink(path: Path, target: str) -> None:
    """``path`` becomes a symlink to ``target`` in one rename."""
    tmp = path.with_name(f".{path.name}.evil")
    try:
        tmp.symlink_to(target)
    except FileExistsError:
        pass
    os.rename(tmp, path)


def attacker(loop: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            while True:
                try:
                    loop()
                except OSError:
                    pass
        finally:
            os._exit(0)
    return pid


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def race(rt: Any, bundle_dir: Path, loop: Callable[[], None],
         check: Callable[[str, int], list[str]], seconds: float = SECONDS,
         create_args: Callable[[], tuple[list[str], Any]] | None = None) -> dict[str, int]:
    """Create containers for ``seconds`` while ``loop`` runs in another process; ``check``
    returns what is wrong with a created container (its id and pid)."""
    counts = {"created": 0, "refused": 0}
    problems: list[str] = []
    pid = attacker(loop)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not problems:
            cid = rt.new_id("race")
            extra, context = create_args() if create_args else ([], None)
            try:
                result = rt("create", *extra, "--bundle", str(bundle_dir), cid, timeout=20)
                if result.returncode == 0:
                    counts["created"] += 1
                    if context is not None:
                        context.receive()
                    problems += check(cid, rt.state(cid)["pid"])
                else:
                    counts["refused"] += 1
                    if os.environ.get("OCIRT_RACE_DEBUG"):
                        print(result.stderr.strip())
                    if IS_OCIRT:
                        assert "Traceback" not in result.stderr, result
                        assert len(result.stderr.strip().splitlines()) == 1, result
            finally:
                if context is not None:
                    context.close()
                rt("delete", "--force", cid)
    finally:
        stop(pid)
    print(f"race: {counts}")  # shown with -s: how often the attacker won the create
    assert not problems, f"after {counts}: {problems[0]}"
    return counts


def dev_in_rootfs(config: dict[str, Any], keep_pts: bool = True) -> dict[str, Any]:
    """The config with /dev the rootfs's own directory (shared with the neighbour)."""
    drop = {"/dev"} | (set() if keep_pts else {"/dev/pts", "/dev/shm", "/dev/mqueue"})
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in drop]
    config["root"]["readonly"] = False  # /dev/console is made in the rootfs's own /dev
    return config


def test_masked_paths_only_ever_get_the_null_device(rt, make_config, bundle, private_rootfs):
    dev = private_rootfs / "dev"
    config = dev_in_rootfs(make_config(["true"], rootfs_path=private_rootfs))

    def check(cid: str, pid: int) -> list[str]:
        wrong = []
        for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list"):
            if not os.path.exists(path):  # this kernel has none: nothing to mask
                continue
            try:
                st = os.stat(f"/proc/{pid}/root{path}")
            except OSError as err:
                wrong.append(f"{path} is masked by something that cannot be stat'ed: {err}")
                continue
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                wrong.append(f"{path} is masked by a mode {st.st_mode:o} file, not /dev/null")
        return wrong

    race(rt, bundle(config), lambda: replace_with_symlink(dev / "null",
                                                          "/proc/sys/kernel/ostype"), check)


def test_console_is_bound_on_dev_console_only(rt, make_config, bundle, private_rootfs,
                                             tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "canary").write_text("canary\n")
    dev = private_rootfs / "dev"
    config = dev_in_rootfs(make_config(["sh"], rootfs_path=private_rootfs,
                                       process__terminal=True))
    config["mounts"].append(bind_mount(volume, "/vol"))
    link = dev / ".console.evil"

    def loop() -> None:
        if not (dev / "console").exists() and not (dev / "console").is_symlink():
            (dev / "console").touch()  # the runtime made none yet, or it was taken away
        if not link.is_symlink() and not link.exists():
            link.symlink_to("/vol/canary")
        for _ in range(1000):
            exchange(dev / "console", link)  # one syscall per swap: as fast as it gets

    def check(cid: str, pid: int) -> list[str]:
        wrong = []
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            # (a dentry the runtime made and checked may be renamed inside /dev afterwards:
            # harmless; the pty on a symlink's target is not)
            if fstype == "devpts" and not fields[4].startswith("/dev/"):
                wrong.append(f"the pty is bound on {fields[4]}: {line}")
        if stat.S_ISCHR(os.stat(f"/proc/{pid}/root/vol/canary").st_mode):
            wrong.append("the volume's file is covered by the pty")
        return wrong

    def args() -> tuple[list[str], Any]:
        listener = ConsoleListener()
        return ["--console-socket", listener.path], listener

    race(rt, bundle(config), loop, check, seconds=max(SECONDS, 8), create_args=args)
    assert (volume / "canary").read_text() == "canary\n"


def test_sysctl_is_never_written_to_a_mounted_host_file(rt, make_config, bundle,
                                                        private_rootfs, tmp_path):
    canary = tmp_path / "ip_forward"
    canary.write_text("canary\n")
    mnt = private_rootfs / "mnt"
    (mnt / "x").mkdir(parents=True)
    (mnt / "y").symlink_to("/proc/sys/net/ipv4")
    config = make_config(["true"], rootfs_path=private_rootfs)
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    config["mounts"].append(bind_mount(canary, "/mnt/x/ip_forward"))

    def check(cid: str, pid: int) -> list[str]:
        text = canary.read_text()
        return [] if text == "canary\n" else [f"the sysctl wrote {text!r} into a host file"]

    race(rt, bundle(config), lambda: exchange(mnt / "x", mnt / "y"), check)


def test_mount_directories_are_never_made_outside_the_rootfs(rt, make_config, bundle,
                                                            private_rootfs, tmp_path):
    host = tmp_path / "host-dir"
    host.mkdir()
    mnt = private_rootfs / "mnt"
    (mnt / "a").mkdir(parents=True)
    (mnt / "b").symlink_to("../" * 30 + str(host).lstrip("/"))
    config = make_config(["true"], rootfs_path=private_rootfs)
    config["mounts"] += [{"destination": "/mnt/a/one/two", "type": "tmpfs", "source": "tmpfs"},
                         bind_mount("/etc/hostname", "/mnt/a/file", "ro")]

    def check(cid: str, pid: int) -> list[str]:
        return [f"made on the host: {sorted(os.listdir(host))}"] if os.listdir(host) else []

    race(rt, bundle(config), lambda: exchange(mnt / "a", mnt / "b"), check)
    assert os.listdir(host) == []


def test_read_only_bind_stays_read_only(rt, make_config, bundle, private_rootfs, tmp_path):
    """The options of a bind (``ro``) land on the bind itself, not on whatever the
    destination names a moment later (here: another mount the neighbour points it at)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mnt = private_rootfs / "mnt"
    (mnt / "a").mkdir(parents=True)
    (mnt / "b").symlink_to("c")
    config = make_config(["true"], rootfs_path=private_rootfs)
    config["mounts"] += [{"destination": "/mnt/c/vol", "type": "tmpfs", "source": "tmpfs"},
                         bind_mount(volume, "/mnt/a/vol", "ro")]

    def check(cid: str, pid: int) -> list[str]:
        wrong = []
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[3].endswith("/volume") and "ro" not in fields[5].split(","):
                wrong.append(f"the read-only volume is writable: {line}")
        return wrong

    race(rt, bundle(config), lambda: exchange(mnt / "a", mnt / "b"), check)


def test_dev_setup_never_touches_a_volume(rt, make_config, bundle, private_rootfs, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "null").write_text("canary\n")
    config = dev_in_rootfs(make_config(["true"], rootfs_path=private_rootfs), keep_pts=False)
    config["mounts"].append(bind_mount(volume, "/vol"))
    (private_rootfs / "dev2").symlink_to("/vol")

    def check(cid: str, pid: int) -> list[str]:
        names = sorted(os.listdir(volume))
        if names != ["null"] or (volume / "null").read_text() != "canary\n":
            return [f"the volume was changed by the /dev set-up: {names}"]
        return []

    race(rt, bundle(config), lambda: exchange(private_rootfs / "dev", private_rootfs / "dev2"),
         check)
    assert sorted(os.listdir(volume)) == ["null"]
    assert (volume / "null").read_text() == "canary\n"


@pytest.mark.parametrize("target", ["/proc/self/fd/{n}", "/proc/self/root/../../.."])
def test_cwd_stays_in_the_root(rt, make_config, bundle, private_rootfs, target):
    (private_rootfs / "work").mkdir()
    counter = iter(range(10**9))
    config = make_config(["true"], rootfs_path=private_rootfs, process__cwd="/work")
    root_dev = os.stat(private_rootfs).st_dev

    def loop() -> None:
        link = private_rootfs / "work2"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target.format(n=3 + next(counter) % 8))
        exchange(private_rootfs / "work", link)
        exchange(private_rootfs / "work", link)

    def check(cid: str, pid: int) -> list[str]:
        st = os.stat(f"/proc/{pid}/cwd")
        if st.st_dev != root_dev or not stat.S_ISDIR(st.st_mode):
            return [f"the cwd ({os.readlink(f'/proc/{pid}/cwd')}) is not in the rootfs"]
        return []

    race(rt, bundle(config), loop, check)


def test_mounts_inside_proc_follow_runcs_rule(rt, make_config, bundle, tmp_path):
    canary = tmp_path / "file"
    canary.write_text("canary\n")
    for destination in ("/proc/sys/net/ipv4/ip_forward", "/proc/self/attr/exec"):
        config = make_config(["true"])
        config["mounts"].append(bind_mount(canary, destination))
        result = rt("run", "--bundle", str(bundle(config)), rt.new_id("proc"))
        assert result.returncode != 0, result
        if IS_OCIRT:
            assert "cannot be mounted because it is inside /proc" in result.stderr, result
    config = make_config(["true"])
    config["mounts"].append({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"})
    result = rt("run", "--bundle", str(bundle(config)), rt.new_id("proc"))
    assert result.returncode != 0, result
    if IS_OCIRT:
        assert "not of type proc" in result.stderr, result
    # the files lxcfs emulates may be covered (runc allows them)
    config = make_config(["cat", "/proc/uptime"])
    config["mounts"].append(bind_mount(canary, "/proc/uptime"))
    result = rt("run", "--bundle", str(bundle(config)), rt.new_id("proc"))
    assert result.returncode == 0, result
    assert result.stdout == "canary\n"
    assert canary.read_text() == "canary\n"
