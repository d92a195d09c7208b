"""safepath and procfs on a scratch directory: openat2 and the component walk keep the same
rules (symlinks inside the root, no escape by ``..`` or absolute links, no magic links, no
symlink at all where the runtime sets things up), and the trusted procfs refuses what is not
a procfs file."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocirt.errors import OcirtError
from ocirt.linux import procfs, safepath


@pytest.fixture(params=["openat2", "walk"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(safepath, "FORCE_WALK", request.param == "walk")
    yield request.param


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    base = tmp_path / "root"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "hostname").write_text("inside\n")
    (base / "abs").symlink_to("/etc")
    (base / "climb").symlink_to("../../../../../../etc")
    (base / "magic").symlink_to("/proc/self/cwd")
    fd = os.open(base, os.O_PATH | os.O_DIRECTORY)
    yield base, fd
    os.close(fd)


def _read(fd: int) -> str:
    with procfs.magic_path(fd) as path, open(path) as handle:
        return handle.read()


def test_symlinks_resolve_inside_the_root(mode: str, root: tuple[Path, int]) -> None:
    _, rootfd = root
    for path in ("/abs/hostname", "climb/hostname", "/../../etc/hostname"):
        fd = safepath.open_in_root(rootfd, path, os.O_RDONLY)
        try:
            assert _read(fd) == "inside\n", path
        finally:
            os.close(fd)


def test_magic_links_are_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "leaked"
    target.mkdir()
    leaked = os.open(target, os.O_PATH | os.O_DIRECTORY)
    slash = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as err:
            os.close(safepath.open_in_root(slash, f"/proc/self/fd/{leaked}"))
        assert err.value.errno == errno.ELOOP
        # the walk (no openat2) reads such a link as the plain path it shows
        safepath.FORCE_WALK = True
        fd = safepath.open_in_root(slash, f"/proc/self/fd/{leaked}")
        assert os.path.samestat(os.fstat(fd), os.stat(target))
        os.close(fd)
    finally:
        safepath.FORCE_WALK = False
        os.close(slash)
        os.close(leaked)


def test_beneath_refuses_any_symlink_and_any_escape(mode: str, root: tuple[Path, int]) -> None:
    _, rootfd = root
    with pytest.raises(OSError) as err:
        safepath.open_beneath(rootfd, "abs/hostname")
    assert err.value.errno == errno.ELOOP
    with pytest.raises(OSError) as err:
        safepath.open_beneath(rootfd, "../root/etc/hostname")
    assert err.value.errno == errno.EXDEV
    fd = safepath.open_beneath(rootfd, "etc/hostname")
    assert stat.S_ISREG(os.fstat(fd).st_mode)
    os.close(fd)


def test_mkdir_all_strict_refuses_a_symlinked_component(mode: str, root: tuple[Path, int]
                                                        ) -> None:
    base, rootfd = root
    fd = safepath.mkdir_all(rootfd, "/dev/net", strict=True)
    assert os.path.samestat(os.fstat(fd), os.stat(base / "dev" / "net"))
    os.close(fd)
    with pytest.raises(OSError):
        safepath.mkdir_all(rootfd, "/abs/made", strict=True)
    assert not Path("/etc/made").exists() and not (base / "etc" / "made").exists()
    # not strict: the symlink resolves inside the root, as the container sees it
    os.close(safepath.mkdir_all(rootfd, "/abs/made", strict=False))
    assert (base / "etc" / "made").is_dir() and not Path("/etc/made").exists()


def test_create_file_refuses_a_symlink(root: tuple[Path, int]) -> None:
    base, _ = root
    etc = os.open(base / "etc", os.O_PATH | os.O_DIRECTORY)
    try:
        (base / "etc" / "console").symlink_to("/etc/passwd")
        with pytest.raises(OSError):
            safepath.create_file(etc, "console")
        fd = safepath.create_file(etc, "fresh")
        assert stat.S_ISREG(os.fstat(fd).st_mode)
        os.close(fd)
    finally:
        os.close(etc)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_open_null_wants_the_null_device(root: tuple[Path, int]) -> None:
    base, rootfd = root
    (base / "dev").mkdir()
    (base / "dev" / "null").symlink_to("/etc/hostname")
    with pytest.raises(OcirtError, match="symlink"):
        safepath.open_null(rootfd)
    (base / "dev" / "null").unlink()
    os.mknod(base / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    with pytest.raises(OcirtError, match="not the null device"):
        safepath.open_null(rootfd)
    (base / "dev" / "null").unlink()
    os.mknod(base / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.close(safepath.open_null(rootfd))


def test_procfs_reads_and_refuses(tmp_path: Path) -> None:
    fd = procfs.open_file("/proc/sys/kernel/ostype", os.O_RDONLY)
    try:
        assert os.read(fd, 64) == b"Linux\n"
    finally:
        os.close(fd)
    fd = procfs.open_file("self/status", os.O_RDONLY)
    try:
        assert f"Pid:\t{os.getpid()}\n".encode() in os.read(fd, 4096)
    finally:
        os.close(fd)
    for path in ("self/cwd", "self/root/etc/passwd", "self/fd/0", "../etc/passwd"):
        with pytest.raises(OcirtError):
            os.close(procfs.open_file(path, os.O_RDONLY))


def test_magic_path_names_the_fd_and_restores_the_cwd(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    before = os.getcwd()
    fd = os.open(target, os.O_PATH)
    try:
        with procfs.magic_path(fd) as path:
            assert not path.startswith("/")
            assert os.path.samestat(os.stat(path), os.stat(target))
        assert os.getcwd() == before
    finally:
        os.close(fd)
