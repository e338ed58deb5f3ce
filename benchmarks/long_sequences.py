"""Long sequences: asynchronous multistage checkpointing against Revolve, pyrevolve and store-all.

The load (issue 5): a memory-bound numba operator, a 2-D wave equation with a 5-point Laplacian
and leapfrog in time, state ``u`` of shape (2, 724, 724) float32 = 4.0 MiB, about 0.11 ms a
step on one thread here; the RAM budget is fixed at 10 states; the disk tier is a ZarrTier in a
temporary directory with ``disk_budget="8 GiB"``. In one run, for each n:

1. **async multistage, k = 50** (fixed): wall time, recompute factor, time per step, the stall
   time and the fraction of transfer time hidden behind compute. The constant-overhead check:
   recompute factor and time per step at the largest n within 5% of those at the smallest (the
   smallest n runs again interleaved with the largest, so that both meet the same machine).
2. **async multistage, automatic k** (``interval=None``): where the IntervalController lands.
   Both again with **pairs** of steps: the reverse operator declares ``reverse_from_next`` (it
   reads only u_t, which x_{t+1} holds too), so one restored state serves two reverse steps
   (``amcheck.schedules.Paired``); the same disk interval in steps.
3. **amcheck Revolve in RAM** with the same 10-state budget.
4. **pyrevolve's Revolver** with 10 checkpoints (the ``bench`` extra).
5. **store-all in RAM** where n + 1 states fit (``--store-all-gib``), else reported as not fitting.

Then, at one n: the **overlapped forward sweep** (async multistage, its disk writes in flight)
against the **compute-only sweep** (the same advances, no checkpoints; with one numba thread
timed both on the CPUs the transfer threads leave to compute, the same cores, and unconfined,
see ``amcheck.storage._cpus``) with the kernel on all
numba threads, with one thread left to I/O (``compute_threads``), the latter with the disk
tier on the page cache instead of direct I/O, and with ``compute_threads=None`` (amcheck's
measured choice between the two, against compute only on all threads), each with the CPU its
I/O threads spent per checkpoint; a **sweep over k**, with and without pairs, showing where the
optimum lies; and for each k the **no-overhead bound**: n (the runs' recompute factor x an
in-place forward step + a reverse step alone), what an engine with no cost of its own would take,
and so the most any implementation of the schedule could gain over pyrevolve. Every variant
computes the same gradient (checked bitwise). Timings are medians of ``--repeats`` runs, the
variants interleaved so that noise hits them alike, each run started after ``os.sync()``
(:func:`settle`); the min–max spread is printed so the noise is visible. The targets' ratios are
also printed round by round (``paired``: round i of two variants ran back to back), which the
machine's drift over a long run does not move.

    .venv/bin/python benchmarks/long_sequences.py --quick     # n = 300, 1000; a few minutes
    .venv/bin/python benchmarks/long_sequences.py             # n = 10^3, 10^4, 10^5 (~20 min)
    .venv/bin/python benchmarks/long_sequences.py --ns 1000 10000 --skip-slow-above 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _wave  # the shared benchmark load, beside this script
import numba
import numpy as np
from _args import positive_float, positive_int, require  # shared argparse types
from _machine import describe  # which host: CPU model and caches
from _wave import Adjoint as _Adjoint
from _wave import PairedAdjoint as _PairedAdjoint
from _wave import advance, compile_kernels, slot_nbytes, state_nbytes
from amcheck.storage import ZarrTier
from amcheck.storage._cpus import io_cpus

import amcheck
from amcheck.schedules import multistage_recompute_factor

NX = 724  # 2 x 724^2 float32 = 4.0 MiB
STATE_NBYTES = state_nbytes(NX)
SLOT_NBYTES = slot_nbytes(NX)  # one state in amcheck's pool: 896 bytes of page padding more
RAM_STATES = 10


def initial_state() -> dict[str, np.ndarray]:
    return _wave.initial_state(NX)


# -- variants -------------------------------------------------------------------------------------


def settle() -> None:
    """Before each timed run: commit the file system's pending work (here ext4 with online
    discard: the previous run's deleted checkpoints are trimmed at the next journal commit),
    so that it happens between runs, not during the next one. Measured: a 10^3 run right after
    deleting 2 GB of files took 0.868 s, after deleting them and ``os.sync()`` 0.800 s, on a
    clean disk 0.806 s (medians of 4)."""
    os.sync()


def io_cpu_seconds() -> float:
    """CPU seconds (user + system) so far of this process's amcheck I/O threads (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith("amcheck"):
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_amcheck(
    n: int, *, workdir: Path, ram_states: int = RAM_STATES, strategy: str = "auto",
    disk: bool = True, interval: int | None = None, compute_threads: Any = None,
    plot: Path | None = None, direct: bool | None = None, pairs: bool = False,
) -> dict[str, Any]:
    """One forward and reverse sweep; ``direct=False`` puts the disk tier on the page cache;
    ``pairs``: the reverse operator declares ``reverse_from_next`` (pairs of steps)."""
    adj = (_PairedAdjoint if pairs else _Adjoint)(NX)
    x0 = initial_state()
    kwargs: dict[str, Any] = {}
    tier = None
    if disk:
        where: Any = workdir
        if direct is False:
            workdir.mkdir(parents=True, exist_ok=True)
            where = tier = ZarrTier(tempfile.mkdtemp(dir=workdir), amcheck.StateSpec.from_arrays(x0),
                                    direct=False, budget="8 GiB")
        kwargs = {"disk": where, "interval": interval, "compute_threads": compute_threads}
        if tier is None:
            kwargs["disk_budget"] = "8 GiB"
    with amcheck.Checkpointer(advance, adj, x0, n, ram=ram_states * SLOT_NBYTES,
                              strategy=strategy, **kwargs) as ckp:
        settle()
        start = time.perf_counter()
        cpu0 = io_cpu_seconds()
        ckp.forward()
        forward = time.perf_counter() - start
        io_cpu = io_cpu_seconds() - cpu0
        ckp.reverse()
        wall = time.perf_counter() - start
        stats = ckp.stats
        if plot is not None:
            ckp.timeline.plot(plot, title=f"async multistage, n={n}, k={stats.interval}")
    if tier is not None:
        asyncio.run(tier.close())
        shutil.rmtree(tier.path, ignore_errors=True)
    return {
        "wall": wall, "forward_wall": forward, "strategy": ckp.strategy,
        "forward_steps": stats.forward_steps, "recompute": stats.recompute_factor,
        "per_step": wall / stats.forward_steps, "interval": stats.interval,
        "stall": stats.stall_seconds, "hidden": stats.hidden_fraction,
        "disk_writes": stats.writes["disk"], "slots": ckp.slots, "grad": adj.grad,
        "compute_threads": stats.compute_threads,
        "forward_io_cpu": io_cpu,
    }


