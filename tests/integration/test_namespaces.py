"""Namespaces: created when asked, shared with the host when not, joined by path."""

from __future__ import annotations

import os

import pytest

from .support import (
    IS_OCIRT,
    ROOT_MARKS,
    assert_nothing_left,
    cgroup_dirs_named,
    cgroup_names,
    ns_inode,
)

pytestmark = ROOT_MARKS

# OCI type -> name under /proc/<pid>/ns
KINDS = {"pid": "pid", "mount": "mnt", "uts": "uts", "ipc": "ipc", "network": "net",
         "cgroup": "cgroup"}


def with_namespaces(config, kinds, joins=None):
    config["linux"]["namespaces"] = [{"type": kind} for kind in kinds]
    for kind, path in (joins or {}).items():
        config["linux"]["namespaces"].append({"type": kind, "path": path})
    if "uts" not in kinds and "uts" not in (joins or {}):
        config.pop("hostname", None)
    return config


@pytest.mark.parametrize("kinds", [
    list(KINDS),
    ["mount"],
    ["mount", "pid"],
    ["mount", "network", "uts"],
    ["mount", "ipc", "cgroup"],
], ids=lambda kinds: "+".join(kinds))
def test_namespaces_from_outside(rt, make_config, bundle, kinds):
    cid = rt.new_id()
    rt.create(cid, bundle(with_namespaces(make_config(["sleep", "100"]), kinds)))
    pid = rt.state(cid)["pid"]
    for kind, name in KINDS.items():
        host, container = ns_inode("self", name), ns_inode(pid, name)
        if kind in kinds:
            assert container != host, f"{kind}: asked for a new namespace, got the host's"
        else:
            assert container == host, f"{kind}: not asked for, yet not the host's"


def test_inside_pid_hostname_loopback(rt, make_config, bundle):
    cid = rt.new_id()
    program = ("echo pid=$$; echo host=$(hostname); echo nets=$(ls /sys/class/net); "
               "echo loflags=$(cat /sys/class/net/lo/flags)")
    config = make_config(["sh", "-c", program], hostname="box-1")
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    lines = dict(line.split("=", 1) for line in result.stdout.split())
    assert lines["pid"] == "1"
    assert lines["host"] == "box-1"
    assert lines["nets"] == "lo"
    assert int(lines["loflags"], 16) & 0x1, "loopback is not up"


def test_host_network_namespace_is_shared(rt, make_config, bundle):
    cid = rt.new_id()
    config = with_namespaces(make_config(["ls", "/sys/class/net"]), ["mount", "pid"])
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    assert sorted(result.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_join_namespaces_by_path(rt, make_config, bundle):
    first = rt.new_id("first")
    rt.create(first, bundle(make_config(["sleep", "100"]), "first"))
    pid1 = rt.state(first)["pid"]

    second = rt.new_id("second")
    joins = {kind: f"/proc/{pid1}/ns/{KINDS[kind]}" for kind in ("network", "ipc", "uts")}
    config = with_namespaces(make_config(["sleep", "100"]), ["mount", "pid"], joins)
    config.pop("hostname", None)
    rt.create(second, bundle(config, "second"))
    pid2 = rt.state(second)["pid"]

    for kind in ("net", "ipc", "uts"):
        assert ns_inode(pid2, kind) == ns_inode(pid1, kind), kind
        assert ns_inode(pid2, kind) != ns_inode("self", kind), kind
    for kind in ("mnt", "pid"):
        assert ns_inode(pid2, kind) != ns_inode(pid1, kind), kind


def test_joined_network_namespace_sees_the_same_interfaces(rt, make_config, bundle, out_dir):
    first = rt.new_id("first")
    rt.create(first, bundle(make_config(["sleep", "100"]), "first"))
    pid1 = rt.state(first)["pid"]
    second = rt.new_id("second")
    config = with_namespaces(make_config(["sh", "-c", "cat /sys/class/net/lo/ifindex; "
                                                      "readlink /proc/self/ns/net"]),
                             ["mount", "pid", "uts"], {"network": f"/proc/{pid1}/ns/net"})
    result = rt("run", "--bundle", str(bundle(config, "second")), second)
    assert result.returncode == 0, result
    assert result.stdout.split()[1] == f"net:[{ns_inode(pid1, 'net')}]"


@pytest.mark.parametrize("wrong", ["other-type", "regular-file", "missing"])
def test_join_bad_namespace_path_errors(rt, make_config, bundle, tmp_path, wrong):
    first = rt.new_id("first")
    rt.create(first, bundle(make_config(["sleep", "100"]), "first"))
    pid1 = rt.state(first)["pid"]
    path = {
        "other-type": f"/proc/{pid1}/ns/uts",
        "regular-file": str(tmp_path / "not-a-namespace"),
        "missing": str(tmp_path / "no-such-file"),
    }[wrong]
    (tmp_path / "not-a-namespace").write_text("hello\n")

    second = rt.new_id("second")
    config = with_namespaces(make_config(["sleep", "100"]), ["mount", "pid", "uts"],
                             {"network": path})
    result = rt.fails("create", "--bundle", str(bundle(config, "second")), second)
    if IS_OCIRT:
        assert path in result.stderr
    assert_nothing_left_but(rt, second, first)


def assert_nothing_left_but(rt, gone, alive):
    assert not rt.state_dir(gone).exists()
    assert cgroup_dirs_named(cgroup_names(gone)) == []
    assert rt.status(alive) == "created"


def test_hostname_without_uts_namespace_errors(rt, make_config, bundle):
    cid = rt.new_id()
    config = with_namespaces(make_config(["true"]), ["mount", "pid"])
    config["hostname"] = "nope"
    rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert_nothing_left(rt, cid)


def test_cgroup_namespace_inside(rt, make_config, bundle):
    config = with_namespaces(make_config(["cat", "/proc/self/cgroup"]),
                             ["mount", "pid", "uts", "cgroup"])
    cid = rt.new_id()
    result = rt("run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    for line in result.stdout.splitlines():
        assert line.endswith(":/"), f"the container's own cgroup is its root: {line}"
