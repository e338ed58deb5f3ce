"""`amcheck demo --small` end to end, the synthetic models, and fwi_gradient's GradientResult."""

from __future__ import annotations

import io
import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from amcheck.kernels import (
    WATER_VELOCITY,
    AcousticAdjoint,
    AcousticForward,
    Geometry,
    GradientResult,
    Model,
    forward_modeling,
    fwi_gradient,
    layered_salt_model,
    smooth_model,
    store_all_sweep,
    surface_survey,
    water_rows,
)

import amcheck
from amcheck._demo import SIZES, DemoConfig, DemoResult, _disk_dir, run_demo

PNG = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("model.png", "gradient.png", "misfit.png", "timeline.png", "summary.json")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, Path, str]:
    out = tmp_path_factory.mktemp("demo") / "amcheck-demo"
    report = io.StringIO()
    result = run_demo(DemoConfig(out=out, size="small", progress=False), stream=report)
    return result, out, report.getvalue()


def test_small_demo_writes_every_output(small: tuple[DemoResult, Path, str]) -> None:
    _, out, _ = small
    for name in OUTPUTS:
        path = out / name
        assert path.is_file(), name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG, name
            assert path.stat().st_size > 5_000, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"] == list(OUTPUTS)


def test_small_demo_misfit_decreases(small: tuple[DemoResult, Path, str]) -> None:
    result, out, _ = small
    misfit = json.loads((out / "summary.json").read_text())["fwi"]["misfit"]
    assert misfit == result.misfits
    assert len(misfit) == SIZES["small"].iterations + 1
    # L-BFGS-B accepts an iterate only when the misfit fell: strictly decreasing.
    assert all(b < a for a, b in itertools.pairwise(misfit)), misfit
    assert misfit[-1] < 0.5 * misfit[0]


def test_small_demo_gradient_equals_store_all_bitwise(small: tuple[DemoResult, Path, str]) -> None:
    result, out, report = small
    assert result.gradient_store_all is not None
    assert np.array_equal(result.gradient, result.gradient_store_all)
    assert np.all(np.isfinite(result.gradient)) and np.any(result.gradient != 0.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gradient"]["equal_bitwise"] is True
    assert summary["gradient"]["max_relative_difference"] == 0.0
    assert "bitwise equal" in report


def test_small_demo_gradient_equals_plain_store_all_sweep(
    small: tuple[DemoResult, Path, str],
) -> None:
    # An independent reference: every state in a Python list, no Checkpointer, shot by shot.
    result, _, _ = small
    size = SIZES["small"]
    true = Model(result.vp_true, (size.spacing,) * 2, nbl=size.nbl,
                 space_order=size.space_order, damping_velocity=4.8)
    start = true.with_vp(result.vp_start)
    total = np.zeros(size.shape)
    for geometry in surface_survey(true, size.shots, tn=size.tn, f0=size.f0, vmax=4.8):
        d_obs = forward_modeling(true, geometry)
        fwd = AcousticForward(start, geometry)
        adj = AcousticAdjoint(fwd)
        store_all_sweep(fwd, lambda final, f=fwd, a=adj, d=d_obs: a.start(f.data - d, final),
                        adj.reverse)
        total += adj.gradient_m()
    assert np.array_equal(total, result.gradient)


def test_small_demo_summary_numbers(small: tuple[DemoResult, Path, str]) -> None:
    _, out, _ = small
    summary = json.loads((out / "summary.json").read_text())
    problem = summary["problem"]
    size = SIZES["small"]
    assert problem["shape"] == list(size.shape)
    assert problem["shots"] == size.shots
    n = problem["n_steps"]
    assert problem["store_all_bytes"] == (n + 1) * problem["state_bytes"]
    ckp = summary["gradient"]["checkpointed"]
    assert ckp["strategy"] == "async_multistage"
    assert ckp["n_steps"] == ckp["reverse_steps"] == size.shots * n
    assert ckp["forward_steps"] >= size.shots * n
    assert ckp["recompute_factor"] == pytest.approx(ckp["forward_steps"] / (size.shots * n))
    # A small fraction of store-all, within the budget, and the disk really used.
    assert ckp["peak_ram_bytes"] <= summary["ram_budget_bytes"]
    assert ckp["peak_ram_bytes"] < 0.1 * problem["store_all_bytes"]
    assert ckp["disk_writes"] == ckp["disk_reads"] > 0
    assert ckp["bytes_written"] == ckp["bytes_read"] > 0
    store_all = summary["gradient"]["store_all"]
    assert store_all["forward_steps"] == size.shots * n
    assert store_all["peak_ram_bytes"] >= problem["store_all_bytes"]
    fwi = summary["fwi"]
    assert fwi["evaluations"][-1] >= fwi["iterations"]
    # Every checkpointed gradient of the run, the first included, summed in full (they counted
    # steps and bytes only; reverse steps and disk checkpoints stayed 0); the store-all
    # reference is not one of them.
    every = fwi["all_evaluations"]
    assert every["n_steps"] == every["reverse_steps"] == fwi["evaluations"][-1] * size.shots * n
    assert every["disk_writes"] == every["disk_reads"] >= fwi["evaluations"][-1]
    assert every["strategy"] == "async_multistage" and every["peak_ram_bytes"] > 0


def test_demo_without_iterations_counts_one_gradient(tmp_path: Path) -> None:
    report = io.StringIO()
    run_demo(DemoConfig(out=tmp_path / "d", size="small", progress=False, iterations=0),
             stream=report)
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["fwi"]["evaluations"] == [1]
    assert "in 0 iterations, 1 gradient\n" in report.getvalue()


def test_demo_rejects_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="shots"):
        run_demo(DemoConfig(out=tmp_path, size="small", shots=0), quiet=True)
    with pytest.raises(amcheck.InvalidArgumentError, match="size"):
        run_demo(DemoConfig(out=tmp_path, size="huge"), quiet=True)
    # a missing --disk is made by each gradient's Checkpointer, as the API's disk= is
    assert _disk_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(amcheck.InvalidArgumentError, match="--disk must be a directory, got the"):
        run_demo(DemoConfig(out=tmp_path, size="small", disk=tmp_path / "a-file"), quiet=True)
    (tmp_path / "a-file").unlink()
    with pytest.raises(amcheck.InvalidArgumentError, match="interval"):
        run_demo(DemoConfig(out=tmp_path, size="small", strategy="revolve", interval=5),
                 quiet=True)
    with pytest.raises(amcheck.InvalidArgumentError, match="--disk .* would not be used"):
        run_demo(DemoConfig(out=tmp_path, size="small", strategy="revolve", disk=tmp_path),
                 quiet=True)
    with pytest.raises(amcheck.BudgetError, match="ram"):
        run_demo(DemoConfig(out=tmp_path, size="small", ram=1000), quiet=True)
    assert not any(tmp_path.iterdir())  # nothing written before the checks


