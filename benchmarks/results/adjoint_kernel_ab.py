"""Ad hoc (session 18): is the long-sequences load's adjoint step as fast as it can be?

A faster reverse step would shorten pyrevolve's and amcheck's sweeps by the same time, and so
raise the ratio between them (docs/benchmarks.md, "Why not 3x"). This script times, on one
thread, the load's adjoint step (benchmarks/_wave.py's ``adjoint_step``: 2-D indexing, a
parallel loop) against the same arithmetic written row by row like the forward kernel (as a
parallel and as a serial loop), checks that all three give bitwise the same adjoint and
gradient, and times an in-place forward step for scale. Medians of 7 rounds of 500 steps.

    .venv/bin/python benchmarks/results/adjoint_kernel_ab.py
"""

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/

import _wave
import numba
import numpy as np
from _wave import C2, adjoint_step, initial_state, wave_steps
from amcheck.kernels._jit import ftz_on, ftz_restore
from numba import prange

NX = 724  # the long-sequences state: (2, 724, 724) float32


@numba.njit(nogil=True, inline="always")
def _adj_row(am: Any, a0: Any, ap: Any, b: Any, ut: Any, g: Any) -> None:  # pragma: no cover
    for j in range(a0.shape[0] - 2):
        lap = am[j + 1] + ap[j + 1] + a0[j] + a0[j + 2] - np.float32(4.0) * a0[j + 1]
        b[j + 1] = (np.float32(2.0) * a0[j + 1] - b[j + 1] + C2 * lap
                    + np.float32(1e-3) * ut[j + 1])
        g[j + 1] += a0[j + 1] * ut[j + 1]


@numba.njit(nogil=True, parallel=True)
def adjoint_rows(lam: Any, grad: Any, u: Any, t: int) -> None:  # pragma: no cover
    cur, old = t % 2, (t + 1) % 2
    a, b, ut = lam[cur], lam[old], u[cur]
    for i in prange(a.shape[0] - 2):
        mx = ftz_on()
        _adj_row(a[i], a[i + 1], a[i + 2], b[i + 1], ut[i + 1], grad[i + 1])
        ftz_restore(mx)


@numba.njit(nogil=True)
def adjoint_rows_serial(lam: Any, grad: Any, u: Any, t: int) -> None:  # pragma: no cover
    mx = ftz_on()
    cur, old = t % 2, (t + 1) % 2
    a, b, ut = lam[cur], lam[old], u[cur]
    for i in range(a.shape[0] - 2):
        _adj_row(a[i], a[i + 1], a[i + 2], b[i + 1], ut[i + 1], grad[i + 1])
    ftz_restore(mx)


def main() -> None:
    numba.set_num_threads(1)
    _wave.compile_kernels()
    u = initial_state(NX)["u"]
    wave_steps(u, u, 0, 300)  # a wavefield, not the initial bump
    variants = {"current": adjoint_step, "rows_par": adjoint_rows,
                "rows_serial": adjoint_rows_serial}
    results = {}
    for name, step in variants.items():  # compiled, and bitwise the same
        lam = np.zeros((2, NX, NX), np.float32)
        grad = np.zeros((NX, NX), np.float32)
        lam[0], lam[1] = u[0] * 0.5, u[1] * 0.25
        for t in range(200, 0, -1):
            step(lam, grad, u, t)
        results[name] = (lam, grad)
    for name, (lam, grad) in results.items():
        same = (np.array_equal(lam, results["current"][0])
                and np.array_equal(grad, results["current"][1]))
        print(f"{name:12s} bitwise equal to current: {same}")
    times: dict[str, list[float]] = {name: [] for name in [*variants, "forward_in_place"]}
    for _ in range(7):
        for name, step in variants.items():
            lam = np.zeros((2, NX, NX), np.float32)
            grad = np.zeros((NX, NX), np.float32)
            start = time.perf_counter()
            for t in range(500, 0, -1):
                step(lam, grad, u, t)
            times[name].append((time.perf_counter() - start) / 500 * 1e3)
        v = u.copy()
        start = time.perf_counter()
        wave_steps(v, v, 0, 500)
        times["forward_in_place"].append((time.perf_counter() - start) / 500 * 1e3)
    for name, values in times.items():
        print(f"{name:16s} median {statistics.median(values):.4f} ms a step "
              f"(min-max {min(values):.4f}-{max(values):.4f})")


if __name__ == "__main__":
    main()
