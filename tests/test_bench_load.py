"""The engine benchmarks' load (benchmarks/_wave.py): its two step paths agree bit for bit.

On one numba thread the load steps with serial loops (no GIL), on more with parallel ones; the
benchmarks compare variants that may run either, so both must give the same states, in place
and from one buffer into another, from writable and read-only sources.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import numba
import numpy as np
import pytest

from amcheck.cli import _benchmarks_dir


@pytest.fixture(scope="module")
def wave() -> ModuleType:
    # Under its own name: numba's on-disk cache of its kernels refers to the module "_wave".
    path = _benchmarks_dir() / "_wave.py"
    spec = importlib.util.spec_from_file_location("_wave", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_wave", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def threads() -> Iterator[None]:
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def _x0(wave: ModuleType) -> np.ndarray:
    x0: np.ndarray = wave.initial_state(37)["u"]
    x0[:, 5:9, 11:20] += np.float32(0.5)  # not symmetric, so a transposed index would show
    return x0


def _run(wave: ModuleType, steps: object, readonly: bool) -> np.ndarray:
    x0 = _x0(wave)
    src = x0.copy()
    src.flags.writeable = not readonly
    dst: np.ndarray = np.full_like(x0, np.float32(7.0))  # every point of dst must be written
    steps(src, dst, 3, 4)  # type: ignore[operator]
    steps(dst, dst, 4, 25)  # type: ignore[operator]
    return dst


@pytest.mark.parametrize("readonly", [False, True])
def test_serial_and_parallel_steps_are_bitwise_equal(
    wave: ModuleType, threads: None, readonly: bool
) -> None:
    serial = _run(wave, wave._steps_serial, readonly)
    parallel = _run(wave, wave._steps_parallel, readonly)
    assert np.array_equal(serial, parallel)
    x0 = _x0(wave)
    assert np.isfinite(serial).all() and not np.array_equal(serial, x0)  # 22 steps moved the wave
    # wave_steps picks the path by numba's thread count: both counts give the same states
    for count in (1, int(numba.config.NUMBA_NUM_THREADS)):  # type: ignore[attr-defined]
        numba.set_num_threads(count)
        assert np.array_equal(_run(wave, wave.wave_steps, readonly), serial)


def test_out_of_place_step_keeps_the_current_level_and_zero_boundary(wave: ModuleType) -> None:
    x0 = wave.initial_state(21)["u"]
    x0[np.abs(x0) < 1e-30] = 0.0  # far from subnormal, so the kernel's flush-to-zero never acts
    dst = np.full_like(x0, np.float32(7.0))
    wave._steps_serial(x0, dst, 0, 1)
    assert np.array_equal(dst[0], x0[0])  # level 0 holds u_0, copied
    new = dst[1]  # level 1 now holds u_1
    assert not new[0].any() and not new[-1].any() and not new[:, 0].any() and not new[:, -1].any()
    inner = x0[0, 1:-1, 1:-1]
    lap = (x0[0, :-2, 1:-1] + x0[0, 2:, 1:-1] + x0[0, 1:-1, :-2] + x0[0, 1:-1, 2:]
           - np.float32(4.0) * inner)
    expected = np.float32(2.0) * inner - x0[1, 1:-1, 1:-1] + wave.C2 * lap
    assert np.array_equal(new[1:-1, 1:-1], expected)


def test_steps_flush_subnormals_and_leave_the_callers_flags_alone(wave: ModuleType) -> None:
    tiny = np.finfo(np.float32).tiny
    u = np.full((2, 16, 16), tiny / np.float32(4.0), dtype=np.float32)  # all subnormal
    u[:, 4:12, 4:12] = np.float32(1.0)
    wave._steps_serial(u, u, 0, 1)
    new = u[1, 1:-1, 1:-1]  # the interior: what the step wrote
    assert not ((new != 0) & (np.abs(new) < tiny)).any()  # no subnormal written
    half = np.float32(tiny) * np.float32(0.5)  # numpy on this thread still makes subnormals
    assert 0 < half < tiny


@pytest.mark.parametrize("t0", [2, 3])
@pytest.mark.parametrize("readonly", [False, True])
def test_out_of_place_pair_equals_a_copying_step_then_in_place_steps(
    wave: ModuleType, threads: None, readonly: bool, t0: int
) -> None:
    # An advance of two or more steps out of place runs the first two as a fused pair (no copy
    # of u_t into dst); it must leave exactly what one copying step and in-place steps leave,
    # boundary included (here not zero, so a boundary the pair forgot would show).
    x0 = _x0(wave)
    x0[:, 0, :] = np.float32(0.25)
    x0[:, :, -1] = np.float32(-0.5)
    src = x0.copy()
    src.flags.writeable = not readonly
    for m in (2, 3, 6):
        expected = np.full_like(x0, np.float32(7.0))
        wave._steps_serial(src, expected, t0, t0 + 1)  # one step: the copying path
        wave._steps_serial(expected, expected, t0 + 1, t0 + m)
        for steps in (wave._steps_serial, wave._steps_parallel):
            dst = np.full_like(x0, np.float32(7.0))
            steps(src, dst, t0, t0 + m)
            assert np.array_equal(dst, expected), (steps.__name__, m)
    assert np.array_equal(src, x0)  # the source is only read


@pytest.mark.parametrize("t", [7, 8])
def test_paired_adjoint_runs_two_reverse_steps_as_two_calls_would(wave: ModuleType, t: int) -> None:
    """reverse_pair (one pass over memory for steps t and t - 1) is bitwise the two steps, with
    u_{t-1} read from x_t's other level; the serial advances, fused two steps a pass, are checked
    against the parallel ones above."""
    u = _x0(wave)
    wave._steps_serial(u, u, 0, t)  # x_t: u_t in level t % 2, u_{t-1} in the other
    u.flags.writeable = False
    rng = np.random.default_rng(t)
    one, two = wave.PairedAdjoint(37), wave.PairedAdjoint(37)
    for op in (one, two):
        op.lam[...] = rng.standard_normal(op.lam.shape).astype(np.float32)
        op.grad[...] = rng.standard_normal(op.grad.shape).astype(np.float32)
        rng = np.random.default_rng(t)  # the same start for both
    start = one.grad.copy()
    one.reverse({"u": u}, t)
    one.reverse({"u": u}, t - 1)
    two.reverse_pair({"u": u}, t)
    assert np.array_equal(one.lam, two.lam) and np.array_equal(one.grad, two.grad)
    assert not np.array_equal(one.grad, start)  # the steps changed it
