"""``amcheck demo``: full waveform inversion of a synthetic section with checkpointed gradients.

What it runs
------------
1. A 2-D velocity model built in code (:func:`amcheck.kernels.layered_salt_model`: water,
   layered sediments, a salt-like body), a surface survey of several shots, and the observed
   data of the true model (:func:`amcheck.kernels.forward_modeling`).
2. The FWI gradient of a smoothed starting model, shot after shot, through
   :func:`amcheck.kernels.fwi_gradient`: the forward wavefield goes into a RAM budget that is a
   small fraction of what storing every state would take, plus a zarr store on disk
   (:class:`amcheck.storage.ZarrTier`), with the asynchronous multistage strategy (disk
   checkpoints every ``interval`` steps, written while the computation goes on; Revolve in RAM
   inside each segment).
3. The same gradient with every state kept in RAM ("store-all"), when that fits in a quarter of
   this machine's memory: it must be bitwise equal (uncompressed checkpoints, deterministic
   kernels), and it gives the time to compare with.
4. A few iterations of L-BFGS-B (scipy) on the squared slowness below the water layer, within
   velocity bounds, each function evaluation one checkpointed gradient per shot; the misfit falls.
5. Pictures and numbers in the output folder: ``model.png``, ``gradient.png``, ``misfit.png``,
   ``timeline.png`` (compute and I/O lanes of one shot's gradient) and ``summary.json``.

Shots are independent and run one after another in this process. The sizes (:data:`SIZES`) are
chosen so that the default run takes one to two minutes on two cores and ``--small`` a few
seconds.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np

from amcheck._bytes import ByteSize, format_bytes, parse_bytes, physical_memory
from amcheck._demo_fwi import VMAX, Objective, invert
from amcheck._demo_report import Bars, Echo, Totals, jsonable, machine_info, summary_table
from amcheck._errors import InvalidArgumentError
from amcheck._validate import check_choice, check_int

__all__ = ["SIZES", "DemoConfig", "DemoResult", "DemoSize", "run_demo"]

#: Strategies the demo can run with (the disk ones use the zarr tier).
DEMO_STRATEGIES: Final = ("async_multistage", "two_level", "revolve", "auto")

@dataclass(frozen=True, slots=True)
class DemoSize:
    """The problem size of a demo run.

    Attributes
    ----------
    shape, spacing
        Grid points ``(nz, nx)`` and spacing in m of the physical model.
    nbl, space_order
        Absorbing layer width (points) and accuracy of the Laplacian.
    tn, f0
        Recording time (ms) and Ricker peak frequency (kHz).
    smoothing
        Gaussian width (m) that turns the true model into the starting model.
    shots, iterations
        Default number of shots and L-BFGS-B iterations.
    ram_fraction
        Default RAM budget as a fraction of one shot's store-all memory.
    """

    shape: tuple[int, int]
    spacing: float
    nbl: int
    space_order: int
    tn: float
    f0: float
    smoothing: float
    shots: int
    iterations: int
    ram_fraction: float


#: The two built-in sizes: ``"default"`` (one to two minutes on two cores) and ``"small"``
#: (CI and tests: a few seconds once numba's cache is warm).
SIZES: Final[dict[str, DemoSize]] = {
    "default": DemoSize((101, 301), 10.0, 40, 8, 1500.0, 0.008, 150.0, 6, 5, 1 / 40),
    "small": DemoSize((41, 121), 25.0, 20, 8, 1000.0, 0.006, 250.0, 2, 3, 1 / 20),
}


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Everything a demo run needs; ``None`` fields take the size's defaults.

    Attributes
    ----------
    out
        Output folder (created).
    size
        ``"default"`` or ``"small"``.
    shots, iterations
        Number of shots (>= 1) and L-BFGS-B iterations (>= 0).
    ram
        RAM budget for states per gradient: bytes, ``"16 MiB"`` or ``"25%"`` (of physical
        memory); default the size's ``ram_fraction`` of one shot's store-all memory.
    disk
        Directory in which the temporary zarr store is made (default the system's temporary
        directory); it is removed afterwards.
    compression
        Codec of the zarr store (``"zstd"``, ``"zfp:tol=1e-9"``, ...); ``None`` stores raw bytes.
        With a lossy codec the gradient is no longer bitwise equal to store-all.
    strategy
        ``"async_multistage"`` (default), ``"two_level"``, ``"revolve"`` (RAM only, no disk) or
        ``"auto"``.
    interval
        Steps between disk checkpoints; default the Checkpointer's.
    compare
        Also compute the store-all gradient (when it fits in a quarter of physical memory).
    progress
        Show progress bars (on stderr, only when it is a terminal).
    """

    out: Path = Path("amcheck-demo")
    size: str = "default"
    shots: int | None = None
    iterations: int | None = None
    ram: ByteSize | None = None
    disk: Path | None = None
    compression: str | None = None
    strategy: str = "async_multistage"
    interval: int | None = None
    compare: bool = True
    progress: bool = True