def run_pyrevolve(n: int, checkpoints: int) -> dict[str, Any]:
    settle()
    result = _wave.run_pyrevolve(NX, n, checkpoints)
    steps = result["forward_steps"]
    return {**result, "recompute": steps / n, "per_step": result["wall"] / steps,
            "strategy": "pyrevolve"}


def reverse_only(n: int) -> float:
    """n reverse steps alone on one state (hot in cache): the cost of the adjoint itself."""
    adj = _Adjoint(NX)
    state = initial_state()
    settle()
    start = time.perf_counter()
    for t in range(n - 1, -1, -1):
        adj.reverse(state, t)
    return time.perf_counter() - start


def compute_only_forward(n: int, threads: int | None, cpus: frozenset[int] | None = None
                         ) -> float:
    """The forward sweep without any checkpoint: the same advances, in place; with ``cpus``,
    the calling thread (the compute thread on one numba thread) confined to those CPUs."""
    state = initial_state()
    before = numba.get_num_threads()
    usable = os.sched_getaffinity(0) if cpus is not None else None
    if threads is not None:
        numba.set_num_threads(threads)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        settle()
        start = time.perf_counter()
        for t0 in range(0, n, 50):
            advance(state, state, t0, min(t0 + 50, n))
        return time.perf_counter() - start
    finally:
        numba.set_num_threads(before)
        if usable is not None:
            os.sched_setaffinity(0, usable)


# -- driver ---------------------------------------------------------------------------------------


def medians(runs: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in runs]
    return statistics.median(values), min(values), max(values)


def paired(runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]], key: str = "wall"
           ) -> list[float]:
    """a / b for each round (the variants ran interleaved, so round i of each met the same
    machine): a ratio that the machine's drift over the run does not move."""
    return [a[key] / b[key] for a, b in zip(runs_a, runs_b, strict=True)]


def ratio_text(ratios: list[float]) -> str:
    return (f"median {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}: "
            + ", ".join(f"{x:.3f}" for x in ratios) + ")")