# -- synthetic models -------------------------------------------------------------------------


def test_layered_salt_model() -> None:
    vp = layered_salt_model((60, 150), 10.0)
    assert vp.shape == (60, 150) and vp.dtype == np.float64
    rows = water_rows(vp)
    assert rows == round(0.12 * 59) + 1 or rows == round(0.12 * 59)
    assert np.all(vp[:rows] == WATER_VELOCITY)
    assert set(np.unique(vp)) <= {1.5, 1.75, 2.0, 2.3, 2.65, 3.0, 4.5}
    assert np.sum(vp == 4.5) > 0.02 * vp.size  # the salt body
    plain = layered_salt_model((60, 150), 10.0, salt=False)
    assert not np.any(plain == 4.5)
    # Velocity increases with depth in the sediments away from the salt.
    column = plain[:, 10]
    assert np.all(np.diff(column) >= 0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"shape": (10, 100)}, "shape"), ({"shape": (40, 50, 60)}, "shape"),
     ({"spacing": 0.0}, "spacing"), ({"water_depth": 0.7}, "water_depth")],
)  # fmt: skip
def test_layered_salt_model_errors(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match=words):
        layered_salt_model(**kwargs)  # type: ignore[arg-type]


def test_smooth_model_keeps_water_and_smooths() -> None:
    vp = layered_salt_model((60, 150), 10.0)
    v0 = smooth_model(vp, 100.0, 10.0)
    rows = water_rows(vp)
    assert water_rows(v0) == rows
    below = v0[rows:]
    # Jumps of the true model (up to 1.5 km/s) become gentle: under 0.15 km/s per cell.
    assert np.max(np.abs(np.diff(below, axis=0))) < 0.15
    assert np.max(np.abs(np.diff(below, axis=1))) < 0.15
    assert below.min() >= vp[rows:].min() - 1e-12 and below.max() <= vp.max() + 1e-12
    with pytest.raises(amcheck.InvalidArgumentError, match="sigma"):
        smooth_model(vp, 0.0, 10.0)


