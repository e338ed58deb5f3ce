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
chosen so that the default run takes about two minutes on two cores and ``--small`` a few
seconds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np

from amcheck._bytes import ByteSize, format_bytes, parse_bytes, physical_memory
from amcheck._errors import InvalidArgumentError
from amcheck._validate import check_choice, check_int

__all__ = ["SIZES", "DemoConfig", "DemoResult", "DemoSize", "run_demo"]

#: Strategies the demo can run with (the disk ones use the zarr tier).
DEMO_STRATEGIES: Final = ("async_multistage", "two_level", "revolve", "auto")

# Velocity bounds of the inversion (km/s): slightly below water, above the salt. The time step
# is derived from the upper bound, so every model L-BFGS-B may try is stable.
_VMIN, _VMAX = 1.4, 4.8
# The first L-BFGS-B step has unit norm in its variables; they are m scaled so that this step
# changes m by at most this fraction of its median (see _Objective). Measured: with 0.05 the
# first iteration lowered the misfit by 0.5% (default size) and 1.6% (small); with 0.3, by half.
_FIRST_STEP = 0.25


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


#: The two built-in sizes: ``"default"`` (about two minutes on two cores) and ``"small"``
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


# -- progress --------------------------------------------------------------------------------------


class _Bars:
    """Two tqdm bars (forward sweep, reverse sweep) over all shots of one gradient evaluation.

    Recomputed forward steps during the reverse sweep show as a counter on the reverse bar.
    """

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        common: dict[str, Any] = {
            "total": total,
            "unit": " steps",
            "unit_scale": False,
            "leave": False,
            "disable": None if enabled else True,  # None: only on a terminal
            "file": sys.stderr,
            "dynamic_ncols": True,
            "mininterval": 0.2,
        }
        self._forward = tqdm(desc=f"{label} forward", position=0, **common)
        self._reverse = tqdm(desc=f"{label} reverse", position=1, **common)
        self.recomputed = 0

    def __call__(self, phase: str, steps: int) -> None:
        if phase == "forward":
            self._forward.update(steps)
        elif phase == "recompute":
            self.recomputed += steps
        else:
            self._reverse.update(steps)
            if steps and self._reverse.n % 50 == 0:
                self._reverse.set_postfix(recomputed=self.recomputed, refresh=False)

    def close(self) -> None:
        self._reverse.close()
        self._forward.close()


# -- the run -------------------------------------------------------------------------------------


