"""No host file descriptor reaches the container: only 0, 1, 2 and what --preserve-fds passes,
however many the caller leaves open (and a leaked directory fd cannot become the cwd)."""

from __future__ import annotations

import os
import shlex

import pytest

from .security_support import run_with_fds, with_sectool
from .support import ROOT_MARKS

pytestmark = ROOT_MARKS


@pytest.fixture
def tool_rootfs(private_rootfs):
    with_sectool(private_rootfs)
    return private_rootfs


def open_fds(tmp_path):
    """A host directory, a host file, both ends of a pipe and a socket, all inheritable."""
    (tmp_path / "secret").write_text("host secret\n")
    fds = [os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), os.open("/", os.O_RDONLY),
           os.open(tmp_path / "secret", os.O_RDONLY), *os.pipe()]
    for fd in fds:
        os.set_inheritable(fd, True)
    return fds


def listed(stdout):
    return sorted(int(line.split()[0]) for line in stdout.splitlines() if line.strip())


def test_leaked_fds_do_not_reach_the_container(rt, make_config, bundle, tool_rootfs, tmp_path):
    fds = open_fds(tmp_path)
    try:
        cid = rt.new_id("fds")
        argv = rt.argv("run", "--bundle", str(bundle(make_config(["/sectool", "fds"],
                                                                 rootfs_path=tool_rootfs))), cid)
        code, out, err = run_with_fds(argv, rt.env, fds)
    finally:
        for fd in fds:
            os.close(fd)
    assert code == 0, err
    assert listed(out) == [0, 1, 2], out


def test_preserve_fds_passes_exactly_those(rt, make_config, bundle, tool_rootfs, tmp_path):
    (tmp_path / "three").write_text("3\n")
    bundle_dir = bundle(make_config(["sh", "-c", "/sectool fds; cat <&3"],
                                    rootfs_path=tool_rootfs))
    cid = rt.new_id("fds")
    argv = rt.argv("run", "--preserve-fds", "2", "--bundle", str(bundle_dir), cid)
    # fds 3 and 4 are preserved; 5 and 6 are leaked by the caller and must not arrive.
    shell = (f"exec 3<{shlex.quote(str(tmp_path / 'three'))} 4<{shlex.quote(str(tmp_path))} "
             f"5</ 6<{shlex.quote(str(tmp_path))}; exec {shlex.join(argv)}")
    code, out, err = run_with_fds(["bash", "-c", shell], rt.env, [])
    assert code == 0, err
    lines = out.splitlines()
    assert listed("\n".join(lines[:-1])) == [0, 1, 2, 3, 4], out
    assert lines[-1] == "3"


def test_leaked_directory_fd_cannot_be_the_cwd(rt, make_config, bundle, tool_rootfs, tmp_path):
    """CVE-2024-21626: process.cwd /proc/self/fd/N naming a host directory the runtime was
    handed must not put the program in that host directory."""
    fds = open_fds(tmp_path)
    try:
        for fd in fds[:2]:
            config = make_config(["/sectool", "cwd"], rootfs_path=tool_rootfs,
                                 process__cwd=f"/proc/self/fd/{fd}")
            cid = rt.new_id("cwd")
            argv = rt.argv("run", "--bundle", str(bundle(config, name=cid)), cid)
            code, out, _ = run_with_fds(argv, rt.env, fds)
            if code == 0:  # then the cwd must be inside the container
                assert out.strip().startswith("/") and str(tmp_path) not in out, out
                assert not out.startswith("(unreachable)"), out
            assert "host secret" not in out
    finally:
        for fd in fds:
            os.close(fd)
