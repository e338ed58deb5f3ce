"""The forward operator's fused serial time loop against its step-by-step loop: bitwise equal."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytest
from amcheck.kernels import Geometry, Model
from amcheck.kernels._operators import AcousticForward
from amcheck.kernels._stencil import inject, sample

import amcheck


def _operator(ndim: int, space_order: int, dtype: type) -> tuple[Model, Geometry]:
    shape = (31, 37) if ndim == 2 else (13, 15, 17)
    vp = np.full(shape, 1.5, dtype)
    vp[shape[0] // 2:] = 2.5
    model = Model(vp, (10.0,) * ndim, nbl=6, space_order=space_order, dtype=dtype)
    # an off-grid source, receivers on and off grid points, one on the domain's last point
    src = [[101.0] + [33.0] * (ndim - 1)]
    rec = [[x] + [12.5] * (ndim - 1) for x in np.linspace(0.0, 10.0 * (shape[0] - 1), 5)]
    rec.append([10.0 * (n - 1) for n in shape])
    return model, Geometry(model, src, rec, tn=300.0, f0=0.015)


def _run(model: Model, geometry: Geometry, fused: bool) -> tuple[np.ndarray, np.ndarray]:
    """In place, then one advance out of place from a read-only source, then in place again."""
    fwd = AcousticForward(model, geometry)
    fwd.fused = fused
    a = fwd.initial_state()
    b = fwd.initial_state()
    b["u"][...] = np.nan  # out of place must write the whole destination
    fwd.advance(a, a, 0, 17)
    a["u"].flags.writeable = False
    fwd.advance(a, b, 17, 40)
    fwd.advance(b, b, 40, fwd.n_steps)
    return b["u"], fwd.data


@pytest.mark.parametrize(("ndim", "space_order", "dtype"), [
    (2, 2, np.float32), (2, 8, np.float32), (2, 4, np.float64), (3, 4, np.float32),
    (3, 8, np.float32),
])
def test_fused_equals_step_by_step(ndim: int, space_order: int, dtype: type) -> None:
    model, geometry = _operator(ndim, space_order, dtype)
    u_loop, d_loop = _run(model, geometry, fused=False)
    u_fused, d_fused = _run(model, geometry, fused=True)
    assert np.abs(d_loop).max() > 1e-3  # the wave reached the receivers
    np.testing.assert_array_equal(u_fused, u_loop)
    np.testing.assert_array_equal(d_fused, d_loop)


def test_fused_by_default_on_one_thread_only() -> None:
    """``fused=None`` follows numba's thread count, and both choices run the same steps."""
    model, geometry = _operator(2, 8, np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        u_one, d_one = _run(model, geometry, fused=None)  # type: ignore[arg-type]
    finally:
        numba.set_num_threads(before)
    u_loop, d_loop = _run(model, geometry, fused=False)
    np.testing.assert_array_equal(u_one, u_loop)
    np.testing.assert_array_equal(d_one, d_loop)


@pytest.mark.parametrize("corners", [4, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sample_and_inject_match_numpy(corners: int, dtype: type, rng: np.random.Generator
                                       ) -> None:
    """``sample`` sums the corners' products from +0 (a sum of negative zeros is +0), in order for
    4 corners and as a pairwise tree for 8 (numpy 2.4's order for ``(level[idx] * w).sum(axis=1)``,
    which the operators used before); ``inject`` adds as ``np.add.at`` does, repeated indices
    included."""
    level = (rng.standard_normal(500) * 10.0 ** rng.integers(-4, 4, 500)).astype(dtype)
    level[:50] = -0.0
    idx = rng.integers(0, 500, (300, corners))
    idx[:20] = rng.integers(0, 50, (20, corners))  # rows of negative zeros only
    w = rng.uniform(0.0, 1.0, (300, corners)).astype(dtype)
    out = np.full(300, np.nan)
    sample(level, idx, w, out)
    p = [level[idx[:, j]] * w[:, j] for j in range(corners)]
    if corners == 8:
        total = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]))
    else:
        total = ((p[0] + p[1]) + p[2]) + p[3]
    expected = (np.zeros(300, dtype) + total).astype(np.float64)
    np.testing.assert_array_equal(out, expected)
    assert not np.signbit(out[:20]).any()
    np.testing.assert_allclose(out, (level[idx] * w).sum(axis=1),
                               rtol=1e-5 if dtype is np.float32 else 1e-13)
    values = rng.standard_normal(300).astype(dtype)
    mine = level.copy()
    inject(mine, idx, w, values)
    theirs = level.copy()
    np.add.at(theirs, idx.reshape(-1), (w * values[:, None]).reshape(-1))
    np.testing.assert_array_equal(mine, theirs)


def test_replaced_source_data_is_checked_before_the_loop() -> None:
    """The fused loop has no bounds checks: arrays swapped in after construction are refused."""
    model, geometry = _operator(2, 2, np.float32)
    fwd = AcousticForward(model, geometry)
    x = fwd.initial_state()
    fwd.src_data = fwd.src_data.astype(np.float64)
    with pytest.raises(amcheck.InvalidArgumentError, match=r"src_data must be a C-contiguous "
                                                           r"float32 array"):
        fwd.advance(x, x, 0, 3)
    fwd = AcousticForward(model, geometry)
    fwd.data = fwd.data[:5]
    with pytest.raises(amcheck.InvalidArgumentError, match=r"data must be .* shape"):
        fwd.advance(x, x, 0, 3)


_TOY = '''
from numba import prange


def factory(h):
    def step(a):
        for i in prange(a.shape[0]):
            a[i] += h
    return step
'''

_BUILD = '''
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import toy
from amcheck.kernels._jit import jit, serial_build
parallel = jit(toy.factory(1.0))
kernel = serial_build(parallel) if sys.argv[2] == "serial" else parallel
kernel(np.zeros(64))
print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
'''


def test_serial_builds_keep_their_own_cache_entries(tmp_path: Any) -> None:
    """numba keys its disk cache on code, closure and types, not on parallel=: a serial build of
    the same function loaded the parallel one's code, or the parallel build the serial one's,
    whichever a process had compiled first. serial_build's twin has entries of its own."""
    import subprocess
    import sys

    (tmp_path / "toy.py").write_text(_TOY)

    def build(which: str) -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-c", _BUILD, str(tmp_path), which],
                              capture_output=True, text=True, check=True)
        hits, misses = done.stdout.split()
        return int(hits), int(misses)

    assert build("serial") == (0, 1)
    assert build("parallel") == (0, 1)  # compiled, not the serial build's code
    assert build("serial") == (1, 0) and build("parallel") == (1, 0)  # each hits its own


def test_the_fused_loop_is_not_cached_on_disk() -> None:
    """Its closure holds compiled functions, which pickle with a per-process id: cached, it
    added an entry (about 200 KB) to the kernels' cache folder in every process."""
    model = Model(np.full((12, 14), 1.5), (10.0, 10.0), nbl=2, space_order=4)
    kernels = AcousticForward(model, Geometry(model, [[20.0, 60.0]], [[10.0, 30.0]], tn=20.0,
                                              f0=0.02))._disc.kernels
    assert type(kernels.advance._cache).__name__ == "NullCache"
