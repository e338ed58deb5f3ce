"""A/B, one thread: the 3-D forward step with the line loop as explicit LLVM vectors (a numba
``@intrinsic`` that emits the whole z loop of one line with ``<16 x float>`` loads,
``llvm.fma.v16f32`` and no fast-math flags) against the numba loop of kernels/_stencil.py,
interleaved, in one process. Output: benchmarks/results/kernels_simd_ab.log.

    .venv/bin/python benchmarks/results/kernels_simd_ab.py N SO REPS [nbl] [dtype]
    SHAPE=256,256,128 ...   another grid than N^3
    YB=32,64 ...            also the variant with the y loop in blocks of YB lines (x inside)
    ZC=64,128 ...           also the variant with z strip-mined in chunks of ZC points

Variants: base (the kernel), shuf (z neighbours built from the centre line's three aligned
vectors prev/cur/next by shufflevector, i.e. valignd; the vectors carried from one iteration to
the next: 1 load of the centre line per 16 points), shuf-reload (the same, the three vectors
loaded every iteration), unal (z neighbours by 8 unaligned loads). Per 16 points the loop issues
21 vector loads (shuf) instead of the kernel's 30. Every variant is first checked bitwise equal
to the kernel (random data, damped layers, 3 steps); the result is identical because each lane
does the kernel's operations in its order (three fma chains lx, ly, lz, lx + (ly + lz), update).
"""
import os
import statistics
import sys
import time
from typing import Any

import numba
import numpy as np
from amcheck.kernels import Geometry, Model
from amcheck.kernels._jit import ftz_on, ftz_restore, prefetch
from amcheck.kernels._layout import left_pad
from amcheck.kernels._operators import AcousticForward
from amcheck.kernels._stencil import (
    _AHEAD,
    _check_end,
    _lap3,
    _line_factors,
    _prefetch_line,
    _profile_factors,
    _update,
    fd_coefficients,
)
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

numba.set_num_threads(1)

# ---- the line loop as an LLVM intrinsic (explicit <W x float> vectors) ----
_VECTOR_BYTES = 64


def _splat(builder: Any, vt: Any, s: Any) -> Any:
    i32 = ir.IntType(32)
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(i32, 0))
    mask = ir.Constant(ir.VectorType(i32, vt.count), [0] * vt.count)
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)