def repeat(variants: dict[str, Callable[[], dict[str, Any]]], repeats: int
           ) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, fn in variants.items():  # interleaved: noise hits every variant alike
            result = fn()
            out[name].append(result)
            print(f"  run {r + 1}/{repeats} {name}: {result['wall']:.2f} s "
                  f"(recompute {result['recompute']:.3f})", flush=True)
    return out


def sweep_n(args: argparse.Namespace) -> int:
    """The n of the overlap and k-sweep measurements."""
    return int(args.sweep_n or args.ns[min(1, len(args.ns) - 1)])


def main_table(args: argparse.Namespace, workroot: Path, report: dict[str, Any]) -> None:
    """The table for every n, the targets' ratios round by round, the constant-overhead check."""
    small = args.ns[0]
    interleaved = f"async multistage k={args.k}, n={small}"
    for n in args.ns:
        print(f"\nn = {n}", flush=True)
        variants: dict[str, Callable[[], dict[str, Any]]] = {
            f"async multistage k={args.k}": lambda n=n: run_amcheck(
                n, workdir=workroot / "fixed", strategy="async_multistage", interval=args.k),
            "async multistage auto k": lambda n=n: run_amcheck(
                n, workdir=workroot / "auto", strategy="async_multistage"),
            f"async multistage k={args.k}, pairs": lambda n=n: run_amcheck(
                n, workdir=workroot / "fixed", strategy="async_multistage", interval=args.k,
                pairs=True),
            "async multistage auto k, pairs": lambda n=n: run_amcheck(
                n, workdir=workroot / "auto", strategy="async_multistage", pairs=True),
        }
        if n == args.ns[-1] and n != small:
            # The constant-overhead check compares this n with the smallest: run that one again
            # here, interleaved, so that both see the machine in the same state.
            variants[interleaved] = lambda: run_amcheck(
                small, workdir=workroot / "fixed", strategy="async_multistage", interval=args.k)
        if n <= args.skip_slow_above:
            variants["amcheck Revolve in RAM"] = lambda n=n: run_amcheck(
                n, workdir=workroot, strategy="revolve", disk=False)
            variants["pyrevolve Revolver"] = lambda n=n: run_pyrevolve(n, RAM_STATES)
        fits = (n + 1) * STATE_NBYTES <= args.store_all_gib * 2**30
        if fits:
            states = n + 1
            variants["store-all in RAM"] = lambda n=n, s=states: run_amcheck(
                n, workdir=workroot, strategy="store_all", disk=False, ram_states=s + 1)
        results = repeat(variants, args.repeats)
        reference = results[f"async multistage k={args.k}"][-1]["grad"]
        for name, runs in results.items():
            if name == interleaved:
                continue  # another n, another gradient
            if not np.array_equal(runs[-1]["grad"], reference):
                raise SystemExit(f"{name} computed another gradient than async multistage")
        rows = {}
        print(f"{'variant':28s} {'median s':>9s} {'min-max s':>15s} {'fwd steps':>10s} "
              f"{'recompute':>9s} {'ms/step':>8s} {'k':>5s} {'stall s':>8s} {'hidden':>6s}")
        for name, runs in results.items():
            med, lo, hi = medians(runs, "wall")
            last = runs[-1]
            hidden = last.get("hidden")
            print(f"{name:28s} {med:9.2f} {lo:7.2f}-{hi:7.2f} {last['forward_steps']:10d} "
                  f"{last['recompute']:9.3f} {1e3 * medians(runs, 'per_step')[0]:8.3f} "
                  f"{last.get('interval') or '':>5} {last.get('stall', 0.0):8.2f} "
                  f"{'' if hidden is None else f'{100 * hidden:.0f}%':>6s}")
            rows[name] = {k: v for k, v in last.items() if k != "grad"}
            rows[name].update(median_s=med, min_s=lo, max_s=hi, runs_s=[r["wall"] for r in runs],
                              per_step_median=medians(runs, "per_step")[0])
        if not fits:
            print(f"store-all in RAM: does not fit ({(n + 1) * STATE_NBYTES / 2**30:.1f} GiB > "
                  f"{args.store_all_gib} GiB)")
        print("gradients: bitwise equal across the variants")
        # The targets' ratios, round by round.
        ratios: dict[str, list[float]] = {}
        for mine in (f"async multistage k={args.k}", "async multistage auto k",
                     f"async multistage k={args.k}, pairs", "async multistage auto k, pairs"):
            if "store-all in RAM" in results:
                ratios[f"{mine} / store-all"] = paired(results[mine], results["store-all in RAM"])
            if "pyrevolve Revolver" in results:
                ratios[f"pyrevolve / {mine}"] = paired(results["pyrevolve Revolver"], results[mine])
        ratios[f"k={args.k} / k={args.k}, pairs"] = paired(
            results[f"async multistage k={args.k}"], results[f"async multistage k={args.k}, pairs"])
        if interleaved in results:
            ratios[f"ms/step n={n} / n={small} (k={args.k})"] = paired(
                results[f"async multistage k={args.k}"], results[interleaved], "per_step")
        for label, values in ratios.items():
            print(f"paired, round by round: {label}: {ratio_text(values)}")
        report["ns"][n] = rows
        report.setdefault("paired", {})[n] = ratios

    k = args.k
    fixed = f"async multistage k={k}"
    slots = report["ns"][args.ns[0]][fixed]["slots"]
    print(f"\nconstant overhead (k={k}, {slots} RAM slots): 1 + T(k, s)/k = "
          f"{multistage_recompute_factor(k, slots):.3f} for n a multiple of k")
    largest = report["ns"][args.ns[-1]]
    first = largest.get(interleaved, report["ns"][args.ns[0]][fixed])
    last = largest[fixed]
    a, b = first["per_step_median"], last["per_step_median"]
    print(f"n={args.ns[0]} -> n={args.ns[-1]} (the smaller n run interleaved with the larger): "
          f"recompute factor {first['recompute']:.3f} -> {last['recompute']:.3f}, ms/step "
          f"(medians) {1e3 * a:.3f} -> {1e3 * b:.3f} (ratio {b / a:.3f})")


