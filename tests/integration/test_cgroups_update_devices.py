"""``update --resources`` with per-device block IO weights and limits (runc 1.4; runc takes them
from the resources document only: it has no per-device flags). Each device given updates the
container's entry for it or adds one, the others stay: read back from the cgroup files
(v1 blkio.throttle.*, v2 io.max), on this host and in the cgroup v2 VM lane.

Debian's runc 1.1.5 ignores per-device entries in ``update``: these tests are ocirt's alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .cgroup_support import SLOW, V2, cgroup_dir, read, start
from .support import ROOT_MARKS, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]

MB = 1 << 20


def _devices(needed: int = 2) -> list[dict[str, int]]:
    """Block devices (loop devices first; the VM lane has its scratch disk, and loops where
    the kernel has them); the test is skipped with fewer than ``needed``."""
    names = sorted(os.listdir("/sys/block"), key=lambda n: (not n.startswith("loop"), n))
    found = []
    for name in names:
        if name.startswith(("ram", "zram", "sr", "nbd")):
            continue
        major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        found.append({"major": int(major), "minor": int(minor)})
    if len(found) < needed:
        pytest.skip(f"needs {needed} block devices, this machine has {len(found)}")
    return found[:needed]


def _limits(pid: int) -> dict[str, dict[str, str]]:
    """device -> what -> value, from io.max (v2) or the blkio.throttle files (v1)."""
    result: dict[str, dict[str, str]] = {}
    if V2:
        for line in read(pid, "io", "io.max").splitlines():
            device, *pairs = line.split()
            result[device] = {k: v for k, v in (pair.split("=") for pair in pairs)
                              if v != "max"}
        return result
    for key, name in (("rbps", "read_bps"), ("wbps", "write_bps"), ("riops", "read_iops"),
                      ("wiops", "write_iops")):
        for line in read(pid, "blkio", f"blkio.throttle.{name}_device").splitlines():
            device, value = line.split()
            result.setdefault(device, {})[key] = value
    return result


def _update(rt, cid, tmp_path, block_io):
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"blockIO": block_io}))
    return rt("update", "--resources", str(path), cid, timeout=10 * SLOW)


def test_per_device_limits_are_upserted(rt, make_config, bundle, tmp_path):
    zero, one = _devices()
    dev0, dev1 = f"{zero['major']}:{zero['minor']}", f"{one['major']}:{one['minor']}"
    c = start(rt, make_config, bundle,
              {"blockIO": {"throttleReadBpsDevice": [{**zero, "rate": MB}]}})
    assert _limits(c.pid) == {dev0: {"rbps": str(MB)}}

    result = _update(rt, c.cid, tmp_path, {
        "throttleReadBpsDevice": [{**one, "rate": 2 * MB}],
        "throttleWriteBpsDevice": [{**one, "rate": 3 * MB}],
        "throttleReadIOPSDevice": [{**zero, "rate": 200}],
        "throttleWriteIOPSDevice": [{**zero, "rate": 300}]})
    assert result.returncode == 0, result
    assert _limits(c.pid) == {dev0: {"rbps": str(MB), "riops": "200", "wiops": "300"},
                              dev1: {"rbps": str(2 * MB), "wbps": str(3 * MB)}}

    # one device changed: its entry is updated, nothing else moves
    assert _update(rt, c.cid, tmp_path,
                   {"throttleReadBpsDevice": [{**zero, "rate": 4 * MB}]}).returncode == 0
    assert _limits(c.pid) == {dev0: {"rbps": str(4 * MB), "riops": "200", "wiops": "300"},
                              dev1: {"rbps": str(2 * MB), "wbps": str(3 * MB)}}
    # and the saved resources carry the merged lists into the next update
    assert _update(rt, c.cid, tmp_path,
                   {"throttleWriteIOPSDevice": [{**one, "rate": 50}]}).returncode == 0
    assert _limits(c.pid)[dev1] == {"rbps": str(2 * MB), "wbps": str(3 * MB), "wiops": "50"}
    assert _limits(c.pid)[dev0]["rbps"] == str(4 * MB)


def test_one_device_across_lists(rt, make_config, bundle, tmp_path):
    """One device (all the VM lane may have): a limit in another list is added, a changed
    one is updated, the others stay."""
    (zero,) = _devices(1)
    dev0 = f"{zero['major']}:{zero['minor']}"
    c = start(rt, make_config, bundle,
              {"blockIO": {"throttleReadBpsDevice": [{**zero, "rate": MB}]}})
    assert _update(rt, c.cid, tmp_path,
                   {"throttleWriteIOPSDevice": [{**zero, "rate": 300}]}).returncode == 0
    assert _limits(c.pid) == {dev0: {"rbps": str(MB), "wiops": "300"}}
    assert _update(rt, c.cid, tmp_path,
                   {"throttleReadBpsDevice": [{**zero, "rate": 4 * MB}]}).returncode == 0
    assert _limits(c.pid) == {dev0: {"rbps": str(4 * MB), "wiops": "300"}}


def test_per_device_weight_or_a_clear_error(rt, make_config, bundle, tmp_path):
    """Where the kernel takes a per-device weight (BFQ, or v2's io.weight with iocost on the
    device), the weight is written; where not, the error names the field (this host has no
    weight file; the VM's io.weight refuses it: ENOTSUP)."""
    zero = _devices(1)[0]
    c = start(rt, make_config, bundle)
    result = _update(rt, c.cid, tmp_path, {"weightDevice": [{**zero, "weight": 500}]})
    device = f"{zero['major']}:{zero['minor']}"
    directory = cgroup_dir(c.pid, "io" if V2 else "blkio")
    files = [directory / name for name in ("io.bfq.weight", "io.weight",
                                           "blkio.bfq.weight_device", "blkio.weight_device")]
    present = [path for path in files if path.exists()]
    if result.returncode == 0:
        assert present, "a weight was accepted with no file to hold it"
        text = present[0].read_text()
        assert any(line.split()[:1] == [device] for line in text.splitlines()), text
    else:
        # (no weight file, or v2's io.weight without iocost for the device: ENOTSUP)
        assert "blockIO.weightDevice[0]" in result.stderr, result
        assert "Traceback" not in result.stderr