def _codegen(context: Any, builder: Any, sig: Any, args: Any, adjoint: bool, shuffle: bool,
             carry: bool) -> Any:
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    if adjoint:
        (uc, up, c, C, sx, sy, sz, x, y, m, r, q, PL, u, g) = args
        (tuc, tup, tc, tC, tsx, _, _, tx, ty, tm, tr, tq, tPL, tu, tg) = sig.args
        dn, tdn = up, tup
    else:
        (uc, up, dn, c, C, sx, sy, sz, x, y, m, r, q, PL) = args
        (tuc, tup, tdn, tc, tC, tsx, _, _, tx, ty, tm, tr, tq, tPL) = sig.args
    H = tC.count - 1
    ft = context.get_value_type(tsx)
    itemsize = 4 if tsx == types.float32 else 8
    W = _VECTOR_BYTES // itemsize
    vt = ir.VectorType(ft, W)
    zero = ir.Constant(i64, 0)

    def intp(v: Any, t: Any) -> Any:
        return context.cast(builder, v, t, types.intp)

    x = intp(x, tx)
    y = intp(y, ty)
    m = intp(m, tm)
    PL = intp(PL, tPL)

    arrays = {}
    for name, val, t in (("uc", uc, tuc), ("up", up, tup), ("dn", dn, tdn), ("c", c, tc),
                         ("r", r, tr), ("q", q, tq)) + ((("u", u, tu), ("g", g, tg))
                                                        if adjoint else ()):
        arrays[name] = (context.make_array(t)(context, builder, val), t)

    def line(name: str, xi: Any, yi: Any) -> Any:
        ary, t = arrays[name]
        return cgutils.get_item_pointer(context, builder, t, ary, [xi, yi, zero],
                                        wraparound=False)

    def vec1(name: str) -> Any:
        ary, t = arrays[name]
        return cgutils.get_item_pointer(context, builder, t, ary, [zero], wraparound=False)

    # nv = max(0, min(m, NZ - PL - W)) // W: whole vectors whose next vector still lies in the line
    ary_uc, _ = arrays["uc"]
    NZ = cgutils.unpack_tuple(builder, ary_uc.shape, 3)[2]
    lim = builder.sub(builder.sub(NZ, PL), ir.Constant(i64, W))
    mm = builder.select(builder.icmp_signed("<", m, lim), m, lim)
    mm = builder.select(builder.icmp_signed("<", mm, zero), zero, mm)
    nv = builder.sdiv(mm, ir.Constant(i64, W))

    def xadd(a: Any, k: int) -> Any:
        return builder.add(a, ir.Constant(i64, k))

    pc = line("uc", x, y)
    pxp = [line("uc", xadd(x, k), y) for k in range(1, H + 1)]
    pxm = [line("uc", builder.sub(x, ir.Constant(i64, k)), y) for k in range(1, H + 1)]
    pyp = [line("uc", x, xadd(y, k)) for k in range(1, H + 1)]
    pym = [line("uc", x, builder.sub(y, ir.Constant(i64, k))) for k in range(1, H + 1)]
    pup = line("up", x, y)
    pdn = line("dn", x, y)
    pcc = line("c", x, y)
    pr = vec1("r")
    pq = vec1("q")
    if adjoint:
        pu = line("u", x, y)
        pg = line("g", x, y)

    vptr = vt.as_pointer()

    def load(p: Any, z: Any) -> Any:
        return builder.load(builder.bitcast(builder.gep(p, [z]), vptr), align=itemsize)

    def store(v: Any, p: Any, z: Any) -> None:
        builder.store(v, builder.bitcast(builder.gep(p, [z]), vptr), align=itemsize)

    Cs = [builder.extract_value(C, k) for k in range(H + 1)]
    k0 = builder.fmul(Cs[0], builder.fadd(builder.fadd(sx, sy), sz))
    kx = [None] + [builder.fmul(Cs[k], sx) for k in range(1, H + 1)]
    ky = [None] + [builder.fmul(Cs[k], sy) for k in range(1, H + 1)]
    kz = [None] + [builder.fmul(Cs[k], sz) for k in range(1, H + 1)]
    k0v = _splat(builder, vt, k0)
    kxv = [None] + [_splat(builder, vt, s) for s in kx[1:]]
    kyv = [None] + [_splat(builder, vt, s) for s in ky[1:]]
    kzv = [None] + [_splat(builder, vt, s) for s in kz[1:]]

    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vt, [vt, vt, vt]),
        f"llvm.fma.v{W}f{8 * itemsize}")

    fn = builder.function
    init_bb = fn.append_basic_block("line3.simd.init")
    body_bb = fn.append_basic_block("line3.simd.body")
    after_bb = fn.append_basic_block("line3.simd.end")
    builder.cbranch(builder.icmp_signed(">", nv, zero), init_bb, after_bb)

    builder.position_at_end(init_bb)
    cp0 = load(pc, builder.sub(PL, ir.Constant(i64, W)))
    cc0 = load(pc, PL)
    builder.branch(body_bb)

    builder.position_at_end(body_bb)
    kk = builder.phi(i64)
    kk.add_incoming(zero, init_bb)
    if carry:
        cp = builder.phi(vt)
        cp.add_incoming(cp0, init_bb)
        cc = builder.phi(vt)
        cc.add_incoming(cc0, init_bb)
    z = builder.add(PL, builder.mul(kk, ir.Constant(i64, W)))
    zn = builder.add(z, ir.Constant(i64, W))
    if not carry:
        cp = load(pc, builder.sub(z, ir.Constant(i64, W)))
        cc = load(pc, z)
    cn = load(pc, zn)

    def zs(k: int) -> tuple[Any, Any]:
        if shuffle:
            plus = builder.shuffle_vector(cc, cn, ir.Constant(ir.VectorType(i32, W),
                                                              [k + i for i in range(W)]))
            minus = builder.shuffle_vector(cp, cc, ir.Constant(ir.VectorType(i32, W),
                                                               [W - k + i for i in range(W)]))
            return plus, minus
        return (load(pc, builder.add(z, ir.Constant(i64, k))),
                load(pc, builder.sub(z, ir.Constant(i64, k))))

    lx = builder.fmul(k0v, cc)
    ly = builder.fmul(kyv[1], builder.fadd(load(pyp[0], z), load(pym[0], z)))
    zp, zm = zs(1)
    lz = builder.fmul(kzv[1], builder.fadd(zp, zm))
    lx = builder.call(fma, [kxv[1], builder.fadd(load(pxp[0], z), load(pxm[0], z)), lx])
    for k in range(2, H + 1):
        lx = builder.call(fma, [kxv[k], builder.fadd(load(pxp[k - 1], z), load(pxm[k - 1], z)),
                                lx])
        ly = builder.call(fma, [kyv[k], builder.fadd(load(pyp[k - 1], z), load(pym[k - 1], z)),
                                ly])
        zp, zm = zs(k)
        lz = builder.call(fma, [kzv[k], builder.fadd(zp, zm), lz])
    lap = builder.fadd(lx, builder.fadd(ly, lz))
    vup = load(pup, z)
    vc = load(pcc, z)
    vr = load(pr, z)
    vq = load(pq, z)
    t = builder.call(fma, [vc, lap, builder.fadd(cc, cc)])
    new = builder.call(fma, [t, vr, builder.fneg(builder.fmul(vq, vup))])
    if adjoint:
        vu = load(pu, z)
        vg = load(pg, z)
        store(builder.call(fma, [vu, lap, vg]), pg, z)
    store(new, pdn, z)

    k1 = builder.add(kk, ir.Constant(i64, 1))
    end_bb = builder.block
    kk.add_incoming(k1, end_bb)
    if carry:
        cp.add_incoming(cc, end_bb)
        cc.add_incoming(cn, end_bb)
    builder.cbranch(builder.icmp_signed("<", k1, nv), body_bb, after_bb)

    builder.position_at_end(after_bb)
    return builder.mul(nv, ir.Constant(i64, W))


