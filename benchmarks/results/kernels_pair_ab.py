# ruff: noqa: B023  (an archived experiment: closures used inside their loop iteration)
"""Experiment (not kept): the 3-D order-8 forward column walk over two lines (y, y+1) at once,
sharing 8 of the 16 y-neighbour loads, equal spacings, against the one-line walk of
kernels/_columns.py on the same arrays, interleaved; bitwise equal. Measured 256^3, one thread,
5 rounds: one line 1.096 GPts/s, two lines 0.449 (0.41x). Not kept; the result is in
docs/kernels.md and benchmarks/results/kernels_xwalk_ab.log.

    .venv/bin/python benchmarks/results/kernels_pair_ab.py N SO REPS [nbl]
"""
import os
import statistics
import sys
import time

import numba
import numpy as np
from amcheck.kernels import Geometry, Model
from amcheck.kernels._columns import BLOCK_PLANES, PREFETCH_BYTES, VECTOR_BYTES, _splat, column3
from amcheck.kernels._jit import ftz_on, ftz_restore
from amcheck.kernels._layout import left_pad
from amcheck.kernels._operators import AcousticForward
from amcheck.kernels._stencil import _interior_size, _tail3, _whole_vectors, fd_coefficients
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

numba.set_num_threads(1)

def _walk2(context, builder, sig, args):
    (uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az) = args
    (tuc, tup, tdn, tc, tC, tsx, _, _, tx0, tx1, ty, tz, tax, tay, taz) = sig.args
    i64 = ir.IntType(64); i32 = ir.IntType(32); i8p = ir.IntType(8).as_pointer()
    H = tC.count - 1; ft = context.get_value_type(tsx); itemsize = 4 if tsx == types.float32 else 8
    W = VECTOR_BYTES // itemsize; vt = ir.VectorType(ft, W); vptr = vt.as_pointer()
    const = lambda v: ir.Constant(i64, v)
    intp = lambda v, t: context.cast(builder, v, t, types.intp)
    x0, x1, y, z = intp(x0, tx0), intp(x1, tx1), intp(y, ty), intp(z, tz)
    named = {"uc": (uc, tuc), "up": (up, tup), "dn": (dn, tdn), "c": (c, tc), "ax": (ax, tax), "ay": (ay, tay), "az": (az, taz)}
    arrays = {k: (context.make_array(t)(context, builder, v), t) for k, (v, t) in named.items()}
    def pointer(name, index):
        ary, t = arrays[name]
        return builder.bitcast(cgutils.get_item_pointer(context, builder, t, ary, index, wraparound=False), i8p)
    def stride(name, axis):
        ary, t = arrays[name]
        return cgutils.unpack_tuple(builder, ary.strides, t.ndim)[axis]
    at = lambda p, o: builder.gep(p, [o])
    load = lambda p: builder.load(builder.bitcast(p, vptr), align=itemsize)
    def store(v, p): builder.store(v, builder.bitcast(p, vptr), align=itemsize)
    pf = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
    def prefetch(p): builder.call(pf, [at(p, const(PREFETCH_BYTES)), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{W}f{8 * itemsize}")
    Cs = [builder.extract_value(C, k) for k in range(H + 1)]
    k0 = _splat(builder, vt, builder.fmul(Cs[0], builder.fadd(builder.fadd(sx, sy), sz)))
    kx = [_splat(builder, vt, builder.fmul(Cs[k], sx)) for k in range(H + 1)]
    ky = kz = kx
    one = _splat(builder, vt, ir.Constant(ft, 1.0))
    azv = load(pointer("az", [z]))
    ayy = [builder.load(cgutils.get_item_pointer(context, builder, tay, arrays["ay"][0], [builder.add(y, const(l))], wraparound=False)) for l in (0, 1)]
    streams = ("uc", "up", "dn", "c")
    base = {k: pointer(k, [x0, y, z]) for k in streams}
    plane = {k: stride(k, 0) for k in streams}
    row = stride("uc", 1)
    nblock = builder.sub(x1, x0)
    for l in (0, 1):
        bl = at(base["uc"], builder.mul(row, const(l)))
        for k in range(1, H + 1):
            prefetch(at(bl, builder.mul(plane["uc"], const(-k))))
            prefetch(at(bl, builder.mul(plane["uc"], builder.add(nblock, const(k - 1)))))
    win0 = [[load(at(at(base["uc"], builder.mul(row, const(l))), builder.mul(plane["uc"], const(k)))) for k in range(-H, H)] for l in (0, 1)]
    pre = builder.block
    body = builder.function.append_basic_block("w2.body"); after = builder.function.append_basic_block("w2.end")
    builder.cbranch(builder.icmp_signed("<", x0, x1), body, after)
    builder.position_at_end(body)
    x = builder.phi(i64); x.add_incoming(x0, pre)
    wins = []
    for l in (0, 1):
        ph = []
        for v0 in win0[l]:
            p_ = builder.phi(vt); p_.add_incoming(v0, pre); ph.append(p_)
        wins.append(ph)
    dx = builder.sub(x, x0)
    here = {k: at(base[k], builder.mul(plane[k], dx)) for k in streams}
    pc = here["uc"]
    ws = [wins[l] + [load(at(at(pc, builder.mul(row, const(l))), builder.mul(plane["uc"], const(H))))] for l in (0, 1)]
    for l in (0, 1):
        prefetch(at(pc, builder.mul(row, const(H + l))))
        prefetch(at(here["up"], builder.mul(plane["up"], const(0)) if l == 0 else builder.mul(row, const(1))))
        prefetch(at(here["c"], const(0)) if l == 0 else at(here["c"], builder.mul(row, const(1))))
    memo = {}
    def rowv(r):
        if r == 0: return ws[0][H]
        if r == 1: return ws[1][H]
        if r not in memo: memo[r] = load(at(pc, builder.mul(row, const(r))))
        return memo[r]
    axx = builder.load(cgutils.get_item_pointer(context, builder, tax, arrays["ax"][0], [x], wraparound=False))
    for l in (0, 1):
        w = ws[l]; centre = w[H]; pl = at(pc, builder.mul(row, const(l)))
        left = load(at(pl, const(-VECTOR_BYTES))); right = load(at(pl, const(VECTOR_BYTES)))
        def z_pair(k):
            plus = builder.shuffle_vector(centre, right, ir.Constant(ir.VectorType(i32, W), [k + i for i in range(W)]))
            minus = builder.shuffle_vector(left, centre, ir.Constant(ir.VectorType(i32, W), [W - k + i for i in range(W)]))
            return plus, minus
        y_pair = lambda k: builder.fadd(rowv(l + k), rowv(l - k))
        lx = builder.fmul(k0, centre)
        ly = builder.fmul(ky[1], y_pair(1))
        zp, zm = z_pair(1)
        lz = builder.fmul(kz[1], builder.fadd(zp, zm))
        lx = builder.call(fma, [kx[1], builder.fadd(w[H + 1], w[H - 1]), lx])
        for k in range(2, H + 1):
            lx = builder.call(fma, [kx[k], builder.fadd(w[H + k], w[H - k]), lx])
            ly = builder.call(fma, [ky[k], y_pair(k), ly])
            zp, zm = z_pair(k)
            lz = builder.call(fma, [kz[k], builder.fadd(zp, zm), lz])
        lap = builder.fadd(lx, builder.fadd(ly, lz))
        a = builder.fadd(_splat(builder, vt, builder.fadd(axx, ayy[l])), azv)
        r = builder.fdiv(one, builder.fadd(one, a)); q = builder.fmul(builder.fsub(one, a), r)
        t = builder.call(fma, [load(at(here["c"], builder.mul(row, const(l)))), lap, builder.fadd(centre, centre)])
        new = builder.call(fma, [t, r, builder.fneg(builder.fmul(q, load(at(here["up"], builder.mul(row, const(l))))))])
        store(new, at(here["dn"], builder.mul(row, const(l))))
    x_next = builder.add(x, const(1)); last = builder.block
    x.add_incoming(x_next, last)
    for l in (0, 1):
        for k, p_ in enumerate(wins[l]): p_.add_incoming(ws[l][k + 1], last)
    builder.cbranch(builder.icmp_signed("<", x_next, x1), body, after)
    builder.position_at_end(after)
    return context.get_dummy_value()

@intrinsic
def column3_pair(typingctx, uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az):
    return types.void(uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az), _walk2

n, so, reps = (int(v) for v in sys.argv[1:4])
H = so // 2; scalar = np.float32; C = fd_coefficients(so, scalar); PL = left_pad(H, scalar); W = 16; one = scalar(1.0)
XB = int(os.environ.get("XB", str(BLOCK_PLANES)))
def make(pair):
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
            if pair:
                for jj in range(ny // 2):
                    y = 2 * jj + H
                    for v in range(nv):
                        column3_pair(uc, up, up, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az)
                    for yy in range(y, y + 2):
                        for x in range(x0, x1):
                            _tail3(uc, up, up, c, C, sx, sy, sz, x, yy, nv * W, nz, ax, ay, az, one, PL)
                if ny % 2:
                    y = ny - 1 + H
                    for v in range(nv):
                        column3(uc, up, up, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az, True)
                    for x in range(x0, x1):
                        _tail3(uc, up, up, c, C, sx, sy, sz, x, y, nv * W, nz, ax, ay, az, one, PL)
            else:
                for j in range(ny):
                    y = j + H
                    for v in range(nv):
                        column3(uc, up, up, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az, True)
                    for x in range(x0, x1):
                        _tail3(uc, up, up, c, C, sx, sy, sz, x, y, nv * W, nz, ax, ay, az, one, PL)
            ftz_restore(mx)
    return step
fns = {"one": make(False), "pair": make(True)}
shape = tuple(int(v) for v in os.environ["SHAPE"].split(",")) if os.environ.get("SHAPE") else (n,) * 3
nbl = int(sys.argv[4]) if len(sys.argv) > 4 else 0
m = Model(np.full(shape, 1.5), (10.0,) * 3, nbl=nbl, space_order=so)
cc = [5.0 * (s - 1) for s in shape]
f = AcousticForward(m, Geometry(m, cc, [cc], tn=1.0, f0=0.01)); d = f._disc
u = f.initial_state()["u"]; u[...] = np.random.default_rng(0).standard_normal(u.shape).astype(scalar) * 1e-3
a, b = u.copy(), u.copy()
fns["one"](a, 0, d.c, d.w, d.end, *d.damping); fns["pair"](b, 0, d.c, d.w, d.end, *d.damping)
print("bitwise", np.array_equal(a.view(np.uint8), b.view(np.uint8)), flush=True)
steps = max(6, int(6 * 256**3 / np.prod(u.shape[1:])))
pts = int(np.prod([s + 2 * nbl for s in shape]))
def run(fn):
    t = time.perf_counter()
    for s in range(steps): fn(u, s % 2, d.c, d.w, d.end, *d.damping)
    return pts * steps / (time.perf_counter() - t) / 1e9
for fn in fns.values(): run(fn)
res = {k: [] for k in fns}
for rep in range(reps):
    for k in (list(fns) if rep % 2 == 0 else list(fns)[::-1]): res[k].append(run(fns[k]))
print(shape, nbl, "XB", XB)
for k, v in res.items():
    rr = [x_ / y_ for x_, y_ in zip(v, res["one"])]
    print(f"  {k:5s} {statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}] ratio {statistics.median(rr):.3f} [{min(rr):.3f}-{max(rr):.3f}]")
