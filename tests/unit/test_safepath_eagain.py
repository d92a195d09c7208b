"""safepath's openat2 under load: EAGAIN (a rename or mount racing the lookup anywhere on the
system) is retried a bounded number of times, then reported naming the path and EAGAIN."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ocirt.errors import SyscallError
from ocirt.linux import safepath
from ocirt.linux import syscalls as sc


def _root(tmp_path: Path) -> int:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("inside\n")
    return os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)


@pytest.mark.parametrize("failures", [1, 5, safepath.OPENAT2_EAGAIN_RETRIES])
def test_eagain_is_retried_until_openat2_succeeds(tmp_path: Path, failures: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safepath, "FORCE_WALK", False)
    rootfd = _root(tmp_path)
    real_openat2 = sc.openat2
    left = [failures]

    def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
        if left[0]:
            left[0] -= 1
            raise SyscallError(f"openat2({dirfd}, {path!r})", errno.EAGAIN)
        return real_openat2(dirfd, path, flags, resolve, mode)

    try:
        with sc.recording({"openat2": openat2}) as calls:
            fd = safepath.open_in_root(rootfd, "/etc/hostname", os.O_RDONLY)
        try:
            assert os.read(fd, 100) == b"inside\n"
        finally:
            os.close(fd)
    finally:
        os.close(rootfd)
    assert calls.names() == ["openat2"] * (failures + 1)
    assert not safepath.FORCE_WALK  # EAGAIN is no reason to give openat2 up


def test_eagain_for_ever_fails_clearly_and_does_not_walk(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safepath, "FORCE_WALK", False)
    rootfd = _root(tmp_path)
    eagain = SyscallError("openat2(3, '/etc/hostname')", errno.EAGAIN)
    try:
        with sc.recording({"openat2": eagain}) as calls, \
                pytest.raises(SyscallError) as raised:
            safepath.open_beneath(rootfd, "etc/hostname", os.O_RDONLY)
    finally:
        os.close(rootfd)
    assert raised.value.errno == errno.EAGAIN
    message = str(raised.value)
    assert "'etc/hostname'" in message and "EAGAIN" in message
    assert f"{safepath.OPENAT2_EAGAIN_RETRIES} retries" in message
    assert calls.names() == ["openat2"] * (safepath.OPENAT2_EAGAIN_RETRIES + 1)
    assert not safepath.FORCE_WALK


def test_other_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safepath, "FORCE_WALK", False)
    rootfd = _root(tmp_path)
    try:
        eloop = SyscallError("openat2(3, 'x')", errno.ELOOP)
        with sc.recording({"openat2": eloop}) as calls, pytest.raises(OSError) as raised:
            safepath.open_in_root(rootfd, "x")
    finally:
        os.close(rootfd)
    assert raised.value.errno == errno.ELOOP
    assert calls.names() == ["openat2"]
