"""A/B, one thread: the plane rule of ``grid_halos`` (one more y point where a 3-D plane would be a
multiple of 4 KiB) against the same layout without it (a halo of H on the middle axis): forward
step and adjoint kernel, u in 64-byte aligned buffers, interleaved, nbl = 0.
Output: benchmarks/results/kernels_layout_plane_ab.log.

    for c in "8 248" "4 252" "8 256" "4 256" "4 248"; do
        .venv/bin/python benchmarks/results/kernels_layout_plane_ab.py $c 7; done
"""
import statistics
import sys
import time

import numba
import numpy as np
from amcheck.kernels import Geometry, Model, _model
from amcheck.kernels._layout import grid_halos
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward

numba.set_num_threads(1)
so, n, reps = (int(v) for v in sys.argv[1:4])


def old_rule(halo, sizes, dtype):
    h = grid_halos(halo, sizes, dtype)
    return (h[0], (halo, halo), h[2])


def build(rule):
    _model.grid_halos = rule
    model = Model(np.full((n,) * 3, 1.5), (10.0,) * 3, nbl=0, space_order=so)
    centre = [5.0 * (n - 1)] * 3
    fwd = AcousticForward(model, Geometry(model, centre, [centre], tn=1.0, f0=0.01))
    adj = AcousticAdjoint(fwd)
    u = fwd.initial_state()["u"]
    for lev, val in ((0, 1.0), (1, 0.5)):
        u[(lev, *[s // 2 for s in u.shape[1:]])] = val
    adj.v[...] = u
    return model, fwd._disc, u, adj.v, adj.g


layouts = {"old": build(old_rule), "new": build(grid_halos)}
_model.grid_halos = grid_halos
steps = 6


def run(kind, which):
    _, d, u, v, g = layouts[which]
    if kind == "fwd":
        def f(s):
            d.kernels.step(u, s % 2, d.c, d.w, d.end, *d.damping)
    else:
        def f(s):
            d.kernels.adjoint_gradient(v, s % 2, d.c, d.w, d.end, *d.damping, u[0], g)
    t = time.perf_counter()
    for s in range(steps):
        f(s)
    return n ** 3 * steps / (time.perf_counter() - t) / 1e9


variants = [(k, w) for k in ("fwd", "adj") for w in ("old", "new")]
for var in variants:
    run(*var)  # compile / warm
res = {var: [] for var in variants}
for _ in range(reps):
    for var in variants:
        res[var].append(run(*var))
desc = []
for w, (model, d, *_rest) in layouts.items():
    plane = model.grid_shape[1] * model.grid_shape[2] * 4
    desc.append(f"{w} grid {model.grid_shape} plane % 4096 = {plane % 4096}")
print(f"3-D n={n} so{so}, one thread, {reps} interleaved: " + "; ".join(desc))
for k in ("fwd", "adj"):
    o, w = res[(k, "old")], res[(k, "new")]
    ratios = [b / a for a, b in zip(o, w)]
    print(f"  {k}: old {statistics.median(o):.3f} [{min(o):.3f}-{max(o):.3f}]  new "
          f"{statistics.median(w):.3f} [{min(w):.3f}-{max(w):.3f}]  new/old median "
          f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}] GPts/s")
