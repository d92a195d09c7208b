"""linux.memoryPolicy: the NUMA policy (set_mempolicy(2)) of the container's processes, seen from
outside in /proc/<pid>/numa_maps, where every mapping without a policy of its own shows the
process's. This host has one node (0), which is enough to see a policy and its flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from .feature_support import started
from .support import ROOT_MARKS, assert_nothing_left, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]  # runc 1.1 has no linux.memoryPolicy

ONLINE = Path("/sys/devices/system/node/online")


def policies_of(pid):
    """The distinct policies numa_maps shows for ``pid``'s mappings."""
    return {line.split()[1] for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines()}


@pytest.fixture
def host_node():
    if not ONLINE.exists():
        pytest.skip("no NUMA node information on this host")
    return ONLINE.read_text().strip().split(",")[0].split("-")[0]


@pytest.mark.parametrize("policy, shown", [
    ({"mode": "MPOL_BIND", "nodes": "{node}"}, "bind:{node}"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "{node}", "flags": ["MPOL_F_STATIC_NODES"]},
     "interleave=static:{node}"),
    ({"mode": "MPOL_PREFERRED", "nodes": "{node}"}, "prefer:{node}"),
    ({"mode": "MPOL_LOCAL"}, "local"),
])
def test_policy_from_outside(rt, make_config, bundle, host_node, policy, shown):
    policy = {key: value.format(node=host_node) if isinstance(value, str) else value
              for key, value in policy.items()}
    config = make_config(["sleep", "100"], linux__memoryPolicy=policy)
    _, pid = started(rt, bundle, config)
    assert policies_of(pid) == {shown.format(node=host_node)}
    assert policies_of("self") == {"default"}  # the runtime's own policy is untouched


def test_exec_gets_the_policy(rt, make_config, bundle, host_node):
    config = make_config(["sleep", "100"],
                         linux__memoryPolicy={"mode": "MPOL_BIND", "nodes": host_node})
    cid, _ = started(rt, bundle, config)
    result = rt.ok("exec", cid, "cat", "/proc/self/numa_maps")
    assert {line.split()[1] for line in result.stdout.splitlines()} == {f"bind:{host_node}"}


@pytest.mark.parametrize("policy, where", [
    ({"mode": "MPOL_BIND"}, "$.linux.memoryPolicy.nodes: MPOL_BIND needs at least one node"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "$.linux.memoryPolicy.nodes: MPOL_LOCAL takes no"),
    ({"mode": "MPOL_BIND", "nodes": "0-x"}, "$.linux.memoryPolicy.nodes: '0-x' is not"),
    ({"mode": "MPOL_BIND", "nodes": "999"}, "node(s) [999] are not online on this host"),
])
def test_bad_policy_is_refused_before_anything_exists(rt, make_config, bundle, policy, where):
    cid = rt.new_id()
    config = make_config(["true"], linux__memoryPolicy=policy)
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert where in result.stderr, result
    assert_nothing_left(rt, cid)