def _arrays_ok(arrs: Any, ndims: Any) -> bool:
    return all(isinstance(a, types.Array) and a.ndim == n for a, n in zip(arrs, ndims))


def make_line3_intrinsic(adjoint: bool, shuffle: bool = True, carry: bool = True) -> Any:
    """Build the intrinsic (prototype knobs: z neighbours by shuffles or loads; carried centre)."""
    if adjoint:
        def typer(typingctx: Any, uc: Any, up: Any, c: Any, C: Any, sx: Any, sy: Any, sz: Any,
                  x: Any, y: Any, m: Any, r: Any, q: Any, PL: Any, u: Any, g: Any) -> Any:
            if not _arrays_ok((uc, up, c, r, q, u, g), (3, 3, 3, 1, 1, 3, 3)):
                return None
            sig = types.intp(uc, up, c, C, sx, sy, sz, x, y, m, r, q, PL, u, g)

            def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
                return _codegen(context, builder, signature, args, True, shuffle, carry)
            return sig, codegen
    else:
        def typer(typingctx: Any, uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any,
                  sz: Any, x: Any, y: Any, m: Any, r: Any, q: Any, PL: Any) -> Any:
            if not _arrays_ok((uc, up, dn, c, r, q), (3, 3, 3, 3, 1, 1)):
                return None
            sig = types.intp(uc, up, dn, c, C, sx, sy, sz, x, y, m, r, q, PL)

            def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
                return _codegen(context, builder, signature, args, False, shuffle, carry)
            return sig, codegen
    return intrinsic(typer)



# ---- kernels ----
n, so, reps = (int(v) for v in sys.argv[1:4])
nbl = int(sys.argv[4]) if len(sys.argv) > 4 else 0
dtype = np.dtype(sys.argv[5] if len(sys.argv) > 5 else "float32")
OPTS = {"parallel": True, "nogil": True, "cache": False, "fastmath": False, "error_model": "numpy"}


