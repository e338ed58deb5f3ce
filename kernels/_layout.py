"""The padded grid's layout (last axis, and the middle axis in 3-D), and 64-byte-aligned arrays.

Why
---
A high-order stencil kernel is fastest when the vector loads of each line's *interior* (the
points after the halo of the last axis) start on an aligned boundary. Measured on one core of an
AMD EPYC (Zen 4, AVX-512), one thread, medians of 5: with a halo of exactly H points, 3-D 256^3
at space order 8 ran 0.747 / 0.829 / 0.752 / 0.833 GPts/s with ``u`` 0 / 16 / 32 / 48 bytes past a
64-byte boundary (the interior starts H = 4 points = 16 bytes after the line), 2-D 2000^2 order 8
1.22 / 1.28 / 1.20 at 0 / 16 / 32: which case a run got depended on the base address (numpy puts
large arrays 16 bytes past a 64-byte boundary, a Checkpointer's RAM slots on 64-byte, large
fields 4 KiB, boundaries). With the interior of *every* line on a 64-byte boundary the order-8
forward step ran 0.858 GPts/s (3-D) and 1.244 (2-D); on a 32-byte boundary that is not a 64-byte
one 0.790 and 1.192 (one process, interleaved, medians of 9; the old layout 0.731 / 1.141 in a
slot and 0.809 / 1.225 at numpy's usual address). So the boundary is 64 bytes, a cache line
and one AVX-512 vector, not the 32 of an AVX2 vector.

What
----
As Devito pads its arrays, the last axis gets a left pad ``PL >= H`` whose byte size is a
multiple of :data:`VECTOR_BYTES` (float32: 16 points for H <= 16; float64: 8 for H <= 8) and a
right pad ``PR >= H`` that makes the whole padded line a multiple of :data:`VECTOR_BYTES` long, so
that every line, and the interior of every line, starts on a 64-byte boundary as long as the array
itself does (:func:`aligned_zeros`; a Checkpointer's slots do too). One more rule: a line whose
length is a multiple of 1 KiB gets 64 bytes more, as such lines put the stencil's neighbour lines
in the same cache sets: 3-D order 8 at 236^3 ran 0.638-0.671 GPts/s with lines of 256 float32
points (1 KiB) and 0.771-0.846 with 272; 2-D 2000^2 order 8 0.998 with rows of 2048 points
(8 KiB) and 1.272-1.275 with 2032 or 2064 (one thread, medians of 7-9). The cost is memory: float32
order 8 has 12 points more than H on the left and 0-31 on the right (256^3 + 2 x 40 layer points:
lines of 368 instead of 344, 7% more bytes per state; 2000^2 + 80: 1.2%). In general ``PR - H``
is 0 to 2a - 1 points, a = 64 bytes of points (float32: 0-31, float64: 0-15; the upper half only
where the line would otherwise be a multiple of 1 KiB), for every supported order: computed with
:func:`line_pads` for every ``n`` = 1 … 4096, orders 2-12, both dtypes. The extra points are
halo: zero, and never written by a step. The first axis keeps a halo of H points, and so does
the middle axis of a 3-D grid unless its plane (padded y length times padded line bytes) would be
a multiple of 4 KiB: then it gets one point more on the right, as the stencil's 2H + 1 x-neighbour
planes would share the L1 sets (Zen 4: 8 ways of 4 KiB). 248^3 order 8 (nbl 0: planes of 256 lines
of 1088 bytes) ran 0.706 GPts/s forward and 0.506 adjoint without the extra point, 0.811 and 0.626
with it (one thread, interleaved, medians of 7); at order 4 (252^3, the same planes) 0.99x
forward, 1.06x adjoint; grids it does not touch (256^3 orders 4 and 8, 248^3 order 4) 0.996-1.004x
(benchmarks/results/kernels_layout_plane_ab.log). One point always suffices: a line is a multiple
of 64 bytes but never of 1 KiB, so of two consecutive plane sizes at most one is a multiple of 4 KiB.

:func:`grid_halos` (with :func:`line_pads` for the last axis) is the single rule: the
:class:`~amcheck.kernels.Model` stores its result (``Model.halos``, ``Model.pads``) and
everything else (the damping profiles, ``restrict``, source and receiver indices, the kernels'
loop bounds) reads the layout from there; the kernels get ``PL`` from
:func:`left_pad` at compile time, so their loops keep the form "loop variable + non-negative
constant".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from amcheck.storage._direct import aligned_empty

__all__ = [
    "ARRAY_ALIGN",
    "VECTOR_BYTES",
    "aligned_zeros",
    "grid_halos",
    "is_aligned",
    "left_pad",
    "line_pads",
]

#: The boundary (bytes) each line's interior starts on: a cache line, one AVX-512 vector. 64
#: measured faster than 32 (see the module docstring).
VECTOR_BYTES = 64
#: Line lengths (bytes) that are a multiple of this are avoided (one more 64-byte block).
_AVOID_BYTES = 1024
#: 3-D planes (padded y length times padded line bytes) that are a multiple of this get one more
#: y point: the stencil's x-neighbour planes would share the L1 sets (Zen 4 L1D: 8 ways of 4 KiB).
_AVOID_PLANE_BYTES = 4096
#: The boundary (bytes) of the arrays the kernels stream (:func:`aligned_zeros`): a cache line.
ARRAY_ALIGN = 64


def _vector_items(dtype: Any) -> int:
    return max(1, VECTOR_BYTES // int(np.dtype(dtype).itemsize))


def left_pad(halo: int, dtype: Any) -> int:
    """``PL``: the halo ``halo`` rounded up to a whole number of 64-byte lines of ``dtype``."""
    a = _vector_items(dtype)
    return -(-halo // a) * a


def line_pads(halo: int, n: int, dtype: Any) -> tuple[int, int]:
    """``(PL, PR)`` of a last axis with ``n`` non-halo points (absorbing layer included).

    ``PL = left_pad(halo, dtype)``; ``PR`` is the least ``>= halo`` that makes ``PL + n + PR`` a
    multiple of 64 bytes, and not a multiple of 1 KiB (then 64 bytes more; see the module
    docstring). E.g. float32, halo 4, n = 256: (16, 16); n = 250: (16, 6); n = 236: (16, 20).
    """
    a = _vector_items(dtype)
    pl = left_pad(halo, dtype)
    pr = halo + (-(pl + n + halo)) % a
    if ((pl + n + pr) * np.dtype(dtype).itemsize) % _AVOID_BYTES == 0:
        pr += a  # lines of a multiple of 1 KiB map the stencil's lines onto the same cache sets
    return pl, pr


def grid_halos(halo: int, sizes: Sequence[int], dtype: Any) -> tuple[tuple[int, int], ...]:
    """``(left, right)`` halo points of each axis of a grid with ``sizes`` non-halo points.

    ``halo`` on both sides of every axis but the last, which gets :func:`line_pads`; in 3-D the
    middle axis gets one point more on the right when the plane (padded y length times the
    padded line's bytes) would be a multiple of 4 KiB (see the module docstring). One point
    always suffices: the line is a multiple of 64 bytes but not of 1 KiB. E.g. float32, halo 4,
    sizes (248, 248, 248): ((4, 4), (4, 5), (16, 8)); sizes (256, 256, 256): ((4, 4), (4, 4),
    (16, 16)).
    """
    ndim = len(sizes)
    halos = [(halo, halo)] * (ndim - 1) + [line_pads(halo, int(sizes[-1]), dtype)]
    if ndim == 3:
        pl, pr = halos[-1]
        line_bytes = (pl + int(sizes[-1]) + pr) * np.dtype(dtype).itemsize
        if ((int(sizes[1]) + 2 * halo) * line_bytes) % _AVOID_PLANE_BYTES == 0:
            halos[1] = (halo, halo + 1)  # x-neighbour planes would alias in the L1 sets
    return tuple(halos)


def aligned_zeros(shape: Any, dtype: Any, align: int = ARRAY_ALIGN) -> np.ndarray:
    """A C-contiguous array of zeros whose first element sits on an ``align``-byte boundary.

    numpy's own allocations of large arrays start 16 bytes past a 64-byte boundary; this one
    comes from :func:`amcheck.storage._direct.aligned_empty`, zeroed.
    """
    dt = np.dtype(dtype)
    shape_t = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(map(int, shape))
    raw = aligned_empty(int(np.prod(shape_t, dtype=np.int64)) * dt.itemsize, align)
    raw.fill(0)
    out: np.ndarray = raw.view(dt).reshape(shape_t)
    return out


def is_aligned(a: np.ndarray, align: int = ARRAY_ALIGN) -> bool:
    """Whether ``a``'s first element sits on an ``align``-byte boundary."""
    return a.ctypes.data % align == 0
