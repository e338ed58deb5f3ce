"""Kernel factories for the second-order-in-time acoustic wave equation.

What is computed
----------------
One leapfrog step of  u_tt + eta u_t = (lap u + q) / m  on a padded grid (physical domain, an
absorbing layer of ``nbl`` points, and a halo of ``space_order // 2`` points held at zero)::

    u[t+1] = (2 u[t] - (1 - a) u[t-1] + c * L u[t]) / (1 + a),   a = eta dt / 2,  c = dt^2 / m

with L the centred ``space_order`` Laplacian (coefficients scaled by 1/h^2 per axis) and
a = a_x[i] + a_y[j] (+ a_z[k]) a sum of one-dimensional damping profiles, zero in the physical
domain. The kernels evaluate it as::

    u[t+1] = r (2 u[t] + c L u[t]) - q u[t-1],   r = 1 / (1 + a),  q = (1 - a) r

with r, q of each row computed once per call by the 2-D row loops (no division in their loop), and
per vector and plane by the column walks (one vector division per 16 points, measured about 5 % of
the 3-D order-8 step); where a = 0, r = q = 1 and the update is
exactly ``(2 u[t] + c L u[t]) - u[t-1]`` (``fma(t, 1, -u) == t - u``). L is a chain of fused
multiply-adds (``fma``, one rounding each) with the axis scales folded into the coefficients.

Layout and the in-place update
------------------------------
A state holds two time levels in one array ``u`` of shape ``(2, *grid)``: u[t] lives in level
``t % 2`` (*parity rule*), so u[t-1] lives in the other level and u[t+1] overwrites it. One step
therefore reads u[t] (stencil), u[t-1] and c and writes u[t+1]: 16 bytes a point in float32, the
least traffic for this scheme (Devito's three-buffer form moves 24). The out-of-place variant
(``src`` -> ``dst``, used when the checkpoint engine wants the new state in another buffer) also
copies u[t] and the halo, so ``dst`` is a complete state.

The adjoint
-----------
The scaled adjoint field w = c v / (1 + a) (v the adjoint of u) obeys *the same* recursion backwards
in time (derivation in :mod:`amcheck.kernels._operators`), so the adjoint sweep reuses these
kernels; :func:`make_kernels` also returns ``adjoint_gradient``, which fuses the adjoint step with
the gradient accumulation ``g += u[t] * L w[t+1]``.

Performance rules (measured on one core of an AMD EPYC (Zen 4); see docs/kernels.md)
---------------------------------------------------------------------------------
- every index is a loop variable plus a non-negative constant (loops are shifted by the halo
  width ``H``): negative constant offsets make numba emit wraparound checks (3-4x slower). A
  runtime loop start is fine only when LLVM can see it is >= 0 (``b * CHUNK`` with ``b`` a
  ``range`` variable, or ``max(start, 0)``); a plain runtime start (``range(lo, hi)``, or a
  ``prange`` index times a block size) stops vectorisation;
- ``prange`` over the outermost axis;
- scalars are of the array dtype (a Python float would promote float32 arithmetic to float64);
- software prefetch of what comes from DRAM next: in 2-D the next row, chunk by chunk (the 3-D
  line loops did the same two lines ahead): +25-30% on one thread. The hardware prefetcher alone
  does not keep up with the 11-19 streams of a high-order stencil. The 3-D column walks prefetch
  256 bytes ahead into L1 and the next line into L2 (:mod:`amcheck.kernels._columns`);
- no division in the loop, one loop body per kernel (a separate undamped loop ran no faster
  and doubled the compile time);
- 2-D, order >= 6: two rows per iteration (``_row2_pair``) share the loads along x: 18 vector
  loads a point instead of 22 (r, q included), 1-10% faster at order 8 (median +6%, twelve
  interleaved A/B pairs on the same arrays). At order 4 the pair was 2-5% slower, so it is used
  from order 6 on. The adjoint kernel stays one row at a time:
  with two rows of ``g`` and ``v`` stored, LLVM needs too many alias checks and does not
  vectorise the pair;
- 3-D line blocking does not pay. Pairs of lines in y are never vectorised in practice: LLVM
  hoists the alias checks out of the y loop, where the stored line y and the loaded line y + 1
  span the same plane, so the checks fail and the scalar loop runs (4x slower). Pairs in x
  vectorise but spill (50 stack accesses an iteration instead of 16-19): 0-8% slower. With the
  grid strides as compile-time constants (flat indexing: a clean 46-instruction loop, 29 loads
  and 1 store per 16 points, no pointer reloads) single lines ran 3-5% faster and x-pairs no
  faster still: not worth a compilation per grid shape;
- *column walks* (:mod:`amcheck.kernels._columns`: explicit vectors walked through blocks of 3
  planes or 8 rows, the x-neighbours kept in registers) for every 3-D kernel and the 2-D
  in-place step from order 6 on. Order 8, one thread, against the line loops: 3-D forward
  1.19-1.31x, adjoint 0.97-1.18x when they came (session 9); the next-line L2 prefetch and
  ``valignd`` z-shifts of session 10 added about 1.14x forward and 1.3x adjoint on top (the
  products of their two A/Bs). Orders 2 and 4
  in 3-D gained nothing robust from the first walks and kept their line loops until the
  next-line prefetch: then forward 1.31-1.43x, adjoint 1.23-1.57x, out of place 0.95-1.13x
  (256^3, 128^3, 200^3 with 40 layer points; two threads 1.19-1.33x, 1.12-1.24x, 0.95-1.10x),
  and the line loops went. 2-D forward 1.09-1.41x the row loop; the 2-D out-of-place step and
  adjoint, and orders 2 and 4 in 2-D, gained nothing robust and keep the row loops to which the
  rules below refer (the 3-D line-loop figures below are kept as measured);
- what bounded the 3-D order-8 line loop is the number of *distinct lines* read per 16 points
  (19: 8 in x, 8 in y, the centre line, u[t-1], c), not instructions or DRAM: dropping the 8 x- or the 8
  y-neighbours (8 loads from 8 other lines) made it 35-40% faster on a 64x24x512 grid, dropping
  the 8 z-neighbours (8 loads from the centre line) 10%. The same kernel runs about 1.0-1.07 GPts/s when its planes
  sit in L2 (16x16x256), 0.64-0.86 from L3 or DRAM (16x256x256 up to 256^3);
- cache blocking in y for 3-D (blocks of 16-64 lines, prefetching across block ends) was 0-10%
  slower at 256^3; prefetching all 2H + 1 planes instead of the one read from DRAM: 10-20%
  slower; 256-bit instead of LLVM's 512-bit vectors on Zen 4 (function attribute
  ``prefer-vector-width``): no better (-6% to +5%), so the default stays;
- 3-D order 8, also measured at 256^3 and not kept (one thread, A/B in one process, interleaved,
  5-11 pairs, each variant bitwise equal to the kernel; raw figures in
  benchmarks/results/kernels_3d_so8_variants.log). Scratch lines do not cut the cost of the
  distinct lines: splitting each line into two or three loops through L1 scratch lines (x | y+z,
  x+y | z, x | y | z) 0.87-0.97x; blocks of 2 or 4 x-planes whose x-parts share their loads in
  one loop 0.65-0.78x; line pairs in y or x stored to scratch lines (vectorised, since no
  alias check can fail, but 30 line pointers spill: 37 stack accesses per 32 points) 0.79x and
  0.92-0.96x; 2x2 lines into four scratch lines: not vectorised at all (0.24x). Strip-mining z
  (32-128 points, y loop inside, so that the y-neighbour lines stay in L1) 0.34-0.71x: each
  loop entry costs some 40-80 ns (estimated from the rates at several lengths). Neither the scalar remainder (the last 16
  points as one vector into scratch first: 1.00x) nor a store into u in the stencil loop (the
  whole line into scratch, then copied: 0.99x) costs anything measurable;
- 3-D order 8, the z loop of a line as an LLVM intrinsic with explicit ``<16 x float>`` vectors
  (z neighbours by ``shufflevector`` of the centre line's aligned vectors: 21 loads per 16 points
  instead of 30; bitwise equal to the kernel): 1.2-1.5x with lines of <= 160 points (64^3-128^3,
  256x256x128), but 0.95-1.03x at 256^3 (nbl 0 and 40; unaligned z loads 0.91-1.00x, with y
  blocks or z chunks 0.86-0.94x): long lines are bound by their L1 working set, not by the load
  count; not kept (benchmarks/results/kernels_simd_ab.py and .log);
- every line's interior starts on a 64-byte boundary (:mod:`amcheck.kernels._layout`: the last
  axis padded on the left to ``PL`` = H rounded up to 64 bytes, lines a multiple of 64 bytes but
  not of 1 KiB, streamed arrays 64-byte aligned). With a halo of H points the speed depended on
  the base address (3-D order 8 at 256^3: 0.75 GPts/s with u on a 64-byte boundary, 0.83 16 bytes
  off); interiors on 32 but not 64 bytes ran 0.790 against 0.858 (2-D 2000^2: 1.192 / 1.244).
  Against the previous layout in a 64-byte aligned buffer (a Checkpointer slot): forward 1.04-1.19x,
  adjoint 1.00-1.22x (benchmarks/results/kernels_layout_ab.log). A per-row peel to the boundary did
  not pay robustly in 2-D, nor a per-line peel in 3-D (0.87-0.97x at every alignment);
- 3-D planes of a multiple of 4 KiB put the 2H + 1 x-neighbour planes into the same L1 sets, so
  the layout gives the middle axis one point more on the right there (``grid_halos``), and the
  3-D kernels take the interior end of the middle axis as well as of the last (``end`` =
  ``(yend, zend)``): 248^3 order 8 (padded y 256, lines of 1088 bytes) forward 0.706 -> 0.811
  GPts/s, adjoint 0.506 -> 0.626; 252^3 order 4 0.99x forward, 1.06x adjoint; untouched grids
  0.996-1.004x (one thread, interleaved, medians of 7,
  benchmarks/results/kernels_layout_plane_ab.log);
- 3-D line length matters through L1: at the same point count, order 8 ran 0.70, 0.89, 0.84,
  0.70 and 0.63 GPts/s with lines of 64, 128, 256, 512 and 1024 points (the 9 lines of the
  y-window no longer stay in L1 between their uses as the lines grow);
- FTZ/DAZ are set on every worker thread (:mod:`amcheck.kernels._jit`): no measurable cost per
  row, 2-19% faster while subnormal tails are present.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from amcheck.kernels._columns import (
    BLOCK_PLANES,
    BLOCK_ROWS,
    column2,
    column3,
    column3_adjoint,
)
from amcheck.kernels._jit import fma, ftz_on, ftz_restore, jit, prefetch, serial_build
from amcheck.kernels._layout import VECTOR_BYTES, left_pad
from numba import prange

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_int

__all__ = ["DTYPES", "SPACE_ORDERS", "Kernels", "inject", "make_kernels", "sample"]

#: Space orders a kernel can be built for (even, so the stencil is centred).
SPACE_ORDERS = (2, 4, 6, 8, 10, 12)
#: Floating-point types a kernel can be built for.
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Kernels:
    """The compiled kernels of one (ndim, space order, dtype).

    For writing operators of one's own: the kernels are compiled numba code and check nothing
    (no bounds checks). Arrays of the wrong shape, dtype or layout, a level ``cur`` other than 0
    or 1, or steps past the source data read and write outside the arrays and can crash the
    interpreter. :class:`~amcheck.kernels.AcousticForward` and
    :class:`~amcheck.kernels.AcousticAdjoint` check every argument, then call them.

    Attributes
    ----------
    step
        ``step(u, cur, c, w, end, *damping)``, ``w`` the per-axis scales 1/h_d^2: in place, u[t]
        in level ``cur``; u[t+1] overwrites level ``1 - cur``. The interior (the points updated)
        is ``H:n-H`` on the first axis, ``PL:end`` on the last, ``PL`` =
        :func:`~amcheck.kernels._layout.left_pad` ``(H, dtype)``, and in 3-D ``H:yend`` on the
        middle one. ``end`` (at most ``n - H``) is the last entry of
        :attr:`Model.interior_ends <amcheck.kernels.Model.interior_ends>` in 2-D, the pair
        ``(yend, end)`` of its last two in 3-D.
    step_copy
        ``step_copy(src, dst, cur, c, w, end, *damping)``: reads ``src``, writes the whole of
        ``dst`` (u[t+1] into level ``1 - cur``, a copy of u[t] into level ``cur``).
    adjoint_gradient
        ``adjoint_gradient(v, cur, c, w, end, *damping, u, g)``: one step of ``step`` on the
        adjoint field ``v`` and ``g += u * L v[cur]`` over the interior (``u`` one level, ``grid``).
    advance
        ``advance(src, dst, t0, t1, copy, c, w, end, damping, src_idx, src_cw, src_data,
        rec_idx, rec_w, data)``: steps t0 … t1-1 in one serial call that never takes the GIL,
        with the source injection and receiver sampling of each step (:func:`inject`,
        :func:`sample`); ``copy`` makes the first step ``step_copy(src, dst, ...)``, otherwise
        every step is ``step(dst, ...)``. Bitwise the same as calling ``step``/``step_copy``,
        :func:`inject` and :func:`sample` step by step (see :func:`_fused_advance`).
    left_pad
        ``PL``: where the interior of each line starts on the last axis.
    ndim, space_order, dtype
        What the kernels were built for.
    """

    step: Any
    step_copy: Any
    adjoint_gradient: Any
    advance: Any
    left_pad: int
    ndim: int
    space_order: int
    dtype: np.dtype[Any]


def make_kernels(ndim: int, space_order: int, dtype: Any) -> Kernels:
    """Build (or fetch from the in-process cache) the kernels of one configuration.

    Parameters
    ----------
    ndim
        2 or 3.
    space_order
        One of :data:`SPACE_ORDERS`.
    dtype
        ``float32`` or ``float64``.

    Raises
    ------
    ArgumentTypeError
        ``ndim`` or ``space_order`` is not an integer.
    InvalidArgumentError
        For any other ``ndim``, ``space_order`` or ``dtype`` (``None`` and strings numpy does not
        know, such as ``'foo'``, included).
    """
    ndim = check_int("ndim", ndim)
    if ndim not in (2, 3):
        raise InvalidArgumentError(f"ndim must be 2 or 3, got {ndim}")
    space_order = check_space_order(space_order)
    dt = check_dtype(dtype)
    return _make_kernels(ndim, space_order, dt.name)


def check_space_order(space_order: Any) -> int:
    """``space_order`` as an ``int`` of :data:`SPACE_ORDERS`, or raise naming it.

    Raises
    ------
    ArgumentTypeError
        ``space_order`` is not an integer.
    InvalidArgumentError
        It is not one of :data:`SPACE_ORDERS`.
    """
    order = check_int("space_order", space_order)
    if order not in SPACE_ORDERS:
        raise InvalidArgumentError(f"space_order must be one of {SPACE_ORDERS}, got {order}")
    return order


def check_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` as one of :data:`DTYPES`, or raise naming it and the allowed float32/float64.

    ``None`` is refused (``np.dtype(None)`` would silently be float64), and so is anything
    ``np.dtype`` does not understand.

    Raises
    ------
    InvalidArgumentError
        ``dtype`` is not float32 or float64.
    """
    parsed: np.dtype[Any] | None
    try:
        parsed = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed not in DTYPES:
        raise InvalidArgumentError(f"dtype must be float32 or float64, got {dtype!r}")
    return DTYPES[DTYPES.index(parsed)]