def test_surface_survey() -> None:
    model = Model(layered_salt_model((40, 120), 20.0), (20.0, 20.0), nbl=10, space_order=4)
    shots = surface_survey(model, 3, tn=500.0, f0=0.008, vmax=5.0)
    assert len(shots) == 3
    assert len({(g.nt, g.dt) for g in shots}) == 1
    xs = [g.src_positions[0, 1] for g in shots]
    assert xs == sorted(xs) and xs[0] > 0 and xs[-1] < 119 * 20.0
    assert np.array_equal(shots[0].rec_positions, shots[2].rec_positions)
    # dt is stable up to vmax: a model at 5 km/s passes, a faster one does not.
    shots[0].check_model(model.with_vp(np.full((40, 120), 5.0)))
    with pytest.raises(amcheck.InvalidArgumentError, match="unstable"):
        shots[0].check_model(model.with_vp(np.full((40, 120), 6.0)))
    with pytest.raises(amcheck.InvalidArgumentError, match="vmax"):
        surface_survey(model, 2, tn=500.0, f0=0.008, vmax=2.0)
    with pytest.raises(amcheck.InvalidArgumentError, match="n_shots"):
        surface_survey(model, 0, tn=500.0, f0=0.008)


# -- GradientResult and progress --------------------------------------------------------------


@pytest.fixture(scope="module")
def shot() -> tuple[Model, Geometry, np.ndarray]:
    vp = layered_salt_model((30, 60), 20.0)
    true = Model(vp, (20.0, 20.0), nbl=8, space_order=8)  # the demo's kernels: no extra compile
    geometry = Geometry(true, [[40.0, 600.0]], [[40.0, x] for x in range(0, 1181, 40)],
                        tn=400.0, f0=0.010)
    start = true.with_vp(smooth_model(vp, 80.0, 20.0))
    return start, geometry, forward_modeling(true, geometry)


def test_gradient_result_unpacks_and_counts_progress(
    shot: tuple[Model, Geometry, np.ndarray],
) -> None:
    model, geometry, d_obs = shot
    counts: dict[str, int] = {}

    def progress(phase: str, steps: int) -> None:
        counts[phase] = counts.get(phase, 0) + steps

    state = 2 * int(np.prod(model.grid_shape)) * 4
    result = fwi_gradient(model, geometry, d_obs, ram=7 * state + 4096, strategy="revolve",
                          progress=progress)
    misfit, grad = result
    assert isinstance(result, GradientResult) and isinstance(result, tuple)
    assert misfit == result.misfit and grad is result.gradient
    n = geometry.n_steps
    stats = result.stats
    assert result.strategy == "revolve" and result.slots is not None
    assert stats.n_steps == n and stats.reverse_steps == n
    assert counts == {"forward": n, "recompute": stats.forward_steps - n, "reverse": n}
    assert stats.forward_steps > n  # Revolve recomputed
    assert result.timeline is not None and len(result.timeline) > 0
    assert result.d_syn.shape == (geometry.nt, geometry.nrec)
    assert misfit == pytest.approx(0.5 * float(np.sum((result.d_syn - d_obs) ** 2)))
    # Equal to store-all, bitwise, and a pickle is the result again (tests/test_kernels_fwi_api.py).
    all_misfit, all_grad = fwi_gradient(model, geometry, d_obs, ram="1 GiB",
                                        strategy="store_all", timeline=False)
    assert all_misfit == misfit and np.array_equal(all_grad, grad)
    restored = pickle.loads(pickle.dumps(result))
    assert type(restored) is GradientResult and np.array_equal(restored[1], grad)


def test_fwi_gradient_through_a_zarr_store(
    shot: tuple[Model, Geometry, np.ndarray], tmp_path: Path,
) -> None:
    model, geometry, d_obs = shot
    state = 2 * int(np.prod(model.grid_shape)) * 4
    result = fwi_gradient(model, geometry, d_obs, ram=10 * state + 4096, disk=tmp_path,
                          strategy="async_multistage", interval=16)
    reference = fwi_gradient(model, geometry, d_obs, ram="1 GiB", strategy="store_all")
    assert result.misfit == reference.misfit
    assert np.array_equal(result.gradient, reference.gradient)
    assert result.stats.writes["disk"] > 0
    assert result.stats.bytes_written["disk"] == result.stats.bytes_read["disk"] > 0
    assert not any(tmp_path.iterdir())  # the Checkpointer removed its store


def test_fwi_gradient_rejects_a_non_callable_progress(
    shot: tuple[Model, Geometry, np.ndarray],
) -> None:
    model, geometry, d_obs = shot
    with pytest.raises(amcheck.ArgumentTypeError, match="progress"):
        fwi_gradient(model, geometry, d_obs, progress=3)  # type: ignore[arg-type]


def test_a_given_interval_is_not_called_measured(tmp_path: Path) -> None:
    report = io.StringIO()
    run_demo(DemoConfig(out=tmp_path / "d", size="small", progress=False, iterations=0,
                        interval=10, compare=False), stream=report)
    assert "the interval k given was 10" in report.getvalue()
    assert "measured as it runs" not in report.getvalue()