def overlap_table(args: argparse.Namespace, workroot: Path, report: dict[str, Any],
                  max_threads: int, threads: int) -> None:
    """The overlapped forward sweep against compute only, on all threads and with a core
    left to I/O (direct I/O and page cache)."""
    n = sweep_n(args)
    k = args.k
    if n <= k:  # the last segment stays in RAM: nothing would go to disk
        print(f"\noverlap skipped: at n = {n} and k = {k} the forward sweep writes nothing to "
              "disk (pass a larger --sweep-n, or a smaller --k)")
        return
    print(f"\noverlap at n = {n}: forward sweep with writes in flight vs compute only", flush=True)
    # The transfer threads run on the CPUs that take the disk's interrupts (Checkpointer's
    # io_cpus=None), so with one numba thread the computation runs on the others: the
    # compute-only sweep is timed there too (the same cores), and also unconfined.
    (workroot / "overlap").mkdir(parents=True, exist_ok=True)
    io = io_cpus(workroot / "overlap")
    compute_cpus = frozenset(os.sched_getaffinity(0)) - io if io else None
    print(f"the transfer threads' CPUs (io_cpus): {sorted(io) if io else 'any'}; the compute-only "
          f"sweep with a core left to I/O runs on {sorted(compute_cpus) if compute_cpus else 'any'}")
    # (label, numba threads of the compute-only sweep, compute_threads, direct I/O)
    settings: list[tuple[str, int, int | None, bool | None]] = [
        (f"kernel on all {max_threads} threads", max_threads, max_threads, None)]
    if max_threads > 1:
        settings += [(f"kernel on {max_threads - 1}, 1 core to I/O", max_threads - 1,
                      max_threads - 1, None),
                     (f"kernel on {max_threads - 1}, 1 core to I/O, page cache",
                      max_threads - 1, max_threads - 1, False),
                     ("compute_threads=None (measured)", max_threads, None, None)]
    overlap: dict[str, Any] = {}
    numba.set_num_threads(max_threads)
    for r in range(args.repeats):
        for label, alone_threads, setting, direct in settings:
            same = compute_cpus if alone_threads == 1 else None
            alone = compute_only_forward(n, alone_threads, same)
            unconfined = alone if same is None else compute_only_forward(n, alone_threads)
            res = run_amcheck(n, workdir=workroot / "overlap", strategy="async_multistage",
                              interval=k, compute_threads=setting, direct=direct)
            entry = overlap.setdefault(label, {"alone": [], "alone_unconfined": [],
                                               "overlapped": [], "hidden": [],
                                               "io_cpu_per_write": [], "compute_threads": []})
            entry["compute_threads"].append(res["compute_threads"])
            entry["alone"].append(alone)
            entry["alone_unconfined"].append(unconfined)
            entry["overlapped"].append(res["forward_wall"])
            entry["hidden"].append(res["hidden"])
            entry["io_cpu_per_write"].append(res["forward_io_cpu"] / res["disk_writes"])
    for label, entry in overlap.items():
        a, o = statistics.median(entry["alone"]), statistics.median(entry["overlapped"])
        cpu = statistics.median(entry["io_cpu_per_write"])
        print(f"{label:44s} compute only {a:6.2f} s  overlapped {o:6.2f} s  ratio {o / a:5.2f}  "
              f"(overlapped runs {min(entry['overlapped']):.2f}-{max(entry['overlapped']):.2f} s; "
              f"I/O threads {1e3 * cpu:.1f} ms CPU per checkpoint)")
        rounds = [x / y for x, y in zip(entry["overlapped"], entry["alone"], strict=True)]
        print(f"{'':44s} paired, round by round: {ratio_text(rounds)}")
        loose = [x / y for x, y in zip(entry["overlapped"], entry["alone_unconfined"],
                                       strict=True)]
        if entry["alone_unconfined"] != entry["alone"]:
            print(f"{'':44s} against compute only unconfined: {ratio_text(loose)}")
        if label.startswith("compute_threads=None"):
            print(f"{'':44s} threads it ended on, round by round: {entry['compute_threads']}")
        entry.update(alone_median=a, overlapped_median=o, ratio=o / a, io_cpu_per_write=cpu,
                     paired=rounds, paired_unconfined=loose)
    report["io_cpus"] = sorted(io) if io else None
    report["overlap"] = {"n": n, **overlap}
    numba.set_num_threads(threads)


