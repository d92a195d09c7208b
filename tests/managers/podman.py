"""A private podman (with conmon) for the manager tests: its configuration, storage and state
under one temporary directory, the runtime under test registered as a wrapper that carries
the test's token, and a check that nothing is left behind."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .helpers import DEFAULT_CAPS, TOKEN_VAR, Result, run

CONTAINERS_CONF = """\
# Written by tests/managers: a private podman for the tests.
[containers]
# Podman would ask for RLIMIT_NOFILE/NPROC above this host's hard limits, which root without
# CAP_SYS_RESOURCE cannot raise: keep the caller's limits.
default_ulimits = []
netns = "none"
# Pinned, so that the tests do not depend on the host's containers.conf.
default_capabilities = [{capabilities}]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# Container locks in tmp_dir, not in /dev/shm/libpod_lock (shared with the host's podman).
lock_type = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{base}/tmp"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "ocirt"]
# The tests' own commands, not one the host may have set up.
conmon_path = ["/usr/bin/conmon", "/usr/libexec/podman/conmon"]

[engine.runtimes]
{runtimes}

[network]
network_config_dir = "{base}/net"
"""

STORAGE_CONF = """\
[storage]
driver = "{driver}"
graphroot = "{base}/storage"
runroot = "{base}/run"
"""

REGISTRIES_CONF = """\
# No registry is reachable: images come from podman import.
unqualified-search-registries = []
"""

RUNTIME_WRAPPER = """\
#!/bin/sh
# The runtime with a private state root. conmon's exit command (`podman container cleanup`)
# does not pass podman's --runtime-flag on, so the root must come from the runtime command.
exec {binary} --root {root} "$@"
"""


def storage_driver() -> str:
    chosen = os.environ.get("OCIRT_MANAGERS_STORAGE_DRIVER")
    if chosen:
        return chosen
    with open("/proc/filesystems") as handle:
        return "overlay" if any(line.split()[-1] == "overlay" for line in handle) else "vfs"


class Podman:
    """podman with private storage, config and runtime state under ``base``."""

    def __init__(self, base: Path, state: Path, token: str, runtimes: dict[str, str]) -> None:
        self.base = base
        self.state = state  # the runtimes' roots: short, as under /run (see SHORT_STATE)
        self.token = token
        self.runtimes = runtimes  # name -> binary
        self.runtime = ""  # chosen per test
        for name in ("tmp", "net", "bin"):
            (base / name).mkdir(parents=True, exist_ok=True)
        lines = []
        for name, binary in runtimes.items():
            wrapper = base / "bin" / name
            wrapper.write_text(RUNTIME_WRAPPER.format(binary=shlex.quote(binary),
                                                      root=shlex.quote(str(self.root(name)))))
            wrapper.chmod(0o755)
            lines.append(f'{name} = ["{wrapper}"]')
        (base / "containers.conf").write_text(
            CONTAINERS_CONF.format(base=base, runtimes="\n".join(lines),
                                   capabilities=", ".join(f'"{c}"' for c in DEFAULT_CAPS)))
        (base / "storage.conf").write_text(STORAGE_CONF.format(base=base,
                                                               driver=storage_driver()))
        (base / "registries.conf").write_text(REGISTRIES_CONF)
        self.env = {
            "CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(base / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
            TOKEN_VAR: token,
        }

    def root(self, runtime: str) -> Path:
        return self.state / runtime

    def argv(self, *args: str) -> list[str]:
        if args and args[0] in ("run", "create"):
            assert "--network" in args or any(a.startswith("--network=") for a in args), \
                "podman's default network changes the host's iptables: pass --network none"
        return ["podman", "--runtime", self.runtime, "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", *args]

    def __call__(self, *args: str, timeout: float = 30, input: str | None = None,
                 pass_fds: Iterable[int] = ()) -> Result:
        return run(self.argv(*args), self.env, cwd=self.base, timeout=timeout, input=input,
                   pass_fds=pass_fds)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.returncode == 0, result
        return result

    def run_args(self, *args: str) -> list[str]:
        """``run`` with the tests' fixed options: no network, the token in the container."""
        return ["run", "--network", "none", "-e", f"{TOKEN_VAR}={self.token}", *args]

    def inspect(self, name: str, template: str) -> str:
        return self.ok("inspect", "--format", template, name).stdout.strip()

    def cleanup(self) -> list[str]:
        problems = []
        result = self("rm", "--all", "--force", "--time", "0", timeout=60)
        if result.returncode != 0:
            problems.append(f"podman rm --all --force failed: {result!r}")
        left = self("ps", "--all", "--quiet").stdout.split()
        if left:
            problems.append(f"podman still lists containers: {left}")
        return problems
