# ruff: noqa: B023  (the helper closures are called inside the loop iteration that made them)
"""A/B, one thread: the 3-D order-8 in-place step as x-walks, against ``base``, the forward kernel
of kernels/_stencil.py (the experiment behind kernels/_columns.py; in the log, ``base`` is the line
loop of commit 8a30ebf, which the column walks replaced).

For each z vector of T x 16 floats and each y line, walk x through the planes, keeping the 2H + 1
x-neighbour vectors in registers (one new load a step; LLVM IR through a numba ``@intrinsic``);
z neighbours by shuffles; loop order z -> y -> x so that the y-window of one z column (9 rows x
all planes x 64 B) stays in L2. Every lane does the kernel's operations in its order, so the
result is bitwise the kernel's (checked first). Output: benchmarks/results/kernels_xwalk_ab.log.

    .venv/bin/python benchmarks/results/kernels_xwalk_ab.py N SO REPS [nbl]
    SHAPE=128,128,32   another grid than N^3
    T=2                vectors per column (register windows of T x 2H vectors)
    PF=8 LOC=3         software prefetch of the streams PF planes ahead (cache level hint LOC)
    XB=8 SEQ=1         x in blocks of XB planes; SEQ=1 prefetches the next block sequentially
    NOY=1 NOS=1        timing probes only (wrong results): no y-neighbour / no u[t-1], c loads
    ALIGN=64           alignment the vector loads assume (4: none)
"""
import os
import statistics
import sys
import time

import numba
import numpy as np
from amcheck.kernels import Geometry, Model
from amcheck.kernels._jit import ftz_on, ftz_restore, prefetch
from amcheck.kernels._layout import left_pad
from amcheck.kernels._operators import AcousticForward
from amcheck.kernels._stencil import _interior_size, _lap3, _update, fd_coefficients
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

numba.set_num_threads(int(os.environ.get("THREADS", "1")))
ALIGN = int(os.environ.get("ALIGN", "64"))
PF = int(os.environ.get("PF", "0"))
NOY = int(os.environ.get("NOY", "0"))
NOS = int(os.environ.get("NOS", "0"))
TT = int(os.environ.get("T", "1"))
PFZ = int(os.environ.get("PFZ", "0"))
NODIV = int(os.environ.get("NODIV", "0"))
DBR = int(os.environ.get("DBR", "0"))
PFSTEP = int(os.environ.get("PFSTEP", "1"))
LOC = int(os.environ.get("LOC", "3"))   # software prefetch distance in planes (0: none)


def _splat(builder, vt, s):
    i32 = ir.IntType(32)
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(i32, 0))
    mask = ir.Constant(ir.VectorType(i32, vt.count), [0] * vt.count)
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)