def k_sweep(args: argparse.Namespace, workroot: Path, report: dict[str, Any],
            threads: int) -> None:
    """The sweep over k, where the automatic interval lands, and the no-overhead bound."""
    n = sweep_n(args)
    slots = report["ns"][args.ns[0]][f"async multistage k={args.k}"]["slots"]
    print(f"\nk sweep at n = {n}", flush=True)
    sweep: dict[str, Any] = {}
    for r in range(args.repeats):
        for pairs in (False, True):
            for kk in [*args.sweep_ks, None]:
                res = run_amcheck(n, workdir=workroot / "sweep", strategy="async_multistage",
                                  interval=kk, pairs=pairs)
                sweep.setdefault(f"{kk}, pairs" if pairs else str(kk), []).append(res)
    for key, runs in sweep.items():
        med, lo, hi = medians(runs, "wall")
        print(f"k={key.replace('None', 'auto'):>12s} (ended at {runs[-1]['interval']}): "
              f"{med:7.2f} s ({lo:.2f}-{hi:.2f})  recompute {runs[-1]['recompute']:.3f}  "
              f"stall {runs[-1]['stall']:.2f} s  disk writes {runs[-1]['disk_writes']}")
    report["k_sweep"] = {key: [{k2: v for k2, v in r.items() if k2 != "grad"} for r in runs]
                         for key, runs in sweep.items()}

    # What an engine with no overhead at all would take at each k: every recomputed step as fast
    # as an in-place step, every reverse step as fast as alone, no waiting. A small k recomputes
    # least but needs the disk to keep up; the sweep shows where it stops keeping up.
    f = statistics.median(compute_only_forward(n, threads) for _ in range(args.repeats)) / n
    r = statistics.median(reverse_only(n) for _ in range(args.repeats)) / n
    pyrevolve = report["ns"].get(n, {}).get("pyrevolve Revolver")
    print(f"\nno-overhead bound at n = {n}: in-place forward step {1e3 * f:.3f} ms, reverse step "
          f"alone {1e3 * r:.3f} ms, {slots} RAM slots; time = n (recompute x {1e3 * f:.3f} + "
          f"{1e3 * r:.3f}) ms")
    bounds = {}
    for key, runs in sweep.items():
        kk = runs[-1]["interval"]
        # The runs' own recompute factor: the automatic k varies during a sweep, so the factor
        # of the k it ended with is not the one it ran (for a fixed k they are the same).
        ideal = n * (statistics.median(x["recompute"] for x in runs) * f + r)
        med = medians(runs, "wall")[0]
        vs = "" if pyrevolve is None else f"; pyrevolve / bound {pyrevolve['median_s'] / ideal:.2f}x"
        label = (f"k={kk}" if not key.startswith("None") else f"auto (ended at {kk})") + (
            ", pairs" if key.endswith("pairs") else "")
        print(f"{label:>27s}: bound {ideal:6.2f} s, measured {med:6.2f} s ({med / ideal:.2f}x "
              f"the bound, stall {runs[-1]['stall']:.2f} s){vs}")
        bounds[key] = ideal
    report["no_overhead_bound"] = {"forward_step_s": f, "reverse_step_s": r, "slots": slots,
                                   "bound_s": bounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", type=positive_int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--quick", action="store_true",
                        help="n = 300, 1000; 1 repeat; k sweep 5 20 50 100 (replaces --ns, "
                        "--repeats and --sweep-ks)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--k", type=positive_int, default=50, help="fixed interval (default 50)")
    parser.add_argument("--skip-slow-above", type=positive_int, default=10000,
                        help="run Revolve in RAM and pyrevolve only up to this n (default 10^4)")
    parser.add_argument("--store-all-gib", type=positive_float, default=6.0,
                        help="RAM store-all may use (default 6 GiB: n=1000 fits)")
    parser.add_argument("--sweep-n", type=positive_int, default=None, help="n of the k sweep (default: 2nd n)")
    parser.add_argument("--sweep-ks", type=positive_int, nargs="+", default=[5, 10, 20, 50, 100, 200, 400])
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="numba threads of every variant in the main table (default 1: on a "
                             "shared 2-core machine a 2-thread barrier kernel is preempted)")
    parser.add_argument("--workdir", default=None, help="disk tier directory (default: a temp dir)")
    parser.add_argument("--plot", default=None,
                        help="also draw the timeline of one sweep into this file (the docs' is "
                        "docs/img/timeline.png)")
    parser.add_argument("--json", default=None,
                        help="also write every figure as JSON to this file (the docs' come from "
                        "benchmarks/results/long_sequences_runN.json)")
    parser.add_argument("--overlap-only", action="store_true",
                        help="only the overlap measurement: --repeats rounds at --sweep-n "
                             "(default: the second n, or the only one)")
    args = parser.parse_args()
    require(parser, "pyrevolve", "the comparison with pyrevolve's Revolver")
    if args.quick:
        args.ns, args.repeats, args.sweep_ks = [300, 1000], 1, [5, 20, 50, 100]
    workroot = Path(args.workdir or tempfile.mkdtemp(prefix="amcheck-bench-"))
    try:
        measure(args, workroot)
    finally:
        if args.workdir is None:  # made here: leave nothing behind
            shutil.rmtree(workroot, ignore_errors=True)


