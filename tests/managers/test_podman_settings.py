"""podman (through conmon) with ocirt as its OCI runtime, and with runc to prove each test:
the resources (cgroup limits, ulimits, update) and the security settings (read-only rootfs,
tmpfs, user, capabilities, privileged, seccomp) a container gets from podman's options."""

from __future__ import annotations

import os

import pytest

from .helpers import DEFAULT_CAPS, IMAGE
from .podman import Podman

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the manager tests need root"),
]

CGROUP_V1 = os.path.isdir("/sys/fs/cgroup/memory")
CAP_NUMBERS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5,
               "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13,
               "SYS_CHROOT": 18, "SYS_ADMIN": 21, "SETFCAP": 31}
# A container process that ends at once on SIGTERM (a shell as PID 1 ignores it otherwise).
SERVE = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


def caps_mask(*names: str) -> int:
    return sum(1 << CAP_NUMBERS[name] for name in names)


def proc_caps(status_text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16)
            for line in status_text.splitlines() if line.startswith("Cap")}


def cgroup_files() -> dict[str, str]:
    """Where the container reads its own limits (its cgroup is mounted on /sys/fs/cgroup)."""
    if CGROUP_V1:
        return {"memory": "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "pids": "/sys/fs/cgroup/pids/pids.max",
                "cpu_quota": "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                "cpu_period": "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
                "cpu_shares": "/sys/fs/cgroup/cpu/cpu.shares"}
    return {"memory": "/sys/fs/cgroup/memory.max", "pids": "/sys/fs/cgroup/pids.max",
            "cpu_max": "/sys/fs/cgroup/cpu.max", "cpu_weight": "/sys/fs/cgroup/cpu.weight"}


def read_limits_script() -> str:
    return "; ".join(f'echo "{key}=$(cat {path})"' for key, path in cgroup_files().items())


