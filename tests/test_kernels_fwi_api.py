"""fwi_gradient's result (interval, pickling), progress, src_data, overflow, and the time axis."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.kernels import (
    AcousticForward,
    Geometry,
    Model,
    UnstableTimeStepError,
    forward_modeling,
    fwi_gradient,
    ricker,
)
from amcheck.kernels import _fwi as fwi_module
from amcheck.storage import slot_layout

import amcheck
from amcheck.schedules import Paired


def _shot(dtype: type = np.float32, shape: tuple[int, int] = (28, 34), **geometry: Any
          ) -> tuple[Model, Model, Geometry]:
    """A true model with a fast blob, the starting model without it, and one shot."""
    nx, ny = shape
    x = np.arange(nx)[:, None]
    y = np.arange(ny)[None, :]
    vp0 = np.full(shape, 1.5) + 0.02 * x
    blob = 0.3 * np.exp(-((x - nx // 2) ** 2 + (y - ny // 2) ** 2) / 20.0)
    true = Model(vp0 + blob, (10.0, 10.0), nbl=8, space_order=4, dtype=dtype,
                 damping_velocity=2.5)
    rec = [[10.0 * (nx - 1) - 15.0, yy] for yy in np.linspace(5.0, 10.0 * (ny - 1) - 5.0, 12)]
    geometry = Geometry(true, [[20.0, 5.0 * (ny - 1)]], rec, **{"tn": 350.0, "f0": 0.015,
                                                                  **geometry})
    return true, true.with_vp(vp0), geometry


# -- the result: interval, pickling ---------------------------------------------------------------

class _NextSweepInterval(amcheck.Checkpointer):
    """A Checkpointer whose ``interval`` (the one a next sweep would start with) differs from
    the one the sweep ran with, as an automatic interval's does after it moved."""

    @property
    def interval(self) -> int | None:
        return 10**6