def measure(args: argparse.Namespace, workroot: Path) -> None:
    """Every table of the run, its disk tiers under ``workroot``."""
    compile_kernels()
    max_threads = int(numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(min(args.threads, max_threads))
    threads = numba.get_num_threads()
    print(f"state {STATE_NBYTES / 2**20:.1f} MiB float32, RAM {RAM_STATES} states, disk tier in "
          f"{workroot}; {describe()}, numba "
          f"{numba.__version__} ({threads} threads), numpy {np.__version__}, "
          f"load average {os.getloadavg()}", flush=True)
    report: dict[str, Any] = {"ns": {}, "machine": {"host": describe(), "cpus": os.cpu_count(),
                                                     "numba_threads": threads,
                                                     "loadavg_start": os.getloadavg()}}
    # One untimed run of each kind first: imports, thread pools, numba's read-only dispatch and the
    # first zarr store are one-time costs of the process, not of a sequence's length.
    for warm in (lambda: run_amcheck(120, workdir=workroot / "warm", interval=10),
                 lambda: run_amcheck(120, workdir=workroot, strategy="revolve", disk=False),
                 lambda: run_pyrevolve(120, RAM_STATES)):
        warm()
    if not args.overlap_only:
        main_table(args, workroot, report)
    overlap_table(args, workroot, report, max_threads, threads)
    if not args.overlap_only:
        k_sweep(args, workroot, report, threads)
    if args.plot and not args.overlap_only:
        plot_n = min(2000, args.ns[0])
        run_amcheck(plot_n, workdir=workroot / "plot", strategy="async_multistage", interval=args.k,
                    plot=Path(args.plot))
        print(f"\ntimeline of n = {plot_n}, k = {args.k}: {args.plot}")
    report["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