def _codegen(context, builder, sig, args):
    (uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az) = args
    (tuc, tup, tdn, tc, tC, tsx, _, _, tx0, tx1, ty, tz, tax, tay, taz) = sig.args
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    H = tC.count - 1
    ft = context.get_value_type(tsx)
    itemsize = 4 if tsx == types.float32 else 8
    W = 64 // itemsize
    vt = ir.VectorType(ft, W)
    vptr = vt.as_pointer()

    def intp(v, t):
        return context.cast(builder, v, t, types.intp)

    x0 = intp(x0, tx0)
    x1 = intp(x1, tx1)
    y = intp(y, ty)
    z = intp(z, tz)

    def arr(val, t):
        return context.make_array(t)(context, builder, val), t

    A = {"uc": arr(uc, tuc), "up": arr(up, tup), "dn": arr(dn, tdn), "c": arr(c, tc),
         "ax": arr(ax, tax), "ay": arr(ay, tay), "az": arr(az, taz)}

    def ptr(name, idx):
        a, t = A[name]
        return builder.bitcast(cgutils.get_item_pointer(context, builder, t, a, idx,
                                                        wraparound=False), i8p)

    def K(v):
        return ir.Constant(i64, v)

    sxb = cgutils.unpack_tuple(builder, A["uc"][0].strides, 3)[0]  # plane stride in bytes
    # stride of up/dn/c planes: same layout assumed (checked by caller)
    # base pointers at x = x0
    pc0 = ptr("uc", [x0, y, z])
    pup0 = ptr("up", [x0, y, z])
    pdn0 = ptr("dn", [x0, y, z])
    pcc0 = ptr("c", [x0, y, z])
    ybs = cgutils.unpack_tuple(builder, A["uc"][0].strides, 3)[1]

    def at(p, off_bytes):
        return builder.gep(p, [off_bytes])

    def vload(p):
        return builder.load(builder.bitcast(p, vptr), align=ALIGN)

    def uload(p):
        return builder.load(builder.bitcast(p, vptr), align=itemsize)

    Cs = [builder.extract_value(C, k) for k in range(H + 1)]
    k0v = _splat(builder, vt, builder.fmul(Cs[0], builder.fadd(builder.fadd(sx, sy), sz)))
    kxv = [None] + [_splat(builder, vt, builder.fmul(Cs[k], sx)) for k in range(1, H + 1)]
    kyv = [None] + [_splat(builder, vt, builder.fmul(Cs[k], sy)) for k in range(1, H + 1)]
    kzv = [None] + [_splat(builder, vt, builder.fmul(Cs[k], sz)) for k in range(1, H + 1)]
    one = ir.Constant(ft, 1.0)
    onev = _splat(builder, vt, one)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                         f"llvm.fma.v{W}f{8 * itemsize}")
    pf = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
    ayv = builder.load(cgutils.get_item_pointer(context, builder, tay, A["ay"][0], [y],
                                                wraparound=False))

    T = TT
    win0 = [[vload(at(pc0, builder.add(builder.mul(sxb, K(k)), K(64 * t)))) for k in range(-H, H)]
            for t in range(T)]
    if PFZ:  # the block's halo planes' row y, PFZ columns ahead
        zo = K(64 * TT * PFZ)
        nblk = builder.sub(x1, x0)
        for k in list(range(-H, 0)):
            for p in (at(at(pc0, builder.mul(sxb, K(k))), zo),
                      at(at(pc0, builder.mul(sxb, builder.add(nblk, K(-k - 1)))), zo)):
                builder.call(pf, [p, ir.Constant(i32, 0), ir.Constant(i32, LOC), ir.Constant(i32, 1)])
    R0, Q0 = [], []
    for t in range(TT):  # the factors of undamped (x, y): the z profile's
        a = builder.fadd(_splat(builder, vt, ir.Constant(ft, 0.0)), uload(at(ptr("az", [z]), K(64 * t))))
        R0.append(builder.fdiv(onev, builder.fadd(onev, a)))
        Q0.append(builder.fmul(builder.fsub(onev, a), R0[-1]))
    fn = builder.function
    pre = builder.block
    body = fn.append_basic_block("xw.body")
    after = fn.append_basic_block("xw.end")
    builder.cbranch(builder.icmp_signed("<", x0, x1), body, after)
    builder.position_at_end(body)
    xi = builder.phi(i64)
    xi.add_incoming(x0, pre)
    off = builder.phi(i64)  # byte offset of plane x from plane x0
    off.add_incoming(K(0), pre)
    win = []
    for t in range(T):
        row = []
        for k in range(2 * H):
            p = builder.phi(vt)
            p.add_incoming(win0[t][k], pre)
            row.append(p)
        win.append(row)
    pc = at(pc0, off)
    W_ = [win[t] + [vload(at(pc, builder.add(builder.mul(sxb, K(H)), K(64 * t))))] for t in range(T)]
    if PFZ:
        zo = K(64 * TT * PFZ)
        for p in (at(at(pc, builder.mul(ybs, K(H))), zo), at(at(pup0, off), zo),
                  at(at(pcc0, off), zo)):
            builder.call(pf, [p, ir.Constant(i32, 0), ir.Constant(i32, LOC), ir.Constant(i32, 1)])
    if PF:
        pfo = builder.mul(sxb, K(PF))
        for t in range(0, T, PFSTEP):
            for p in (at(at(at(pc, pfo), builder.mul(ybs, K(H))), K(64 * t)),
                      at(at(at(pup0, off), pfo), K(64 * t)), at(at(at(pcc0, off), pfo), K(64 * t))):
                builder.call(pf, [p, ir.Constant(i32, 0), ir.Constant(i32, LOC), ir.Constant(i32, 1)])
    axv = builder.load(cgutils.get_item_pointer(context, builder, tax, A["ax"][0], [xi],
                                                wraparound=False))
    a0 = builder.fadd(axv, ayv)
    a0s = _splat(builder, vt, a0)
    iszero = builder.fcmp_ordered("==", a0, ir.Constant(ft, 0.0))
    for t in range(T):
        w = W_[t]
        cc = w[H]
        cp = W_[t - 1][H] if t > 0 else vload(at(pc, K(-64)))
        cn = W_[t + 1][H] if t + 1 < T else vload(at(pc, K(64 * T)))

        def zs(k):
            plus = builder.shuffle_vector(cc, cn, ir.Constant(ir.VectorType(i32, W),
                                                              [k + i for i in range(W)]))
            minus = builder.shuffle_vector(cp, cc, ir.Constant(ir.VectorType(i32, W),
                                                               [W - k + i for i in range(W)]))
            return plus, minus

        def yl(k):
            if NOY:
                return cc
            return vload(at(pc, builder.add(builder.mul(ybs, K(k)), K(64 * t))))

        lx = builder.fmul(k0v, cc)
        ly = builder.fmul(kyv[1], builder.fadd(yl(1), yl(-1)))
        zp, zm = zs(1)
        lz = builder.fmul(kzv[1], builder.fadd(zp, zm))
        lx = builder.call(fma, [kxv[1], builder.fadd(w[H + 1], w[H - 1]), lx])
        for k in range(2, H + 1):
            lx = builder.call(fma, [kxv[k], builder.fadd(w[H + k], w[H - k]), lx])
            ly = builder.call(fma, [kyv[k], builder.fadd(yl(k), yl(-k)), ly])
            zp, zm = zs(k)
            lz = builder.call(fma, [kzv[k], builder.fadd(zp, zm), lz])
        lap = builder.fadd(lx, builder.fadd(ly, lz))
        vup = cc if NOS else vload(at(at(pup0, off), K(64 * t)))
        vc = cc if NOS else vload(at(at(pcc0, off), K(64 * t)))
        if DBR:
            with builder.if_else(iszero) as (then, otherwise):
                with then:
                    b1 = builder.block
                with otherwise:
                    a = builder.fadd(a0s, uload(at(ptr("az", [z]), K(64 * t))))
                    r1 = builder.fdiv(onev, builder.fadd(onev, a))
                    q1 = builder.fmul(builder.fsub(onev, a), r1)
                    b2 = builder.block
            r = builder.phi(vt)
            r.add_incoming(R0[t], b1)
            r.add_incoming(r1, b2)
            q = builder.phi(vt)
            q.add_incoming(Q0[t], b1)
            q.add_incoming(q1, b2)
        else:
            a = builder.fadd(a0s, uload(at(ptr("az", [z]), K(64 * t))))
            if NODIV:
                r, q = R0[t], Q0[t]
            else:
                r = builder.fdiv(onev, builder.fadd(onev, a))
                q = builder.fmul(builder.fsub(onev, a), r)
        tt = builder.call(fma, [vc, lap, builder.fadd(cc, cc)])
        new = builder.call(fma, [tt, r, builder.fneg(builder.fmul(q, vup))])
        builder.store(new, builder.bitcast(at(at(pdn0, off), K(64 * t)), vptr), align=ALIGN)
    x2 = builder.add(xi, K(1))
    end = builder.block
    xi.add_incoming(x2, end)
    off.add_incoming(builder.add(off, sxb), end)
    for t in range(T):
        for k in range(2 * H):
            win[t][k].add_incoming(W_[t][k + 1], end)
    builder.cbranch(builder.icmp_signed("<", x2, x1), body, after)
    builder.position_at_end(after)
    return context.get_dummy_value()


