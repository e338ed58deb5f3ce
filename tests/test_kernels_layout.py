"""The padded grid's layout: each line's interior on a 64-byte boundary, results unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from amcheck.kernels import (
    AcousticAdjoint,
    AcousticForward,
    Geometry,
    Model,
    _model,
    forward_modeling,
    fwi_gradient,
)
from amcheck.kernels._layout import aligned_zeros, grid_halos, is_aligned, left_pad, line_pads


@pytest.mark.parametrize(
    ("halo", "n", "dtype", "pads"),
    [
        (4, 256, np.float32, (16, 16)),
        (4, 250, np.float32, (16, 6)),
        (4, 257, np.float32, (16, 15)),
        (2, 100, np.float32, (16, 12)),
        (1, 7, np.float32, (16, 9)),
        (6, 10, np.float32, (16, 6)),
        (4, 256, np.float64, (8, 8)),
        (4, 255, np.float64, (8, 9)),
        (6, 30, np.float64, (8, 10)),
        (10, 30, np.float64, (16, 10)),
        (4, 236, np.float32, (16, 20)),  # not 256 points (1 KiB lines)
        (4, 2028, np.float32, (16, 20)),  # not 2048 (8 KiB)
        (4, 112, np.float64, (8, 16)),  # not 128 (1 KiB)
    ],
)
def test_line_pads(halo: int, n: int, dtype: type, pads: tuple[int, int]) -> None:
    assert line_pads(halo, n, dtype) == pads
    pl, pr = pads
    item = np.dtype(dtype).itemsize
    assert left_pad(halo, dtype) == pl >= halo and pr >= halo
    assert (pl * item) % 64 == 0 and ((pl + n + pr) * item) % 64 == 0
    assert ((pl + n + pr) * item) % 1024 != 0
    assert pl - halo < 64 // item and pr - halo < 2 * 64 // item  # the least pads that do that


def test_aligned_zeros() -> None:
    for shape in [(3, 5), (2, 7, 9, 11), 13]:
        a = aligned_zeros(shape, np.float32)
        assert is_aligned(a) and a.flags.c_contiguous and not a.any()
        assert a.shape == ((13,) if shape == 13 else shape) and a.dtype == np.float32


@pytest.mark.parametrize(
    ("halo", "sizes", "dtype", "halos"),
    [
        (4, (248, 248, 248), np.float32, ((4, 4), (4, 5), (16, 8))),  # planes 256 x 1088 bytes
        (4, (256, 256, 256), np.float32, ((4, 4), (4, 4), (16, 16))),  # 264 x 1152: untouched
        (2, (252, 252, 252), np.float32, ((2, 2), (2, 3), (16, 4))),  # 256 x 1088
        (4, (100, 24, 12), np.float32, ((4, 4), (4, 5), (16, 4))),  # 32 x 128 bytes
        (4, (100, 56, 12), np.float64, ((4, 4), (4, 5), (8, 4))),  # 64 x 192 bytes
        (4, (100, 25, 12), np.float32, ((4, 4), (4, 4), (16, 4))),  # 33 x 128 bytes
        (4, (248, 248), np.float32, ((4, 4), (16, 8))),  # 2-D: rows only
    ],
)
def test_grid_halos(halo: int, sizes: tuple[int, ...], dtype: type,
                    halos: tuple[tuple[int, int], ...]) -> None:
    """H on each axis but the last (``line_pads``); in 3-D one y point more against 4 KiB planes."""
    assert grid_halos(halo, sizes, dtype) == halos
    assert halos[-1] == line_pads(halo, sizes[-1], dtype)
    line = (sizes[-1] + sum(halos[-1])) * np.dtype(dtype).itemsize
    if len(sizes) == 3:
        assert (sizes[1] + sum(halos[1])) * line % 4096 != 0
        assert halos[1][0] == halo
        assert halos[1][1] == halo + ((sizes[1] + 2 * halo) * line % 4096 == 0)


def _without_plane_pad(halo: int, sizes: list[int], dtype: type) -> tuple[tuple[int, int], ...]:
    """The layout before the plane rule: a halo of H on the middle axis too."""
    halos = grid_halos(halo, sizes, dtype)
    return (*halos[:-2], (halo, halo), halos[-1]) if len(halos) == 3 else halos


@pytest.mark.parametrize("so", [4, 8])
def test_plane_pad_changes_no_result(so: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3-D grid whose planes would be 4 KiB (32 x 128 bytes) gets one y point more; data and
    gradient are bitwise those of the same run without it."""
    nbl = 3
    shape = (9, 32 - 2 * nbl - so, 6)  # padded y: 32 (+ 1), lines of 32 points
    idx = np.indices(shape).sum(axis=0)
    model = Model(1.5 + 0.05 * (idx % 7), (10.0,) * 3, nbl=nbl, space_order=so)
    H = so // 2
    assert model.halos[1] == (H, H + 1) and model.grid_shape[1:] == (33, 32)
    d_pad, g_pad = _case(shape, so, np.float32)
    monkeypatch.setattr(_model, "grid_halos", _without_plane_pad)
    plain_model = Model(1.5 + 0.05 * (idx % 7), (10.0,) * 3, nbl=nbl, space_order=so)
    assert plain_model.halos[1] == (H, H) and plain_model.grid_shape[1:] == (32, 32)
    d_plain, g_plain = _case(shape, so, np.float32)
    assert np.all(np.isfinite(d_pad)) and np.abs(d_pad).max() > 0 and np.abs(g_pad).max() > 0
    np.testing.assert_array_equal(d_pad, d_plain)
    np.testing.assert_array_equal(g_pad, g_plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(13, 17), (9, 8, 11)])