def test_result_interval_is_the_one_the_sweep_ended_with(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    true, initial, geometry = _shot()
    d_obs = forward_modeling(true, geometry)
    monkeypatch.setattr(fwi_module, "Checkpointer", _NextSweepInterval)
    state = AcousticForward(initial, geometry).spec.nbytes
    result = fwi_gradient(initial, geometry, d_obs, ram=8 * state, disk=tmp_path,
                          strategy="async_multistage", interval=7)
    # 8: the adjoint pairs steps (reverse_from_next), so intervals are whole pairs
    assert result.interval == result.stats.interval == 8
    assert fwi_gradient(initial, geometry, d_obs, ram=8 * state).interval is None  # Revolve


def test_io_cpus_reaches_the_checkpointer(tmp_path: Path) -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("CPU affinity is Linux only")
    true, initial, geometry = _shot()
    d_obs = forward_modeling(true, geometry)
    cpu = max(os.sched_getaffinity(0))
    state = AcousticForward(initial, geometry).spec.nbytes
    for setting, expected in (([cpu], (cpu,)), ("any", None)):
        result = fwi_gradient(initial, geometry, d_obs, ram=8 * state, disk=tmp_path,
                              strategy="async_multistage", interval=8, io_cpus=setting)
        assert result.stats.io_cpus == expected


@pytest.mark.parametrize("timeline", [True, False])
def test_result_pickles_with_every_field(timeline: bool) -> None:
    """A result sent back from a worker process keeps its fields (it came back a bare pair)."""
    true, initial, geometry = _shot()
    d_obs = forward_modeling(true, geometry)
    result = fwi_gradient(initial, geometry, d_obs, ram="64 MiB", timeline=timeline)
    again = pickle.loads(pickle.dumps(result))
    assert type(again) is fwi_module.GradientResult
    misfit, grad = again
    assert misfit == result.misfit and np.array_equal(grad, result.gradient)
    np.testing.assert_array_equal(again.d_syn, result.d_syn)
    assert again.stats == result.stats
    assert again.stats.bytes_written["ram"] == result.stats.bytes_written["ram"]
    for name in ("strategy", "slots", "interval", "ram_pool_bytes", "seconds"):
        assert getattr(again, name) == getattr(result, name), name
    if timeline:
        assert result.timeline is not None and again.timeline is not None
        assert again.timeline.events == result.timeline.events
        assert len(again.timeline.events) > 0
    else:
        assert again.timeline is None


# -- sizing ram -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tn", [150.0, 151.0])
def test_store_all_ram_is_half_nt_slots_as_documented(tn: float) -> None:
    """One state is 2 prod(grid) itemsize bytes, but a RAM slot rounds it up to 4 KiB pages; over
    pairs of steps store-all needs at most nt // 2 + 2 slots (slot_layout), and as many bare
    states get Revolve (docs/kernels.md); nt of either parity."""
    true, initial, geometry = _shot(shape=(81, 80), tn=tn)
    spec = AcousticForward(initial, geometry).spec
    state = 2 * int(np.prod(initial.grid_shape)) * initial.dtype.itemsize
    slot = slot_layout(spec)[1]
    assert spec.nbytes == state < slot  # the fields are page-aligned: the slot is larger
    need = Paired.pairs(geometry.nt - 1) + 1
    assert need <= geometry.nt // 2 + 2
    d_obs = forward_modeling(true, geometry)
    assert fwi_gradient(initial, geometry, d_obs, ram=need * slot).strategy == "store_all"
    assert fwi_gradient(initial, geometry, d_obs, ram=need * state).strategy == "revolve"


def test_auto_with_a_disk_picks_revolve_for_short_runs(tmp_path: Path) -> None:
    """docs/kernels.md: with a disk, "auto" runs Revolve in RAM while n is at most about s²/2."""
    true, initial, geometry = _shot()
    d_obs = forward_modeling(true, geometry)
    slot = slot_layout(AcousticForward(initial, geometry).spec)[1]
    assert geometry.n_steps < 40**2 // 2
    result = fwi_gradient(initial, geometry, d_obs, ram=40 * slot, disk=tmp_path)
    assert result.strategy == "revolve" and result.stats.bytes_written["disk"] == 0


# -- progress -------------------------------------------------------------------------------------

class _Stop(Exception):
    pass


@pytest.mark.parametrize("phase", ["forward", "recompute", "reverse"])
@pytest.mark.parametrize("disk", [False, True])
def test_progress_exception_passes_through_unwrapped(phase: str, disk: bool,
                                                    tmp_path: Path) -> None:
    """The callback runs inside the operators; its exception came back as an OperatorError."""
    true, initial, geometry = _shot()
    d_obs = forward_modeling(true, geometry)
    raised: list[_Stop] = []

    def progress(current: str, steps: int) -> None:
        if current == phase and not raised:
            raised.append(_Stop(phase))
            raise raised[0]

    state = AcousticForward(initial, geometry).spec.nbytes
    with pytest.raises(_Stop) as caught:
        fwi_gradient(initial, geometry, d_obs, ram=6 * state, progress=progress,
                     disk=tmp_path if disk else None)
    assert caught.value is raised[0]
    assert list(tmp_path.iterdir()) == []  # the Checkpointer was reset and closed


# -- src_data -------------------------------------------------------------------------------------

def test_fwi_gradient_inverts_data_of_a_custom_wavelet() -> None:
    true, initial, geometry = _shot(np.float64)
    wavelet = 2.0 * ricker(geometry.time_values, 0.012, t_peak=120.0)
    d_obs = forward_modeling(true, geometry, wavelet[:, None])
    np.testing.assert_array_equal(d_obs, forward_modeling(true, geometry, wavelet))  # (nt,)
    assert fwi_gradient(true, geometry, d_obs, ram="64 MiB").misfit > 0  # the Ricker default
    for src in (wavelet, wavelet[:, None]):
        misfit, grad = fwi_gradient(true, geometry, d_obs, ram="64 MiB", src_data=src)
        assert misfit == 0.0 and not np.any(grad)
    _, with_src = fwi_gradient(initial, geometry, d_obs, ram="64 MiB", src_data=wavelet)
    one = AcousticForward(initial, geometry, wavelet)
    assert one.src_data.shape == (geometry.nt, 1) and np.any(with_src)


def test_src_data_checks() -> None:
    true, initial, geometry = _shot()
    d_obs = np.zeros((geometry.nt, geometry.nrec))
    with pytest.raises(amcheck.InvalidArgumentError,
                       match=r"src_data must have shape \(nt, nsrc\) = \(\d+, 1\) \(or \(nt,\) "
                       r"for one source\), got \(3,\)"):
        fwi_gradient(initial, geometry, d_obs, src_data=np.zeros(3))
    with pytest.raises(amcheck.InvalidArgumentError, match=r"src_data holds 1 values that are "
                       r"not finite"):
        fwi_gradient(initial, geometry, d_obs, src_data=np.where(
            np.arange(geometry.nt) == 4, np.nan, 0.0))
    two = Geometry(true, [[20.0, 50.0], [20.0, 100.0]], geometry.rec_positions, tn=350.0,
                   f0=0.015)
    with pytest.raises(amcheck.InvalidArgumentError,
                       match=r"src_data must have shape \(nt, nsrc\) = \(\d+, 2\)"):
        forward_modeling(true, two, np.zeros(two.nt))  # (nt,) only for one source


# -- overflow -------------------------------------------------------------------------------------

def _loud(amplitude: float) -> tuple[Model, Geometry]:
    model = Model(np.full((41, 41), 2.0), (10.0, 10.0), nbl=5)
    return model, Geometry(model, [[200.0, 200.0]], [[200.0, 210.0]], tn=200.0,
                           amplitude=amplitude)


def test_overflowing_synthetic_data_refused() -> None:
    """float32 wavefields of a 3e38 source overflow: the data were NaN, without an error."""
    model, geometry = _loud(3e38)
    overflow = (r"values of the synthetic data are not finite: the wavefield overflowed the "
                r"model's dtype float32 \(largest 3\.4e\+38\) with source samples up to "
                r"2\.99e\+38.*geometry\.amplitude")
    with pytest.raises(amcheck.InvalidArgumentError, match=overflow):
        forward_modeling(model, geometry)
    with pytest.raises(amcheck.InvalidArgumentError, match=overflow):  # not "misfit overflows"
        fwi_gradient(model, geometry, np.zeros((geometry.nt, geometry.nrec)), ram="64 MiB")


def test_overflowing_gradient_refused(tmp_path: Path) -> None:
    """A 1e30 source: finite data and misfit, but an inf/NaN gradient, without an error."""
    model, geometry = _loud(1e30)
    d = forward_modeling(model, geometry)
    assert np.isfinite(d).all()
    initial = model.with_vp(np.full((41, 41), 1.9))
    for options in ({}, {"ram": "1 MiB", "disk": tmp_path, "compression": "zfp:rtol=1e-3"}):
        with pytest.raises(amcheck.InvalidArgumentError,
                           match=r"values of the gradient are not finite: the wavefield "
                           r"overflowed the model's dtype float32 .* residual d_syn - d_obs up "
                           r"to .*float64 model"):
            fwi_gradient(initial, geometry, np.zeros_like(d), **{"ram": "64 MiB", **options})
    # float64 holds it.
    model64 = Model(np.full((41, 41), 2.0), (10.0, 10.0), nbl=5, dtype=np.float64)
    _, grad = fwi_gradient(model64.with_vp(np.full((41, 41), 1.9)), geometry,
                           np.zeros_like(d), ram="64 MiB")
    assert np.isfinite(grad).all()


# -- the time axis --------------------------------------------------------------------------------

def _still(space_order: int = 2) -> Model:
    return Model(np.full((41, 41), 2.0), (10.0, 10.0), nbl=0, space_order=space_order,
                 dtype=np.float64)


def test_critical_dt_accepted() -> None:
    """tn = 3000 dt_c: span / 3000 came out an ulp above dt_c, and the geometry was refused."""
    model = _still()
    dt = model.critical_dt
    assert (dt * 3000) / 3000 > dt  # the round-off this case is about
    geometry = Geometry(model, [[100.0, 100.0]], [[60.0, 60.0]], tn=dt * 3000, dt=dt, f0=0.02)
    assert geometry.n_steps == 3000 and geometry.dt <= dt


def test_unstable_dt_message_tells_the_two_apart() -> None:
    model = _still(8)
    dt = model.critical_dt * (1 + 1e-9)
    with pytest.raises(UnstableTimeStepError) as caught:
        Geometry(model, [[100.0, 100.0]], [[60.0, 60.0]], tn=dt * 1000, dt=dt, f0=0.02)
    given, limit = (float(v) for v in re.findall(r"dt = ([0-9.e+-]+) ms", str(caught.value)))
    assert f"{given:.6g}" == f"{limit:.6g}" and given > limit == model.critical_dt


def test_f0_at_or_above_nyquist_refused() -> None:
    model = _still()
    rec = [[60.0, 60.0]]
    with pytest.raises(amcheck.InvalidArgumentError,
                       match=r"f0 = 10\.0 kHz is at or above the Nyquist frequency 1 / \(2 dt\) "
                       r"= 0\.1575 kHz .*f0 is in kHz \(10 Hz is f0=0\.010\)"):
        Geometry(model, [[100.0, 100.0]], rec, tn=200.0, f0=10.0)  # Hz, meant 0.010
    geometry = Geometry(model, [[100.0, 100.0]], rec, tn=200.0, dt=2.0, f0=0.2499)
    assert geometry.f0 < 0.5 / geometry.dt
    with pytest.raises(amcheck.InvalidArgumentError, match="f0 = 0.25 kHz"):
        Geometry(model, [[100.0, 100.0]], rec, tn=200.0, dt=2.0, f0=0.25)
