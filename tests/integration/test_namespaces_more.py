"""More namespaces: time (linux.timeOffsets), the domain name, joining several namespaces of
another container at once, the cgroup namespace."""

from __future__ import annotations

from pathlib import Path

from . import feature_support
from .feature_support import ns_links, run_ok, started, userns_config, with_namespaces
from .support import ROOT_MARKS, assert_nothing_left, requires_ocirt

pytestmark = ROOT_MARKS
open_rootfs = feature_support.open_rootfs
open_out = feature_support.open_out

DAY = 86400
BOOT_OFFSET = 400 * DAY
MONO_OFFSET = 30 * DAY


def uptime():
    return float(Path("/proc/uptime").read_text().split()[0])


def time_config(make_config, args):
    config = make_config(args)
    config["linux"]["namespaces"].append({"type": "time"})
    config["linux"]["timeOffsets"] = {"boottime": {"secs": BOOT_OFFSET, "nanosecs": 0},
                                      "monotonic": {"secs": MONO_OFFSET, "nanosecs": 500}}
    return config


@requires_ocirt  # runc 1.1 has no time namespace
def test_time_namespace_offsets(rt, make_config, bundle):
    cid, pid = started(rt, bundle, time_config(make_config, ["sleep", "100"]))
    assert ns_links(pid)["time"] != ns_links("self")["time"]
    offsets = {line.split()[0]: line.split()[1:]
               for line in Path(f"/proc/{pid}/timens_offsets").read_text().splitlines()}
    assert offsets == {"monotonic": [str(MONO_OFFSET), "500"],
                       "boottime": [str(BOOT_OFFSET), "0"]}
    before = uptime()
    inside = float(rt.ok("exec", cid, "cat", "/proc/uptime").stdout.split()[0])
    after = uptime()
    assert before + BOOT_OFFSET <= inside <= after + BOOT_OFFSET, (before, inside, after)


def offsets_of(pid):
    return {line.split()[0]: line.split()[1:]
            for line in Path(f"/proc/{pid}/timens_offsets").read_text().splitlines()}


@requires_ocirt  # runc 1.1 has no time namespace
def test_time_namespace_offsets_in_a_new_user_namespace(rt, make_config, bundle, open_rootfs,
                                                         open_out):
    """Stage-1, inside its new user namespace and not dumpable, cannot open its own
    timens_offsets (host root owns it): the runtime writes them."""
    config = userns_config(make_config, open_rootfs, open_out, ["sleep", "100"])
    config["linux"]["namespaces"].append({"type": "time"})
    config["linux"]["timeOffsets"] = {"boottime": {"secs": BOOT_OFFSET, "nanosecs": 0},
                                      "monotonic": {"secs": MONO_OFFSET, "nanosecs": 500}}
    cid, pid = started(rt, bundle, config)
    links = ns_links(pid)
    assert links["time"] != ns_links("self")["time"]
    assert links["user"] != ns_links("self")["user"]
    assert offsets_of(pid) == {"monotonic": [str(MONO_OFFSET), "500"],
                               "boottime": [str(BOOT_OFFSET), "0"]}
    before = uptime()
    inside = float(rt.ok("exec", cid, "cat", "/proc/uptime").stdout.split()[0])
    after = uptime()
    assert before + BOOT_OFFSET <= inside <= after + BOOT_OFFSET, (before, inside, after)


@requires_ocirt
def test_time_namespace_uptime_of_init(rt, make_config, bundle):
    before = uptime()
    inside = float(run_ok(rt, bundle, time_config(make_config, ["cat", "/proc/uptime"]))
                   .split()[0])
    after = uptime()
    assert before + BOOT_OFFSET <= inside <= after + BOOT_OFFSET, (before, inside, after)


@requires_ocirt  # runc 1.1 ignores domainname
def test_domainname(rt, make_config, bundle):
    host = Path("/proc/sys/kernel/domainname").read_text()
    config = make_config(["sh", "-c", "cat /proc/sys/kernel/domainname; hostname"],
                         domainname="example.org", hostname="box")
    assert run_ok(rt, bundle, config).split() == ["example.org", "box"]
    assert Path("/proc/sys/kernel/domainname").read_text() == host


@requires_ocirt  # runc 1.1 ignores domainname
def test_domainname_needs_a_uts_namespace(rt, make_config, bundle):
    cid = rt.new_id()
    config = with_namespaces(make_config(["true"]), ["pid", "mount"])
    config["domainname"] = "example.org"
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert "domainname" in result.stderr
    assert_nothing_left(rt, cid)


def test_join_several_namespaces_of_another_container(rt, make_config, bundle):
    """net + ipc + uts of a first container at once: the second sees its hostname and the
    sysctls the first set in its own network and IPC namespaces."""
    first = make_config(["sleep", "100"], hostname="first-box")
    first["linux"]["sysctl"] = {"net.ipv4.ip_default_ttl": "77", "kernel.msgmax": "12345"}
    _, pid1 = started(rt, bundle, first, "first")

    joins = {kind: f"/proc/{pid1}/ns/{name}"
             for kind, name in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))}
    program = ("hostname; cat /proc/sys/net/ipv4/ip_default_ttl /proc/sys/kernel/msgmax; "
               "ls /sys/class/net")
    second = with_namespaces(make_config(["sh", "-c", program]), ["pid", "mount"], joins)
    _, pid2 = started(rt, bundle, with_namespaces(make_config(["sleep", "100"]),
                                                     ["pid", "mount"], joins), "second")
    theirs, ours, host = ns_links(pid1), ns_links(pid2), ns_links("self")
    for name in ("net", "ipc", "uts"):
        assert ours[name] == theirs[name] != host[name], name
    for name in ("pid", "mnt"):
        assert ours[name] not in (theirs[name], host[name]), name
    assert run_ok(rt, bundle, second, name="third").split() == ["first-box", "77", "12345", "lo"]


def test_cgroup_namespace(rt, make_config, bundle):
    config = make_config(["sleep", "100"])
    config["linux"]["namespaces"].append({"type": "cgroup"})
    cid, pid = started(rt, bundle, config)
    assert ns_links(pid)["cgroup"] != ns_links("self")["cgroup"]
    outside = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert any(not line.endswith(":/") for line in outside), "from the host: a real path"
    inside = rt.ok("exec", cid, "cat", "/proc/self/cgroup").stdout.splitlines()
    assert len(inside) == len(outside)
    assert all(line.endswith(":/") for line in inside), inside
    init_inside = rt.ok("exec", cid, "cat", "/proc/1/cgroup").stdout.splitlines()
    assert init_inside == inside


def test_without_cgroup_namespace_the_path_shows(rt, make_config, bundle):
    cid, pid = started(rt, bundle, make_config(["sleep", "100"]))
    assert ns_links(pid)["cgroup"] == ns_links("self")["cgroup"]
    inside = rt.ok("exec", cid, "cat", "/proc/self/cgroup").stdout
    assert inside == Path(f"/proc/{pid}/cgroup").read_text()
