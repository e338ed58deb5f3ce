"""The inner loop of the 3-D kernels and of the 2-D order-8 step: vector walks in LLVM IR.

What a column is
----------------
A *column* is one vector of the last axis (``VECTOR_BYTES`` of points: 16 float32 or 8 float64,
``z`` to ``z + W - 1``) of line ``y`` (3-D; in 2-D of the row), taken through the planes (rows)
``x0 <= x < x1``. The kernels cut the outer axis into blocks (:data:`BLOCK_PLANES` planes in
3-D, :data:`BLOCK_ROWS` rows in 2-D) and, for every line of a block and every vector of that
line, walk its column. Along the walk the 2H + 1 vectors ``u[x - H .. x + H, y, z:z + W]`` stay
in registers: each step loads one new vector (plane ``x + H``) and drops the oldest, so the
x-part of the stencil costs one load per step instead of 2H (the row loops of
:mod:`amcheck.kernels._stencil`, and the 3-D line loops before the walks, load all 2H
x-neighbour lines, the cost that bounded the line loops). The z-neighbours are built from the
centre vector and its two neighbours by shuffles (``valignd`` where the CPU has AVX-512); in 3-D the y-neighbours are 2H loads from lines that the previous lines of
the block loaded (L1 or L2).

Every lane of a column does the loop's operations in its order (the three ``fma`` chains of
``_lap3``, or the one of ``_lap2``, then ``_update``), with the same damping factors
r = 1 / (1 + a), q = (1 - a) r of a = a_x[x] (+ a_y[y]) + a_z[z], so the results are bitwise
those of the scalar loops whatever the vector width.

Why intrinsics
--------------
numba's loops cannot keep values in registers from one iteration to the next, and a short
vectorised loop costs 40-80 ns an entry (LLVM's alias checks), which strip-mined variants of the
line loop paid at every column. The intrinsics here emit the whole walk as one LLVM loop of
``<W x float>`` values with no alias checks (the caller guarantees the bounds; nothing is checked
here) and no fast-math flags.

Memory order
------------
The walk reads memory across planes, which the hardware prefetchers do not follow: from DRAM
(grids beyond the L3 cache) a walk through all 264 planes of a 256^3 grid ran 0.3-0.4 GPts/s
(order 8, one thread) against the line loop's 0.87. The kernels therefore walk short blocks,
take the columns of a line one after another (a line's memory streams in order), and each
column prefetches, :data:`PREFETCH_BYTES` further along z, the lines that the block reads from
memory for the first time: in 3-D u[t] at line y + H (in the adjoint: w), u[t-1] and c at line y
(and u and g in the adjoint), and, at the start of the walk, line y of the block's 2H halo
planes; in 2-D u[t] at row x + H, u[t-1] and c at row x, and the 2H rows the walk starts with.
In 3-D each step also prefetches into L2 the same vector of the *next* line (y + 1) of those of
its streams that come from DRAM (u[t] at line y + H + 1, u[t-1], c, u and g), and the walk start
that of the H halo planes after the block (x1 .. x1 + H - 1, not yet read by an earlier block):
a whole line ahead, where 256 bytes did not hide the memory's latency. Measured against the same
walks without it (256^3, order 8, one thread, interleaved, session 10): forward 1.03-1.08x,
out of place 1.04-1.06x (one process of six 0.76x), adjoint 1.31-1.33x; 320^3 1.05 / 1.06 / 1.30x; 200^3 with 40 layer
points 1.04 / 1.11 / 1.26x; two threads 1.10 / 1.03 / 1.23x. Prefetching the next line of the
halo planes before the block too (from L3) made the forward step 1.03x instead of 1.08x; two
lines ahead, or the lower locality hint of prefetcht2, did no better.
Block sizes and the distance were tuned together, order 8, one thread
(``benchmarks/results/kernels_columns_ab.log``): in 3-D (256^3) blocks of 3 planes 256 bytes
ahead ran 1.27x the line loop forward and 1.06x adjoint, blocks of 4 1.22x but 0.71x adjoint, of
2 1.10x and 1.02x, of 8 0.85x; in 2-D (2000^2) blocks of 8 rows ran 1.36-1.39x the row loop
forward, of 2, 4, 16 rows 1.08x, 1.17x, 0.88x. Where no block size won in every kernel (2-D out
of place and adjoint, orders 2 and 4 in 2-D), the kernels keep their loops; orders 2 and 4 in 3-D
walk too since the next-line prefetch below (it made their walks 1.3-1.4x the line loops
forward). All of this was measured on
one machine (AMD EPYC Zen 4, AVX-512). The vectors are 64 bytes whatever the CPU (LLVM splits
them where the widest registers are narrower). Compiled for AVX2 on the same machine
(``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=""``: 16 vector registers of 32 bytes; the name
alone keeps the host's AVX-512 features) the 3-D walks of session 10 ran 1.13x (order 8) and
1.20x (order 4) the line loops forward, 1.28x and 1.40x adjoint, but 0.80x and 0.82x out of place
(256^3, one thread; the earlier figure of 1.15x, ``benchmarks/results/kernels_xwalk_ab.py``, was
taken with the name alone, so with AVX-512).

Editing this file
-----------------
numba's on-disk cache keys each kernel on the stamp of the file that defines it
(``kernels/_stencil.py``), not on the intrinsics it calls: after editing this file (or
``_jit.py``) in a working copy, touch ``_stencil.py`` or remove ``kernels/__pycache__/*.nb?``, or
the old walks run from the cache. An install rewrites every file, so users never see this.
"""

