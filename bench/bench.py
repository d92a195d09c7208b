"""Time ocirt against runc and crun on the same bundle.

    sudo /opt/ocirt/venv/bin/python bench/bench.py [--rounds N] [--ocirt PATH]

Two operations, each a fresh process of the runtime's CLI, timed from the parent:

  run    ``RUNTIME --root R run --bundle B ID`` of a container whose process is /bin/true
  state  ``RUNTIME --root R state ID`` of one container left in the "created" state

Then each runtime in turn runs ``run`` N times back to back (``--sequential N``, default 100;
the total wall time per runtime), and the peak RSS of each runtime's ``run`` is reported: the
largest of three untimed runs under GNU ``time -f %M`` (``ru_maxrss`` from ``wait4``: the
runtime command and the processes it reaped, its own children and the container's init). Not
from this script's own ``wait4``: a child of this Python process inherits its RSS high-water
mark at exec, ~17 MiB, which would hide every runtime's.

ocirt alone is also timed on ``run`` of the same bundle with ocirt's default seccomp profile
(what ``ocirt spec`` writes), with a cold cache (a new empty OCIRT_CACHE_DIR each time: the
profile is compiled through libseccomp) and a warm one (the compiled BPF is read back, pyseccomp
is not imported). ``--no-seccomp`` leaves this out.

The bundle is made here, in a temporary directory: a copy of bundles/busybox/rootfs and that
bundle's config.json with the process replaced by /bin/true and the network namespace removed
(an empty network namespace costs the kernel time that says nothing about a runtime). All the
runtimes run the same bundle, each with its own --root.

The runtimes take turns within each round (and the first of a round rotates), so machine drift
affects all of them alike. A runtime that fails an operation is reported with the stderr of its
first failure and is not timed on that operation again; the others go on. Containers and
temporary directories are removed at the end, also after an error or Ctrl-C.

Hybrid cgroups: crun refuses to run any container when /sys/fs/cgroup/unified (the cgroup2
half of a hybrid layout) has controllers. Then this script moves itself into a private mount
namespace without that mount, so every runtime sees the same plain cgroup v1 layout; the host is
not changed. ``--keep-unified`` turns this off.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

REPO = Path(__file__).resolve().parent.parent
SOURCE_BUNDLE = REPO / "bundles" / "busybox"
DEFAULT_OCIRT = "/usr/local/bin/ocirt"  # the launcher set-up writes (python -IS)
OPERATIONS = ("run", "run-seccomp", "state")
TIMEOUT = 60.0  # seconds for one runtime command; a hung runtime counts as a failure
CGROUP2_IN_HYBRID = Path("/sys/fs/cgroup/unified")

# <sched.h>, <sys/mount.h>
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 2


@dataclass
class Runtime:
    """One runtime under test: its CLI, its private --root, what it measured and left behind."""

    name: str
    path: str
    root: Path
    stderr: IO[bytes]
    times: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    max_rss_kib: int = 0  # the peak RSS of `run` (KiB), see peak_rss
    sequential_ms: float | None = None  # wall time of --sequential runs back to back
    errors: dict[str, str] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    state_id: str = ""

    def command(self, *args: str) -> list[str]:
        return [self.path, "--root", str(self.root), *args]

    def call(self, *args: str, timeout: float = TIMEOUT) -> tuple[int, float]:
        """Run one command of this runtime; return its exit status and wall time in ms.

        stdin and stdout are /dev/null and stderr a file, never a pipe: a container created
        without a terminal inherits them, and would hold a pipe open after the runtime exits.

        The exit is awaited on a pidfd, not with ``subprocess.run(timeout=...)``: that polls with
        sleeps that double from 0.5 ms, which rounds every time up to 0.5 * (2^k - 1) ms
        (7.5, 15.5, 31.5, 63.5, ...).
        """
        self.stderr.seek(0)
        self.stderr.truncate()
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                self.command(*args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.stderr,
            )
        except OSError as err:
            self.stderr.write(f"cannot execute {self.path}: {err}".encode())
            return -1, 0.0
        pidfd = os.pidfd_open(proc.pid)
        try:
            exited = select.select([pidfd], [], [], timeout)[0]
        finally:
            os.close(pidfd)
        if not exited:
            proc.kill()
            proc.wait()
            self.stderr.write(f"\n(timed out after {timeout:.0f} s)".encode())
            return -1, (time.perf_counter() - start) * 1000
        elapsed = (time.perf_counter() - start) * 1000
        return proc.wait(), elapsed

    def last_stderr(self, max_lines: int = 20) -> str:
        """The stderr of the last command: its end, where a traceback says what went wrong."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        if len(lines) > max_lines:
            lines = [f"[{len(lines) - max_lines} lines left out]", *lines[-max_lines:]]
        return "\n".join(lines)

    def fail(self, op: str, what: str, status: int) -> None:
        if op not in self.errors:
            detail = self.last_stderr() or "(no output on stderr)"
            self.errors[op] = f"{what} exited with status {status}: {detail}"

    def delete(self, container_id: str) -> None:
        """Remove a container if the runtime still knows it (untimed)."""
        status, _ = self.call("state", container_id, timeout=30)
        if status == 0:
            self.call("delete", "--force", container_id, timeout=30)
        self.containers.discard(container_id)