@dataclass(slots=True)
class DemoResult:
    """What :func:`run_demo` computed: the summary written to ``summary.json`` and the arrays."""

    summary: dict[str, Any]
    vp_true: np.ndarray
    vp_start: np.ndarray
    vp_final: np.ndarray
    gradient: np.ndarray
    gradient_store_all: np.ndarray | None
    misfits: list[float] = field(default_factory=list)


class _Survey:
    """The models, geometries and observed data of a run."""

    def __init__(self, size: DemoSize, shots: int) -> None:
        from amcheck.kernels import (
            Model,
            layered_salt_model,
            smooth_model,
            surface_survey,
            water_rows,
        )

        self.size = size
        self.vp_true = layered_salt_model(size.shape, size.spacing)
        self.vp_start = smooth_model(self.vp_true, size.smoothing, size.spacing)
        spacing = (size.spacing, size.spacing)
        self.true_model = Model(self.vp_true, spacing, nbl=size.nbl,
                                space_order=size.space_order, damping_velocity=VMAX)
        self.start_model = self.true_model.with_vp(self.vp_start)
        self.geometries = surface_survey(self.true_model, shots, tn=size.tn, f0=size.f0,
                                         vmax=VMAX)
        self.water = water_rows(self.vp_true)
        self.d_obs: list[np.ndarray] = []

    @property
    def n_steps(self) -> int:
        return self.geometries[0].n_steps

    @property
    def nt(self) -> int:
        return self.geometries[0].nt


def _state_spec(survey: _Survey) -> Any:
    from amcheck.kernels import AcousticForward

    return AcousticForward(survey.start_model, survey.geometries[0]).spec


class _Gradients:
    """Runs one checkpointed (or store-all) gradient over every shot and sums it."""

    def __init__(self, survey: _Survey, *, ram: int, disk: Path | None,
                 compression: str | None, strategy: str, interval: int | None,
                 progress: bool) -> None:
        self.survey = survey
        self.ram = ram
        self.disk = disk
        self.compression = compression
        self.strategy = strategy
        self.interval = interval
        self.progress = progress
        self.evaluations = 0
        self.first_timeline: Any = None

    def __call__(self, vp: np.ndarray, label: str, *, store_all_ram: int | None = None
                 ) -> tuple[float, np.ndarray, Totals]:
        from amcheck.kernels import fwi_gradient

        survey = self.survey
        model = survey.start_model.with_vp(vp)
        totals = Totals(measured=self.interval is None)
        misfit = 0.0
        grad = np.zeros(survey.vp_true.shape)
        bars = Bars(label, len(survey.geometries) * survey.n_steps, self.progress)
        try:
            for geometry, d_obs in zip(survey.geometries, survey.d_obs):
                if store_all_ram is not None:
                    # every state, step by step: the reference the pairs of steps and the
                    # checkpoints must match bit for bit
                    result = fwi_gradient(model, geometry, d_obs, ram=store_all_ram,
                                          strategy="store_all", progress=bars, timeline=False,
                                          pairs=False)
                else:
                    result = fwi_gradient(model, geometry, d_obs, ram=self.ram, disk=self.disk,
                                          compression=self.compression,
                                          strategy=self.strategy, interval=self.interval,
                                          progress=bars)
                    if self.first_timeline is None:
                        self.first_timeline = result.timeline
                misfit += result.misfit
                grad += result.gradient
                totals.add(result)
        finally:
            bars.close()
        if store_all_ram is None:  # the reference is not one of the inversion's gradients
            self.evaluations += 1
        return misfit, grad, totals


