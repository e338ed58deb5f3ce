"""Time to plan a schedule: amcheck's strategies beside checkpoint_schedules, cold and warm.

For each n (10^4, 10^5, 10^6) and RAM slots s (10, 50) this times

- amcheck: generating *and* replaying every action through :func:`amcheck.schedules.simulate`
  (StoreAll, Revolve(n, s), TwoLevel(n, s, k), AsyncMultistage(n, s, k));
- checkpoint_schedules: iterating every action of ``MultistageCheckpointSchedule(n, s, 0)`` (its
  closed-form binomial schedule, all checkpoints in RAM: the same plan as amcheck's Revolve) and of
  its ``Revolve(n, s)``. Their schedules are only generated, not checked: that favours them.

Cold and warm
-------------
Every case runs in fresh Python processes (the package already imported; import times are printed
separately). **Cold** is the first plan made in the process: what a user pays to plan one (n, s).
**Warm** is the same plan made again in the same process. checkpoint_schedules JIT-compiles its
``n_advance`` with numba on the first call in every process (no on-disk cache), which costs a
constant ~2 s on top of the planning itself; it also memoises step counts per (n, s)
(``cache_step``). To tell the two apart, the column **new (n, s)** is the first plan of this
(n, s) in a process that has already planned another one (n = 20, s = 3): the JIT is done, the
memo for this (n, s) is empty. The row "NUMBA_DISABLE_JIT=1" runs their schedule with numba's JIT
switched off (as for a user without numba): n_advance then runs as plain Python. amcheck has
neither a JIT nor a cache, so its cold and warm times should match.

Noise: a case whose cold run took under 10 s is measured in 3 processes (else 1); a process repeats
the plan once more when the warm run took under 1 s. Each figure is the median over its samples,
and the spread (max/min over all samples of that figure) is printed. Ratios compare medians
measured in this same run, in wall-clock time and in CPU time (``time.process_time``: less
sensitive to other work sharing the cores). A checkpoint_schedules process is killed after
``--limit`` seconds and reported as "> X s (stopped)"; a schedule stopped at one n is not run at a
larger n.

Needs the ``bench`` extra (``pip install -e ".[bench]"``). Usage::

    python benchmarks/schedules.py                 # the full table (15–20 minutes)
    python benchmarks/schedules.py --sizes 10000 --limit 10
    python benchmarks/schedules.py --json benchmarks/results/schedules.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from _args import positive_float, positive_int  # the benchmarks' shared argparse types
from _machine import describe  # which host: CPU model and caches

# One process: import, optionally plan a small other (n, s) first, then plan (n, s) once (cold,
# or "new (n, s)" after the warm-up) and again (warm): once more when the warm run took < 1 s.
# Prints one JSON line per event, flushed, so that a process killed at the limit still reports.
_RUNNER = """
import json, sys, time
side, name, n, s, k, warmup = sys.argv[1:7]
n, s, k, warmup = int(n), int(s), int(k), warmup == "1"
def say(**kw):
    print(json.dumps(kw), flush=True)
start = time.perf_counter()
if side == "amcheck":
    from amcheck.schedules import AsyncMultistage, Revolve, StoreAll, TwoLevel, simulate
    make = {"StoreAll": lambda n, s: StoreAll(n), "Revolve": Revolve,
            "TwoLevel": lambda n, s: TwoLevel(n, s, k),
            "AsyncMultistage": lambda n, s: AsyncMultistage(n, s, k)}[name]
    def plan(n, s):
        stats = simulate(make(n, s))
        return stats.actions, stats.recompute_factor
else:
    import checkpoint_schedules as cs
    make = {"Multistage": lambda n, s: cs.MultistageCheckpointSchedule(n, s, 0),
            "Multistage-nojit": lambda n, s: cs.MultistageCheckpointSchedule(n, s, 0),
            "Revolve": cs.Revolve}[name]
    def plan(n, s):
        count = 0
        for action in make(n, s):
            count += 1
            if isinstance(action, cs.EndReverse):
                return count, None
        raise RuntimeError("no EndReverse")
