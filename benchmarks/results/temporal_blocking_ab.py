"""Ad hoc (session 16): would fusing two time steps in one pass over memory change the verdict
on 3x against pyrevolve (long_sequences.py's load, docs/benchmarks.md "Why not 3x")?

Temporal blocking of two steps: row i of the first step is computed, then row i - 1 of the second,
which reads the first step's rows i - 2 … i while they are still in cache. Prototypes of the three
kernels a sweep runs, each checked bitwise equal to the unfused kernels (the same arithmetic per
element, in the same order), timed on one thread against them (medians of 7 calls of 100 pairs,
destinations rotating over 9 buffers as the engine's slots do):

1. two in-place forward steps (what pyrevolve's advances and amcheck's forward sweep run);
2. an out-of-place pair of steps from a read-only checkpoint (amcheck's restores with pairs);
3. two reverse steps from one state (what pairs of steps would allow: x_s serves reverse steps
   s and s - 1; pyrevolve reverses one step per restore).

The script then prints what the measured costs make of both tools' times at n = 10^4 (pyrevolve:
recompute factor 6.762; async multistage with pairs at k = 14: 1.857), fused where each tool's
calls allow it, against unfused.

    .venv/bin/python benchmarks/results/temporal_blocking_ab.py

Session 21 moved the three fused kernels into benchmarks/_wave.py, whose serial steps and paired
adjoint now use them; the unfused side here is the serial path as it was before
(``unfused_steps``) and ``_wave.adjoint_step``.
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _wave
import numba
import numpy as np
from _machine import describe
from _wave import adjoint_pair, in_place_pair, out_of_place_pair
from amcheck.kernels._jit import ftz_on, ftz_restore


@numba.njit(nogil=True)
def unfused_steps(src, dst, t0, t1):  # pragma: no cover - numba
    """_wave._steps_serial as it was before session 21: one pass over memory a step."""
    mx = ftz_on()
    first = t0 + 1
    if src.ctypes.data != dst.ctypes.data and t1 - t0 >= 2:
        _wave.wave_pair_serial(src, dst, t0)
        first += 1
    else:
        _wave.wave_step_serial(src, dst, t0)
    for t in range(first, t1):
        _wave.wave_step_serial(dst, dst, t)
    ftz_restore(mx)


def median_ms(fn, calls=100, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for k in range(calls):
            fn(k)
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times), min(times), max(times)


def main():
    numba.set_num_threads(1)
    _wave.compile_kernels()
    print(describe())
    nx = 724
    x = _wave.initial_state(nx)["u"]
    unfused_steps(x, x, 0, 900)  # a filled wavefield
    frozen = x.copy()
    frozen.flags.writeable = False
    slots = [np.zeros_like(x) for _ in range(9)]
    rng = np.random.default_rng(0)
    lam0 = (0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    grad0 = rng.standard_normal(x.shape[1:]).astype(np.float32)

    # bitwise checks against the unfused kernels
    work, fused = x.copy(), x.copy()
    for k in range(4):
        unfused_steps(work, work, 900 + 2 * k, 902 + 2 * k)
        in_place_pair(fused, 900 + 2 * k)
    a, b = np.zeros_like(x), np.zeros_like(x)
    unfused_steps(frozen, a, 900, 902)
    out_of_place_pair(frozen, b, 900)
    lam1, g1, lam2, g2 = lam0.copy(), grad0.copy(), lam0.copy(), grad0.copy()
    for t in (905, 903):
        _wave.adjoint_step(lam1, g1, x, t)
        _wave.adjoint_step(lam1, g1, x, t - 1)
        adjoint_pair(lam2, g2, x, t)
    equal = (np.array_equal(work, fused), np.array_equal(a, b),
             np.array_equal(lam1, lam2) and np.array_equal(g1, g2))
    print(f"bitwise equal to the unfused kernels (in place, out of place, reverse): {equal}")
    assert all(equal)

    lam, g = lam0.copy(), grad0.copy()
    rows = [
        ("2 in-place steps", lambda k: unfused_steps(work, work, 900 + 2 * k, 902 + 2 * k),
         lambda k: in_place_pair(work, 900 + 2 * k)),
        ("out-of-place pair", lambda k: unfused_steps(frozen, slots[k % 9], 900, 902),
         lambda k: out_of_place_pair(frozen, slots[k % 9], 900)),
        ("2 reverse steps", lambda k: (_wave.adjoint_step(lam, g, slots[k % 9], 2 * k + 5),
                                       _wave.adjoint_step(lam, g, slots[k % 9], 2 * k + 4)),
         lambda k: adjoint_pair(lam, g, slots[k % 9], 2 * k + 5)),
    ]
    cost = {}
    print("\nms for two steps, one thread: median (min-max) of 7 x 100 calls")
    for name, unfused, fusedfn in rows:
        u, f = median_ms(unfused), median_ms(fusedfn)
        cost[name] = (u[0] / 2, f[0] / 2)
        print(f"  {name:18s} unfused {u[0]:.3f} ({u[1]:.3f}-{u[2]:.3f})  fused {f[0]:.3f} "
              f"({f[1]:.3f}-{f[2]:.3f})  {u[0] / f[0]:.2f}x")

    n, rev_pyrevolve, rev_pairs = 10_000, 6.762, 1.857
    for label, i in (("unfused", 0), ("fused where the calls allow", 1)):
        step, pair, reverse = (cost[name][i] for name in cost)
        unfused_step, unfused_reverse = cost["2 in-place steps"][0], cost["2 reverse steps"][0]
        # pyrevolve: every forward step in place, one reverse step per restore. Its Revolver runs
        # each reverse step as fwd.apply(t, t + 1) then rev.apply(t, t + 1): n of its forward
        # steps are single steps, which cannot be fused (session 21; the first version of this
        # script fused them too, which put pyrevolve 0.4 s lower).
        pyrevolve = n * ((rev_pyrevolve - 1) * step + unfused_step + unfused_reverse) / 1e3
        ours = n * (step + (rev_pairs - 1) * pair + reverse) / 1e3
        print(f"\n{label}: kernel time at n = {n}: pyrevolve {pyrevolve:.2f} s (plus its copies), "
              f"async multistage with pairs at k = 14 {ours:.2f} s (plus its engine), "
              f"ratio of kernel times {pyrevolve / ours:.2f}")


if __name__ == "__main__":  # session 21: fused_sweep_ab.py imports the kernels
    main()