def factory(H, scalar, intr):
    one = scalar(1.0)
    zero = scalar(0.0)
    C = fd_coefficients(2 * H, scalar)
    LINE = 64 // np.dtype(scalar).itemsize
    PL = left_pad(H, scalar)
    AHEAD = _AHEAD

    @numba.njit(**OPTS)
    def step(u, cur, c, w, end, ax, ay, az):
        uc = u[cur]
        up = u[1 - cur]
        NY = u.shape[2]
        nx = u.shape[1] - 2 * H
        yend, zend = end
        ny = yend - H
        nz = zend - PL
        _check_end(ny, yend, NY, H)
        _check_end(nz, zend, u.shape[3], H)
        sx = w[0]
        sy = w[1]
        sz = w[2]
        rz, qz = _profile_factors(az, zero, one)
        for i in prange(nx):
            mx = ftz_on()
            x = i + H
            rl = np.empty_like(az)
            ql = np.empty_like(az)
            for j in range(ny):
                y = j + H
                yn = min(y + AHEAD, NY - 1)
                _prefetch_line(uc, x + H, yn, LINE)
                _prefetch_line(up, x, yn, LINE)
                _prefetch_line(c, x, yn, LINE)
                r, q = _line_factors(ax[x] + ay[y], az, rz, qz, rl, ql, one)
                k0 = intr(uc, up, up, c, C, sx, sy, sz, x, y, nz, r, q, PL)
                for k in range(k0, nz):
                    z = k + PL
                    up[x, y, z] = _update(uc[x, y, z], up[x, y, z], c[x, y, z],
                                          _lap3(uc, C, sx, sy, sz, x, y, z), r[z], q[z])
            ftz_restore(mx)
    return step


