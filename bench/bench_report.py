"""bench.py's report: the medians and p90 of each operation per runtime, the sequential wall
time, the peak RSS, the load average before and after, and the seccomp cache times."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence

from bench_runtime import OPERATIONS, Runtime


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
