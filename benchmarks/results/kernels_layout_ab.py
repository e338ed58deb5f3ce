"""A/B, one thread: old layout (halo H, the kernels before the aligned layout) vs the aligned one;
u in a 64-byte aligned buffer (as a Checkpointer slot) and in a plain numpy array; forward step
and adjoint kernel, interleaved. Output: benchmarks/results/kernels_layout_ab.log.

    git show d12b61f:kernels/_stencil.py > /tmp/old/old_stencil.py
    for c in "2 4 2000" "2 8 2000" "3 4 256" "3 8 256"; do
        .venv/bin/python benchmarks/results/kernels_layout_ab.py $c 7; done
"""
import statistics
import sys
import time

sys.path.insert(0, "/tmp/old")
import numba
import numpy as np
import old_stencil
from amcheck.kernels import Geometry, Model
from amcheck.kernels._layout import aligned_zeros
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward

numba.set_num_threads(1)
nd, so, n, reps = (int(v) for v in sys.argv[1:5])
H = so // 2
model = Model(np.full((n,) * nd, 1.5), (10.0,) * nd, nbl=0, space_order=so)
centre = [5.0 * (n - 1)] * nd
geo = Geometry(model, centre, [centre], tn=1.0, f0=0.01)
fwd = AcousticForward(model, geo); adj = AcousticAdjoint(fwd); d = fwd._disc
ko = old_stencil.make_kernels(nd, so, np.float32)
oshape = tuple(n + 2 * H for _ in range(nd))
c_old = np.ascontiguousarray(np.full(oshape, d.c.flat[0], np.float32))  # as the old code: numpy
damp_old = [np.zeros(m, np.float32) for m in oshape]
new_u = {"slot": aligned_zeros((2, *model.grid_shape), np.float32),
         "numpy": np.zeros((2, *model.grid_shape), np.float32)}
old_u = {"slot": aligned_zeros((2, *oshape), np.float32), "numpy": np.zeros((2, *oshape), np.float32)}
new_v, new_g = adj.v, adj.g
old_v, old_g = np.zeros((2, *oshape), np.float32), np.zeros(oshape, np.float32)
for u in (*new_u.values(), *old_u.values()):
    u[(0, *[s // 2 for s in u.shape[1:]])] = 1.0
    u[(1, *[s // 2 for s in u.shape[1:]])] = 0.5
new_v[...] = new_u["numpy"]; old_v[...] = old_u["numpy"]
steps = 8 if nd == 3 else 40
def run(kind, which, where):
    if kind == "fwd":
        if which == "new":
            u = new_u[where]; f = lambda s: d.kernels.step(u, s % 2, d.c, d.w, d.end, *d.damping)
        else:
            u = old_u[where]; f = lambda s: ko.step(u, s % 2, c_old, d.w, *damp_old)
    else:
        if which == "new":
            u = new_u[where][0]; f = lambda s: d.kernels.adjoint_gradient(new_v, s % 2, d.c, d.w, d.end, *d.damping, u, new_g)
        else:
            u = old_u[where][0]; f = lambda s: ko.adjoint_gradient(old_v, s % 2, c_old, d.w, *damp_old, u, old_g)
    t = time.perf_counter()
    for s in range(steps):
        f(s)
    return n ** nd * steps / (time.perf_counter() - t) / 1e9
variants = [(k, w, p) for k in ("fwd", "adj") for p in ("slot", "numpy") for w in ("old", "new")]
for v in variants: run(*v)  # compile / warm
res = {v: [] for v in variants}
for r in range(reps):
    for v in variants:
        res[v].append(run(*v))
addr = {f"{w}_{p}": int(u.ctypes.data % 64) for w, us in (("new", new_u), ("old", old_u)) for p, u in us.items()}
print(f"{nd}-D n={n} so{so}: base mod 64 {addr}, c_old {c_old.ctypes.data % 64}, old v/g {old_v.ctypes.data % 64}/{old_g.ctypes.data % 64}")
for k in ("fwd", "adj"):
    for p in ("slot", "numpy"):
        o, w = res[(k, "old", p)], res[(k, "new", p)]
        ratios = [b / a for a, b in zip(o, w)]
        print(f"  {k} u in {p:5s}: old {statistics.median(o):.3f} [{min(o):.3f}-{max(o):.3f}]  new {statistics.median(w):.3f} [{min(w):.3f}-{max(w):.3f}]  new/old median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}] GPts/s")