def factory_yb(H, scalar, intr, YB):
    """The same with the y loop in blocks of YB lines, x inside: the 2H + 1 x-neighbour planes'
    lines of one block stay in L2 from one x to the next."""
    one = scalar(1.0)
    zero = scalar(0.0)
    C = fd_coefficients(2 * H, scalar)
    LINE = 64 // np.dtype(scalar).itemsize
    PL = left_pad(H, scalar)
    AHEAD = _AHEAD

    @numba.njit(**OPTS)
    def step(u, cur, c, w, end, ax, ay, az):
        uc = u[cur]
        up = u[1 - cur]
        NY = u.shape[2]
        nx = u.shape[1] - 2 * H
        yend, zend = end
        ny = yend - H
        nz = zend - PL
        _check_end(ny, yend, NY, H)
        _check_end(nz, zend, u.shape[3], H)
        sx = w[0]
        sy = w[1]
        sz = w[2]
        rz, qz = _profile_factors(az, zero, one)
        for b in range((ny + YB - 1) // YB):
            for i in prange(nx):
                mx = ftz_on()
                x = i + H
                rl = np.empty_like(az)
                ql = np.empty_like(az)
                for j in range(b * YB, min(b * YB + YB, ny)):
                    y = j + H
                    yn = min(y + AHEAD, NY - 1)
                    _prefetch_line(uc, x + H, yn, LINE)
                    _prefetch_line(up, x, yn, LINE)
                    _prefetch_line(c, x, yn, LINE)
                    r, q = _line_factors(ax[x] + ay[y], az, rz, qz, rl, ql, one)
                    k0 = intr(uc, up, up, c, C, sx, sy, sz, x, y, nz, r, q, PL)
                    for k in range(k0, nz):
                        z = k + PL
                        up[x, y, z] = _update(uc[x, y, z], up[x, y, z], c[x, y, z],
                                              _lap3(uc, C, sx, sy, sz, x, y, z), r[z], q[z])
                ftz_restore(mx)
    return step


def factory_zc(H, scalar, intr, ZC):
    """The explicit-vector line loop with z strip-mined in chunks of ZC points (a multiple of
    the vector), the y loop inside the chunk loop: the y-window of a chunk stays in L1."""
    one = scalar(1.0)
    zero = scalar(0.0)
    C = fd_coefficients(2 * H, scalar)
    LINE = 64 // np.dtype(scalar).itemsize
    PL = left_pad(H, scalar)
    AHEAD = _AHEAD

    @numba.njit(**OPTS)
    def step(u, cur, c, w, end, ax, ay, az):
        uc = u[cur]
        up = u[1 - cur]
        NY = u.shape[2]
        nx = u.shape[1] - 2 * H
        yend, zend = end
        ny = yend - H
        nz = zend - PL
        _check_end(ny, yend, NY, H)
        _check_end(nz, zend, u.shape[3], H)
        sx = w[0]
        sy = w[1]
        sz = w[2]
        rz, qz = _profile_factors(az, zero, one)
        for i in prange(nx):
            mx = ftz_on()
            x = i + H
            rl = np.empty_like(az)
            ql = np.empty_like(az)
            for b in range((nz + ZC - 1) // ZC):
                z0 = b * ZC
                mz = min(ZC, nz - z0)
                for j in range(ny):
                    y = j + H
                    yn = min(y + AHEAD, NY - 1)
                    for zz in range(0, mz + LINE - 1, LINE):
                        prefetch(uc, (x + H, yn, PL + z0 + zz))
                        prefetch(up, (x, yn, PL + z0 + zz))
                        prefetch(c, (x, yn, PL + z0 + zz))
                    r, q = _line_factors(ax[x] + ay[y], az, rz, qz, rl, ql, one)
                    k0 = intr(uc, up, up, c, C, sx, sy, sz, x, y, mz, r, q, PL + z0)
                    for k in range(k0, mz):
                        z = k + PL + z0
                        up[x, y, z] = _update(uc[x, y, z], up[x, y, z], c[x, y, z],
                                              _lap3(uc, C, sx, sy, sz, x, y, z), r[z], q[z])
            ftz_restore(mx)
    return step


H = so // 2
variants = {
    "shuf": factory(H, dtype.type, make_line3_intrinsic(False, True, True)),
    "shuf-reload": factory(H, dtype.type, make_line3_intrinsic(False, True, False)),
    "unal": factory(H, dtype.type, make_line3_intrinsic(False, False, False)),
}
for zc in (int(v) for v in os.environ.get("ZC", "").split(",") if v):
    variants[f"shuf-zc{zc}"] = factory_zc(H, dtype.type, make_line3_intrinsic(False, True, True), zc)
for yb in (int(v) for v in os.environ.get("YB", "").split(",") if v):
    variants[f"shuf-yb{yb}"] = factory_yb(H, dtype.type, make_line3_intrinsic(False, True, True), yb)


def setup(shape, nbl_):
    model = Model(np.full(shape, 1.5), (10.0,) * 3, nbl=nbl_, space_order=so, dtype=dtype)
    centre = [5.0 * (s - 1) for s in shape]
    fwd = AcousticForward(model, Geometry(model, centre, [centre], tn=1.0, f0=0.01))
    return fwd._disc, fwd.initial_state()["u"]


# Bitwise check first: random data everywhere (halo included), damped layers, lines of 162
# interior points (several chunks and a scalar remainder), three steps of each kernel.
d, u0 = setup((13, 17, 150), 6)
u0[...] = np.random.default_rng(0).standard_normal(u0.shape).astype(dtype)
ref = u0.copy()
for s in range(3):
    d.kernels.step(ref, s % 2, d.c, d.w, d.end, *d.damping)
for name, f in variants.items():
    a = u0.copy()
    for s in range(3):
        f(a, s % 2, d.c, d.w, d.end, *d.damping)
    same = np.array_equal(a.view(np.uint8), ref.view(np.uint8))
    print(f"bitwise {name}: {same}", flush=True)
    assert same, name

# SHAPE=256,256,128 runs another grid than n^3
shape = tuple(int(v) for v in os.environ["SHAPE"].split(",")) if os.environ.get("SHAPE") else (n,) * 3
d, u = setup(shape, nbl)
u[(0, *[s // 2 for s in u.shape[1:]])] = 1.0
fns = {"base": d.kernels.step, **variants}
steps = 6
pts = int(np.prod([s + 2 * nbl for s in d.model.shape]))


def run(f):
    t = time.perf_counter()
    for s in range(steps):
        f(u, s % 2, d.c, d.w, d.end, *d.damping)
    return pts * steps / (time.perf_counter() - t) / 1e9


for f in fns.values():
    run(f)
res = {k: [] for k in fns}
names = list(fns)
for rep in range(reps):
    order = names if rep % 2 == 0 else names[::-1]
    for k in order:
        res[k].append(run(fns[k]))
print(f"3-D {shape} nbl={nbl} so{so} {dtype}, one thread, {reps} interleaved, load "
      f"{os.getloadavg()[0]:.2f}; grid {u.shape[1:]}")
for k in names:
    v = res[k]
    ratios = [a / b for a, b in zip(v, res["base"])]
    print(f"  {k:12s} {statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}] GPts/s  ratio "
          f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]")
