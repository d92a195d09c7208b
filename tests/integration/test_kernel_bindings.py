"""The binding layer against the real kernel where the container tests cannot reach it here:
bpf(2) device programs on a cgroup2 directory (this host's containers use v1 devices; the
hybrid layout still has a cgroup2 mount, where the same calls work)."""

from __future__ import annotations

import os

import pytest

from .support import ROOT_MARKS, mountinfo, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]


def _cgroup2_mount() -> str | None:
    for entry in mountinfo():
        if entry["fstype"] == "cgroup2":
            return str(entry["mountpoint"])
    return None


@pytest.fixture
def cgroup2_dir():
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount on this host")
    path = os.path.join(mount, f"ocirt-it-bpf-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)  # detaches whatever is still attached


def test_device_program_is_loaded_attached_and_replaced(cgroup2_dir):
    from ocirt.linux.cgroups import bpf, devices
    from ocirt.linux.syscalls import bpf as kernel_bpf

    assert bpf.attached(cgroup2_dir) == []
    program = devices.program(devices.rules([], []))
    bpf.install(cgroup2_dir, program)
    (first,) = bpf.attached(cgroup2_dir)
    bpf.install(cgroup2_dir, program)
    (second,) = bpf.attached(cgroup2_dir)
    assert second != first  # replaced, not stacked
    # a program the verifier refuses is an error naming the call and the verifier's words
    from ocirt.errors import SyscallError

    with pytest.raises(SyscallError) as info:
        kernel_bpf.load(b"\0" * 8)
    text = str(info.value)
    assert "bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE, <1 instructions>)" in text
    assert "the verifier said" in text and "(EINVAL)" in text and "\n" not in text