from __future__ import annotations

from typing import Any

from amcheck.kernels._layout import VECTOR_BYTES
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "BLOCK_PLANES",
    "BLOCK_ROWS",
    "PREFETCH_BYTES",
    "VECTOR_BYTES",
    "column2",
    "column3",
    "column3_adjoint",
]

#: Planes of the outer axis per block in 3-D: each column walks this many planes (see the module
#: docstring for the measurements behind 3).
BLOCK_PLANES = 3
#: Rows per block of the 2-D step (see the module docstring).
BLOCK_ROWS = 8
#: How far along z (bytes) a column prefetches the lines the block reads from memory first.
PREFETCH_BYTES = 256


def _splat(builder: Any, vt: Any, s: Any) -> Any:
    """The vector of type ``vt`` with every lane ``s``."""
    i32 = ir.IntType(32)
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(i32, 0))
    mask = ir.Constant(ir.VectorType(i32, vt.count), [0] * vt.count)
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)


def _has_avx512(context: Any) -> bool:
    """Whether the kernels are compiled for a CPU with AVX-512F: numba's JIT target features
    (those of the host, or ``NUMBA_CPU_FEATURES``)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


def _walk(context: Any, builder: Any, argtypes: Any, args: Any, adjoint: bool, ndim: int,
          uniform: bool) -> Any:
    """Emit one column walk (see the module docstring); ``adjoint`` adds g += u * L w. In 2-D the
    arguments have no ``sy``/``y``/``ay`` of a middle axis (the contiguous axis plays z). With
    ``uniform`` (the caller has checked that the axis scales are equal) one set of coefficient
    vectors serves every axis: the same values, eight vector registers fewer in 3-D."""
    n_in = 3 if adjoint else 4  # the arrays before the coefficients: uc, up, [dn,] c
    values, types_ = list(args), list(argtypes)
    uc, up = values[0], values[1]
    tuc, tup = types_[0], types_[1]
    dn, tdn = (up, tup) if adjoint else (values[2], types_[2])
    c, tc = values[n_in - 1], types_[n_in - 1]
    rest, trest = values[n_in:], types_[n_in:]
    if ndim == 3:
        (C, sx, sy, sz, x0, x1, y, z, ax, ay, az) = rest[:11]
        (tC, tsx, _, _, tx0, tx1, ty, tz, tax, tay, taz) = trest[:11]
    else:
        (C, sx, sz, x0, x1, z, ax, az) = rest[:8]
        (tC, tsx, _, tx0, tx1, tz, tax, taz) = trest[:8]
    if adjoint:
        (u, g), (tu, tg) = rest[-2:], trest[-2:]
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    H = tC.count - 1
    ft = context.get_value_type(tsx)
    itemsize = 4 if tsx == types.float32 else 8
    W = VECTOR_BYTES // itemsize
    if H > W:  # the z-neighbours come from the vectors either side of the centre
        raise ValueError(f"a column of {W} points serves halos up to {W} points, got {H}")
    vt = ir.VectorType(ft, W)
    vptr = vt.as_pointer()

    def const(v: int) -> Any:
        return ir.Constant(i64, v)

    def intp(v: Any, t: Any) -> Any:
        return context.cast(builder, v, t, types.intp)

    x0, x1, z = intp(x0, tx0), intp(x1, tx1), intp(z, tz)
    named = {"uc": (uc, tuc), "up": (up, tup), "dn": (dn, tdn), "c": (c, tc), "ax": (ax, tax),
             "az": (az, taz)}
    if ndim == 3:
        y = intp(y, ty)
        named.update(ay=(ay, tay))
    if adjoint:
        named.update(u=(u, tu), g=(g, tg))
    arrays = {k: (context.make_array(t)(context, builder, v), t) for k, (v, t) in named.items()}

    def pointer(name: str, index: list[Any]) -> Any:
        ary, t = arrays[name]
        return builder.bitcast(cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, t, ary, index, wraparound=False), i8p)

    def stride(name: str, axis: int) -> Any:
        ary, t = arrays[name]
        return cgutils.unpack_tuple(builder, ary.strides, t.ndim)[axis]  # type: ignore[no-untyped-call]

    def at(p: Any, offset: Any) -> Any:
        return builder.gep(p, [offset])

    def load(p: Any) -> Any:
        return builder.load(builder.bitcast(p, vptr), align=itemsize)

    def store(v: Any, p: Any) -> None:
        builder.store(v, builder.bitcast(p, vptr), align=itemsize)

    prefetch_fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")

    def prefetch(p: Any) -> None:  # read, keep in all levels, data
        builder.call(prefetch_fn, [at(p, const(PREFETCH_BYTES)), ir.Constant(i32, 0),
                                   ir.Constant(i32, 3), ir.Constant(i32, 1)])

    def prefetch_next_line(p: Any) -> None:  # the same z of line y + 1, into L2 (prefetcht1)
        builder.call(prefetch_fn, [at(p, row), ir.Constant(i32, 0), ir.Constant(i32, 2),
                                   ir.Constant(i32, 1)])

    fma = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
        builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{W}f{8 * itemsize}")
    Cs = [builder.extract_value(C, k) for k in range(H + 1)]
    s_all = builder.fadd(builder.fadd(sx, sy), sz) if ndim == 3 else builder.fadd(sx, sz)
    k0 = _splat(builder, vt, builder.fmul(Cs[0], s_all))
    kx = [_splat(builder, vt, builder.fmul(Cs[k], sx)) for k in range(H + 1)]
    kz = kx if uniform else [_splat(builder, vt, builder.fmul(Cs[k], sz))
                             for k in range(H + 1)]
    one = _splat(builder, vt, ir.Constant(ft, 1.0))
    azv = load(pointer("az", [z]))
    streams = ("uc", "up", "dn", "c") + (("u", "g") if adjoint else ())
    base = {k: pointer(k, [x0, y, z] if ndim == 3 else [x0, z]) for k in streams}
    plane = {k: stride(k, 0) for k in streams}
    nblock = builder.sub(x1, x0)
    if ndim == 3:
        ky = kx if uniform else [_splat(builder, vt, builder.fmul(Cs[k], sy))
                                 for k in range(H + 1)]
        ayy = builder.load(cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, tay, arrays["ay"][0], [y], wraparound=False))
        row = stride("uc", 1)
        # line y of the block's halo planes (x0 - H .. x0 - 1, x1 .. x1 + H - 1) is read first here
        for k in range(1, H + 1):
            prefetch(at(base["uc"], builder.mul(plane["uc"], const(-k))))
            ahead = at(base["uc"], builder.mul(plane["uc"], builder.add(nblock, const(k - 1))))
            prefetch(ahead)
            prefetch_next_line(ahead)  # planes x1 .. x1 + H - 1 come from memory
    else:
        # every row the window starts with (x0 - H .. x0 + H - 1) is read here
        for k in range(-H, H):
            prefetch(at(base["uc"], builder.mul(plane["uc"], const(k))))
    window0 = [load(at(base["uc"], builder.mul(plane["uc"], const(k)))) for k in range(-H, H)]

    pre = builder.block
    body = builder.function.append_basic_block("column3.walk")
    after = builder.function.append_basic_block("column3.end")
    builder.cbranch(builder.icmp_signed("<", x0, x1), body, after)
    builder.position_at_end(body)
    x = builder.phi(i64)
    x.add_incoming(x0, pre)
    window = []
    for v0 in window0:
        phi = builder.phi(vt)
        phi.add_incoming(v0, pre)
        window.append(phi)
    dx = builder.sub(x, x0)
    here = {k: at(base[k], builder.mul(plane[k], dx)) for k in streams}
    pc = here["uc"]
    w = window + [load(at(pc, builder.mul(plane["uc"], const(H))))]  # w[H]: the centre
    firsts = [here[name] for name in ("up", "c") + (("u", "g") if adjoint else ())]
    if ndim == 3:  # line y + H: first read by this block here
        firsts.append(at(pc, builder.mul(row, const(H))))
        for p in firsts:
            prefetch_next_line(p)
    else:  # row x + H
        firsts.append(at(pc, builder.mul(plane["uc"], const(H))))
    for p in firsts:
        prefetch(p)
    centre = w[H]
    left = load(at(pc, const(-VECTOR_BYTES)))
    right = load(at(pc, const(VECTOR_BYTES)))

    # The z-shifts: lanes k.. of (centre, right) and W - k.. of (left, centre). Where the CPU has
    # AVX-512 they are shuffles of integer lanes whose result passes through an empty inline asm
    # (identity, tied registers), so that LLVM emits valignd/valignq (an immediate operand)
    # instead of a float permute whose index vector it reloads every step.
    if _has_avx512(context):
        it = ir.VectorType(ir.IntType(8 * itemsize), W)
        ci, li, ri = (builder.bitcast(v, it) for v in (centre, left, right))
        asm_type = ir.FunctionType(it, [it])

        def shifted(a: Any, b: Any, first: int) -> Any:
            lanes = builder.shuffle_vector(a, b, ir.Constant(
                ir.VectorType(i32, W), [first + i for i in range(W)]))
            return builder.bitcast(builder.asm(asm_type, "", "=v,0", [lanes], False), vt)

        def z_pair(k: int) -> tuple[Any, Any]:
            return shifted(ci, ri, k), shifted(li, ci, W - k)
    else:

        def z_pair(k: int) -> tuple[Any, Any]:
            plus = builder.shuffle_vector(centre, right, ir.Constant(
                ir.VectorType(i32, W), [k + i for i in range(W)]))
            minus = builder.shuffle_vector(left, centre, ir.Constant(
                ir.VectorType(i32, W), [W - k + i for i in range(W)]))
            return plus, minus

    def y_pair(k: int) -> Any:
        return builder.fadd(load(at(pc, builder.mul(row, const(k)))),
                            load(at(pc, builder.mul(row, const(-k)))))

    if ndim == 3:  # _lap3's operations, in its order
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
    else:  # _lap2's: one chain
        lap = builder.fmul(k0, centre)
        for k in range(1, H + 1):
            lap = builder.call(fma, [kx[k], builder.fadd(w[H + k], w[H - k]), lap])
            zp, zm = z_pair(k)
            lap = builder.call(fma, [kz[k], builder.fadd(zp, zm), lap])
    # the damping factors of _damping_factors, and _update
    a0 = builder.load(cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, tax, arrays["ax"][0], [x], wraparound=False))
    if ndim == 3:
        a0 = builder.fadd(a0, ayy)
    a = builder.fadd(_splat(builder, vt, a0), azv)
    r = builder.fdiv(one, builder.fadd(one, a))
    q = builder.fmul(builder.fsub(one, a), r)
    t = builder.call(fma, [load(here["c"]), lap, builder.fadd(centre, centre)])
    new = builder.call(fma, [t, r, builder.fneg(builder.fmul(q, load(here["up"])))])
    if adjoint:
        store(builder.call(fma, [load(here["u"]), lap, load(here["g"])]), here["g"])
    store(new, here["dn"])

    x_next = builder.add(x, const(1))
    last = builder.block
    x.add_incoming(x_next, last)
    for k, phi in enumerate(window):
        phi.add_incoming(w[k + 1], last)
    builder.cbranch(builder.icmp_signed("<", x_next, x1), body, after)
    builder.position_at_end(after)
    return context.get_dummy_value()


def _arrays(arrays: tuple[Any, ...], ndims: tuple[int, ...], scalar: Any) -> bool:
    """Whether every array is C-contiguous (the walk's vector loads assume a contiguous last
    axis), of its ndim, and of the scalar type; any other argument fails numba's typing."""
    return all(isinstance(a, types.Array) and a.ndim == n and a.dtype == scalar
               and a.layout == "C" for a, n in zip(arrays, ndims, strict=True))