class _Echo:
    """Prints the run's report lines (stdout by default) and keeps them for summary.json."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, line: str = "") -> None:
        if self._stream is not None:
            print(line, file=self._stream, flush=True)


@dataclass(slots=True)
class _Totals:
    """Stats of all shots of one gradient evaluation, summed."""

    seconds: float = 0.0
    forward_steps: int = 0
    reverse_steps: int = 0
    n_steps: int = 0
    peak_ram_bytes: int = 0
    ram_pool_bytes: int = 0
    disk_writes: int = 0
    disk_reads: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    transfer_seconds: float = 0.0
    hidden_seconds: float = 0.0
    stall_seconds: float = 0.0
    strategy: str = ""
    slots: int | None = None
    intervals: list[int] = field(default_factory=list)

    def add(self, result: Any) -> None:
        stats = result.stats
        self.seconds += result.seconds
        self.forward_steps += stats.forward_steps
        self.reverse_steps += stats.reverse_steps
        self.n_steps += stats.n_steps or 0
        self.peak_ram_bytes = max(self.peak_ram_bytes, stats.peak_ram_bytes)
        self.ram_pool_bytes = max(self.ram_pool_bytes, result.ram_pool_bytes)
        self.disk_writes += stats.writes["disk"]
        self.disk_reads += stats.reads["disk"]
        self.bytes_written += stats.bytes_written["disk"]
        self.bytes_read += stats.bytes_read["disk"]
        self.stall_seconds += stats.stall_seconds
        timeline = result.timeline
        if timeline is not None:
            totals = timeline.totals()
            transfer = totals["write"] + totals["read"]
            hidden = timeline.hidden_fraction()
            if hidden is not None:
                self.transfer_seconds += transfer
                self.hidden_seconds += hidden * transfer
        self.strategy, self.slots = result.strategy, result.slots
        # The disk interval the engine ended with (it adapts k to measured step and write
        # times), else the one the Checkpointer started from.
        k = stats.interval if stats.interval is not None else result.interval
        if k is not None:
            self.intervals.append(int(k))

    @property
    def disk_text(self) -> str:
        """How often the forward sweeps wrote to disk; empty without disk checkpoints."""
        if not self.disk_writes or not self.intervals:
            return ""
        shots = len(self.intervals)
        spacing = self.n_steps / self.disk_writes
        lo, hi = min(self.intervals), max(self.intervals)
        k = str(lo) if lo == hi else f"{lo}-{hi}"
        return (f"{self.disk_writes / shots:.0f} disk checkpoints per shot, one every "
                f"{spacing:.0f} steps on average; k at the end {k}")

    @property
    def recompute_factor(self) -> float:
        return self.forward_steps / self.n_steps if self.n_steps else float("nan")

    @property
    def hidden_fraction(self) -> float | None:
        return self.hidden_seconds / self.transfer_seconds if self.transfer_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["recompute_factor"] = self.recompute_factor
        out["hidden_fraction"] = self.hidden_fraction
        return out


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
                                space_order=size.space_order, damping_velocity=_VMAX)
        self.start_model = self.true_model.with_vp(self.vp_start)
        self.geometries = surface_survey(self.true_model, shots, tn=size.tn, f0=size.f0,
                                         vmax=_VMAX)
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
                 ) -> tuple[float, np.ndarray, _Totals]:
        from amcheck.kernels import fwi_gradient

        survey = self.survey
        model = survey.start_model.with_vp(vp)
        totals = _Totals()
        misfit = 0.0
        grad = np.zeros(survey.vp_true.shape)
        bars = _Bars(label, len(survey.geometries) * survey.n_steps, self.progress)
        try:
            for geometry, d_obs in zip(survey.geometries, survey.d_obs):
                if store_all_ram is not None:
                    result = fwi_gradient(model, geometry, d_obs, ram=store_all_ram,
                                          strategy="store_all", progress=bars, timeline=False)
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
        self.evaluations += 1
        return misfit, grad, totals


class _Objective:
    """The L-BFGS-B objective: misfit and gradient in scaled squared slowness below the water.

    Variables are ``x = m[free] / scale`` with ``scale`` chosen from the first gradient g so that
    L-BFGS-B's first step, which has unit norm in x, changes m by at most ``_FIRST_STEP`` times
    its median: ``scale = _FIRST_STEP * median(m) * ||g|| / max|g|``. Misfits are divided by the
    first one, so the tolerances are relative.
    """

    def __init__(self, gradients: _Gradients, first: tuple[float, np.ndarray], m0: np.ndarray,
                 free: np.ndarray) -> None:
        self.gradients = gradients
        self.m0 = m0
        self.free = free
        f0, g0 = first
        gf = g0[free]
        norm, peak = float(np.linalg.norm(gf)), float(np.max(np.abs(gf)))
        self.scale = _FIRST_STEP * float(np.median(m0[free])) * (norm / peak if peak > 0 else 1.0)
        self.f_ref = f0 if f0 > 0 else 1.0
        self.cache: dict[bytes, tuple[float, np.ndarray]] = {self._key(self.x0): first}
        self.history: list[float] = []
        self.seconds: list[float] = []
        self.totals = _Totals()

    @property
    def x0(self) -> np.ndarray:
        x: np.ndarray = self.m0[self.free] / self.scale
        return x

    def m_of(self, x: np.ndarray) -> np.ndarray:
        m = self.m0.copy()
        m[self.free] = x * self.scale
        return m

    @staticmethod
    def _key(x: np.ndarray) -> bytes:
        return np.ascontiguousarray(x, dtype=np.float64).tobytes()

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        key = self._key(x)
        if key in self.cache:
            f, g = self.cache[key]
        else:
            vp = 1.0 / np.sqrt(self.m_of(x))
            label = f"eval {self.gradients.evaluations + 1}"
            f, g, totals = self.gradients(vp, label)
            self.cache = {key: (f, g)}
            self.totals.forward_steps += totals.forward_steps
            self.totals.n_steps += totals.n_steps
            self.totals.bytes_written += totals.bytes_written
            self.totals.bytes_read += totals.bytes_read
            self.totals.seconds += totals.seconds
        return f / self.f_ref, g[self.free] * (self.scale / self.f_ref)


def _warm_up(size: DemoSize) -> None:
    """Compile (or load from numba's cache) every kernel the run uses, on a tiny model."""
    from amcheck.kernels import Geometry, Model, forward_modeling, fwi_gradient

    vp = np.full((24, 24), 2.0)
    model = Model(vp, (size.spacing, size.spacing), nbl=4, space_order=size.space_order)
    pos = [[2 * size.spacing, 12 * size.spacing]]
    geometry = Geometry(model, pos, pos, t0=0.0, tn=40 * model.critical_dt, f0=size.f0)
    d = forward_modeling(model, geometry)
    state = 2 * int(np.prod(model.grid_shape)) * 4
    # Revolve with few slots: read-only checkpoints and in-place advances, as in the real run.
    fwi_gradient(model, geometry, d * 0.5, ram=8 * state + 4096, strategy="revolve",
                 timeline=False)


def _disk_dir(parent: Path | None) -> Path:
    """The directory in which each gradient's Checkpointer makes its temporary zarr store."""
    folder = Path(tempfile.gettempdir()) if parent is None else Path(parent)
    if not folder.exists():
        raise InvalidArgumentError(f"--disk must be an existing directory, got {str(folder)!r}")
    if not folder.is_dir():
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
    from amcheck.schedules import Revolve, simulate

    started = time.perf_counter()
    size, shots, iterations = _check_config(config)
    echo = _Echo(None if quiet else (sys.stdout if stream is None else stream))
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
    echo(f"  observed data of the true model: {shots} shots in {observed_seconds:.1f} s")
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
    all_totals: _Totals | None = None
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
    objective = _Objective(gradients, (f0, g0), m0, free)
    vp_final, fwi = _invert(objective, iterations, echo)

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

    # Revolve with the same RAM, predicted by simulate: what the disk buys.
    revolve_slots = max(ram // state_bytes - 2, 1)
    revolve_factor = simulate(Revolve(n, min(revolve_slots, n))).recompute_factor
    summary: dict[str, Any] = {
        "amcheck_demo": 1,
        "config": _jsonable(asdict(config)),
        "machine": _machine(),
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
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    for line in _table(summary, first, all_totals, timeline_note, out):
        echo(line)
    return DemoResult(summary, survey.vp_true, survey.vp_start, vp_final, g0, g_all,
                      list(fwi["misfit"]))


def _invert(objective: _Objective, iterations: int, echo: Callable[[str], None]
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """L-BFGS-B with bounds on m; returns the final velocity and the history."""
    from scipy.optimize import minimize

    start = objective.cache[objective._key(objective.x0)][0]
    history = [start]
    evaluations = [objective.gradients.evaluations]
    seconds = [0.0]
    echo(f"FWI: L-BFGS-B, {iterations} iteration{'s' if iterations != 1 else ''}, "
         f"velocity bounds {_VMIN}-{_VMAX} km/s below the water layer")
    echo(f"  iteration 0  misfit {start:.6e}")
    if iterations == 0:
        vp = 1.0 / np.sqrt(objective.m0)
        return vp, {"misfit": history, "evaluations": evaluations, "seconds": seconds,
                    "iterations": 0, "message": "no iterations requested"}
    t0 = time.perf_counter()

    def callback(intermediate_result: Any) -> None:
        f = float(intermediate_result.fun) * objective.f_ref
        history.append(f)
        evaluations.append(objective.gradients.evaluations)
        seconds.append(time.perf_counter() - t0)
        k = len(history) - 1
        echo(f"  iteration {k}  misfit {f:.6e}  ({100 * f / start:5.1f}% of the start)  "
             f"{evaluations[-1] - evaluations[-2]} gradient(s), {seconds[-1] - seconds[-2]:.1f} s")

    x0 = objective.x0
    lower = (1.0 / _VMAX**2) / objective.scale
    upper = (1.0 / _VMIN**2) / objective.scale
    result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=callback,
                      bounds=[(lower, upper)] * x0.size,
                      options={"maxiter": iterations, "maxfun": 3 * iterations + 2})
    vp = 1.0 / np.sqrt(objective.m_of(np.asarray(result.x)))
    return vp, {"misfit": history, "evaluations": evaluations, "seconds": seconds,
                "iterations": int(result.nit), "message": str(result.message)}


def _table(summary: dict[str, Any], first: _Totals, all_totals: _Totals | None,
           timeline_note: str, out: Path) -> list[str]:
    grad = summary["gradient"]
    store_all = summary["problem"]["store_all_bytes"]
    fwi = summary["fwi"]
    every = f"; {first.disk_text}" if first.disk_text else ""
    peak = (f"{format_bytes(first.peak_ram_bytes)} per shot, "
            f"{100 * first.peak_ram_bytes / store_all:.1f}% of store-all "
            f"({format_bytes(store_all)})")
    disk = (f"{format_bytes(first.bytes_written)} / {format_bytes(first.bytes_read)} "
            f"({first.disk_writes} / {first.disk_reads} checkpoints)")
    factor = (f"{first.recompute_factor:.3f} (Revolve in the same RAM: "
              f"{grad['revolve_same_ram_recompute_factor']:.3f})")
    hidden = first.hidden_fraction
    if hidden is None:
        overlap = "no disk transfers"
    else:
        overlap = f"{100 * hidden:.0f}%"
        if first.stall_seconds:
            overlap += f", compute waited {first.stall_seconds:.2f} s for I/O"
    rows: list[tuple[str, str]] = [
        ("strategy", f"{first.strategy} ({first.slots} RAM slots{every})"),
        ("peak RAM for states", peak),
        ("disk written / read", disk),
        ("recompute factor", factor),
        ("I/O hidden behind compute", overlap),
    ]
    if all_totals is not None:
        ratio = first.seconds / max(all_totals.seconds, 1e-9)
        rows.append(("time vs store-all",
                     f"{first.seconds:.2f} s vs {all_totals.seconds:.2f} s ({ratio:.2f}x)"))
        same = ("bitwise equal" if grad["equal_bitwise"]
                else f"max relative difference {grad['max_relative_difference']:.3g}")
        rows.append(("gradient vs store-all", same))
    else:
        rows.append(("time vs store-all", "store-all not run"))
    misfit = fwi["misfit"]
    fall = (f"{misfit[0]:.4e} -> {misfit[-1]:.4e} ({100 * misfit[-1] / misfit[0]:.1f}%) in "
            f"{fwi['iterations']} iterations, {fwi['evaluations'][-1]} gradients")
    rows.append(("misfit", fall))
    rows.append(("total time", f"{summary['seconds']:.1f} s"))
    files = f"model.png gradient.png misfit.png timeline.png{timeline_note} summary.json"
    rows.append(("outputs", f"{out}/: {files}"))
    width = max(len(name) for name, _ in rows)
    lines = ["", "summary (first gradient, all shots)"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return lines


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "physical_memory_bytes": physical_memory(),
    }
    try:
        import numba

        info["numba_threads"] = int(numba.get_num_threads())
    except Exception:  # noqa: BLE001 - informational only
        info["numba_threads"] = None
    return info


def _jsonable(value: Any) -> Any:
    """Plain JSON types: paths as strings, numpy scalars as numbers, NaN as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

