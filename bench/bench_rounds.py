"""bench.py's measurements: the timed rounds (runtimes take turns, the first rotating), the
sequential runs, the peak RSS under GNU time, and ocirt with its default seccomp profile on a
cold and a warm cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench_runtime import OPERATIONS, TIMEOUT, Runtime, timed_call


class Bench:
    def __init__(self, runtimes: list[Runtime], bundle: Path, seccomp: Path | None) -> None:
        self.runtimes = runtimes
        self.bundle = str(bundle)
        # the same bundle with ocirt's default seccomp profile (None: --no-seccomp)
        self.seccomp_bundle = str(seccomp) if seccomp is not None else ""
        self.serial = 0

    def new_id(self, rt: Runtime) -> str:
        self.serial += 1
        return f"bench-{os.getpid()}-{rt.name}-{self.serial}"

    def prepare(self) -> None:
        """Create, for each runtime, the container that `state` is timed on."""
        for rt in self.runtimes:
            rt.state_id = self.new_id(rt)
            rt.containers.add(rt.state_id)
            status, _ = rt.call("create", "--bundle", self.bundle, rt.state_id)
            if status != 0:
                rt.fail("state", "create (for the state container)", status)

    def run_once(self, rt: Runtime, op: str = "run") -> float | None:
        container_id = self.new_id(rt)
        rt.containers.add(container_id)
        bundle = self.seccomp_bundle if op == "run-seccomp" else self.bundle
        status, ms = rt.call("run", "--bundle", bundle, container_id)
        if status != 0:
            rt.fail(op, op, status)
        rt.delete(container_id)
        return ms if status == 0 else None

    def peak_rss(self, tries: int = 3) -> None:
        """The peak RSS of ``run`` per runtime, under GNU time (see the module docstring)."""
        gnu_time = shutil.which("time")
        if gnu_time is None:
            print("bench: GNU time not found (apt-get install time): no peak RSS")
            return
        for rt in self.runtimes:
            if "run" in rt.errors:
                continue
            for _ in range(tries):
                container_id = self.new_id(rt)
                rt.containers.add(container_id)
                with tempfile.NamedTemporaryFile("r") as out:
                    status = subprocess.run(
                        [gnu_time, "-f", "%M", "-o", out.name,
                         *rt.command("run", "--bundle", self.bundle, container_id)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=TIMEOUT, check=False).returncode
                    text = out.read().strip()
                rt.delete(container_id)
                if status == 0 and text.isdigit():
                    rt.max_rss_kib = max(rt.max_rss_kib, int(text))

    def sequential(self, count: int) -> None:
        """``count`` runs back to back, per runtime in turn; the total wall time of each batch.

        ``run`` deletes its container when the program exits, so nothing is cleaned up in
        between; leftovers of a failed run are deleted after the batch, untimed.
        """
        for rt in self.runtimes:
            if "run" in rt.errors:
                continue
            ids = [self.new_id(rt) for _ in range(count)]
            rt.containers.update(ids)
            total = 0.0
            for container_id in ids:
                status, ms = rt.call("run", "--bundle", self.bundle, container_id)
                total += ms
                if status != 0:
                    rt.fail("run", f"run (sequential, {container_id})", status)
                    break
            else:
                rt.sequential_ms = total
            for container_id in ids:
                if (rt.root / container_id).exists():
                    rt.delete(container_id)
                rt.containers.discard(container_id)
            print(f"bench: {rt.name}: {count} sequential runs", flush=True)

    def state_once(self, rt: Runtime) -> float | None:
        status, ms = rt.call("state", rt.state_id)
        if status != 0:
            rt.fail("state", "state", status)
            return None
        return ms

    def rounds(self, warmup: int, rounds: int) -> None:
        n = len(self.runtimes)
        for r in range(warmup + rounds):
            timed = r >= warmup
            order = [self.runtimes[(r + i) % n] for i in range(n)]
            for rt in order:
                for op in OPERATIONS:
                    if op in rt.errors or (op == "run-seccomp" and not self.seccomp_bundle):
                        continue
                    ms = self.state_once(rt) if op == "state" else self.run_once(rt, op)
                    if ms is not None and timed:
                        rt.times[op].append(ms)
            if timed and (r - warmup + 1) % 10 == 0:
                print(f"bench: {r - warmup + 1}/{rounds} rounds", flush=True)

    def cleanup(self) -> None:
        for rt in self.runtimes:
            for container_id in sorted(rt.containers):
                try:
                    rt.delete(container_id)
                except OSError as err:
                    print(f"bench: {rt.name}: cannot delete {container_id}: {err}")


def seccomp_bundle(bundle: Path, ocirt: str) -> Path:
    """The benchmark bundle with ocirt's default seccomp profile, beside it: the one the ocirt
    under test writes with ``ocirt spec`` (not the ``ocirt`` package this script could import,
    which may be another version)."""
    spec_dir = bundle.parent / "spec"
    spec_dir.mkdir()
    subprocess.run([ocirt, "spec"], cwd=spec_dir, check=True)
    profile = json.loads((spec_dir / "config.json").read_text())["linux"]["seccomp"]
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["seccomp"] = profile
    config["root"]["path"] = str(bundle / config["root"]["path"])
    target = bundle.parent / "bundle-seccomp"
    target.mkdir()
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return target


def time_seccomp_cache(path: str, bundle: Path, workdir: Path, rounds: int
                       ) -> dict[str, list[float]]:
    """ocirt ``run`` with the default seccomp profile: a cold cache each time, then a warm one."""
    root = workdir / "seccomp-state"
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    warm_cache = workdir / "seccomp-cache-warm"
    for n in range(rounds + 1):
        for kind in ("cold", "warm"):
            cache = workdir / f"seccomp-cache-cold-{n}" if kind == "cold" else warm_cache
            env = dict(os.environ, OCIRT_CACHE_DIR=str(cache))
            container_id = f"bench-{os.getpid()}-seccomp-{kind}-{n}"
            argv = [path, "--root", str(root), "run", "--bundle", str(bundle), container_id]
            with tempfile.TemporaryFile() as stderr:  # a file, never a pipe (see timed_call)
                status, elapsed = timed_call(argv, stderr, env=env)
                subprocess.run([path, "--root", str(root), "delete", "--force", container_id],
                               capture_output=True, timeout=TIMEOUT, check=False)
                if status != 0:
                    stderr.seek(0)
                    print(f"bench: seccomp {kind} run failed ({status}): "
                          f"{stderr.read().decode(errors='replace')}")
                    return times
            if n > 0:  # round 0 fills the warm cache
                times[kind].append(elapsed)
            if kind == "cold":
                shutil.rmtree(cache, ignore_errors=True)
    return times
