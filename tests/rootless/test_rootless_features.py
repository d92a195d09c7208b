"""What works without root, seen from the host: capabilities inside the user namespace,
noNewPrivileges, seccomp, rlimits within the caller's, bind/tmpfs/proc mounts, sysfs (the
host's /sys bound without a network namespace of its own, a real sysfs with one), a network
namespace with loopback up, and device nodes bound from the host instead of mknod.
"""

from __future__ import annotations

import json
import os
import resource

import pytest
from testkit import proc_status

from .support import requires_ocirt, rootless_config

# The session makes the unprivileged user: it needs root (the tests then run as that user).
pytestmark = pytest.mark.root

SECCOMP_ERRNO_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}
CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
CAP_BITS = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_RAW": 13}


def _mountinfo(text: str) -> dict[str, dict[str, str]]:
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" in fields:
            sep = fields.index("-")
            found[fields[4]] = {"root": fields[3], "fstype": fields[sep + 1],
                                "options": fields[5]}
    return found


def _running(urt, config, name="c"):
    cid = urt.new_id(name)
    urt.ok("run", "-d", "--bundle", str(urt.bundle(config)), cid)
    return cid, urt.state(cid)["pid"]


def test_capabilities_nnp_seccomp_and_rlimits(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    config["process"]["capabilities"] = {kind: list(CAPS) for kind in
                                         ("bounding", "effective", "permitted")}
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4096)
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": wanted}]
    config["linux"]["seccomp"] = SECCOMP_ERRNO_MKDIR
    cid, pid = _running(urt, config)
    status = proc_status(pid)
    mask = sum(1 << bit for bit in CAP_BITS.values())
    assert int(status["CapEff"], 16) == mask, status["CapEff"]
    assert int(status["CapBnd"], 16) == mask, status["CapBnd"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    with open(f"/proc/{pid}/limits") as handle:
        line = next(row for row in handle if row.startswith("Max open files"))
    assert line.split()[3:5] == ["64", str(wanted)], line
    denied = urt("exec", cid, "mkdir", "/tmp/x")
    assert denied.returncode != 0 and "not permitted" in denied.stderr, denied
    urt.ok("delete", "--force", cid)


def test_rlimit_above_the_callers_hard_limit_fails(urt, rootless_user):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    config = rootless_config(rootless_user, urt.space.rootfs, ["true"], urt.token)
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1,
                                     "hard": hard + 1}]
    result = urt.fails("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    assert "RLIMIT_NOFILE" in result.stderr or "rlimit" in result.stderr.lower(), result


def test_bind_tmpfs_and_proc_mounts(urt, rootless_user):
    shared = urt.space.new_dir("shared")
    (shared / "hello").write_text("from the host\n")
    os.chown(shared / "hello", rootless_user.uid, rootless_user.gid)
    config = rootless_config(rootless_user, urt.space.rootfs,
                             ["sh", "-c", "cat /mnt/hello; echo made > /tmp/file; cat /tmp/file;"
                              " cat /proc/self/mountinfo"], urt.token)
    config["mounts"] += [
        {"destination": "/mnt", "type": "bind", "source": str(shared),
         "options": ["rbind", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "size=1m"]},
    ]
    result = urt.ok("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    lines = result.stdout.splitlines()
    assert lines[:2] == ["from the host", "made"], result
    mounts = _mountinfo(result.stdout)
    assert mounts["/mnt"]["options"].startswith("ro"), mounts["/mnt"]
    assert mounts["/tmp"]["fstype"] == "tmpfs"
    assert mounts["/proc"]["fstype"] == "proc"
    assert not (urt.space.rootfs / "tmp" / "file").exists()


@requires_ocirt  # runc 1.1.5 fails (mount sysfs: EPERM); later runc releases bind /sys too
def test_sysfs_without_a_network_namespace_is_the_hosts_bound(urt, rootless_user):
    """A config asking for sysfs, without a network namespace of its own: the kernel refuses
    a new sysfs there, so the runtime binds the host's /sys (read-only), as runc does."""
    config = rootless_config(rootless_user, urt.space.rootfs,
                             ["cat", "/proc/self/mountinfo"], urt.token)
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys"]
    config["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                             "options": ["nosuid", "noexec", "nodev", "ro"]})
    result = urt.ok("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    mounts = _mountinfo(result.stdout)
    assert mounts["/sys"]["fstype"] == "sysfs", mounts["/sys"]
    assert mounts["/sys"]["options"].startswith("ro"), mounts["/sys"]
    # A recursive bind brings the host's mounts under /sys along; a new sysfs has none.
    assert any(point.startswith("/sys/") for point in mounts), sorted(mounts)


def test_network_namespace_with_loopback_and_its_own_sysfs(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    config["linux"]["namespaces"].append({"type": "network"})
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys"]
    config["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                             "options": ["nosuid", "noexec", "nodev", "ro"]})
    cid, pid = _running(urt, config, "net")
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    with open(f"/proc/{pid}/net/dev") as handle:
        interfaces = [line.split(":")[0].strip() for line in handle.readlines()[2:]]
    assert interfaces == ["lo"], interfaces
    # lo is up (IFF_UP | IFF_LOOPBACK), read through the container's own sysfs
    assert urt.ok("exec", cid, "cat", "/sys/class/net/lo/flags").stdout.strip() == "0x9"
    assert urt.ok("exec", cid, "ls", "/sys/class/net").stdout.split() == ["lo"]
    mounts = _mountinfo(urt.ok("exec", cid, "cat", "/proc/self/mountinfo").stdout)
    assert mounts["/sys"]["fstype"] == "sysfs" and mounts["/sys"]["root"] == "/"
    urt.ok("delete", "--force", cid)


def test_devices_are_bound_from_the_host(urt, rootless_user):
    config = rootless_config(rootless_user, urt.space.rootfs,
                             ["sh", "-c", "stat -c '%t:%T' /dev/null /dev/zero; echo x > /dev/null;"
                              " head -c 4 /dev/zero | od -An -tx1; cat /proc/self/mountinfo"],
                             urt.token)
    result = urt.ok("run", "--bundle", str(urt.bundle(config)), urt.new_id())
    lines = result.stdout.splitlines()
    assert lines[:2] == ["1:3", "1:5"], result
    assert lines[2].split() == ["00", "00", "00", "00"], result
    mounts = _mountinfo(result.stdout)
    # a bind of the host's node: the mount's root is the host's /null on devtmpfs
    assert mounts["/dev/null"]["root"] == "/null", mounts.get("/dev/null")


def test_spec_rootless_config_round_trips(urt, rootless_user):
    """The config `spec --rootless` writes is the user's: its maps name the user's ids."""
    bundle = urt.space.new_dir("spec")
    urt.ok("spec", "--rootless", cwd=bundle)
    config = json.loads((bundle / "config.json").read_text())
    kinds = {ns["type"] for ns in config["linux"]["namespaces"]}
    assert "user" in kinds and "network" not in kinds
    assert "resources" not in config["linux"] or not config["linux"]["resources"].get(
        "memory")


def test_container_root_cannot_write_the_hosts_sys_or_cgroups(urt, rootless_user):
    """root in the container is the user on the host. Even with CAP_SYS_ADMIN and
    CAP_DAC_OVERRIDE in its user namespace, and after remounting the bound /sys and the cgroup
    view read-write (the kernel allows it: the host's mounts were not read-only, so the flag is
    not locked), it cannot write a host sysfs or cgroup file: the host sees an ordinary user."""
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    config["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                             "source": "cgroup", "options": ["nosuid", "noexec", "nodev",
                                                             "relatime", "ro"]})
    config["process"]["capabilities"] = {kind: ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"] for kind
                                         in ("bounding", "effective", "permitted")}
    cid, _ = _running(urt, config, "attack")
    attempts = urt("exec", cid, "sh", "-c",
                   "mount -o remount,rw,bind /sys; for d in /sys/fs/cgroup/*; do "
                   "mount -o remount,rw,bind $d; done; "
                   "for f in /sys/kernel/uevent_helper /sys/kernel/mm/ksm/run "
                   "/sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/*/tasks "
                   "/sys/fs/cgroup/memory/memory.limit_in_bytes; do [ -e $f ] && echo TRIED && "
                   "(echo 1 > $f) 2>/dev/null && echo WROTE:$f; done; echo DONE")
    assert "DONE" in attempts.stdout, attempts
    assert "WROTE" not in attempts.stdout, attempts
    assert attempts.stdout.count("TRIED") >= 3, attempts  # the files were there to attack
    urt.ok("delete", "--force", cid)


@requires_ocirt  # runc 1.1 has no time namespace
def test_time_namespace_offsets(urt, rootless_user):
    """The unprivileged runtime writes stage-1's timens_offsets (stage-1 dumpable for it, as
    for the id maps); the container's uptime is shifted by the boottime offset."""
    boot = 400 * 86400
    config = rootless_config(rootless_user, urt.space.rootfs, ["sleep", "60"], urt.token)
    config["linux"]["namespaces"].append({"type": "time"})
    config["linux"]["timeOffsets"] = {"boottime": {"secs": boot, "nanosecs": 0},
                                      "monotonic": {"secs": 86400, "nanosecs": 7}}
    cid, pid = _running(urt, config, "time")
    with open(f"/proc/{pid}/timens_offsets") as handle:
        offsets = {line.split()[0]: line.split()[1:] for line in handle}
    assert offsets == {"monotonic": ["86400", "7"], "boottime": [str(boot), "0"]}, offsets
    with open("/proc/uptime") as handle:
        before = float(handle.read().split()[0])
    inside = float(urt.ok("exec", cid, "cat", "/proc/uptime").stdout.split()[0])
    with open("/proc/uptime") as handle:
        after = float(handle.read().split()[0])
    assert before + boot <= inside <= after + boot, (before, inside, after)
    urt.ok("delete", "--force", cid)
