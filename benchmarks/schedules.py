"""Time to plan a schedule: amcheck's strategies beside checkpoint_schedules, in one run.

For each n (10^4, 10^5, 10^6) and RAM slots s (10, 50) this times

- amcheck: generating *and* replaying every action through :func:`amcheck.schedules.simulate`
  (StoreAll, Revolve(n, s), TwoLevel(n, s, k), AsyncMultistage(n, s, k)), in this process;
- checkpoint_schedules: iterating every action of ``MultistageCheckpointSchedule(n, s, 0)`` (its
  closed-form binomial schedule, all checkpoints in RAM: the same plan as amcheck's Revolve) and of
  its ``Revolve(n, s)``, each case in a subprocess killed after ``--limit`` seconds and reported as
  "> X s (stopped)". Their schedules are only generated, not checked: that favours them.

A case that takes under one second is run three times and the median is reported; the spread
(max/min) of the three is printed so the noise of a shared machine is visible. Ratios compare
medians measured in this same run. Needs the ``bench`` extra (``pip install -e ".[bench]"``).

Usage::

    python benchmarks/schedules.py                 # the full table (several minutes)
    python benchmarks/schedules.py --sizes 10000 --limit 10
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from amcheck.schedules import AsyncMultistage, Revolve, Schedule, StoreAll, TwoLevel, simulate

# Run inside the subprocess: a warm-up case first (checkpoint_schedules' first schedule pays a
# one-off set-up of about 2 s on this machine), then the timed runs; prints the seconds per run.
_THEIRS = """
import sys, time
import checkpoint_schedules as cs
name, n, s, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
make = {{"multistage": lambda n, s: cs.MultistageCheckpointSchedule(n, s, 0),
         "revolve": lambda n, s: cs.Revolve(n, s)}}[name]
def run(n, s):
    count = 0
    for action in make(n, s):
        count += 1
        if isinstance(action, cs.EndReverse):
            return count
    raise RuntimeError("no EndReverse")
run(20, 3)
for _ in range(repeats):
    start = time.perf_counter()
    run(n, s)
    print(time.perf_counter() - start, flush=True)
"""


def _median_of(run: Callable[[], object]) -> tuple[float, float]:
    """Median seconds of ``run`` (3 runs when one takes under 1 s, else 1) and the max/min spread."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        if times[0] >= 1.0:
            break
    return statistics.median(times), max(times) / min(times)


def _theirs(name: str, n: int, s: int, limit: float) -> tuple[float | None, float]:
    """Median seconds of checkpoint_schedules' ``name`` schedule, or None past ``limit``."""
    cmd = [sys.executable, "-c", _THEIRS.format(), name, str(n), str(s), "3"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        times = [float(x) for x in out.split()]
        if times:  # at least one run finished inside the limit
            return statistics.median(times), max(times) / min(times)
        return None, 1.0
    times = [float(x) for x in done.stdout.split()]
    return statistics.median(times), max(times) / min(times)


def _fmt(seconds: float | None, limit: float) -> str:
    return f"> {limit:g} s (stopped)" if seconds is None else f"{seconds:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--slots", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--interval", type=int, default=100, help="k for the two-level plans")
    parser.add_argument("--limit", type=float, default=30.0, help="seconds per external case")
    args = parser.parse_args(argv)

    print(f"# machine: {platform.machine()}, {platform.processor() or '?'}, "
          f"Python {platform.python_version()}, {_cpu_count()} CPUs")  # fmt: skip
    header = (
        f"| {'n':>9} | {'s':>3} | {'schedule':<34} | {'seconds':>20} | {'spread':>6} "
        f"| {'recompute':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    ratios: list[str] = []
    over: set[tuple[str, int]] = set()  # (their schedule, s) already past the limit at smaller n
    for n in args.sizes:
        for s in args.slots:
            ours: dict[str, float] = {}
            plans: list[tuple[str, Schedule]] = [
                ("amcheck StoreAll", StoreAll(n)),
                ("amcheck Revolve", Revolve(n, s)),
                (f"amcheck TwoLevel k={args.interval}", TwoLevel(n, s, args.interval)),
                (f"amcheck AsyncMultistage k={args.interval}", AsyncMultistage(n, s, args.interval)),
            ]  # fmt: skip
            for label, schedule in plans:
                if label == "amcheck StoreAll" and s != args.slots[0]:
                    continue  # independent of s
                factor = simulate(schedule).recompute_factor
                seconds, spread = _median_of(lambda schedule=schedule: simulate(schedule))  # type: ignore[misc]
                ours[label] = seconds
                print(f"| {n:>9,} | {s:>3} | {label:<34} | {_fmt(seconds, 0):>20} "
                      f"| {spread:>5.2f}x | {factor:>9.3f} |", flush=True)  # fmt: skip
            for name, label in (("multistage", "c_s MultistageCheckpointSchedule"),
                                ("revolve", "c_s Revolve")):  # fmt: skip
                skipped = (name, s) in over
                if skipped:  # it took longer than the limit at a smaller n: not run again
                    seconds, spread = None, 1.0
                else:
                    seconds, spread = _theirs(name, n, s, args.limit)
                    if seconds is None:
                        over.add((name, s))
                shown = "not run (> limit at smaller n)" if skipped else _fmt(seconds, args.limit)
                print(f"| {n:>9,} | {s:>3} | {label:<34} | {shown:>20} "
                      f"| {spread:>5.2f}x | {'':>9} |", flush=True)  # fmt: skip
                mine = ours["amcheck Revolve"]
                if skipped:
                    continue
                if seconds is None:
                    ratios.append(f"n={n:,} s={s}: {label} / amcheck Revolve > "
                                  f"{args.limit / mine:,.0f}x (stopped)")  # fmt: skip
                else:
                    ratios.append(f"n={n:,} s={s}: {label} / amcheck Revolve = "
                                  f"{seconds / mine:,.1f}x")  # fmt: skip
    print()
    print("Ratios (checkpoint_schedules generating only / amcheck generating and simulating):")
    for line in ratios:
        print("  " + line)
    return 0


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
