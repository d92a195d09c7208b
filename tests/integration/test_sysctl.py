"""linux.sysctl: namespaced keys set in the container's namespaces (read inside and, through
nsenter, from the host), the host's values untouched; keys that would change the host refused
before anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .feature_support import run_ok, started, with_namespaces
from .support import ROOT_MARKS, assert_nothing_left

pytestmark = ROOT_MARKS

VALUES = {
    "net.ipv4.ip_default_ttl": ("network", "99"),
    "net.ipv4.ip_forward": ("network", "1"),
    "kernel.msgmax": ("ipc", "54321"),
    "kernel.shm_rmid_forced": ("ipc", "1"),
    "fs.mqueue.msg_max": ("ipc", "20"),
}


def proc_sys(key):
    return "/proc/sys/" + key.replace(".", "/")


def host_value(key):
    return Path(proc_sys(key)).read_text().strip()


def nsenter_read(pid, kind, key):
    """Read a sysctl from the host's /proc with only the container's ``kind`` ns entered."""
    flag = {"network": "--net", "ipc": "--ipc", "uts": "--uts"}[kind]
    return subprocess.run(["nsenter", f"--target={pid}", flag, "cat", proc_sys(key)],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_namespaced_sysctls(rt, make_config, bundle):
    before = {key: host_value(key) for key in VALUES}
    config = make_config(["sleep", "100"])
    config["linux"]["sysctl"] = {key: value for key, (_, value) in VALUES.items()}
    cid, pid = started(rt, bundle, config)
    keys = list(VALUES)
    inside = rt.ok("exec", cid, "cat", *map(proc_sys, keys)).stdout.split()
    assert inside == [VALUES[key][1] for key in keys]
    for key, (kind, value) in VALUES.items():
        assert nsenter_read(pid, kind, key) == value, key
    assert {key: host_value(key) for key in VALUES} == before, "the host's values changed"


def test_sysctl_is_applied_before_the_program(rt, make_config, bundle):
    config = make_config(["cat", proc_sys("net.ipv4.ip_default_ttl")])
    config["linux"]["sysctl"] = {"net.ipv4.ip_default_ttl": "33"}
    assert run_ok(rt, bundle, config) == "33\n"


def with_marker_hook(config, tmp_path):
    """A prestart hook that leaves a file: a refused config must not get that far."""
    config["hooks"] = {"prestart": [{"path": "/bin/sh",
                                     "args": ["sh", "-c", f"touch {tmp_path}/hook-ran"]}]}
    return config


@pytest.mark.parametrize("key,value", [("kernel.panic", "7"), ("vm.swappiness", "1"),
                                       ("fs.file-max", "1000")])
def test_non_namespaced_key_is_refused(rt, make_config, bundle, tmp_path, key, value):
    before = host_value(key)
    config = with_marker_hook(make_config(["true"]), tmp_path)
    config["linux"]["sysctl"] = {key: value}
    cid = rt.new_id()
    # Not rt.fails: that rejects the word "panic" (a Go panic) in stderr.
    result = rt("create", "--bundle", str(bundle(config)), cid)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result
    assert key in result.stderr
    assert host_value(key) == before
    assert not (tmp_path / "hook-ran").exists(), "refused before anything runs"
    assert_nothing_left(rt, cid)


@pytest.mark.parametrize("key,kind", [("net.ipv4.ip_forward", "network"),
                                      ("kernel.msgmax", "ipc")])
def test_key_of_the_hosts_namespace_is_refused(rt, make_config, bundle, tmp_path, key, kind):
    before = host_value(key)
    kinds = [k for k in ("pid", "mount", "network", "ipc", "uts") if k != kind]
    config = with_marker_hook(with_namespaces(make_config(["true"]), kinds), tmp_path)
    config["linux"]["sysctl"] = {key: "1" if kind == "network" else "4321"}
    cid = rt.new_id()
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert key in result.stderr
    assert host_value(key) == before
    assert not (tmp_path / "hook-ran").exists()
    assert_nothing_left(rt, cid)


def test_sysctl_in_a_joined_network_namespace(rt, make_config, bundle):
    _, pid1 = started(rt, bundle, make_config(["sleep", "100"]), "first")
    config = with_namespaces(make_config(["cat", proc_sys("net.ipv4.ip_default_ttl")]),
                             ["pid", "mount", "ipc", "uts"],
                             {"network": f"/proc/{pid1}/ns/net"})
    config["linux"]["sysctl"] = {"net.ipv4.ip_default_ttl": "44"}
    assert run_ok(rt, bundle, config, name="second") == "44\n"
    assert nsenter_read(pid1, "network", "net.ipv4.ip_default_ttl") == "44"