@intrinsic(prefer_literal=True)
def _column3(typingctx: Any, uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any,
             sz: Any, x0: Any, x1: Any, y: Any, z: Any, ax: Any, ay: Any, az: Any, uniform: Any
             ) -> Any:
    if not (isinstance(sx, types.Float) and isinstance(uniform, types.BooleanLiteral)
            and _arrays((uc, up, dn, c, ax, ay, az), (3, 3, 3, 3, 1, 1, 1), sx)):
        return None
    sig = types.void(uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az, uniform)
    same = bool(uniform.literal_value)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return _walk(context, builder, signature.args[:-1], args[:-1], adjoint=False, ndim=3,
                     uniform=same)
    return sig, codegen


@intrinsic(prefer_literal=True)
def _column3_adjoint(typingctx: Any, vc: Any, vp: Any, c: Any, C: Any, sx: Any, sy: Any, sz: Any,
                     x0: Any, x1: Any, y: Any, z: Any, ax: Any, ay: Any, az: Any, u: Any, g: Any,
                     uniform: Any) -> Any:
    if not (isinstance(sx, types.Float) and isinstance(uniform, types.BooleanLiteral)
            and _arrays((vc, vp, c, ax, ay, az, u, g), (3, 3, 3, 1, 1, 1, 3, 3), sx)):
        return None
    sig = types.void(vc, vp, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az, u, g, uniform)
    same = bool(uniform.literal_value)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return _walk(context, builder, signature.args[:-1], args[:-1], adjoint=True, ndim=3,
                     uniform=same)
    return sig, codegen