def parse_limits(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# --- resources --------------------------------------------------------------------------------

def test_limits(podman: Podman) -> None:
    result = podman.ok(*podman.run_args(
        "--rm", "--memory", "64m", "--pids-limit", "42", "--cpu-quota", "25000",
        "--cpu-period", "100000", "--cpu-shares", "512", IMAGE, "sh", "-c",
        read_limits_script()))
    limits = parse_limits(result.stdout)
    assert limits["memory"] == str(64 * 1024 * 1024), result
    assert limits["pids"] == "42", result
    if CGROUP_V1:
        assert limits["cpu_quota"] == "25000", result
        assert limits["cpu_period"] == "100000", result
        assert limits["cpu_shares"] == "512", result
    else:
        assert limits["cpu_max"] == "25000 100000", result


def test_ulimits(podman: Podman) -> None:
    # Both: given one, podman adds a default for the other, above this host's hard limit.
    result = podman.ok(*podman.run_args("--rm", "--ulimit", "nofile=512:1024", "--ulimit",
                                        "nproc=1000:2000", IMAGE, "sh", "-c",
                                        "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu"))
    assert result.stdout.split() == ["512", "1024", "1000", "2000"], result


def test_memory_limit_enforced(podman: Podman) -> None:
    """A program that outgrows --memory is killed by the kernel (the OOM killer)."""
    result = podman(*podman.run_args(
        "--rm", "--memory", "16m", "--memory-swap", "16m", IMAGE, "sh", "-c",
        # 64 MiB in one shell variable.
        "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}"))
    assert result.returncode == 137, result
    assert "survived" not in result.stdout, result


def test_update(podman: Podman) -> None:
    name = f"update-{os.urandom(3).hex()}"
    podman.ok(*podman.run_args("-d", "--name", name, "--memory", "64m", "--cpu-shares", "512",
                               IMAGE, "sh", "-c", SERVE))
    podman.ok("update", "--memory", "96m", "--cpu-quota", "30000", "--cpu-period", "100000",
              "--cpu-shares", "256", name)
    limits = parse_limits(podman.ok("exec", name, "sh", "-c", read_limits_script()).stdout)
    assert limits["memory"] == str(96 * 1024 * 1024), limits
    if CGROUP_V1:
        assert limits["cpu_quota"] == "30000", limits
        assert limits["cpu_shares"] == "256", limits
    else:
        assert limits["cpu_max"] == "30000 100000", limits
    podman.ok("stop", name)


# --- security settings ------------------------------------------------------------------------

def test_read_only_rootfs(podman: Podman) -> None:
    result = podman(*podman.run_args(
        "--rm", "--read-only", "--read-only-tmpfs=false", IMAGE, "sh", "-c",
        "touch /new-file || echo root-ro; grep ' / ' /proc/mounts"))
    assert result.returncode == 0, result
    assert "root-ro" in result.stdout, result
    assert "Read-only file system" in result.stderr, result
    root_options = result.stdout.strip().splitlines()[-1].split()[3].split(",")
    assert "ro" in root_options, result


def test_read_only_rootfs_with_tmpfs(podman: Podman) -> None:
    """podman's --read-only default: tmpfs on /tmp, /run and /var/tmp, with the mount option
    ``tmpcopyup`` (a runc extension: copy what the image has there into the new tmpfs)."""
    result = podman(*podman.run_args(
        "--rm", "--read-only", IMAGE, "sh", "-c",
        "touch /new-file 2>/dev/null || echo root-ro; touch /tmp/x && echo tmp-rw; "
        "grep -c ' /run tmpfs ' /proc/mounts"))
    assert result.returncode == 0, result
    assert result.stdout.split() == ["root-ro", "tmp-rw", "1"], result


def test_tmpfs_copyup(podman: Podman) -> None:
    """``--tmpfs DIR`` (podman adds ``tmpcopyup``): the image's files in DIR are in the tmpfs."""
    result = podman(*podman.run_args(
        "--rm", "--tmpfs", "/etc", IMAGE, "sh", "-c",
        "grep ' /etc ' /proc/mounts | cut -d' ' -f3; cat /etc/group | head -1; "
        "echo new > /etc/new && cat /etc/new"))
    assert result.returncode == 0, result
    assert result.stdout.split() == ["tmpfs", "root:x:0:", "new"], result


def test_user(podman: Podman) -> None:
    numeric = podman.ok(*podman.run_args("--rm", "--user", "1000:1001", "--group-add", "1002",
                                         IMAGE, "sh", "-c", "id -u; id -g; id -G"))
    assert numeric.stdout.split() == ["1000", "1001", "1001", "1002"], numeric
    named = podman.ok(*podman.run_args("--rm", "--user", "nobody", IMAGE, "id"))
    assert named.stdout.startswith("uid=65534(nobody) gid=65534(nobody)"), named


def test_capabilities(podman: Podman) -> None:
    default = proc_caps(podman.ok(*podman.run_args("--rm", IMAGE, "cat",
                                                   "/proc/self/status")).stdout)
    assert default["CapEff"] == caps_mask(*DEFAULT_CAPS), default
    assert default["CapBnd"] == caps_mask(*DEFAULT_CAPS), default

    changed = proc_caps(podman.ok(*podman.run_args(
        "--rm", "--cap-drop", "all", "--cap-add", "NET_RAW", "--cap-add", "SYS_ADMIN", IMAGE,
        "cat", "/proc/self/status")).stdout)
    assert changed["CapEff"] == caps_mask("NET_RAW", "SYS_ADMIN"), changed
    assert changed["CapBnd"] == caps_mask("NET_RAW", "SYS_ADMIN"), changed

    # A user other than root gets no effective capabilities, only the bounding set.
    user = proc_caps(podman.ok(*podman.run_args("--rm", "--user", "1000", IMAGE, "cat",
                                                "/proc/self/status")).stdout)
    assert user["CapEff"] == 0, user
    assert user["CapBnd"] == caps_mask(*DEFAULT_CAPS), user


def test_privileged(podman: Podman) -> None:
    """--privileged: every capability podman has, the host's devices, no seccomp filter."""
    with open("/proc/self/status") as handle:
        ours = proc_caps(handle.read())["CapBnd"]
    result = podman.ok(*podman.run_args("--rm", "--privileged", IMAGE, "sh", "-c",
                                        "cat /proc/self/status; ls /dev"))
    caps = proc_caps(result.stdout)
    assert caps["CapEff"] == ours, result
    assert "Seccomp:\t0" in result.stdout, result
    host_devices = set(os.listdir("/dev"))
    assert "null" in result.stdout.split() and len(host_devices) > 10
    assert sum(1 for name in result.stdout.split() if name in host_devices) > 10, result


def test_seccomp(podman: Podman) -> None:
    confined = podman.ok(*podman.run_args("--rm", IMAGE, "grep", "Seccomp:",
                                          "/proc/self/status"))
    assert confined.stdout.split() == ["Seccomp:", "2"], confined
    unconfined = podman.ok(*podman.run_args("--rm", "--security-opt", "seccomp=unconfined",
                                            IMAGE, "grep", "Seccomp:", "/proc/self/status"))
    assert unconfined.stdout.split() == ["Seccomp:", "0"], unconfined