def test_model_layout(shape: tuple[int, ...], dtype: type) -> None:
    """One layout: pads, grid shape, m, damping, restrict and source indices all agree with it."""
    nbl, so = 3, 8
    vp = 1.5 + 0.01 * np.arange(int(np.prod(shape))).reshape(shape)
    model = Model(vp, (10.0,) * len(shape), nbl=nbl, space_order=so, dtype=dtype)
    H = so // 2
    pl, pr = line_pads(H, shape[-1] + 2 * nbl, dtype)
    assert model.halos == ((H, H),) * (len(shape) - 1) + ((pl, pr),)  # no plane of 4 KiB here
    assert model.halos == grid_halos(H, [n + 2 * nbl for n in shape], dtype)
    assert model.pads == tuple((lo + nbl, hi + nbl) for lo, hi in model.halos)
    assert model.grid_shape == tuple(n + lo + hi for n, (lo, hi) in zip(shape, model.pads))
    assert model.interior_ends[-1] == model.grid_shape[-1] - pr
    np.testing.assert_array_equal(model.m_padded[model.physical], (1.0 / vp**2).astype(dtype))
    np.testing.assert_array_equal(model.m, (1.0 / vp**2).astype(dtype))
    for eta, (lo, hi), n in zip(model.damping_profiles(), model.halos, model.grid_shape):
        assert np.all(eta[:lo] == 0) and np.all(eta[n - hi:] == 0)  # halo: undamped
        assert np.all(eta[lo:lo + nbl] > 0) and np.all(eta[n - hi - nbl:n - hi] > 0)
    # restrict is E^T of the edge extension np.pad(·, pads, "edge")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    y = rng.standard_normal(model.grid_shape)
    assert np.sum(np.pad(x, model.pads, mode="edge") * y) == pytest.approx(
        np.sum(x * model.restrict(y)), rel=1e-12)
    # a receiver on physical point p reads the padded grid at p + pads[d][0]
    p = [n // 2 for n in shape]
    geo = Geometry(model, [10.0 * q for q in p], [[10.0 * q for q in p]], tn=10.0)
    fwd = AcousticForward(model, geo)
    u = fwd.initial_state()["u"]
    u[(1, *[q + lo for q, (lo, _) in zip(p, model.pads)])] = 7.0
    out = np.zeros(1)
    fwd._disc.sample(u[1], fwd._disc.rec_idx, fwd._disc.rec_w, out)
    assert out[0] == 7.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_arrays_and_line_interiors_are_aligned(dtype: type) -> None:
    model = Model(np.full((13, 17, 10), 1.5), (10.0, 10.0, 10.0), nbl=3, space_order=8,
                  dtype=dtype)
    geo = Geometry(model, [60.0, 80.0, 40.0], [[60.0, 80.0, 40.0]], tn=10.0)
    fwd = AcousticForward(model, geo)
    adj = AcousticAdjoint(fwd)
    u = fwd.initial_state()["u"]
    for a in (u, fwd._disc.c, adj.v, adj.g):
        assert is_aligned(a, 64), a.ctypes.data % 64
    pl = model.halos[-1][0]
    for x in (0, 5, 12):
        for y in (0, 1, 9):
            assert u[1, x, y, pl:].ctypes.data % 64 == 0  # the interior of every line


def _case(shape: tuple[int, ...], so: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """forward_modeling data and fwi_gradient (d_obs = 0) of a small damped model, rational source."""
    nd = len(shape)
    idx = np.indices(shape).sum(axis=0)
    model = Model(1.5 + 0.05 * (idx % 7), (10.0,) * nd, nbl=3, space_order=so, dtype=dtype)
    ext = [10.0 * (n - 1) for n in shape]
    rec = [[e * f for e in ext] for f in (0.2, 0.55, 0.9)]
    geo = Geometry(model, [e * 0.4 for e in ext], rec, tn=60.0 if nd == 2 else 40.0, f0=0.02)
    k = np.arange(geo.nt, dtype=np.float64)
    # no numpy transcendental in the source, so the digests do not depend on numpy's SIMD exp
    geo.src_data = (((k % 9) - 4.0) / 8.0 * (k < 30))[:, None]
    d = forward_modeling(model, geo)
    _misfit, g = fwi_gradient(model, geo, np.zeros_like(d), ram="256 MiB")
    return d, g


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()[:40]


# sha256 of the float64 bytes of (data, gradient), computed with the kernels before the line
# interiors were aligned (commit d12b61f: a halo of H points on every axis, numpy's allocations).
_BEFORE = {
    ((13, 17), 8, "float32"): ("a3a098b81cb5ae656927253b28c1a760f581f594",
                               "716cb902d74a7e72a613936e30cea31cc3bcac4b"),
    ((13, 17), 4, "float32"): ("e632e97206ed1d5a71330168302cdddbd17fab21",
                               "4bd398ae48651d8b14c99e68972fb6a61f2c643d"),
    ((9, 8, 11), 8, "float32"): ("fff2be60ba2dbeb05bd0c06fb5e4591e68076d68",
                                 "9e95446500a75b2540befc467c39ff495bdb9e6a"),
    ((13, 17), 8, "float64"): ("ea682e5aae08f1f6313858fa3069d75549a70095",
                               "cfd30baca084acc5f6f7341b4a4d389c97b9a072"),
}


@pytest.mark.parametrize("case", list(_BEFORE))
def test_results_bitwise_as_before_the_layout_change(case: tuple[tuple[int, ...], int, str]
                                                      ) -> None:
    """The aligned layout changes where points live, not one bit of data or gradient."""
    shape, so, dtype = case
    d, g = _case(shape, so, np.dtype(dtype).type)
    assert np.all(np.isfinite(d)) and np.abs(g).max() > 0
    assert (_digest(d), _digest(g)) == _BEFORE[case], (np.abs(d).max(), np.abs(g).max())


@pytest.mark.parametrize("offset", [4, 16, 32, 48])
def test_step_does_not_depend_on_the_base_address(offset: int) -> None:
    """u at any 4-byte offset from a 64-byte boundary: bitwise the same step (vector peel aside)."""
    model = Model(np.full((9, 8, 21), 1.5), (10.0, 10.0, 10.0), nbl=2, space_order=8)
    geo = Geometry(model, [40.0, 30.0, 100.0], [[40.0, 30.0, 100.0]], tn=10.0)
    d = AcousticForward(model, geo)._disc
    rng = np.random.default_rng(offset)
    ref = aligned_zeros((2, *model.grid_shape), np.float32)
    ref[(slice(None), *[slice(lo, n - hi) for (lo, hi), n in zip(model.halos, model.grid_shape)])
        ] = rng.standard_normal((2, 13, 12, 25))
    raw = aligned_zeros(ref.nbytes + 64, np.uint8)
    moved = raw[offset:offset + ref.nbytes].view(np.float32).reshape(ref.shape)
    moved[...] = ref
    for t in range(3):
        d.kernels.step(ref, t % 2, d.c, d.w, d.end, *d.damping)
        d.kernels.step(moved, t % 2, d.c, d.w, d.end, *d.damping)
    np.testing.assert_array_equal(moved, ref)
