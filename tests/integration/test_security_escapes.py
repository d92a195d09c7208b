"""The known container-escape classes, each tried from the container's side.

* CVE-2021-30465 class: a mount destination or process.cwd is resolved inside the rootfs,
  through symlinks that point out of it, and a symlink swapped in while the runtime works cannot
  redirect a mount onto the host.
* CVE-2019-5736 class: the runtime's own process is non-dumpable while it sets the container up
  (its /proc/PID/exe cannot be read or opened for writing from inside), and exec'ing a program
  whose interpreter is /proc/self/exe must not hand the container the host's runtime binary.
* CVE-2024-21626 (a leaked directory fd as the cwd) is in test_security_fds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .security_support import with_sectool
from .support import IS_OCIRT, ROOT_MARKS, RUNTIME_CMD, RUNTIME_NAME, wait_for

pytestmark = ROOT_MARKS


@pytest.fixture
def tool_rootfs(private_rootfs):
    with_sectool(private_rootfs)
    return private_rootfs


def climbing(target: Path) -> str:
    """A relative symlink target that climbs far above any root, then names ``target``."""
    return "../" * 30 + str(target).lstrip("/")


def test_mount_destination_symlinks_stay_in_the_rootfs(rt, make_config, bundle, private_rootfs,
                                                       tmp_path):
    host = tmp_path / "host-dir"
    host.mkdir()
    (private_rootfs / "mnt" / "rel").symlink_to(climbing(host))
    (private_rootfs / "mnt" / "abs").symlink_to(host)
    config = make_config(["sh", "-c", "cat /proc/self/mounts"], rootfs_path=private_rootfs)
    config["mounts"] += [
        {"destination": "/mnt/rel/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/mnt/abs/sub2/deeper", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/mnt/abs/file", "type": "bind", "source": "/etc/hostname",
         "options": ["bind", "ro"]},
    ]
    cid = rt.new_id("mnt")
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    assert list(host.iterdir()) == [], "the runtime created something in a host directory"
    mounted = {line.split()[1] for line in result.stdout.splitlines()}
    # Resolved as the kernel does inside the container: the host path, under the rootfs.
    assert {f"{host}/sub", f"{host}/sub2/deeper", f"{host}/file"} <= mounted, result.stdout
    assert (private_rootfs / str(host).lstrip("/") / "sub").is_dir()


def test_cwd_symlink_stays_in_the_rootfs(rt, make_config, bundle, tool_rootfs, tmp_path):
    host = tmp_path / "host-dir"
    host.mkdir()
    (tool_rootfs / "work").symlink_to(climbing(host))
    config = make_config(["/sectool", "cwd"], rootfs_path=tool_rootfs,
                         process__cwd="/work/made-by-runtime")
    cid = rt.new_id("cwd")
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert list(host.iterdir()) == []
    if result.returncode != 0 and not IS_OCIRT:
        return  # runc 1.1 refuses the config ("mkdir /work: file exists"): safe as well
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"{host}/made-by-runtime"  # the in-rootfs copy of the path
    assert (tool_rootfs / str(host).lstrip("/") / "made-by-runtime").is_dir()


@pytest.mark.xfail(RUNTIME_NAME == "runc", strict=False,
                   reason="runc before 1.1.14 creates the directory on the host "
                          "(CVE-2024-45310); this test catches runc 1.1.5 about one run in four")
def test_symlink_swapped_during_setup_cannot_redirect_a_mount(rt, make_config, bundle,
                                                              private_rootfs, tmp_path):
    """A thread flips /mnt/race between a directory and a symlink to a host directory while
    containers are built with a mount under it: the host directory must stay empty."""
    host = tmp_path / "host-dir"
    host.mkdir()
    race = private_rootfs / "mnt" / "race"  # a directory, or a symlink to the host dir
    parked_dir = private_rootfs / "mnt" / "parked-dir"
    parked_link = private_rootfs / "mnt" / "parked-link"
    race.mkdir()
    parked_link.symlink_to(host)
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            try:
                os.rename(race, parked_dir)
                os.rename(parked_link, race)
                time.sleep(0.0005)
                os.rename(race, parked_link)
                os.rename(parked_dir, race)
            except OSError:
                pass

    config = make_config(["true"], rootfs_path=private_rootfs, out=False)
    config["mounts"].append({"destination": "/mnt/race/inner/x", "type": "tmpfs",
                             "source": "tmpfs"})
    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    try:
        for _ in range(12):
            cid = rt.new_id("race")
            rt("run", "--bundle", str(bundle(config, name=cid)), cid)
    finally:
        stop.set()
        thread.join(5)
    assert list(host.iterdir()) == [], "a swapped symlink redirected the runtime to the host"


def test_runtime_is_not_dumpable_while_it_sets_up(rt, make_config, bundle, tool_rootfs, out_dir):
    """A startContainer hook runs in the container while the runtime's init is still PID 1:
    its /proc entries must be closed to the container (no exe, environ or fd links), and its
    exe cannot be opened for writing."""
    probe = ("{ readlink /proc/1/exe || echo EXE-DENIED; "
             "cat /proc/1/environ >/dev/null 2>&1 && echo ENVIRON-READ || echo ENVIRON-DENIED; "
             "readlink /proc/1/fd/0 >/dev/null 2>&1 && echo FD-READ || echo FD-DENIED; "
             "/sectool openw /proc/1/exe; } >/out/probe 2>&1")
    config = make_config(["true"], rootfs_path=tool_rootfs)
    config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", probe]}]}
    cid = rt.new_id("dump")
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    lines = (out_dir / "probe").read_text().splitlines()
    assert lines[-1].startswith("errno="), lines  # /proc/1/exe cannot be opened for writing
    if IS_OCIRT:
        # ocirt's init is non-dumpable. (runc 1.1's init is dumpable here; its exe is a sealed
        # memfd copy of runc, which cannot be written: "text file busy".)
        assert lines[-1].startswith("errno=13"), lines
        assert "EXE-DENIED" in lines and "ENVIRON-DENIED" in lines and "FD-DENIED" in lines, lines


def runtime_binary() -> Path:
    """The file the runtime's processes execute: the Python interpreter for ocirt."""
    first = RUNTIME_CMD[0]
    found = shutil.which(first) or first
    return Path(os.path.realpath(sys.executable if IS_OCIRT and first == sys.executable
                                 else found))