@intrinsic
def column(typingctx, uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az):
    sig = types.void(uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az)
    return sig, _codegen


OPTS = {"parallel": True, "nogil": True, "cache": False, "fastmath": False, "error_model": "numpy"}


def factory(H, scalar):
    C = fd_coefficients(2 * H, scalar)
    PL = left_pad(H, scalar)
    W = 64 // np.dtype(scalar).itemsize
    LINE = W
    XB = int(os.environ.get('XB', '100000'))
    SEQ = int(os.environ.get('SEQ', '0'))
    YZ = int(os.environ.get('YZ', '0'))

    @numba.njit(**OPTS)
    def step(u, cur, c, w, end, ax, ay, az):
        uc = u[cur]
        up = u[1 - cur]
        NY = u.shape[2]
        NZ = u.shape[3]
        nx = u.shape[1] - 2 * H
        ny = _interior_size(end[0], H, NY, H)
        nz = _interior_size(end[1], PL, NZ, H)
        nv = max(0, min(nz, NZ - PL - W)) // (W * TT) * TT
        sx = w[0]
        sy = w[1]
        sz = w[2]
        fuc = uc.reshape(-1)
        fup = up.reshape(-1)
        fc = c.reshape(-1)
        PS = NY * NZ
        ncol = (nv // TT) * ny
        for ib in prange((nx + XB - 1) // XB):
            mx = ftz_on()
            xb = ib * XB
            x1 = min(xb + XB, nx)
            # the next block's planes: uc from plane xb + XB + 2H, up and c from xb + XB + H
            a_uc = (xb + XB + 2 * H) * PS
            a_st = (xb + XB + H) * PS
            per = (XB * PS + ncol - 1) // ncol
            per = (per + LINE - 1) // LINE * LINE
            k = 0
            for jv in range(ny * (nv // TT)):
                if YZ:
                    j = jv // (nv // TT)
                    v = jv % (nv // TT)
                else:
                    v = jv // ny
                    j = jv % ny
                z = PL + v * W * TT
                if True:
                    if SEQ:
                        for o in range(0, per, LINE):
                            e = k * per + o
                            if a_uc + e < fuc.size:
                                prefetch(fuc, (a_uc + e,))
                            if a_st + e < fup.size:
                                prefetch(fup, (a_st + e,))
                                prefetch(fc, (a_st + e,))
                    k += 1
                    column(uc, up, up, c, C, sx, sy, sz, H + xb, H + x1, j + H, z, ax, ay, az)
            ftz_restore(mx)
        for i in prange(nx):
            mx = ftz_on()
            x = i + H
            for j in range(ny):
                y = j + H
                a0 = ax[x] + ay[y]
                for k in range(nv * W, nz):
                    zz = k + PL
                    ak = a0 + az[zz]
                    r = scalar(1.0) / (scalar(1.0) + ak)
                    q = (scalar(1.0) - ak) * r
                    up[x, y, zz] = _update(uc[x, y, zz], up[x, y, zz], c[x, y, zz],
                                           _lap3(uc, C, sx, sy, sz, x, y, zz), r, q)
            ftz_restore(mx)
    return step


n, so, reps = (int(v) for v in sys.argv[1:4])
nbl = int(sys.argv[4]) if len(sys.argv) > 4 else 0
dtype = np.dtype(os.environ.get("DTYPE", "float32"))
H = so // 2
xw = factory(H, dtype.type)


def setup(shape, nbl_):
    model = Model(np.full(shape, 1.5), (10.0,) * 3, nbl=nbl_, space_order=so, dtype=dtype)
    centre = [5.0 * (s - 1) for s in shape]
    fwd = AcousticForward(model, Geometry(model, centre, [centre], tn=1.0, f0=0.01))
    return fwd._disc, fwd.initial_state()["u"]


d, u0 = setup((13, 17, 150), 6)
u0[...] = np.random.default_rng(0).standard_normal(u0.shape).astype(dtype)
ref = u0.copy()
for s in range(3):
    d.kernels.step(ref, s % 2, d.c, d.w, d.end, *d.damping)
a = u0.copy()
for s in range(3):
    xw(a, s % 2, d.c, d.w, d.end, *d.damping)
same = bool(os.environ.get("NOY") or os.environ.get("NOS")) or np.array_equal(a.view(np.uint8), ref.view(np.uint8))
print("bitwise:", same, "maxdiff", np.abs(a - ref).max(), flush=True)

shape = tuple(int(v) for v in os.environ["SHAPE"].split(",")) if os.environ.get("SHAPE") else (n,) * 3
d, u = setup(shape, nbl)
u[(0, *[s // 2 for s in u.shape[1:]])] = 1.0
damping = d.damping
cc_ = d.c
YPAD = int(os.environ.get("YPAD", "0"))
if YPAD:  # more halo on the middle axis: another plane stride, same interior
    from amcheck.kernels._layout import aligned_zeros
    u2 = aligned_zeros((2, u.shape[1], u.shape[2] + YPAD, u.shape[3]), dtype)
    u2[:, :, :u.shape[2]] = u
    c2 = aligned_zeros((u.shape[1], u.shape[2] + YPAD, u.shape[3]), dtype)
    c2[:, :u.shape[2]] = d.c
    ax_, ay_, az_ = d.damping
    damping = (ax_, np.concatenate([ay_, np.zeros(YPAD, ay_.dtype)]), az_)
    u, cc_ = u2, c2
fns = {"base": d.kernels.step, "xwalk": xw}
steps = 6
pts = int(np.prod([s + 2 * nbl for s in d.model.shape]))


def run(f):
    t = time.perf_counter()
    for s in range(steps):
        f(u, s % 2, cc_, d.w, d.end, *damping)
    return pts * steps / (time.perf_counter() - t) / 1e9


for f in fns.values():
    run(f)
res = {k: [] for k in fns}
names = list(fns)
for rep in range(reps):
    for k in (names if rep % 2 == 0 else names[::-1]):
        res[k].append(run(fns[k]))
print(f"3-D {shape} nbl={nbl} so{so} {dtype} PF={PF}, {reps} interleaved, load "
      f"{os.getloadavg()[0]:.2f}; grid {u.shape[1:]}")
for k in names:
    v = res[k]
    ratios = [x / y for x, y in zip(v, res["base"])]
    print(f"  {k:8s} {statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}] GPts/s  ratio "
          f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]")