def die(message: str) -> NoReturn:
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `run` and `state` of ocirt, runc and crun on the same bundle."
    )
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    parser.add_argument("--ocirt", default=DEFAULT_OCIRT, help=f"ocirt (default {DEFAULT_OCIRT})")
    parser.add_argument(
        "--runtimes",
        default="ocirt,runc,crun",
        help="comma-separated runtimes to compare, of ocirt, runc, crun (default all found)",
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=100,
        help="runs back to back per runtime, timed as a whole (default 100; 0: none)",
    )
    parser.add_argument(
        "--no-seccomp",
        action="store_true",
        help="do not time ocirt's run with the default seccomp profile, cold and warm cache",
    )
    parser.add_argument(
        "--keep-unified",
        action="store_true",
        help="do not hide /sys/fs/cgroup/unified on hybrid cgroup hosts (crun will fail)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    return args


def find_runtimes(wanted: Sequence[str], ocirt: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in wanted:
        if name == "ocirt":
            path: str | None = ocirt if os.access(ocirt, os.X_OK) else None
        elif name in ("runc", "crun"):
            path = shutil.which(name)
        else:
            die(f"unknown runtime {name!r}: choose among ocirt, runc, crun")
        if path is None:
            print(f"bench: {name} not found, left out")
        else:
            found[name] = path
    return found


def version(path: str) -> str:
    try:
        proc = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = proc.stdout.strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else "?"


def hide_hybrid_cgroup2() -> None:
    """Enter a private mount namespace without /sys/fs/cgroup/unified, if crun would refuse it."""
    controllers = CGROUP2_IN_HYBRID / "cgroup.controllers"
    try:
        if not controllers.read_text().strip():
            return
    except OSError:
        return  # not a hybrid layout
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def check(what: str, result: int) -> None:
        if result != 0:
            die(f"{what}: {os.strerror(ctypes.get_errno())} (try --keep-unified)")

    # In this order, each only after the one before succeeded: making / private must never
    # happen in the host's mount namespace.
    check("unshare(CLONE_NEWNS)", libc.unshare(CLONE_NEWNS))
    check("make / private", libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
    check(f"umount {CGROUP2_IN_HYBRID}", libc.umount2(bytes(CGROUP2_IN_HYBRID), MNT_DETACH))
    print(
        f"bench: hybrid cgroups with controllers in {CGROUP2_IN_HYBRID}, which crun refuses:"
        " all runtimes run in a private mount namespace without it (plain cgroup v1)"
    )


def make_bundle(workdir: Path) -> Path:
    """A copy of the busybox bundle whose process is /bin/true, without a network namespace."""
    rootfs = SOURCE_BUNDLE / "rootfs"
    if not (rootfs / "bin" / "busybox").exists():
        die(f"{rootfs} is not built: run `sudo bash scripts/setup.sh` first")
    config = json.loads((SOURCE_BUNDLE / "config.json").read_text())
    config["process"]["args"] = ["/bin/true"]
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    bundle = workdir / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / config["root"]["path"], symlinks=True)
    (bundle / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return bundle


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
            with tempfile.TemporaryFile() as stderr:  # a file, never a pipe (see Runtime.call)
                start = time.perf_counter()
                try:
                    proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                          timeout=TIMEOUT, check=False)
                    status = proc.returncode
                except subprocess.TimeoutExpired:
                    status = -1
                elapsed = (time.perf_counter() - start) * 1000
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


def report_seccomp(times: dict[str, list[float]]) -> None:
    if not times["cold"] or not times["warm"]:
        return
    print()
    print("ocirt run with the default seccomp profile (compiled BPF cache):")
    print(f"{'cache':10} {'median ms':>10} {'p90 ms':>10} {'n':>4}")
    for kind in ("cold", "warm"):
        values = times[kind]
        print(f"{kind:10} {statistics.median(values):10.1f} {p90(values):10.1f} {len(values):>4}")
    saved = statistics.median(times["cold"]) - statistics.median(times["warm"])
    print(f"warm saves {saved:.1f} ms a run (median)")


def p90(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def report(runtimes: list[Runtime], versions: dict[str, str], loads: Sequence[str],
           sequential: int) -> None:
    print()
    for rt in runtimes:
        print(f"{rt.name:6} {rt.path}  ({versions[rt.name]})")
    print(f"load average (1, 5, 15 min): at the start {loads[0]}; at the end {loads[1]}")
    print()
    print(f"{'operation':12} {'runtime':8} {'median ms':>10} {'p90 ms':>10} {'n':>4}")
    medians: dict[tuple[str, str], float] = {}
    for op in OPERATIONS:
        for rt in runtimes:
            values = rt.times[op]
            if op not in rt.errors and not values:
                continue  # not measured (--no-seccomp)
            if op in rt.errors or not values:
                print(f"{op:12} {rt.name:8} {'failed':>10} {'':>10} {len(values):>4}")
                continue
            medians[op, rt.name] = statistics.median(values)
            print(
                f"{op:12} {rt.name:8} {medians[op, rt.name]:10.1f} {p90(values):10.1f}"
                f" {len(values):>4}"
            )
    others = [rt.name for rt in runtimes if rt.name != "ocirt"]
    if "ocirt" in {rt.name for rt in runtimes} and others:
        print()
        print(f"{'median ratio':12} " + " ".join(f"{'ocirt/' + o:>11}" for o in others))
        for op in OPERATIONS:
            cells = []
            for other in others:
                a, b = medians.get((op, "ocirt")), medians.get((op, other))
                cells.append(f"{a / b:10.2f}x" if a is not None and b else f"{'-':>11}")
            if (op, "ocirt") in medians:
                print(f"{op:12} " + " ".join(cells))
    print()
    print(f"{'runtime':8} {'peak RSS of run (MiB)':>22} {f'{sequential} runs in a row (s)':>22}")
    for rt in runtimes:
        rss = f"{rt.max_rss_kib / 1024:.1f}" if rt.max_rss_kib else "-"
        seq = f"{rt.sequential_ms / 1000:.2f}" if rt.sequential_ms is not None else "-"
        print(f"{rt.name:8} {rss:>22} {seq:>22}")
    failures = [(rt, op, msg) for rt in runtimes for op, msg in rt.errors.items()]
    if failures:
        print()
        for rt, op, msg in failures:
            print(f"{rt.name} failed {op}: {msg}")


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so a killed benchmark still cleans up."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        die("needs root: sudo /opt/ocirt/venv/bin/python bench/bench.py")
    paths = find_runtimes([n.strip() for n in args.runtimes.split(",") if n.strip()], args.ocirt)
    if not paths:
        die("no runtime to benchmark")
    if "crun" in paths and not args.keep_unified:
        hide_hybrid_cgroup2()
    versions = {name: version(path) for name, path in paths.items()}

    loads = [load_average()]
    workdir = Path(tempfile.mkdtemp(prefix="ocirt-bench-"))
    state_parent = "/run" if os.path.isdir("/run") else None  # where the runtimes keep state
    runtimes: list[Runtime] = []
    bench: Bench | None = None
    seccomp_times: dict[str, list[float]] = {"cold": [], "warm": []}
    interrupted = False
    with interrupts_as_exceptions():
        try:
            bundle = make_bundle(workdir)
            for name, path in paths.items():
                root = Path(tempfile.mkdtemp(prefix=f"ocirt-bench-{name}-", dir=state_parent))
                stderr = (workdir / f"{name}.stderr").open("w+b")
                runtimes.append(Runtime(name, path, root, stderr))
            secure = (None if args.no_seccomp or "ocirt" not in paths
                      else seccomp_bundle(bundle, paths["ocirt"]))
            bench = Bench(runtimes, bundle, secure)
            print(
                f"bench: {len(runtimes)} runtimes, {args.warmup} warm-up and {args.rounds} timed"
                " rounds",
                flush=True,
            )
            bench.prepare()
            bench.rounds(args.warmup, args.rounds)
            if args.sequential > 0:
                bench.sequential(args.sequential)
            bench.peak_rss()
            if "ocirt" in paths and not args.no_seccomp:
                print("bench: ocirt with the default seccomp profile, cold and warm cache",
                      flush=True)
                assert secure is not None
                seccomp_times = time_seccomp_cache(paths["ocirt"], secure, workdir, args.rounds)
        except KeyboardInterrupt:
            interrupted = True
            print("\nbench: interrupted, cleaning up", file=sys.stderr)
        finally:
            # A second Ctrl-C must not leave containers behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if bench is not None:
                bench.cleanup()
            for rt in runtimes:
                rt.stderr.close()
                shutil.rmtree(rt.root, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        return 130
    loads.append(load_average())
    report(runtimes, versions, loads, args.sequential)
    report_seccomp(seccomp_times)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