def add_dynamic_loader(rootfs: Path, binary: Path) -> None:
    """Copy ``binary``'s shared libraries and loader into ``rootfs``, as a distribution image
    would have them, so the kernel can start ``binary`` inside the container."""
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    for word in ldd.stdout.split():
        if word.startswith("/") and os.path.exists(word):
            target = rootfs / word.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(word), target)


def test_exec_of_proc_self_exe_does_not_expose_the_runtime_binary(rt, make_config, bundle,
                                                                  tool_rootfs, tmp_path,
                                                                  out_dir):
    """CVE-2019-5736: the container's program is ``#!/proc/self/exe``, so the kernel runs
    whatever binary the runtime's process is at its execve. A process in the same pid
    namespace looks for a process whose /proc/PID/exe is the host's runtime binary: finding
    one means the container holds a writable fd to it (the runtime could be overwritten)."""
    binary = runtime_binary()
    st = binary.stat()
    add_dynamic_loader(tool_rootfs, binary)
    evil = tool_rootfs / "evil"
    evil.write_text("#!/proc/self/exe\n")
    evil.chmod(0o755)

    watcher = make_config(["sh", "-c", f"/sectool watch-exe {st.st_dev} {st.st_ino} 8 "
                                       ">/out/watch 2>&1"], rootfs_path=tool_rootfs)
    watch_id = rt.new_id("watch")
    rt.ok("run", "--detach", "--bundle", str(bundle(watcher, name=watch_id)), watch_id)
    wait_for(lambda: (out_dir / "watch").exists(), 5, what="the watcher to start")
    pid = rt.state(watch_id)["pid"]

    victim = make_config(["/evil"], rootfs_path=tool_rootfs)
    victim["linux"]["namespaces"] = [
        {"type": "pid", "path": f"/proc/{pid}/ns/pid"} if ns["type"] == "pid" else ns
        for ns in victim["linux"]["namespaces"]]
    for _ in range(5):
        victim_id = rt.new_id("victim")
        rt("run", "--bundle", str(bundle(victim, name=victim_id)), victim_id)
        time.sleep(0.2)
        if "FOUND" in (out_dir / "watch").read_text():
            break
    wait_for(lambda: "FOUND" in (out_dir / "watch").read_text(), 10,
             what="the watcher to finish")
    report = (out_dir / "watch").read_text()
    assert "NOT FOUND" in report or "readonly-mount=1" in report, (
        f"a container process could open the host's runtime binary {binary}: {report}")


def test_state_of_a_created_container_names_no_host_secrets(rt, make_config, bundle):
    """Smoke check of the state document (read by managers, not the container)."""
    config = make_config(["true"])
    cid = rt.new_id("state")
    rt.create(cid, bundle(config))
    doc = rt.state(cid)
    assert json.dumps(doc).find("RUNTIME_SECRET") < 0