@cache
def _make_kernels(ndim: int, space_order: int, dtype_name: str) -> Kernels:
    factory = _factory_2d if ndim == 2 else _factory_3d
    step, step_copy, adjoint_gradient = factory(space_order // 2, np.dtype(dtype_name).type)
    # The serial builds of the same step functions (prange runs as range) serve the fused loop.
    advance = _fused_advance(serial_build(step), serial_build(step_copy))
    pl = left_pad(space_order // 2, dtype_name)
    return Kernels(step, step_copy, adjoint_gradient, advance, pl, ndim, space_order,
                   np.dtype(dtype_name))


def fd_coefficients(space_order: int, scalar: Any = float) -> tuple[Any, ...]:
    """Centred second-derivative weights C_0 … C_H of accuracy ``space_order`` (spacing 1).

    u''(0) ~ C_0 u(0) + sum_r C_r (u(r) + u(-r)). Solved exactly in rationals from the Taylor
    conditions sum_r C_r r^(2k) = [k == 1] / 2 (k = 1 … H) and C_0 = -2 sum_r C_r, so
    order 2 gives (-2, 1), order 4 (-5/2, 4/3, -1/12), order 8 (-205/72, 8/5, -1/5, 8/315, -1/560).

    Parameters
    ----------
    space_order
        One of :data:`SPACE_ORDERS`, as for :func:`make_kernels`.
    scalar
        The floating-point type each weight is converted to (``float``, ``np.float32``, ...).

    Raises
    ------
    ArgumentTypeError
        ``space_order`` is not an integer, ``scalar`` is not callable or does not convert a
        float to a float (``float`` or a numpy floating type: not ``int``, ``str``, complex).
    InvalidArgumentError
        ``space_order`` is not one of :data:`SPACE_ORDERS`.
    """
    from fractions import Fraction

    space_order = check_space_order(space_order)
    if not callable(scalar):
        raise ArgumentTypeError(
            f"scalar must be a type to convert the weights to (float, np.float32), got "
            f"{scalar!r} of type {type(scalar).__name__}")
    H = space_order // 2
    # Linear system A c = b, A[k-1][r-1] = r^(2k), b = [1, 0, …] (u'' = 2 * sum C_r r^2 / 2).
    A = [[Fraction(r) ** (2 * k) for r in range(1, H + 1)] for k in range(1, H + 1)]
    b = [Fraction(1 if k == 1 else 0) for k in range(1, H + 1)]
    for col in range(H):  # Gauss-Jordan, exact
        piv = next(row for row in range(col, H) if A[row][col] != 0)
        A[col], A[piv] = A[piv], A[col]
        b[col], b[piv] = b[piv], b[col]
        for row in range(H):
            if row != col and A[row][col] != 0:
                f = A[row][col] / A[col][col]
                A[row] = [a - f * p for a, p in zip(A[row], A[col])]
                b[row] -= f * b[col]
    cr = [b[i] / A[i][i] for i in range(H)]
    c0 = -2 * sum(cr)
    try:
        weights = tuple(scalar(float(v)) for v in [c0, *cr])
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            f"scalar must be a floating-point type to convert the weights to (float, "
            f"np.float32), got {scalar!r}, which failed: {exc}") from exc
    wrong = [w for w in weights if not isinstance(w, (float, np.floating))]
    if wrong:
        raise ArgumentTypeError(
            f"scalar must be a floating-point type to convert the weights to (float, "
            f"np.float32), got {scalar!r}, which gives {wrong[0]!r} of type "
            f"{type(wrong[0]).__name__}")
    return weights


# The helpers below are module-level functions, inlined into each kernel at numba IR level, so that
# the kernels' closures hold only plain constants: numba hashes a closure's cell contents into the
# cache key, and a captured dispatcher pickles with a per-process UUID, which would defeat the cache.
# ``C`` is a tuple constant of the caller, so ``range(1, len(C))`` has a constant trip count and
# LLVM unrolls it; every index is then a loop variable plus a non-negative constant. The products
# ``C[r] * s`` do not depend on the grid point and are hoisted out of the loops.


@jit(parallel=False, inline=True)
def _lap2(uc: Any, C: Any, sx: Any, sy: Any, x: int, y: int) -> Any:
    """sx d2u/dx2 + sy d2u/dy2 at (x, y): one chain of fused multiply-adds, axis scales folded."""
    acc = (C[0] * (sx + sy)) * uc[x, y]
    for r in range(1, len(C)):
        acc = fma(C[r] * sx, uc[x + r, y] + uc[x - r, y], acc)
        acc = fma(C[r] * sy, uc[x, y + r] + uc[x, y - r], acc)
    return acc


@jit(parallel=False, inline=True)
def _lap3(uc: Any, C: Any, sx: Any, sy: Any, sz: Any, x: int, y: int, z: int) -> Any:
    """The 3-D Laplacian at (x, y, z): three short chains (one per axis), summed at the end."""
    lx = (C[0] * (sx + sy + sz)) * uc[x, y, z]
    ly = (C[1] * sy) * (uc[x, y + 1, z] + uc[x, y - 1, z])
    lz = (C[1] * sz) * (uc[x, y, z + 1] + uc[x, y, z - 1])
    lx = fma(C[1] * sx, uc[x + 1, y, z] + uc[x - 1, y, z], lx)
    for r in range(2, len(C)):
        lx = fma(C[r] * sx, uc[x + r, y, z] + uc[x - r, y, z], lx)
        ly = fma(C[r] * sy, uc[x, y + r, z] + uc[x, y - r, z], ly)
        lz = fma(C[r] * sz, uc[x, y, z + r] + uc[x, y, z - r], lz)
    return lx + (ly + lz)


@jit(parallel=False, inline=True)
def _update(uc: Any, up: Any, c: Any, lap: Any, r: Any, q: Any) -> Any:
    """u[t+1] = r (2 u[t] + c L u[t]) - q u[t-1]: no division; exactly t - u[t-1] where r = q = 1."""
    return fma(fma(c, lap, uc + uc), r, -(q * up))


@jit(parallel=False, inline=True)
def _factors(a0: Any, a: Any, one: Any) -> tuple[Any, Any]:
    """r = 1 / (1 + a0 + a) and q = (1 - (a0 + a)) r of one point: the damped update's factors,
    for the loops' per-line arrays and the column walks' tails alike."""
    ak = a0 + a
    r = one / (one + ak)
    return r, (one - ak) * r


@jit(parallel=False, inline=True)
def _damping_factors(a0: Any, a: Any, r: Any, q: Any, one: Any) -> None:
    """r[k] = 1 / (1 + a0 + a[k]) and q[k] = (1 - (a0 + a[k])) r[k] for the whole line.

    With a0 = 0 this is the profile of the innermost axis alone, bit for bit (0 + a[k] == a[k]),
    so an undamped row or line can reuse the profile computed once per call.
    """
    for k in range(a.shape[0]):
        r[k], q[k] = _factors(a0, a[k], one)


@jit(parallel=False, inline=True)
def _prefetch_row(a: Any, x: int, y0: int, n: int, line: int) -> None:
    """Prefetch a[x, y0 : y0 + n] (clipped to the row), one call per cache line of ``line`` items."""
    last = a.shape[1] - 1
    for yy in range(0, n, line):
        prefetch(a, (x, min(y0 + yy, last)))


# The row helpers compute one contiguous run of the innermost axis, dn[x, y] for m points from
# y0 + PL, PL the left pad of the last axis (>= H, a whole number of 64-byte lines; a
# compile-time constant), reading u[t] from ``uc`` and u[t-1] from ``up`` (``dn`` is ``up`` for
# the in-place step), with the damping factors r, q of that row. One loop body per kernel (no
# separate undamped loop) keeps the compile time down.


@jit(parallel=False, inline=True)
def _row2(uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any, x: int, y0: int, m: int,
          r: Any, q: Any, PL: int) -> None:
    for j in range(m):
        y = y0 + j + PL
        dn[x, y] = _update(uc[x, y], up[x, y], c[x, y], _lap2(uc, C, sx, sy, x, y), r[y], q[y])


@jit(parallel=False, inline=True)
def _row2_adjoint(vc: Any, vp: Any, c: Any, C: Any, sx: Any, sy: Any, x: int, y0: int, m: int,
                  r: Any, q: Any, PL: int, u: Any, g: Any) -> None:
    for j in range(m):
        y = y0 + j + PL
        lv = _lap2(vc, C, sx, sy, x, y)
        g[x, y] = fma(u[x, y], lv, g[x, y])
        vp[x, y] = _update(vc[x, y], vp[x, y], c[x, y], lv, r[y], q[y])


# Row pairs (2-D): rows x and x + 1 in one loop, so that the loads they share (the x-neighbours
# x - H + 1 ... x + H, each other's centres) are issued once: 15 vector loads a point at order 8
# instead of 19. Each point is computed exactly as by the single-row helpers (same chain), so the
# results are bitwise those of ``_row2``; the stores come after all the loads of an iteration.


@jit(parallel=False, inline=True)
def _row2_pair(uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any, x: int, y0: int,
               m: int, r0: Any, q0: Any, r1: Any, q1: Any, PL: int) -> None:
    for j in range(m):
        y = y0 + j + PL
        l0 = _lap2(uc, C, sx, sy, x, y)
        l1 = _lap2(uc, C, sx, sy, x + 1, y)
        n0 = _update(uc[x, y], up[x, y], c[x, y], l0, r0[y], q0[y])
        n1 = _update(uc[x + 1, y], up[x + 1, y], c[x + 1, y], l1, r1[y], q1[y])
        dn[x, y] = n0
        dn[x + 1, y] = n1


@jit(parallel=False, inline=True)
def _profile_factors(a: Any, zero: Any, one: Any) -> tuple[Any, Any]:
    """The factors r, q of the innermost axis's profile alone, shared by undamped rows/lines."""
    r = np.empty_like(a)
    q = np.empty_like(a)
    _damping_factors(zero, a, r, q, one)
    return r, q


@jit(parallel=False, inline=True)
def _row_factors(ax: Any, ay: Any, x: int, ry: Any, qy: Any, one: Any) -> tuple[Any, Any]:
    """The factors r, q of row x: those of the y profile, or its own (a row of the x layer)."""
    if ax[x] == 0:
        return ry, qy
    r = np.empty_like(ay)
    q = np.empty_like(ay)
    _damping_factors(ax[x], ay, r, q, one)
    return r, q


@jit(parallel=False, inline=True)
def _whole_vectors(nz: int, NZ: int, PL: int, W: int) -> int:
    """Column vectors of a line (3-D) or row (2-D): whole vectors whose right neighbour still
    lies in the line."""
    return max(0, min(nz, NZ - PL - W)) // W


@jit(parallel=False, inline=True)
def _tail2(uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any, x: int, k0: int, m: int,
           ax: Any, ay: Any, one: Any, PL: int) -> None:
    """The points k0 <= k < m of row x after its whole column vectors, one by one."""
    for k in range(k0, m):
        y = k + PL
        r, q = _factors(ax[x], ay[y], one)
        dn[x, y] = _update(uc[x, y], up[x, y], c[x, y], _lap2(uc, C, sx, sy, x, y), r, q)


# The 3-D tails: the points k0 <= k < m of line (x, y) after its whole column vectors, one by one,
# with the column's operations (``_lap3``, ``_factors``, ``_update``).


@jit(parallel=False, inline=True)
def _tail3(uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any, sz: Any, x: int, y: int,
           k0: int, m: int, ax: Any, ay: Any, az: Any, one: Any, PL: int) -> None:
    a0 = ax[x] + ay[y]
    for k in range(k0, m):
        z = k + PL
        r, q = _factors(a0, az[z], one)
        dn[x, y, z] = _update(uc[x, y, z], up[x, y, z], c[x, y, z],
                              _lap3(uc, C, sx, sy, sz, x, y, z), r, q)


@jit(parallel=False, inline=True)
def _tail3_adjoint(vc: Any, vp: Any, c: Any, C: Any, sx: Any, sy: Any, sz: Any, x: int, y: int,
                   k0: int, m: int, ax: Any, ay: Any, az: Any, one: Any, PL: int, u: Any, g: Any
                   ) -> None:
    a0 = ax[x] + ay[y]
    for k in range(k0, m):
        z = k + PL
        r, q = _factors(a0, az[z], one)
        lv = _lap3(vc, C, sx, sy, sz, x, y, z)
        g[x, y, z] = fma(u[x, y, z], lv, g[x, y, z])
        vp[x, y, z] = _update(vc[x, y, z], vp[x, y, z], c[x, y, z], lv, r, q)


@jit(parallel=False, inline=True)
def _copy_plane3(uc: Any, up: Any, dc: Any, dn: Any, x: int, ystart: int, PL: int, yend: int,
                 zend: int) -> None:
    """Plane x of the out-of-place 3-D step outside what the step writes: level cur (``uc`` into
    ``dc``) whole, and of the new level (``up`` into ``dn``) every point but the interior lines
    ``ystart <= y < yend``, ``PL <= z < zend`` (with ``ystart = yend`` the whole plane)."""
    NY = uc.shape[1]
    NZ = uc.shape[2]
    for y in range(NY):
        for z in range(NZ):
            dc[x, y, z] = uc[x, y, z]
        if ystart <= y < yend:
            for z in range(PL):
                dn[x, y, z] = up[x, y, z]
            for z in range(zend, NZ):
                dn[x, y, z] = up[x, y, z]
        else:
            for z in range(NZ):
                dn[x, y, z] = up[x, y, z]


@jit(parallel=False, inline=True)
def _interior_size(end: int, start: int, n: int, H: int) -> int:
    """Points of an axis's interior ``start:end``, which must leave the stencil's reach inside it."""
    if end < start or end > n - H:
        raise ValueError("end must lie between the interior start and n - H of its axis: pass "
                         "Model.interior_ends (its last entry in 2-D, its last two in 3-D)")
    return end - start


@jit(parallel=False, inline=True)
def _row_block(uc: Any, up: Any, dn: Any, c: Any, C: Any, sx: Any, sy: Any, ax: Any, ay: Any,
               ry: Any, qy: Any, one: Any, x: int, NX: int, ny: int, H: int, PL: int, CH: int,
               LINE: int, ROWS: int) -> None:
    """One 2-D block: row x (and x + 1 when ``ROWS == 2`` and it is an interior row), chunk by chunk
    of ``CH`` points, each chunk after prefetching the same chunk of the rows the next block reads
    from memory for the first time. Shared by ``step`` and ``step_copy`` (``dn`` the new level)."""
    xa = min(x + ROWS, NX - H - 1)
    xb = min(x + ROWS + 1, NX - H - 1)
    pair = ROWS == 2 and x + 1 < NX - H
    r0, q0 = _row_factors(ax, ay, x, ry, qy, one)
    r1 = r0
    q1 = q0
    if pair:
        r1, q1 = _row_factors(ax, ay, x + 1, ry, qy, one)
    for b in range((ny + CH - 1) // CH):
        k0 = b * CH
        k1 = min(k0 + CH, ny)
        _prefetch_row(uc, xa + H, k0 + PL, k1 - k0, LINE)
        _prefetch_row(up, xa, k0 + PL, k1 - k0, LINE)
        _prefetch_row(c, xa, k0 + PL, k1 - k0, LINE)
        if ROWS == 2:
            _prefetch_row(uc, xb + H, k0 + PL, k1 - k0, LINE)
            _prefetch_row(up, xb, k0 + PL, k1 - k0, LINE)
            _prefetch_row(c, xb, k0 + PL, k1 - k0, LINE)
        if pair:
            _row2_pair(uc, up, dn, c, C, sx, sy, x, k0, k1 - k0, r0, q0, r1, q1, PL)
        else:
            _row2(uc, up, dn, c, C, sx, sy, x, k0, k1 - k0, r0, q0, PL)


#: Points per chunk of a 2-D row: the next row's chunk is prefetched before each chunk is computed.
_CHUNK = 256


def _factory_2d_rows(H: int, scalar: Any) -> tuple[Any, Any, Any]:
    """2-D kernels by row loops: halo width ``H``, scalar type ``scalar``."""
    one = scalar(1.0)
    zero = scalar(0.0)
    C = fd_coefficients(2 * H, scalar)  # constants: LLVM folds them into the unrolled loop
    LINE = 64 // np.dtype(scalar).itemsize  # items per 64-byte cache line
    PL = left_pad(H, scalar)  # every row's interior starts at y = PL (on a 64-byte boundary)
    CH = _CHUNK

    ROWS = 2 if H >= 3 else 1  # row pairs from order 6 on (order 4: 2-5% slower, measured)

    # prange over blocks of ROWS rows (x, x + 1 for pairs); each block in chunks of CH points.
    # Before a chunk, prefetch the same chunk of the rows that the next block reads from memory for
    # the first time (u[t] at x + ROWS + H ..., u[t-1] and c at x + ROWS ...); then compute it.
    # Rows of the damping layer in x get their own factors r, q (per-row scratch arrays); all
    # others share those of the y profile. An odd last row is computed alone.

    @jit
    def step(u: Any, cur: int, c: Any, w: Any, end: int, ax: Any, ay: Any) -> None:
        uc = u[cur]
        up = u[1 - cur]
        NX = u.shape[1]
        nx = NX - 2 * H
        ny = _interior_size(end, PL, u.shape[2], H)
        sx = w[0]
        sy = w[1]
        ry, qy = _profile_factors(ay, zero, one)
        for ib in prange((nx + ROWS - 1) // ROWS):
            mx = ftz_on()
            _row_block(uc, up, up, c, C, sx, sy, ax, ay, ry, qy, one, ROWS * ib + H, NX, ny,
                       H, PL, CH, LINE, ROWS)
            ftz_restore(mx)

    @jit
    def step_copy(src: Any, dst: Any, cur: int, c: Any, w: Any, end: int, ax: Any, ay: Any) -> None:
        uc = src[cur]
        up = src[1 - cur]
        dc = dst[cur]
        dn = dst[1 - cur]
        NX = src.shape[1]
        NY = src.shape[2]
        nx = NX - 2 * H
        ny = _interior_size(end, PL, NY, H)
        sx = w[0]
        sy = w[1]
        ry, qy = _profile_factors(ay, zero, one)
        for ib in prange((nx + ROWS - 1) // ROWS):
            mx = ftz_on()
            x = ROWS * ib + H
            for xx in range(x, min(x + ROWS, NX - H)):  # copy level cur, and the new level's halo
                for y in range(NY):
                    dc[xx, y] = uc[xx, y]
                for y in range(PL):
                    dn[xx, y] = up[xx, y]
                for y in range(end, NY):
                    dn[xx, y] = up[xx, y]
            _row_block(uc, up, dn, c, C, sx, sy, ax, ay, ry, qy, one, x, NX, ny, H, PL, CH, LINE,
                       ROWS)
            ftz_restore(mx)
        for i in range(H):
            for y in range(NY):
                dc[i, y] = uc[i, y]
                dn[i, y] = up[i, y]
                dc[NX - H + i, y] = uc[NX - H + i, y]
                dn[NX - H + i, y] = up[NX - H + i, y]

    @jit
    def adjoint_gradient(v: Any, cur: int, c: Any, w: Any, end: int, ax: Any, ay: Any,
                         u: Any, g: Any) -> None:
        vc = v[cur]
        vp = v[1 - cur]
        NX = v.shape[1]
        nx = NX - 2 * H
        ny = _interior_size(end, PL, v.shape[2], H)
        sx = w[0]
        sy = w[1]
        ry, qy = _profile_factors(ay, zero, one)
        nb = (ny + CH - 1) // CH
        for i in prange(nx):
            mx = ftz_on()
            x = i + H
            xn = min(x + 1, NX - H - 1)
            r, q = _row_factors(ax, ay, x, ry, qy, one)
            for b in range(nb):
                k0 = b * CH
                k1 = min(k0 + CH, ny)
                _prefetch_row(vc, xn + H, k0 + PL, k1 - k0, LINE)
                _prefetch_row(vp, xn, k0 + PL, k1 - k0, LINE)
                _prefetch_row(c, xn, k0 + PL, k1 - k0, LINE)
                _prefetch_row(u, xn, k0 + PL, k1 - k0, LINE)
                _prefetch_row(g, xn, k0 + PL, k1 - k0, LINE)
                _row2_adjoint(vc, vp, c, C, sx, sy, x, k0, k1 - k0, r, q, PL, u, g)
            ftz_restore(mx)

    return step, step_copy, adjoint_gradient


def _factory_2d_columns(H: int, scalar: Any) -> Any:
    """The 2-D in-place step by column walks: halo width ``H``, scalar type ``scalar``."""
    one = scalar(1.0)
    C = fd_coefficients(2 * H, scalar)
    PL = left_pad(H, scalar)  # every row's interior starts at y = PL (on a 64-byte boundary)
    W = VECTOR_BYTES // np.dtype(scalar).itemsize  # points per column vector
    XB = BLOCK_ROWS

    # prange over blocks of XB rows; in each block the rows' columns (explicit vectors walked
    # through the block's rows, :mod:`amcheck.kernels._columns`) one after another, then the
    # points after the last whole vector one by one.

    @jit
    def step(u: Any, cur: int, c: Any, w: Any, end: int, ax: Any, ay: Any) -> None:
        uc = u[cur]
        up = u[1 - cur]
        NY = u.shape[2]
        nx = u.shape[1] - 2 * H
        ny = _interior_size(end, PL, NY, H)
        nv = _whole_vectors(ny, NY, PL, W)
        sx = w[0]
        sy = w[1]
        for b in prange((nx + XB - 1) // XB):
            mx = ftz_on()
            x0 = H + b * XB
            x1 = min(x0 + XB, H + nx)
            for v in range(nv):
                column2(uc, up, up, c, C, sx, sy, x0, x1, PL + v * W, ax, ay)
            for x in range(x0, x1):
                _tail2(uc, up, up, c, C, sx, sy, x, nv * W, ny, ax, ay, one, PL)
            ftz_restore(mx)

    return step


def _factory_2d(H: int, scalar: Any) -> tuple[Any, Any, Any]:
    """Kernels for a 2-D grid with halo width ``H`` and scalar type ``scalar``: from order 6 on
    the in-place step by column walks, everything else by row loops (where the walks were not
    faster; see docs/kernels.md)."""
    step, step_copy, adjoint_gradient = _factory_2d_rows(H, scalar)
    if H >= 3:
        step = _factory_2d_columns(H, scalar)
    return step, step_copy, adjoint_gradient


def _factory_3d(H: int, scalar: Any) -> tuple[Any, Any, Any]:
    """Kernels for a 3-D grid with halo width ``H`` and scalar type ``scalar``, by column walks."""
    one = scalar(1.0)
    C = fd_coefficients(2 * H, scalar)
    PL = left_pad(H, scalar)  # every line's interior starts at z = PL (on a 64-byte boundary)
    W = VECTOR_BYTES // np.dtype(scalar).itemsize  # points per column vector
    XB = BLOCK_PLANES

    # prange over blocks of XB planes; in each block, line by line, the line's columns (explicit
    # vectors walked through the block's planes, :mod:`amcheck.kernels._columns`) one after
    # another, then the points after the last whole vector one by one. The three kernels spell
    # this loop out: moved into one inline helper it ran 3-6% slower (forward and adjoint, 256^3,
    # one thread, A/B against the spelled-out loops).

    @jit
    def step(u: Any, cur: int, c: Any, w: Any, end: tuple[int, int], ax: Any, ay: Any, az: Any
             ) -> None:
        uc = u[cur]
        up = u[1 - cur]
        NZ = u.shape[3]
        nx = u.shape[1] - 2 * H
        ny = _interior_size(end[0], H, u.shape[2], H)
        nz = _interior_size(end[1], PL, NZ, H)
        nv = _whole_vectors(nz, NZ, PL, W)
        sx = w[0]
        sy = w[1]
        sz = w[2]
        uniform = sx == sy and sy == sz  # one set of coefficients serves all axes
        for b in prange((nx + XB - 1) // XB):
            mx = ftz_on()
            x0 = H + b * XB
            x1 = min(x0 + XB, H + nx)
            for j in range(ny):
                y = j + H
                for v in range(nv):
                    if uniform:
                        column3(uc, up, up, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az,
                                True)
                    else:
                        column3(uc, up, up, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az,
                                False)
                for x in range(x0, x1):
                    _tail3(uc, up, up, c, C, sx, sy, sz, x, y, nv * W, nz, ax, ay, az, one, PL)
            ftz_restore(mx)

    @jit
    def step_copy(src: Any, dst: Any, cur: int, c: Any, w: Any, end: tuple[int, int],
                  ax: Any, ay: Any, az: Any) -> None:
        uc = src[cur]
        up = src[1 - cur]
        dc = dst[cur]
        dn = dst[1 - cur]
        NX = src.shape[1]
        NY = src.shape[2]
        NZ = src.shape[3]
        nx = NX - 2 * H
        yend, zend = end
        ny = _interior_size(yend, H, NY, H)
        nz = _interior_size(zend, PL, NZ, H)
        nv = _whole_vectors(nz, NZ, PL, W)
        sx = w[0]
        sy = w[1]
        sz = w[2]
        uniform = sx == sy and sy == sz  # one set of coefficients serves all axes
        for b in prange((nx + XB - 1) // XB):
            mx = ftz_on()
            x0 = H + b * XB
            x1 = min(x0 + XB, H + nx)
            for x in range(x0, x1):
                _copy_plane3(uc, up, dc, dn, x, H, PL, yend, zend)
            for j in range(ny):
                y = j + H
                for v in range(nv):
                    if uniform:
                        column3(uc, up, dn, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az,
                                True)
                    else:
                        column3(uc, up, dn, c, C, sx, sy, sz, x0, x1, y, PL + v * W, ax, ay, az,
                                False)
                for x in range(x0, x1):
                    _tail3(uc, up, dn, c, C, sx, sy, sz, x, y, nv * W, nz, ax, ay, az, one, PL)
            ftz_restore(mx)
        for i in range(H):  # the halo planes: copies of both levels
            _copy_plane3(uc, up, dc, dn, i, NY, PL, NY, PL)
            _copy_plane3(uc, up, dc, dn, NX - H + i, NY, PL, NY, PL)

    @jit
    def adjoint_gradient(v: Any, cur: int, c: Any, w: Any, end: tuple[int, int], ax: Any, ay: Any,
                         az: Any, u: Any, g: Any) -> None:
        vc = v[cur]
        vp = v[1 - cur]
        NZ = v.shape[3]
        nx = v.shape[1] - 2 * H
        ny = _interior_size(end[0], H, v.shape[2], H)
        nz = _interior_size(end[1], PL, NZ, H)
        nv = _whole_vectors(nz, NZ, PL, W)
        sx = w[0]
        sy = w[1]
        sz = w[2]
        uniform = sx == sy and sy == sz  # one set of coefficients serves all axes
        for b in prange((nx + XB - 1) // XB):
            mx = ftz_on()
            x0 = H + b * XB
            x1 = min(x0 + XB, H + nx)
            for j in range(ny):
                y = j + H
                for k in range(nv):
                    if uniform:
                        column3_adjoint(vc, vp, c, C, sx, sy, sz, x0, x1, y, PL + k * W, ax, ay,
                                        az, u, g, True)
                    else:
                        column3_adjoint(vc, vp, c, C, sx, sy, sz, x0, x1, y, PL + k * W, ax, ay,
                                        az, u, g, False)
                for x in range(x0, x1):
                    _tail3_adjoint(vc, vp, c, C, sx, sy, sz, x, y, nv * W, nz, ax, ay, az, one,
                                   PL, u, g)
            ftz_restore(mx)

    return step, step_copy, adjoint_gradient


# Sources and receivers ---------------------------------------------------------------------------
# Both paths of the forward operator (the fused serial loop and the step-by-step one) inject and
# sample through these, so their receiver data are bitwise the same whatever numpy's own reduction
# order. The corner sums are those numpy 2.4 computes for ``(level[idx] * w).sum(axis=1)`` (the
# operators' previous form): from +0, in order for 4 corners, as a pairwise tree for 8.


@jit(parallel=False)
def inject(level: Any, idx: Any, cw: Any, values: Any) -> None:  # pragma: no cover - numba
    """``level[idx[i, j]] += cw[i, j] * values[i]`` in the order i, j (repeated corners add up).

    ``level`` is one time level, flat (``u[k].reshape(-1)``); ``idx`` and ``cw`` have shape
    ``(npoints, 2**ndim)``; ``values`` one sample per point, of the level's dtype.
    """
    for i in range(idx.shape[0]):
        v = values[i]
        for j in range(idx.shape[1]):
            level[idx[i, j]] += cw[i, j] * v


@jit(parallel=False)
def sample(level: Any, idx: Any, w: Any, out: Any) -> None:  # pragma: no cover - numba
    """``out[i] = sum_j w[i, j] * level[idx[i, j]]``: multilinear interpolation at the points.

    The products and their sum are in the level's dtype (``out`` may be wider); ``level`` is
    flat, as for :func:`inject`.
    """
    for i in range(idx.shape[0]):
        zero = w[i, 0] - w[i, 0]  # +0 of the level's dtype (weights are finite)
        if idx.shape[1] == 8:
            s = zero + (((level[idx[i, 0]] * w[i, 0] + level[idx[i, 1]] * w[i, 1])
                         + (level[idx[i, 2]] * w[i, 2] + level[idx[i, 3]] * w[i, 3]))
                        + ((level[idx[i, 4]] * w[i, 4] + level[idx[i, 5]] * w[i, 5])
                           + (level[idx[i, 6]] * w[i, 6] + level[idx[i, 7]] * w[i, 7])))
        else:
            s = zero
            for j in range(idx.shape[1]):
                s += level[idx[i, j]] * w[i, j]
        out[i] = s


def _fused_advance(step: Any, step_copy: Any) -> Any:
    """A time loop over serial ``step``/``step_copy`` with injection and sampling, one nogil call.

    numba takes the GIL to launch every ``parallel`` region, even on one thread and inside a
    nogil function, and a Python loop over steps runs some 10 us of Python a step. On one thread
    this loop holds no GIL from the first step to the last and runs no Python between steps:
    measured 2-5 % faster than the step loop on small grids (``benchmarks/fwi_overlap.py``;
    waiting for the GIL beside the transfer threads turned out not to be what slowed the step
    loop down, see docs/kernels.md).
    """

    @jit(parallel=False, cache=False)  # its closure holds compiled functions (see jit's cache)
    def advance(src: Any, dst: Any, t0: int, t1: int, copy: bool, c: Any, w: Any, end: Any,
                damping: Any, src_idx: Any, src_cw: Any, src_data: Any, rec_idx: Any,
                rec_w: Any, data: Any) -> None:  # pragma: no cover - numba
        sample(src[t0 % 2].reshape(-1), rec_idx, rec_w, data[t0])
        for t in range(t0, t1):
            cur = t % 2
            if t == t0 and copy:
                step_copy(src, dst, cur, c, w, end, *damping)
            else:
                step(dst, cur, c, w, end, *damping)
            new = dst[1 - cur].reshape(-1)
            inject(new, src_idx, src_cw, src_data[t])
            sample(new, rec_idx, rec_w, data[t + 1])

    return advance
