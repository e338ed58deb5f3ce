"""A/B, the 3-D order-8 forward step with the column walk's two code paths on the same arrays:
one set of coefficient vectors per axis (``uniform`` False) against one for all axes (True, what
the kernels take where sx == sy == sz), interleaved, checked bitwise equal first.
Output: the end of benchmarks/results/kernels_columns_ab.log.

    .venv/bin/python benchmarks/results/kernels_uniform_ab.py N SO REPS [nbl]   (SHAPE=16,16,256)
"""
import os
import statistics
import sys
import time

import numba
import numpy as np
from amcheck.kernels import Geometry, Model
from amcheck.kernels._columns import BLOCK_PLANES, column3
from amcheck.kernels._jit import ftz_on, ftz_restore
from amcheck.kernels._layout import left_pad
from amcheck.kernels._operators import AcousticForward
from amcheck.kernels._stencil import _interior_size, _tail3, _whole_vectors, fd_coefficients
from numba import prange

numba.set_num_threads(int(os.environ.get("THREADS", "1")))
n, so, reps = (int(v) for v in sys.argv[1:4]); nbl = int(sys.argv[4]) if len(sys.argv) > 4 else 0
H = so // 2; scalar = np.float32; C = fd_coefficients(so, scalar); PL = left_pad(H, scalar); W = 16; one = scalar(1.0); XB = BLOCK_PLANES

def make(same):
    @numba.njit(parallel=True, nogil=True, error_model="numpy")
    def step(u, cur, c, w, end, ax, ay, az):
        uc = u[cur]; up = u[1 - cur]; NZ = u.shape[3]
        nx = u.shape[1] - 2 * H
        ny = _interior_size(end[0], H, u.shape[2], H)
        nz = _interior_size(end[1], PL, NZ, H)
        nv = _whole_vectors(nz, NZ, PL, W)
        sx = w[0]; sy = w[1]; sz = w[2]
        for b in prange((nx + XB - 1) // XB):
            mx = ftz_on()
            x0 = H + b * XB; x1 = min(x0 + XB, H + nx)
            for j in range(ny):
                y = j + H
                for v in range(nv):
                    column3(uc, up, up, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az, same)
                for x in range(x0, x1):
                    _tail3(uc, up, up, c, C, sx, sy, sz, x, y, nv * W, nz, ax, ay, az, one, PL)
            ftz_restore(mx)
    return step
fns = {"general": make(False), "uniform": make(True)}
shape = tuple(int(v) for v in os.environ["SHAPE"].split(",")) if os.environ.get("SHAPE") else (n,) * 3
m = Model(np.full(shape, 1.5), (10.0,) * 3, nbl=nbl, space_order=so)
cc = [5.0 * (s - 1) for s in shape]
f = AcousticForward(m, Geometry(m, cc, [cc], tn=1.0, f0=0.01)); d = f._disc
u = f.initial_state()["u"]; u[...] = np.random.default_rng(0).standard_normal(u.shape).astype(scalar) * 1e-3
a, b = u.copy(), u.copy()
fns["general"](a, 0, d.c, d.w, d.end, *d.damping); fns["uniform"](b, 0, d.c, d.w, d.end, *d.damping)
print("bitwise", np.array_equal(a.view(np.uint8), b.view(np.uint8)))
steps = max(6, int(6 * 256**3 / np.prod(u.shape[1:])))
pts = int(np.prod([s + 2 * nbl for s in shape]))
def run(fn):
    t = time.perf_counter()
    for s in range(steps): fn(u, s % 2, d.c, d.w, d.end, *d.damping)
    return pts * steps / (time.perf_counter() - t) / 1e9
res = {k: [] for k in fns}
for rep in range(reps):
    for k in (list(fns) if rep % 2 == 0 else list(fns)[::-1]): res[k].append(run(fns[k]))
print(shape, nbl)
for k, v in res.items():
    rr = [x / y for x, y in zip(v, res["general"])]
    print(f"  {k:8s} {statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}] ratio {statistics.median(rr):.3f} [{min(rr):.3f}-{max(rr):.3f}]")
