"""The kernels' column walks (explicit vectors, kernels/_columns.py) against the same per-point
operations in a plain scalar loop: bitwise equal, in 2-D and 3-D, for every space order and dtype,
on grids with damped layers, several blocks of planes or rows (the last one partial), several
vectors per line and a scalar tail, and random data in every point (halo included, so a read
outside the stencil's reach would change the result)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
from amcheck.kernels import Geometry, Model
from amcheck.kernels._columns import BLOCK_PLANES, BLOCK_ROWS, VECTOR_BYTES
from amcheck.kernels._operators import AcousticForward
from amcheck.kernels._stencil import (
    _damping_factors,
    _row2_adjoint,
    _tail2,
    _tail3,
    _tail3_adjoint,
    fd_coefficients,
)


@numba.njit(cache=False)
def _scalar_step(uc: Any, up: Any, dn: Any, c: Any, C: Any, w: Any, yend: int, zend: int,
                 ax: Any, ay: Any, az: Any, H: int, PL: int) -> None:
    one = w.dtype.type(1.0)
    for x in range(H, uc.shape[0] - H):
        for y in range(H, yend):
            _tail3(uc, up, dn, c, C, w[0], w[1], w[2], x, y, 0, zend - PL, ax, ay, az, one, PL)


@numba.njit(cache=False)
def _scalar_adjoint(vc: Any, vp: Any, c: Any, C: Any, w: Any, yend: int, zend: int, ax: Any,
                    ay: Any, az: Any, H: int, PL: int, u: Any, g: Any) -> None:
    one = w.dtype.type(1.0)
    for x in range(H, vc.shape[0] - H):
        for y in range(H, yend):
            _tail3_adjoint(vc, vp, c, C, w[0], w[1], w[2], x, y, 0, zend - PL, ax, ay, az, one,
                           PL, u, g)


@numba.njit(cache=False)
def _scalar_step2(uc: Any, up: Any, dn: Any, c: Any, C: Any, w: Any, end: int, ax: Any, ay: Any,
                  H: int, PL: int) -> None:
    one = w.dtype.type(1.0)
    for x in range(H, uc.shape[0] - H):
        _tail2(uc, up, dn, c, C, w[0], w[1], x, 0, end - PL, ax, ay, one, PL)


@numba.njit(cache=False)
def _scalar_adjoint2(vc: Any, vp: Any, c: Any, C: Any, w: Any, end: int, ax: Any, ay: Any, H: int,
                     PL: int, u: Any, g: Any) -> None:
    one = w.dtype.type(1.0)
    for x in range(H, vc.shape[0] - H):
        r = np.empty_like(ay)
        q = np.empty_like(ay)
        _damping_factors(ax[x], ay, r, q, one)
        _row2_adjoint(vc, vp, c, C, w[0], w[1], x, 0, end - PL, r, q, PL, u, g)


def _setup(so: int, dtype: type, ndim: int = 3, uniform: bool = False
           ) -> tuple[Any, np.ndarray, np.random.Generator]:
    # 3 blocks and 1 more plane (3-D) or row (2-D) inside nbl = 3 layers (the last block partial);
    # lines of 3 vectors and a tail at float32 (more vectors at float64)
    W = VECTOR_BYTES // np.dtype(dtype).itemsize
    if ndim == 3:
        shape: tuple[int, ...] = (BLOCK_PLANES * 3 + 1 - 6, 9, 3 * 16 + 5 - 6)
    else:
        shape = (BLOCK_ROWS * 3 + 1 - 6, 3 * 16 + 5 - 6)
    # equal spacings take the walks that share one set of coefficients between the axes
    spacing = (10.0,) * ndim if uniform else (10.0, 12.0, 9.0)[-ndim:]
    model = Model(np.full(shape, 1.5), spacing, nbl=3, space_order=so, dtype=dtype)
    centre = [4.0 * (n - 1) for n in shape]
    fwd = AcousticForward(model, Geometry(model, centre, [centre], tn=1.0, f0=0.01))
    d = fwd._disc
    end = d.end[1] if ndim == 3 else d.end
    assert (end - model.halos[-1][0]) % W != 0  # a scalar tail
    rng = np.random.default_rng(so)
    u = fwd.initial_state()["u"]
    u[...] = rng.standard_normal(u.shape).astype(dtype)
    d.c[...] = rng.uniform(0.1, 0.3, d.c.shape).astype(dtype)
    assert all(np.any(a > 0) for a in d.damping)
    return d, u, rng


def _reference_step(d: Any, uc: np.ndarray, up: np.ndarray, dn: np.ndarray, C: Any, H: int,
                    PL: int) -> None:
    if uc.ndim == 3:
        _scalar_step(uc, up, dn, d.c, C, d.w, *d.end, *d.damping, H, PL)
    else:
        _scalar_step2(uc, up, dn, d.c, C, d.w, d.end, *d.damping, H, PL)


def _reference_adjoint(d: Any, vc: np.ndarray, vp: np.ndarray, C: Any, H: int, PL: int,
                       u: np.ndarray, g: np.ndarray) -> None:
    if vc.ndim == 3:
        _scalar_adjoint(vc, vp, d.c, C, d.w, *d.end, *d.damping, H, PL, u, g)
    else:
        _scalar_adjoint2(vc, vp, d.c, C, d.w, d.end, *d.damping, H, PL, u, g)


@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("so", [2, 4, 8])
@pytest.mark.parametrize("ndim", [2, 3])
def test_columns_equal_the_scalar_loop(ndim: int, so: int, dtype: type, uniform: bool) -> None:
    d, u, rng = _setup(so, dtype, ndim, uniform)
    assert (len(set(d.w.tolist())) == 1) == uniform
    H = so // 2
    PL = d.kernels.left_pad
    C = fd_coefficients(so, dtype)
    for cur in (0, 1):  # in place
        ref = u.copy()
        _reference_step(d, ref[cur], ref[1 - cur], ref[1 - cur], C, H, PL)
        got = u.copy()
        d.kernels.step(got, cur, d.c, d.w, d.end, *d.damping)
        assert np.array_equal(got.view(np.uint8), ref.view(np.uint8)), cur
    # out of place: the new level as in place, level cur copied, the rest of dst overwritten
    dst = np.full_like(u, np.nan)
    d.kernels.step_copy(u, dst, 0, d.c, d.w, d.end, *d.damping)
    ref = u.copy()
    _reference_step(d, ref[0], ref[1], ref[1], C, H, PL)
    assert np.array_equal(dst.view(np.uint8), ref.view(np.uint8))
    # the adjoint step with the gradient
    ug = rng.standard_normal(u.shape[1:]).astype(dtype)
    g0 = rng.standard_normal(u.shape[1:]).astype(dtype)
    ref, g_ref = u.copy(), g0.copy()
    _reference_adjoint(d, ref[1], ref[0], C, H, PL, ug, g_ref)
    got, g = u.copy(), g0.copy()
    d.kernels.adjoint_gradient(got, 1, d.c, d.w, d.end, *d.damping, ug, g)
    assert np.array_equal(got.view(np.uint8), ref.view(np.uint8))
    assert np.array_equal(g.view(np.uint8), g_ref.view(np.uint8))


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="compiles for an x86 CPU (Haswell)")
def test_columns_without_avx512_equal_the_scalar_loop(tmp_path: Path) -> None:
    """Where the CPU has no AVX-512 the walks shift z with float shuffles instead of valignd:
    compiled for Haswell (AVX2) in a subprocess, the order-8 float32 cases above, bitwise."""
    import os
    import subprocess
    import sys

    script = (
        "from numba.core.registry import cpu_target\n"
        "from amcheck.kernels._columns import _has_avx512\n"
        "import test_kernels_columns as t, numpy as np\n"
        "assert not _has_avx512(cpu_target.target_context)\n"
        "for ndim, uniform in ((3, False), (3, True), (2, False)):\n"
        "    t.test_columns_equal_the_scalar_loop(ndim, 8, np.float32, uniform)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="",
               NUMBA_CACHE_DIR=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
