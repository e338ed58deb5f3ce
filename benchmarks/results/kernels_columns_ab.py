"""A/B: the kernels of the working tree against those of a git revision (kernels/_stencil.py and
kernels/_columns.py taken from ``OLD_REV`` into temporary modules), the same arrays, interleaved
in one process: forward step (in place and out of place) and adjoint kernel. Both are checked
bitwise equal on these arrays first. Output: benchmarks/results/kernels_columns_ab.log.

    .venv/bin/python benchmarks/results/kernels_columns_ab.py SHAPE SO NBL THREADS REPS [NDIM]

SHAPE is N (a cube, or a square with NDIM 2) or e.g. 16x24x256 (a grid whose planes stay in L2).
``OLD_REV`` defaults to 8a30ebf, the line (3-D) and row (2-D) loops that the column walks replaced
(session 9); session 10 set it to the commit before each change. Each round runs
max(6, 2e8 / points) steps (session 9's runs used 6 steps in 3-D and 20 in 2-D). After editing
kernels/_columns.py remove kernels/__pycache__/*.nb? (numba's cache keys the kernels on
_stencil.py only).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
from amcheck.kernels import Geometry, Model
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward

shape = tuple(int(v) for v in sys.argv[1].split("x"))
so, nbl, threads, reps = (int(v) for v in sys.argv[2:6])
ndim = int(sys.argv[6]) if len(sys.argv) > 6 else 3
if len(shape) == 1:
    shape = shape * ndim
ndim = len(shape)
n = shape[0]
numba.set_num_threads(threads)
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
rev = os.environ.get("OLD_REV", "8a30ebf")


def show(p):
    return subprocess.run(["git", "show", rev + ":" + p], cwd=root, check=True,
                          capture_output=True, text=True).stdout
tmp = tempfile.mkdtemp()
sys.path.insert(0, tmp)
with open(os.path.join(tmp, "old_columns.py"), "w") as f:
    f.write(show("kernels/_columns.py") if rev != "8a30ebf" else "")
with open(os.path.join(tmp, "old_stencil.py"), "w") as f:
    f.write(show("kernels/_stencil.py").replace("amcheck.kernels._columns", "old_columns"))
import old_stencil as old

model = Model(np.full(shape, 1.5), (10.0,) * ndim, nbl=nbl, space_order=so)
centre = [5.0 * (m - 1) for m in shape]
fwd = AcousticForward(model, Geometry(model, centre, [centre], tn=1.0, f0=0.01))
adj = AcousticAdjoint(fwd)
d = fwd._disc
kernels = {"old": old.make_kernels(ndim, so, np.float32), "new": d.kernels}
u = fwd.initial_state()["u"]
dst = fwd.initial_state()["u"]
rng = np.random.default_rng(0)
u[...] = rng.standard_normal(u.shape).astype(np.float32) * 1e-3
v, g = adj.v, adj.g
v[...] = u

# bitwise check: one step of each kernel from the same data
for kind in ("step", "step_copy", "adjoint"):
    outs = []
    for k in kernels.values():
        a, b, gg = u.copy(), np.zeros_like(u), np.zeros_like(g)
        if kind == "step":
            k.step(a, 0, d.c, d.w, d.end, *d.damping)
            outs.append(a)
        elif kind == "step_copy":
            k.step_copy(a, b, 0, d.c, d.w, d.end, *d.damping)
            outs.append(b)
        else:
            k.adjoint_gradient(a, 0, d.c, d.w, d.end, *d.damping, u[1], gg)
            outs.append(np.concatenate([a.ravel(), gg.ravel()]))
    assert np.array_equal(outs[0].view(np.uint8), outs[1].view(np.uint8)), kind
print("bitwise equal: step, step_copy, adjoint", flush=True)

steps = max(6, int(2e8 // np.prod(shape)))
pts = int(np.prod([m + 2 * nbl for m in shape]))


def run(kind, which):
    k = kernels[which]
    t = time.perf_counter()
    for s in range(steps):
        if kind == "step":
            k.step(u, s % 2, d.c, d.w, d.end, *d.damping)
        elif kind == "step_copy":
            k.step_copy(u, dst, s % 2, d.c, d.w, d.end, *d.damping)
        else:
            k.adjoint_gradient(v, s % 2, d.c, d.w, d.end, *d.damping, u[0], g)
    return pts * steps / (time.perf_counter() - t) / 1e9


variants = [(kind, w) for kind in ("step", "step_copy", "adjoint") for w in ("old", "new")]
for kv in variants:
    run(*kv)
res = {kv: [] for kv in variants}
for rep in range(reps):
    for kv in (variants if rep % 2 == 0 else variants[::-1]):
        res[kv].append(run(*kv))
print(f"{ndim}-D {n}^{ndim} nbl={nbl} so{so} float32, {threads} thread(s), {reps} interleaved rounds, "
      f"load {os.getloadavg()[0]:.2f}; grid {u.shape[1:]}")
for kind in ("step", "step_copy", "adjoint"):
    o, w = res[(kind, "old")], res[(kind, "new")]
    ratios = [b / a for a, b in zip(o, w)]
    print(f"  {kind:9s} old {statistics.median(o):.3f} [{min(o):.3f}-{max(o):.3f}]  new "
          f"{statistics.median(w):.3f} [{min(w):.3f}-{max(w):.3f}] GPts/s  new/old "
          f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]")