def _warm_up(size: DemoSize) -> None:
    """Compile (or load from numba's cache) every kernel the run uses, on a tiny model."""
    import numba

    from amcheck.kernels import Geometry, Model, forward_modeling, fwi_gradient

    vp = np.full((24, 24), 2.0)
    model = Model(vp, (size.spacing, size.spacing), nbl=4, space_order=size.space_order)
    pos = [[2 * size.spacing, 12 * size.spacing]]
    geometry = Geometry(model, pos, pos, t0=0.0, tn=40 * model.critical_dt, f0=size.f0)
    d = forward_modeling(model, geometry)
    state = 2 * int(np.prod(model.grid_shape)) * 4
    # Revolve with few slots: read-only checkpoints and in-place advances, as in the real run;
    # on numba's threads and on one fewer, where the kernels run their serial variants: the
    # real run's sweeps with disk traffic start on one fewer (compute_threads=None), and loading
    # those variants from numba's cache took 1 s inside its first advance.
    threads = numba.get_num_threads()
    for count in sorted({threads, max(threads - 1, 1)}):
        numba.set_num_threads(count)
        try:
            fwi_gradient(model, geometry, d * 0.5, ram=8 * state + 4096, strategy="revolve",
                         timeline=False)
        finally:
            numba.set_num_threads(threads)


def _disk_dir(parent: Path | None) -> Path:
    """The directory in which each gradient's Checkpointer makes its temporary zarr store (it
    creates a missing one, and removes what it created)."""
    folder = Path(tempfile.gettempdir()) if parent is None else Path(parent).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"--disk must be a directory, got the file {str(folder)!r}")
    return folder


def _check_budget(survey: _Survey, *, ram: int, disk: Path | None, compression: str | None,
                  strategy: str, interval: int | None) -> None:
    """Raise BudgetError (or InvalidArgumentError) now, before any work, if ``ram`` is too small."""
    from amcheck import Checkpointer
    from amcheck.kernels import AcousticAdjoint, AcousticForward

    fwd = AcousticForward(survey.start_model, survey.geometries[0])
    Checkpointer(fwd, AcousticAdjoint(fwd), fwd.initial_state(), fwd.n_steps, ram=ram,
                 disk=disk, compression=compression, strategy=strategy,
                 interval=interval).close()


def _check_config(config: DemoConfig) -> tuple[DemoSize, int, int]:
    name = check_choice("size", config.size, tuple(SIZES))
    size = SIZES[name]
    shots = size.shots if config.shots is None else check_int("shots", config.shots, minimum=1)
    iterations = (size.iterations if config.iterations is None
                  else check_int("iterations", config.iterations, minimum=0))
    check_choice("strategy", config.strategy, DEMO_STRATEGIES)
    if config.interval is not None:
        check_int("interval", config.interval, minimum=1)
        if config.strategy == "revolve":
            raise InvalidArgumentError("--interval applies to the disk strategies, not revolve")
    if config.compression is not None and config.strategy == "revolve":
        raise InvalidArgumentError(
            "--compression applies to the disk checkpoints; strategy revolve uses none")
    if config.disk is not None and config.strategy == "revolve":
        raise InvalidArgumentError(
            f"--disk {config.disk} would not be used: strategy revolve keeps every checkpoint "
            "in RAM")
    if config.strategy != "revolve":
        _disk_dir(config.disk)  # now, before the report starts
    return size, shots, iterations


