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
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench_report import load_average, report, report_seccomp
from bench_rounds import Bench, seccomp_bundle, time_seccomp_cache
from bench_runtime import (
    DEFAULT_OCIRT,
    Runtime,
    die,
    find_runtimes,
    hide_hybrid_cgroup2,
    make_bundle,
    version,
)


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
