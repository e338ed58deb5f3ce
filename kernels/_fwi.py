"""Modelling and the FWI gradient: the entry points of :mod:`amcheck.kernels`.

``fwi_gradient`` needs the forward wavefield in reverse order: it runs
:class:`~amcheck.kernels.AcousticForward` and :class:`~amcheck.kernels.AcousticAdjoint` through
:class:`amcheck.Checkpointer`, so every strategy and tier of amcheck is available, and returns a
:class:`GradientResult`: the pair ``(misfit, gradient)`` that also carries the checkpointer's
statistics and timeline. :func:`store_all_sweep` is the plain reference sweep (every state in a
list) that the tests compare the checkpointed gradient with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

import numpy as np
from amcheck.kernels._geometry import Geometry
from amcheck.kernels._layout import aligned_zeros
from amcheck.kernels._model import Model
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward, trace_data

from amcheck._bytes import ByteSize
from amcheck._checkpointer import Checkpointer
from amcheck._errors import ArgumentTypeError, InvalidArgumentError, OperatorError
from amcheck._operators import check_signature
from amcheck._stats import Stats
from amcheck._timeline import Timeline

__all__ = [
    "GradientResult",
    "ProgressFn",
    "adjoint_modeling",
    "forward_modeling",
    "fwi_gradient",
    "store_all_sweep",
]

#: ``progress(phase, steps)``: ``steps`` more steps of ``phase`` are done. Phases: ``"forward"``
#: (the forward sweep), ``"recompute"`` (forward steps rerun during the reverse sweep) and
#: ``"reverse"`` (reverse steps). A tqdm bar's ``update`` fits behind a small dispatcher.
ProgressFn = Callable[[str, int], None]


def forward_modeling(model: Model, geometry: Geometry, src_data: Any = None) -> np.ndarray:
    """Receiver data of one shot, shape ``(nt, nrec)`` (float64).

    Parameters
    ----------
    model, geometry
        See :class:`Model` and :class:`Geometry`.
    src_data
        Source time functions ``(nt, nsrc)`` (``(nt,)`` for one source); default the
        geometry's Ricker wavelet.

    Raises
    ------
    ArgumentTypeError
        ``src_data`` is not a real array (complex, masked, ragged, text).
    InvalidArgumentError
        ``src_data`` of the wrong shape, with values that are not finite or that overflow the
        model's dtype (float32: beyond 3.4e38); synthetic data that are not finite (the
        wavefield overflowed the model's dtype: a source far too loud for float32); see also
        :class:`Geometry`.
    """
    fwd = AcousticForward(model, geometry, src_data)
    state = fwd.initial_state()
    fwd.advance(state, state, 0, fwd.n_steps)
    fwd.check_data()
    return np.array(fwd.data, copy=True)


def adjoint_modeling(model: Model, geometry: Geometry, rec_data: Any) -> np.ndarray:
    """The adjoint of :func:`forward_modeling`: receiver data ``(nt, nrec)`` -> ``(nt, nsrc)``.

    ``<forward_modeling(m, g, s), d> == <s, adjoint_modeling(m, g, d)>`` to round-off.

    Raises
    ------
    ArgumentTypeError
        ``rec_data`` is not a real array (complex, boolean, masked, ragged, text).
    InvalidArgumentError
        ``rec_data`` of the wrong shape, with values that are not finite or that overflow the
        model's dtype; source data that are not finite (the adjoint wavefield overflowed the
        model's dtype: ``rec_data`` far too large for float32); see also :class:`Geometry`.
    """
    fwd = AcousticForward(model, geometry)
    adj = AcousticAdjoint(fwd, gradient=False)
    adj.start(rec_data, name="rec_data")
    for t in range(fwd.n_steps - 1, -1, -1):
        adj.reverse(None, t)
    adj.check_source()
    return np.array(adj.src_adjoint, copy=True)


def store_all_sweep(forward: AcousticForward, adjoint_start: Any, reverse: Any) -> None:
    """Forward sweep keeping every state x_0 … x_n, then the reverse sweep n-1 … 0.

    Each step writes into a fresh buffer (``advance(x_t, x_{t+1}, t, t+1)``), as the checkpoint
    engine does for store-all. ``adjoint_start(final_state)`` runs between the sweeps.

    Parameters
    ----------
    forward
        The forward operator.
    adjoint_start
        ``adjoint_start(final_state)``, called once after the forward sweep.
    reverse
        ``reverse(state, t)``, called for t = n-1 … 0 with a read-only view of x_t (e.g.
        :meth:`AcousticAdjoint.reverse`).

    Raises
    ------
    ArgumentTypeError
        ``forward`` is not an :class:`AcousticForward`; ``adjoint_start`` is not a callable of
        one argument or ``reverse`` not one of two.
    """
    if not isinstance(forward, AcousticForward):
        raise ArgumentTypeError(
            f"forward must be an AcousticForward, got {type(forward).__name__}")
    for name, fn, n_args, expected in (
            ("adjoint_start", adjoint_start, 1, "adjoint_start(final_state)"),
            ("reverse", reverse, 2, "reverse(state, t)")):
        if not callable(fn):
            raise ArgumentTypeError(
                f"{name} must be a callable {expected}, got {fn!r:.200} of type "
                f"{type(fn).__name__}")
        check_signature(fn, n_args, name, expected)
    states = [forward.initial_state()]
    for t in range(forward.n_steps):
        nxt = {"u": aligned_zeros(states[-1]["u"].shape, states[-1]["u"].dtype)}
        forward.advance(states[-1], nxt, t, t + 1)
        states.append(nxt)
    adjoint_start(states[-1])
    for t in range(forward.n_steps - 1, -1, -1):
        view = {"u": states[t]["u"].view()}
        view["u"].flags.writeable = False
        reverse(view, t)
        states.pop()


class GradientResult(tuple[float, np.ndarray]):
    """What :func:`fwi_gradient` returns: ``(misfit, gradient)``, plus how it was computed.

    It unpacks like the pair it is (``misfit, grad = fwi_gradient(...)``); the attributes tell
    what the checkpointing cost.

    Attributes
    ----------
    misfit
        ``0.5 * ||d_syn - d_obs||^2``.
    gradient
        dJ/dm on the model's grid (float64), m = 1/vp^2 in s^2/km^2.
    d_syn
        The synthetic data of the model, ``(nt, nrec)`` float64.
    stats
        The :class:`amcheck.Stats` of the checkpointed sweeps (forward steps, recompute factor,
        peak RAM, bytes written and read per tier, ...).
    timeline
        The :class:`amcheck.Timeline` of the sweeps (``None`` with ``timeline=False``):
        ``result.timeline.plot("timeline.png")`` draws compute and I/O lanes.
    strategy, slots
        The strategy the Checkpointer chose and its RAM slots.
    interval
        Steps between disk checkpoints at the end of the forward sweep (``stats.interval``:
        with an automatic interval, the one the sweep ended with); ``None`` for the RAM-only
        strategies.
    ram_pool_bytes
        RAM the Checkpointer allocated for states.
    seconds
        Wall-clock time of the whole computation.
    """

    misfit: float
    gradient: np.ndarray
    d_syn: np.ndarray
    stats: Stats
    timeline: Timeline | None
    strategy: str
    slots: int | None
    interval: int | None
    ram_pool_bytes: int
    seconds: float

    def __new__(cls, misfit: float, gradient: np.ndarray, *, d_syn: np.ndarray, stats: Stats,
                timeline: Timeline | None, strategy: str, slots: int | None,
                interval: int | None, ram_pool_bytes: int, seconds: float) -> Self:
        self = super().__new__(cls, (misfit, gradient))
        self.misfit = misfit
        self.gradient = gradient
        self.d_syn = d_syn
        self.stats = stats
        self.timeline = timeline
        self.strategy = strategy
        self.slots = slots
        self.interval = interval
        self.ram_pool_bytes = ram_pool_bytes
        self.seconds = seconds
        return self

    def __repr__(self) -> str:
        return (f"GradientResult(misfit={self.misfit:.6g}, gradient=<{self.gradient.shape} "
                f"{self.gradient.dtype}>, strategy={self.strategy!r}, "
                f"recompute_factor={self.stats.recompute_factor}, seconds={self.seconds:.3f})")

    def __reduce__(self) -> Any:
        # Pickled (e.g. back from a worker process) with every field.
        fields = {name: getattr(self, name) for name in ("d_syn", "stats", "timeline", "strategy",
                                                          "slots", "interval", "ram_pool_bytes",
                                                          "seconds")}
        return (_unpickle_result, (self.misfit, self.gradient, fields))


def _unpickle_result(misfit: float, gradient: np.ndarray, fields: dict[str, Any]
                     ) -> GradientResult:
    """A pickled :class:`GradientResult` again (see its ``__reduce__``)."""
    return GradientResult(misfit, gradient, **fields)


class _Progress:
    """fwi_gradient's ``progress``, keeping the exception it raised.

    The operators call it, and the engine wraps what an operator raises in an
    :class:`~amcheck.OperatorError`; :func:`fwi_gradient` finds the callback's own exception
    here and raises it unwrapped, as the Checkpointer does with its ``progress``.
    """

    def __init__(self, progress: ProgressFn) -> None:
        self._progress = progress
        self.error: Exception | None = None

    def __call__(self, phase: str, steps: int) -> None:
        try:
            self._progress(phase, steps)
        except Exception as exc:
            self.error = exc
            raise


class _CountedForward:
    """The forward operator, reporting each advance to ``progress`` as forward or recompute."""

    def __init__(self, forward: AcousticForward, progress: ProgressFn) -> None:
        self._forward = forward
        self._progress = progress
        self.phase = "forward"

    def advance(self, src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray],
                t0: int, t1: int) -> None:
        self._forward.advance(src, dst, t0, t1)
        self._progress(self.phase, t1 - t0)


class _CountedReverse:
    """The adjoint operator, reporting each reverse step to ``progress``."""

    def __init__(self, adjoint: AcousticAdjoint, progress: ProgressFn) -> None:
        self._adjoint = adjoint
        self._progress = progress
        # what the adjoint reads, so that a progress callback leaves the pairs of steps alone
        self.reverse_from_next = adjoint.reverse_from_next

    def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
        self._adjoint.reverse(state, t)
        self._progress("reverse", 1)


def fwi_gradient(model: Model, geometry: Geometry, d_obs: Any, ram: ByteSize = "25%",
                 disk: Any = None, compression: Any = None, strategy: Any = "auto", *,
                 src_data: Any = None, interval: int | None = None,
                 disk_budget: ByteSize | None = None, max_in_flight: int | None = None,
                 compute_threads: int | None = None, io_cpus: Iterable[int] | str | None = None,
                 progress: ProgressFn | None = None, timeline: bool = True,
                 pairs: bool | None = None) -> GradientResult:
    """Misfit 0.5 ||d_syn - d_obs||^2 and its exact gradient with respect to m = 1/vp^2.

    The forward wavefield is handed to the adjoint in reverse order by an
    :class:`amcheck.Checkpointer` built from the arguments below; the gradient does not depend on
    how (bitwise, unless ``compression`` is lossy).

    Parameters
    ----------
    model, geometry
        The current model and the shot's geometry.
    d_obs
        Observed data, shape ``(nt, nrec)``.
    ram, disk, compression, strategy
        The Checkpointer's RAM budget (bytes, ``"2 GiB"``, ``"25%"`` of physical memory, the
        default), disk
        tier (a :class:`amcheck.storage.Tier`, or what the installed Checkpointer accepts),
        codec and strategy (``"auto"``, ``"store_all"``, ``"revolve"``, ``"two_level"``,
        ``"async_multistage"`` or a schedule for ``geometry.n_steps`` steps).
        A state holds ``2 * prod(model.grid_shape) * itemsize`` bytes, and a RAM slot rounds
        it up (large fields start on 4 KiB pages): one slot is
        ``amcheck.storage.slot_layout(AcousticForward(model, geometry).spec)[1]`` bytes, and
        store-all needs ``(geometry.nt - 1) // 2 + 2`` slots (``geometry.nt - 1`` steps: the
        adjoint plans over pairs of steps, see ``pairs``). Size ``ram`` in slots: as many bare
        states may hold a slot fewer.
    src_data
        Source time functions ``(nt, nsrc)`` (``(nt,)`` for one source), as for
        :func:`forward_modeling`; default the geometry's Ricker wavelet. Give the one
        ``d_obs`` was modelled (or estimated) with.
    interval, disk_budget, max_in_flight, compute_threads, io_cpus, pairs
        Passed to the Checkpointer when given (steps between disk checkpoints, bytes the disk
        checkpoints may take, disk transfers in flight, numba threads for compute, the CPUs of
        the transfer threads, whether to
        plan over pairs of steps: the adjoint reads only u[t], so by default one state serves
        reverse steps t and t - 1; ``pairs=False`` plans step by step, the same gradient
        bitwise); ``None`` leaves the Checkpointer's default.
    progress
        ``progress(phase, steps)`` after every advance and reverse step (see
        :data:`ProgressFn`); e.g. to drive progress bars. An exception it raises stops the
        computation and comes out as it was raised (not as an ``OperatorError``).
    timeline
        Record the Checkpointer's timeline (``result.timeline``).

    Returns
    -------
    GradientResult
        ``(misfit, gradient)``: a float and a float64 array of the model's shape (s^2/km^2 per
        unit misfit), with ``.stats``, ``.timeline``, ``.strategy``, ``.interval``, ``.d_syn``
        and more; it pickles with all of them (the timeline as its events).

    Raises
    ------
    ArgumentTypeError
        ``d_obs`` is not a real array (complex, boolean, masked, ragged, text), ``model`` is not a
        :class:`Model` or ``geometry`` not a :class:`Geometry`.
    InvalidArgumentError
        ``d_obs`` of the wrong shape or with values that are not finite (a dead trace's NaN: fill
        it with zeros) or overflow the model's dtype, a misfit that overflows float64;
        ``src_data`` as for :func:`forward_modeling`; synthetic data or a gradient that are not
        finite (the wavefields overflowed the model's dtype: a source amplitude or ``d_obs``
        far off the physical scale in float32); see also :class:`Geometry` and
        :class:`amcheck.Checkpointer`.
    BudgetError
        ``ram`` is below what the strategy needs.
    ArgumentTypeError
        ``progress`` is not callable or does not accept two positional arguments.

    Examples
    --------
    >>> result = fwi_gradient(model, geometry, d_obs, ram="64 MiB", disk=tier)  # doctest: +SKIP
    >>> misfit, grad = result
    >>> result.stats.recompute_factor, result.stats.bytes_written["disk"]       # doctest: +SKIP
    """
    started = time.perf_counter()
    fwd = AcousticForward(model, geometry, src_data)
    obs = trace_data("d_obs", d_obs, geometry, dtype=model.dtype)
    if progress is not None and not callable(progress):
        raise ArgumentTypeError(
            f"progress must be a callable progress(phase, steps) or None, got {progress!r}")
    if progress is not None:  # here, not at its first call mid-sweep
        check_signature(progress, 2, "progress", "progress(phase, steps)")
    adj = AcousticAdjoint(fwd, gradient=True)
    forward_op: AcousticForward | _CountedForward = fwd
    reverse_op: AcousticAdjoint | _CountedReverse = adj
    counted: _CountedForward | None = None
    reporter: _Progress | None = None
    if progress is not None:
        reporter = _Progress(progress)
        counted = _CountedForward(fwd, reporter)
        forward_op, reverse_op = counted, _CountedReverse(adj, reporter)
    options: dict[str, Any] = {}
    for name, value in (("interval", interval), ("disk_budget", disk_budget),
                        ("max_in_flight", max_in_flight), ("compute_threads", compute_threads),
                        ("io_cpus", io_cpus), ("compression", compression), ("pairs", pairs)):
        if value is not None:
            options[name] = value
    try:
        with Checkpointer(forward_op, reverse_op, fwd.initial_state(), fwd.n_steps, ram=ram,
                          disk=disk, strategy=strategy, timeline=timeline, **options) as ckp:
            final = ckp.forward()
            fwd.check_data()
            # The forward sweep's data: recomputation from lossy checkpoints during the reverse
            # sweep rewrites fwd.data with slightly different values.
            d_syn = np.array(fwd.data, copy=True)
            residual = d_syn - obs
            with np.errstate(over="ignore"):
                misfit = 0.5 * float(np.sum(residual**2))
            if not math.isfinite(misfit):  # a float64 model: |d_obs| of 1e155 and more
                raise InvalidArgumentError(
                    f"the misfit 0.5 ||d_syn - d_obs||^2 overflows float64 (the largest "
                    f"|d_syn - d_obs| is {float(np.max(np.abs(residual))):.4g}): scale d_obs and "
                    "the source down (the wave equation is linear)")
            adj.start(residual, final, name="the residual d_syn - d_obs")
            if counted is not None:
                counted.phase = "recompute"
            ckp.reverse()
            stats = ckp.stats
            chosen = (ckp.strategy, ckp.slots, ckp.ram_pool_bytes)
            events = ckp.timeline if timeline else None
    except OperatorError as error:
        # progress runs inside the operators, so the engine wrapped what it raised: unwrap it.
        if reporter is None or reporter.error is None or error.__cause__ is not reporter.error:
            raise
        for note in getattr(error, "__notes__", ()):  # a failed reset, say
            reporter.error.add_note(note)
        raise reporter.error from None
    # x_n's views are all that keeps the closed pool's memory: let it go before the gradient's
    # own float64 temporaries (about 4 states) are allocated.
    del final, ckp
    return GradientResult(misfit, adj.gradient_m(), d_syn=d_syn,
                          stats=stats, timeline=events,
                          strategy=chosen[0], slots=chosen[1], interval=stats.interval,
                          ram_pool_bytes=chosen[2], seconds=time.perf_counter() - started)