def run_demo(config: DemoConfig, stream: TextIO | None = None, *, quiet: bool = False
             ) -> DemoResult:
    """Run the demo (see the module docstring) and write its outputs into ``config.out``.

    Parameters
    ----------
    config
        Sizes and options.
    stream
        Where the report goes (default ``sys.stdout``); progress bars go to stderr.
    quiet
        Print no report.

    Returns
    -------
    DemoResult
        The summary (as written to ``summary.json``) and the models and gradients.

    Raises
    ------
    InvalidArgumentError
        A bad option, e.g. ``--disk`` that is not a directory or an unknown codec.
    BudgetError
        ``ram`` below what the strategy needs.
    """
    from amcheck._strategy import slot_size
    from amcheck.kernels import forward_modeling
    from amcheck.schedules import Paired, Revolve, simulate

    started = time.perf_counter()
    size, shots, iterations = _check_config(config)
    echo = Echo(None if quiet else (sys.stdout if stream is None else stream))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    survey = _Survey(size, shots)
    spec = _state_spec(survey)
    state_bytes = slot_size(spec)
    n = survey.n_steps
    store_all_bytes = (n + 1) * state_bytes
    ram = (max(int(store_all_bytes * size.ram_fraction), 8 * state_bytes) if config.ram is None
           else parse_bytes(config.ram, "ram"))
    nz, nx = size.shape
    geometry = survey.geometries[0]
    echo("amcheck demo: full waveform inversion of a synthetic section (sediments and salt)")
    echo(f"  model    {nz} x {nx} points at {size.spacing:g} m "
         f"({(nz - 1) * size.spacing / 1000:.2f} x {(nx - 1) * size.spacing / 1000:.2f} km), "
         f"absorbing layer {size.nbl} points, space order {size.space_order}")
    echo(f"  survey   {shots} shot{'s' if shots > 1 else ''}, {geometry.nrec} receivers, "
         f"{size.tn:g} ms, {n} steps of {geometry.dt:.4g} ms, {size.f0 * 1000:g} Hz Ricker")
    echo(f"  state    {format_bytes(state_bytes)} per step; store-all needs "
         f"{format_bytes(store_all_bytes)} per shot")
    echo(f"  RAM      {format_bytes(ram)} for states "
         f"({100 * ram / store_all_bytes:.1f}% of store-all)")

    disk = None if config.strategy == "revolve" else _disk_dir(config.disk)
    if disk is not None:
        codec = config.compression or "no compression"
        echo(f"  disk     a temporary zarr store per gradient in {disk}/amcheck-* ({codec})")
    _check_budget(survey, ram=ram, disk=disk, compression=config.compression,
                  strategy=config.strategy, interval=config.interval)
    _warm_up(size)
    t = time.perf_counter()
    for g in survey.geometries:
        survey.d_obs.append(forward_modeling(survey.true_model, g))
    observed_seconds = time.perf_counter() - t
    echo(f"  observed data of the true model: {shots} shot{'s' if shots > 1 else ''} in "
         f"{observed_seconds:.1f} s")
    gradients = _Gradients(survey, ram=ram, disk=disk, compression=config.compression,
                           strategy=config.strategy, interval=config.interval,
                           progress=config.progress)
    # 1. The showcase gradient, checkpointed.
    f0, g0, first = gradients(survey.vp_start, "gradient")
    strategy_line = f"  strategy {first.strategy}: {first.slots} RAM slots"
    if first.disk_text:
        strategy_line += f", {first.disk_text}"
    echo(strategy_line)
    echo(f"  gradient (checkpointed): {first.seconds:.2f} s, recompute factor "
         f"{first.recompute_factor:.3f}, peak RAM {format_bytes(first.peak_ram_bytes)}, "
         f"disk written {format_bytes(first.bytes_written)}")
    # 2. Store-all, where it fits.
    g_all: np.ndarray | None = None
    all_totals: Totals | None = None
    store_all_ram = store_all_bytes + 4 * state_bytes
    fits = store_all_ram <= physical_memory() // 4
    if config.compare and fits:
        _, g_all, all_totals = gradients(survey.vp_start, "store-all",
                                         store_all_ram=store_all_ram)
        echo(f"  gradient (store-all):    {all_totals.seconds:.2f} s, "
             f"peak RAM {format_bytes(all_totals.peak_ram_bytes)}")
    elif config.compare:
        echo(f"  store-all skipped: it needs {format_bytes(store_all_ram)}, more than a "
             "quarter of this machine's memory")
    equal = None if g_all is None else bool(np.array_equal(g0, g_all))
    max_rel = (None if g_all is None
               else float(np.max(np.abs(g0 - g_all)) / max(float(np.max(np.abs(g_all))),
                                                          1e-300)))
    if g_all is not None:
        echo(f"  gradients equal: {'bitwise' if equal else 'no'} "
             f"(max |difference| / max |gradient| = {max_rel:.3g})")
    # 3. FWI iterations.
    free = np.zeros(size.shape, dtype=bool)
    free[survey.water:] = True
    m0 = 1.0 / survey.vp_start**2
    objective = Objective(gradients, (f0, g0), m0, free)
    objective.totals.merge(first)  # the first evaluation is the showcase gradient
    vp_final, fwi = invert(objective, iterations, echo)

    # 4. Outputs.
    from amcheck import _demo_plots as plots

    timeline_note = ""
    if gradients.first_timeline is not None and len(gradients.first_timeline):
        gradients.first_timeline.plot(
            out / "timeline.png", title=f"shot 1 gradient, {first.strategy}")
    else:
        timeline_note = " (no events recorded)"
    plots.plot_models(out / "model.png", survey, vp_final)
    plots.plot_gradient(out / "gradient.png", survey, g0, g_all)
    plots.plot_misfit(out / "misfit.png", fwi["misfit"])

    # Revolve with the same RAM, predicted by simulate: what the disk buys. Over pairs of steps,
    # as the Checkpointer plans it for this adjoint (it declares reverse_from_next).
    revolve_slots = max(ram // state_bytes - 2, 1)
    pairs = Paired.pairs(n)
    revolve_factor = simulate(Paired(Revolve(pairs, min(revolve_slots, pairs)), n)).recompute_factor
    summary: dict[str, Any] = {
        "amcheck_demo": 1,
        "config": jsonable(asdict(config)),
        "machine": machine_info(),
        "problem": {
            "shape": list(size.shape), "spacing_m": size.spacing, "nbl": size.nbl,
            "space_order": size.space_order, "shots": shots, "receivers": geometry.nrec,
            "tn_ms": size.tn, "f0_khz": size.f0, "n_steps": n, "dt_ms": geometry.dt,
            "state_bytes": state_bytes, "store_all_bytes": store_all_bytes,
        },
        "ram_budget_bytes": ram,
        "ram_fraction_of_store_all": ram / store_all_bytes,
        "gradient": {
            "checkpointed": first.to_dict(),
            "store_all": None if all_totals is None else all_totals.to_dict(),
            "equal_bitwise": equal,
            "max_relative_difference": max_rel,
            "time_ratio": (None if all_totals is None or all_totals.seconds <= 0
                           else first.seconds / all_totals.seconds),
            "revolve_same_ram_recompute_factor": revolve_factor,
        },
        "fwi": fwi | {"all_evaluations": objective.totals.to_dict()},
        "observed_data_seconds": observed_seconds,
        "seconds": time.perf_counter() - started,
        "outputs": ["model.png", "gradient.png", "misfit.png", "timeline.png", "summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    for line in summary_table(summary, first, all_totals, timeline_note, out):
        echo(line)
    return DemoResult(summary, survey.vp_true, survey.vp_start, vp_final, g0, g_all,
                      list(fwi["misfit"]))

