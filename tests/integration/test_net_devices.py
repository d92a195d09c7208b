"""linux.netDevices: a device of the runtime's network namespace moved into the container's,
renamed, with its permanent global addresses and set up (config-linux.md, "Network Devices").

The runtime runs inside a network namespace made for each test (``unshare --net``, entered
with nsenter), holding a vxlan device made for it, so the host's own network is never touched.
vxlan, because this kernel has it built in (dummy and veth are modules, not loaded here).
"""

from __future__ import annotations

import subprocess

import pytest

from . import feature_support
from .feature_support import NamespaceHolder, started
from .support import ROOT_MARKS, assert_nothing_left, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]  # runc 1.1 has no linux.netDevices


def ip(pid, *args):
    """``ip -o ARGS`` in the network namespace of ``pid``."""
    result = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", "ip", "-o", *args],
                            capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 0, result
    return result.stdout


@pytest.fixture
def holder_ns():
    """A network namespace made for this test, where the runtime runs, with a vxlan device vx0
    holding a permanent IPv4 and IPv6 address and a dynamic one."""
    holder = NamespaceHolder("net")
    try:
        made = subprocess.run(
            [*holder.nsenter(), "sh", "-ec",
             "ip link add vx0 type vxlan id 42 dstport 4789; "
             "ip addr add 10.99.0.1/24 dev vx0; ip addr add fd00::5/64 dev vx0; "
             "ip addr add 10.98.0.1/24 dev vx0 valid_lft 300 preferred_lft 300"],
            capture_output=True, text=True, timeout=10, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot make a vxlan device here: {made.stderr.strip()}")
        yield holder
    finally:
        holder.end()


# Fixtures of feature_support, used by name below.
holder = feature_support.holder
netrt = feature_support.ns_runtime


def with_devices(make_config, devices, network=True):
    config = make_config(["sleep", "100"], linux__netDevices=devices)
    if not network:
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                         if n["type"] != "network"]
    return config


def test_moved_renamed_with_its_permanent_addresses_and_up(netrt, holder, make_config, bundle):
    _, pid = started(netrt, bundle, with_devices(make_config, {"vx0": {"name": "eth7"}}))
    addresses = ip(pid, "addr", "show", "dev", "eth7")
    assert "inet 10.99.0.1/24 scope global" in addresses
    assert "inet6 fd00::5/64 scope global" in addresses
    assert "10.98.0.1" not in addresses  # not permanent: not carried over
    assert ",UP" in ip(pid, "link", "show", "dev", "eth7")
    assert "vx0" not in ip(holder, "link")  # gone from the runtime's namespace


def test_the_name_is_kept_without_one(netrt, holder, make_config, bundle):
    _, pid = started(netrt, bundle, with_devices(make_config, {"vx0": {}}))
    assert "inet 10.99.0.1/24" in ip(pid, "addr", "show", "dev", "vx0")


def test_a_name_template_lets_the_kernel_choose(netrt, holder, make_config, bundle):
    _, pid = started(netrt, bundle, with_devices(make_config, {"vx0": {"name": "net%d"}}))
    assert "net0" in ip(pid, "link", "show", "up")
    assert "inet 10.99.0.1/24" in ip(pid, "addr", "show", "dev", "net0")


@pytest.mark.parametrize("devices, network, wanted", [
    ({"nope0": {}}, True, "$.linux.netDevices['nope0']: no network device 'nope0'"),
    ({"vx0": {}}, False, "$.linux.netDevices: moving network devices needs a network namespace"),
    ({"vx0": {"name": "lo"}}, True, "$.linux.netDevices['vx0']: a network device named 'lo' "
                                    "already exists in the container's network namespace"),
])
def test_what_cannot_be_moved_is_an_error(netrt, holder, make_config, bundle, devices,
                                          network, wanted):
    cid = netrt.new_id()
    config = with_devices(make_config, devices, network)
    result = netrt.fails("create", "--bundle", str(bundle(config)), cid)
    assert wanted in result.stderr, result
    assert "vx0" in ip(holder, "link")  # still where it was
    assert_nothing_left(netrt, cid)
