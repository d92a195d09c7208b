"""devices (the allow/deny list, v1 files or a v2 BPF program; the default devices) and block
IO (weights, throttling): enforced inside the container, read back outside."""

from __future__ import annotations

import pytest

from .cgroup_support import (
    SLOW,
    V2,
    block_device,
    cgroup_dir,
    read,
    requires_v2,
    start,
    v1_weight_files,
    wait_file,
)
from .support import ROOT_MARKS, requires_ocirt

pytestmark = ROOT_MARKS

MKNOD_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_MKNOD"]


def _probe(major: int, minor: int) -> str:
    """Make the node, read a block of it: 'ok' or the error."""
    return (f"mknod /dev/probe b {major} {minor} && "
            "if dd if=/dev/probe of=/dev/null bs=512 count=1 2>/out/err; then echo ok; "
            "else cat /out/err; fi > /out/result; echo null > /dev/null && echo w >> /out/null;"
            " exec sleep 1000")


def _config(make_config, major, minor, devices):
    config = make_config(["sh", "-c", _probe(major, minor)])
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind] = list(MKNOD_CAPS)
    config["linux"]["resources"]["devices"] = devices
    return config


@pytest.mark.parametrize("allowed", [False, True], ids=["denied", "allowed"])
def test_device_list_is_enforced(rt, make_config, bundle, out_dir, allowed):
    major, minor, _ = block_device()
    devices = [{"allow": False, "access": "rwm"}]
    if allowed:
        devices.append({"allow": True, "type": "b", "major": major, "minor": minor,
                        "access": "r"})
    cid = rt.new_id("dev")
    rt.ok("create", "--bundle", str(bundle(_config(make_config, major, minor, devices))), cid,
          timeout=10 * SLOW)
    rt.ok("start", cid, timeout=10 * SLOW)
    result = wait_file(out_dir / "result")
    if allowed:
        assert result == "ok"
    else:
        assert "Operation not permitted" in result
    # The default devices stay usable whatever the list says.
    assert wait_file(out_dir / "null") == "w"
    pid = int(rt.state(cid)["pid"])
    if V2:
        from ocirt.linux.cgroups import bpf

        assert len(bpf.attached(str(cgroup_dir(pid, "devices")))) == 1
    else:
        listed = read(pid, "devices", "devices.list").splitlines()
        assert "c 1:3 rwm" in listed
        assert (f"b {major}:{minor} r" in listed) == allowed


@requires_ocirt
def test_linux_devices_are_allowed(rt, make_config, bundle, out_dir):
    major, minor, _ = block_device()
    config = make_config(["sh", "-c", "dd if=/dev/disk0 of=/dev/null bs=512 count=1 "
                          "2>/out/err && echo ok > /out/result || cat /out/err > /out/result;"
                          " exec sleep 1000"])
    config["linux"]["devices"] = [{"path": "/dev/disk0", "type": "b", "major": major,
                                   "minor": minor, "fileMode": 0o600}]
    start_id = rt.new_id("ldev")
    rt.ok("create", "--bundle", str(bundle(config)), start_id, timeout=10 * SLOW)
    rt.ok("start", start_id, timeout=10 * SLOW)
    assert wait_file(out_dir / "result") == "ok"


def test_throttle_read_back(rt, make_config, bundle):
    major, minor, _ = block_device()
    device = {"major": major, "minor": minor}
    c = start(rt, make_config, bundle, {"blockIO": {
        "throttleReadBpsDevice": [{**device, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{**device, "rate": 300}]}})
    if V2:
        line = read(c.pid, "io", "io.max")
        assert line == f"{major}:{minor} rbps=1048576 wbps=max riops=max wiops=300", line
    else:
        assert read(c.pid, "blkio", "blkio.throttle.read_bps_device") == \
            f"{major}:{minor} 1048576"
        assert read(c.pid, "blkio", "blkio.throttle.write_iops_device") == \
            f"{major}:{minor} 300"


@requires_v2
@requires_ocirt
def test_v2_io_max_is_felt(rt, make_config, bundle, out_dir):
    """3 MB read directly from the disk at 1 MB/s: not before ~2 s."""
    major, minor, _ = block_device()
    config = _config(make_config, major, minor, [])
    config["process"]["args"] = ["sh", "-c",
                                 f"mknod /dev/probe b {major} {minor}; "
                                 "s=$(date +%s); dd if=/dev/probe of=/dev/null bs=1M count=3 "
                                 "iflag=direct 2>/out/err; e=$(date +%s); "
                                 "echo $((e - s)) > /out/seconds; exec sleep 1000"]
    config["linux"]["resources"]["devices"] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}]
    config["linux"]["resources"]["blockIO"] = {
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]}
    cid = rt.new_id("iomax")
    rt.ok("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    rt.ok("start", cid, timeout=10 * SLOW)
    seconds = int(wait_file(out_dir / "seconds", 30))
    assert seconds >= 2, (out_dir / "err").read_text()


@requires_ocirt
def test_weight_or_a_clear_error(rt, make_config, bundle):
    """BFQ's weight where the kernel has it; where it has no weight file, a clear error.

    Which one this kernel does is asked of it first (v1: a probe cgroup), so the test holds
    whether or not something loaded BFQ before."""
    config = make_config(["sleep", "1000"])
    config["linux"]["resources"]["blockIO"] = {"weight": 500}
    cid = rt.new_id("weight")
    if V2:
        result = rt("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
        if result.returncode == 0:
            names = cgroup_dir(int(rt.state(cid)["pid"]), "io")
            value = ((names / "io.bfq.weight").read_text() if (names / "io.bfq.weight").exists()
                     else (names / "io.weight").read_text())
            # BFQ takes the weight as is; io.weight gets runc's conversion: 500 -> 4950.
            assert value.split()[-1] in ("500", "4950"), value
        else:
            assert "linux.resources.blockIO.weight" in result.stderr, result
            assert "io.weight" in result.stderr, result  # and which file it wanted
        return
    files = v1_weight_files(f"ocirt-{rt.new_id('probe')}")
    if files:
        rt.ok("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
        assert read(int(rt.state(cid)["pid"]), "blkio", files[0]) == "500"
    else:
        result = rt.fails("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
        assert "linux.resources.blockIO.weight" in result.stderr
        assert "writing '500': none of blkio.weight, blkio.bfq.weight exists" in result.stderr


@requires_ocirt
def test_leaf_weight_is_a_clear_error(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["resources"]["blockIO"] = {"leafWeight": 300}
    result = rt.fails("run", "--bundle", str(bundle(config)), rt.new_id(), timeout=10 * SLOW)
    assert "linux.resources.blockIO.leafWeight" in result.stderr
    assert "CFQ" in result.stderr


@requires_v2
@requires_ocirt
def test_v2_device_program_is_replaced_not_stacked(rt, make_config, bundle):
    from ocirt.linux.cgroups import bpf, devices

    c = start(rt, make_config, bundle)
    directory = str(cgroup_dir(c.pid, "devices"))
    (before,) = bpf.attached(directory)
    bpf.install(directory, devices.program(devices.rules([], [])))
    (after,) = bpf.attached(directory)
    assert after != before
