"""amcheck's numba forward kernel vs Devito's acoustic operator, and a STREAM-style triad.

Same grid, space order, float32, thread count and number of steps for both, each configuration in
its own subprocess (thread counts are fixed at library load). Devito's compile time is excluded
(its first ``apply`` compiles; we time the next ones), as is numba's. Reported: GPts/s =
interior points x steps / s (median of ``--repeats`` runs, with min-max), and the attained
bandwidth against the triad measured in the same run. Bytes per point: amcheck's in-place update
reads u[t], u[t-1], dt^2/m and writes u[t+1] over u[t-1]: 16 B; Devito's three-buffer update
reads u[t], u[t-1], m, damp and writes u[t+1] (20 B, 24 B with write-allocate).

    .venv/bin/python benchmarks/kernels_vs_devito.py                 # full: 2000^2 and 256^3
    .venv/bin/python benchmarks/kernels_vs_devito.py --quick         # 1000^2 and 128^3
    .venv/bin/python benchmarks/kernels_vs_devito.py --json benchmarks/results/kernels_vs_devito.json

Two-thread figures on a 2-vCPU machine shared with other work are noisy (a preempted worker stalls
every step); the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _args import int_list, positive_int, require  # the benchmarks' shared argparse types
from _machine import describe  # which host: CPU model and caches


def _median_range(times: list[float], work: float) -> tuple[float, float, float]:
    rates = sorted(work / t / 1e9 for t in times)
    return float(np.median(rates)), rates[0], rates[-1]


def worker_triad(threads: int, repeats: int) -> dict[str, float]:
    import numba
    from numba import prange

    numba.set_num_threads(threads)

    @numba.njit(parallel=True, nogil=True)
    def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: np.float32) -> None:
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    n = 2**26  # 256 MiB per array: well beyond L3
    a = np.zeros(n, np.float32)
    b = np.ones(n, np.float32)
    c = np.ones(n, np.float32)
    triad(a, b, c, np.float32(3.0))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        triad(a, b, c, np.float32(3.0))
        times.append(time.perf_counter() - t)
    med, lo, hi = _median_range(times, 12.0 * n)  # STREAM counts 12 B an element
    return {"GBps": med, "min": lo, "max": hi}


def worker_amcheck(nd: int, so: int, n: int, steps: int, threads: int, repeats: int
                   ) -> dict[str, float]:
    import numba
    from amcheck.kernels import Geometry, Model
    from amcheck.kernels._operators import AcousticForward

    numba.set_num_threads(threads)
    model = Model(np.full((n,) * nd, 1.5), (10.0,) * nd, nbl=0, space_order=so)
    centre = [5.0 * (n - 1)] * nd
    geometry = Geometry(model, centre, [centre], tn=1.0, f0=0.01)
    fwd = AcousticForward(model, geometry)
    d = fwd._disc
    state = fwd.initial_state()
    u = state["u"]
    u[(0, *[n // 2 + lo for lo, _ in model.pads])] = 1.0
    d.kernels.step(u, 0, d.c, d.w, d.end, *d.damping)  # compile / load from cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for s in range(steps):
            d.kernels.step(u, s % 2, d.c, d.w, d.end, *d.damping)
        times.append(time.perf_counter() - t)
    med, lo, hi = _median_range(times, float(n**nd) * steps)
    return {"GPts": med, "min": lo, "max": hi}


def worker_devito(nd: int, so: int, n: int, steps: int, threads: int, repeats: int
                  ) -> dict[str, float]:
    os.environ.setdefault("DEVITO_LOGGING", "ERROR")
    from devito import Eq, Function, Grid, Operator, TimeFunction, configuration, solve

    configuration["language"] = "openmp"
    grid = Grid(shape=(n,) * nd, extent=(10.0 * (n - 1),) * nd)
    u = TimeFunction(name="u", grid=grid, time_order=2, space_order=so)
    m = Function(name="m", grid=grid)
    damp = Function(name="damp", grid=grid)
    m.data[:] = 1 / 1.5**2
    u.data[(0, *[n // 2] * nd)] = 1.0
    pde = m * u.dt2 - u.laplace + damp * u.dt
    op = Operator([Eq(u.forward, solve(pde, u.forward))], opt="advanced")
    op.apply(time_m=0, time_M=1, dt=np.float32(1.0))  # compiles
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        op.apply(time_m=0, time_M=steps - 1, dt=np.float32(1.0))
        times.append(time.perf_counter() - t)
    med, lo, hi = _median_range(times, float(n**nd) * steps)
    return {"GPts": med, "min": lo, "max": hi}


def run_worker(args: list[str], threads: int) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(max(threads, 1)))
    out = subprocess.run([sys.executable, __file__, "--worker", *args], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}  # type: ignore[dict-item]
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1000^2 and 128^3 instead of 2000^2, 256^3")
    p.add_argument("--repeats", type=positive_int, default=5, help="runs per cell (default 5)")
    p.add_argument("--orders", type=int_list((2, 4, 6, 8, 10, 12)), default=[4, 8],
                   help="space orders, comma-separated (default 4,8)")
    p.add_argument("--threads", type=int_list(), default=[1, 2],
                   help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--json", metavar="PATH", help="also write every cell (and the load) as JSON")
    p.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)  # one cell, in a subprocess
    a = p.parse_args()
    require(p, "devito", "the comparison with Devito")
    if a.worker is not None:
        kind, *rest = a.worker
        vals = [int(v) for v in rest]
        if kind == "triad":
            res = worker_triad(*vals)
        elif kind == "amcheck":
            res = worker_amcheck(*vals)
        else:
            res = worker_devito(*vals)
        print(json.dumps(res))
        return
    sizes = [(2, 1000 if a.quick else 2000, 20), (3, 128 if a.quick else 256, 10)]
    # Other work on the machine shows up as spread: say how loaded it was, before and after.
    load_start = os.getloadavg()
    print(describe())
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in load_start)}")
    cells: list[dict[str, object]] = []
    print(f"{'case':<22}{'thr':>4}{'triad GB/s':>12}{'amcheck GPts/s':>22}{'devito GPts/s':>22}"
          f"{'ratio':>7}{'roofline':>9}")
    for threads in a.threads:
        triad = run_worker(["triad", str(threads), str(a.repeats)], threads)
        for nd, n, steps in sizes:
            for so in a.orders:
                spec = [str(nd), str(so), str(n), str(steps), str(threads), str(a.repeats)]
                am = run_worker(["amcheck", *spec], threads)
                dv = run_worker(["devito", *spec], threads)
                ratio = am.get("GPts", np.nan) / dv.get("GPts", np.nan)
                roof = am.get("GPts", np.nan) * 16 / triad.get("GBps", np.nan)
                fmt = lambda r: (f"{r['GPts']:.3f} [{r['min']:.2f}-{r['max']:.2f}]"
                                 if "GPts" in r else str(r.get("error"))[:20])
                print(f"{f'{nd}-D {n}^{nd} so={so}':<22}{threads:>4}{triad.get('GBps', np.nan):>12.1f}"
                      f"{fmt(am):>22}{fmt(dv):>22}{ratio:>7.2f}{roof:>9.0%}", flush=True)
                cells.append({"ndim": nd, "n": n, "space_order": so, "steps": steps,
                              "threads": threads, "triad": triad, "amcheck": am, "devito": dv,
                              "ratio": float(ratio), "roofline": float(roof)})
    load_end = os.getloadavg()
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in load_end)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": describe(), "repeats": a.repeats, "load_start": load_start, "load_end": load_end,
                       "cells": cells}, f, indent=1)


if __name__ == "__main__":
    main()