@intrinsic
def _column2(typingctx: Any, uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any,
             x0: Any, x1: Any, y: Any, ax: Any, ay: Any) -> Any:
    if not (isinstance(sx, types.Float) and _arrays((uc, up, dn, c, ax, ay),
                                                   (2, 2, 2, 2, 1, 1), sx)):
        return None
    sig = types.void(uc, up, dn, c, C, sx, sy, x0, x1, y, ax, ay)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return _walk(context, builder, signature.args, args, adjoint=False, ndim=2,
                     uniform=False)
    return sig, codegen


#: ``column2(uc, up, dn, c, C, sx, sy, x0, x1, y, ax, ay)``: the 2-D walk, ``dn[x, y:y+W]`` for
#: ``x0 <= x < x1`` as ``_row2`` computes each point (``y`` the contiguous axis; bounds unchecked
#: as for ``column3``).
column2: Any = _column2
#: ``column3(uc, up, dn, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az, uniform)`` inside a kernel:
#: for ``x0 <= x < x1``, ``dn[x, y, z:z+W]`` = one step from u[t] = ``uc``, u[t-1] = ``up``
#: (``dn`` may be ``up``), exactly as ``_tail3`` computes each point; ``uniform`` a constant
#: ``True`` or ``False``, and ``True`` only where ``sx == sy == sz``. Unchecked: the caller keeps x0 - H >= 0,
#: x1 + H <= NX, y - H >= 0, y + H < NY, z - W >= 0 and z + 2W <= NZ, and gives ``uc``, ``up``,
#: ``dn`` and ``c`` one shape (typed ``Any`` for mypy, as numba intrinsics take a hidden typing
#: context argument that kernels do not pass).
column3: Any = _column3
#: ``column3_adjoint(vc, vp, c, C, sx, sy, sz, x0, x1, y, z, ax, ay, az, u, g, uniform)``: the walk
#: for the adjoint step of ``_tail3_adjoint`` (``vp`` updated in place, ``g += u * L vc``).
column3_adjoint: Any = _column3_adjoint