say(event="import", seconds=time.perf_counter() - start)
if warmup:
    start = time.perf_counter()
    plan(20, 3)
    say(event="warmup", seconds=time.perf_counter() - start)
for run in range(3):
    start, cpu = time.perf_counter(), time.process_time()
    actions, factor = plan(n, s)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    say(event="new" if warmup else ("cold" if run == 0 else "warm"), seconds=seconds, cpu=cpu,
        actions=actions, recompute=factor)
    if warmup or (run >= 1 and seconds >= 1.0):
        break
"""


@dataclass
class Case:
    """Every sample measured for one (side, schedule, n, s)."""

    side: str
    name: str
    n: int
    s: int
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # CPU seconds, by column
    imports: list[float] = field(default_factory=list)
    warmups: list[float] = field(default_factory=list)
    actions: int | None = None
    recompute: float | None = None
    stopped: bool = False

    @property
    def label(self) -> str:
        if self.side == "amcheck":
            return f"amcheck {self.name}"
        return {"Multistage": "c_s MultistageCheckpointSchedule",
                "Multistage-nojit": "c_s Multistage, NUMBA_DISABLE_JIT=1",
                "Revolve": "c_s Revolve"}[self.name]  # fmt: skip


def _process(case: Case, k: int, limit: float, *, warmup: bool) -> None:
    """Run one fresh process for ``case`` and add its samples; mark it stopped past ``limit``."""
    cmd = [sys.executable, "-c", _RUNNER, case.side, case.name, str(case.n), str(case.s), str(k),
           "1" if warmup else "0"]  # fmt: skip
    env = dict(os.environ)
    if case.name.endswith("-nojit"):
        env["NUMBA_DISABLE_JIT"] = "1"  # numba runs n_advance as plain Python
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=limit, check=False, env=env
        )
        out, failed = done.stdout, done.returncode != 0
        if failed:
            raise RuntimeError(f"{case.label} n={case.n} s={case.s} failed:\n{done.stderr}")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        case.stopped = True
    for line in out.splitlines():
        event = json.loads(line)
        kind = event["event"]
        if kind == "import":
            case.imports.append(event["seconds"])
        elif kind == "warmup":
            case.warmups.append(event["seconds"])
        else:
            getattr(case, kind).append(event["seconds"])
            case.cpu.setdefault(kind, []).append(event["cpu"])
            case.actions = event["actions"]
            case.recompute = event["recompute"]


def _measure(case: Case, k: int, limit: float, *, new_column: bool) -> None:
    """Cold and warm samples from 1 or 3 processes, plus one warm-process "new (n, s)" sample."""
    _process(case, k, limit, warmup=False)
    if not case.stopped and case.cold and case.cold[0] < 10.0:
        for _ in range(2):
            _process(case, k, limit, warmup=False)
    if new_column and not case.stopped:
        _process(case, k, limit, warmup=True)
        case.stopped = False  # a stopped "new" run leaves its column empty, not the case


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _spread(xs: list[float]) -> str:
    return f"{max(xs) / min(xs):.2f}x" if len(xs) > 1 else "-"


def _fmt(xs: list[float], case: Case | None = None, limit: float = 0.0) -> str:
    """The median of ``xs``; for an empty cold column of a stopped case, the limit."""
    if xs:
        return f"{statistics.median(xs):.3f} s"
    return f"> {limit:g} s (stopped)" if case is not None and case.stopped else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--slots", type=positive_int, nargs="+", default=[10, 50])
    parser.add_argument("--interval", type=positive_int, default=100, help="k for the two-level plans")
    parser.add_argument("--limit", type=positive_float, default=30.0, help="seconds per external process")
    parser.add_argument("--json", help="also write every sample to this file")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("checkpoint_schedules") is None:
        print("schedules.py: error: it compares with checkpoint_schedules, which is not "
              "installed: install the bench extra (pip install -e '.[bench]')", file=sys.stderr)
        return 2

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# machine: {describe()}; {_cpu_count()} CPUs usable; load average at start "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)")  # fmt: skip
    header = (
        f"| {'n':>9} | {'s':>3} | {'schedule':<34} | {'cold':>20} | {'spread':>6} "
        f"| {'warm':>9} | {'spread':>6} | {'new (n, s)':>10} | {'actions':>9} | {'recompute':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    cases: list[Case] = []
    over: set[tuple[str, int]] = set()  # (their schedule, s) already stopped at a smaller n
    for n in args.sizes:
        for s in args.slots:
            todo = [Case("amcheck", name, n, s)
                    for name in ("StoreAll", "Revolve", "TwoLevel", "AsyncMultistage")
                    if name != "StoreAll" or s == args.slots[0]]  # fmt: skip
            todo += [Case("checkpoint_schedules", name, n, s)
                     for name in ("Multistage", "Multistage-nojit", "Revolve")]  # fmt: skip
            for case in todo:
                theirs = case.side != "amcheck"
                if theirs and (case.name, s) in over:
                    print(f"| {n:>9,} | {s:>3} | {case.label:<34} | "
                          f"{'not run (stopped at smaller n)':>20} |")  # fmt: skip
                    continue
                limit = args.limit if theirs else 3600.0
                _measure(
                    case, args.interval, limit, new_column=case.name == "Multistage" and theirs
                )
                if theirs and case.stopped:
                    over.add((case.name, s))
                cases.append(case)
                label = case.label + (f" k={args.interval}" if "Level" in case.label
                                      or "Async" in case.label else "")  # fmt: skip
                factor = f"{case.recompute:.3f}" if case.recompute is not None else ""
                actions = f"{case.actions:,}" if case.actions is not None else ""
                print(f"| {n:>9,} | {s:>3} | {label:<34} | {_fmt(case.cold, case, limit):>20} "
                      f"| {_spread(case.cold):>6} | {_fmt(case.warm):>9} "
                      f"| {_spread(case.warm):>6} | {_fmt(case.new) if theirs else '':>10} "
                      f"| {actions:>9} | {factor:>9} |", flush=True)  # fmt: skip

    print()
    imports = {side: [x for c in cases if c.side == side for x in c.imports]
               for side in ("amcheck", "checkpoint_schedules")}  # fmt: skip
    warmups = [x for c in cases for x in c.warmups]
    print(f"Import: amcheck.schedules median {_median(imports['amcheck']) or 0:.3f} s, "
          f"checkpoint_schedules (imports numba) {_median(imports['checkpoint_schedules']) or 0:.3f} s; "
          f"their first plan of (n=20, s=3) in a process: median {_median(warmups) or 0:.3f} s "
          f"(the numba JIT of n_advance).")  # fmt: skip
    print("Ratios, checkpoint_schedules MultistageCheckpointSchedule (generating only) / amcheck "
          "Revolve (generating and simulating), same n and s:")  # fmt: skip
    ours = {(c.n, c.s): c for c in cases if c.side == "amcheck" and c.name == "Revolve"}
    for c in cases:
        if c.side == "amcheck" or not c.name.startswith("Multistage"):
            continue
        mine = ours[(c.n, c.s)]
        parts = []
        for what, theirs_xs, ours_xs in (
            ("cold", c.cold, mine.cold),
            ("warm", c.warm, mine.warm),
            ("new (n, s) / warm", c.new, mine.warm),
            ("CPU time cold", c.cpu.get("cold", []), mine.cpu.get("cold", [])),
            ("CPU time warm", c.cpu.get("warm", []), mine.cpu.get("warm", [])),
        ):
            if theirs_xs and ours_xs:
                parts.append(
                    f"{what} {statistics.median(theirs_xs) / statistics.median(ours_xs):.1f}x"
                )
        jit = "" if c.name == "Multistage" else " (NUMBA_DISABLE_JIT=1)"
        print(f"  n={c.n:,} s={c.s}{jit}: " + ", ".join(parts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": describe(), "python": platform.python_version(),
                       "cpus": _cpu_count(), "load_at_start": load, "interval": args.interval,
                       "cases": [c.__dict__ for c in cases]}, f, indent=1)  # fmt: skip
    return 0


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
