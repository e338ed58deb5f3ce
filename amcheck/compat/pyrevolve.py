"""Run code written for pyrevolve unchanged, on amcheck's Revolve schedule.

pyrevolve (Kukreja et al., 2018, https://doi.org/10.1007/978-3-319-93701-4_31) drives operators
that *own* their state: ``fwd_operator.apply(t_start=…, t_end=…)`` advances the live data in
place, and a checkpoint object hands out the live arrays (``get_data(t)`` to save,
``get_data_location(t)`` to restore). :class:`Revolver` accepts exactly those objects and the
same constructor, ``apply_forward()`` and ``apply_reverse()``, and replays amcheck's binomial
schedule (:class:`amcheck.schedules.Revolve`, the same optimum as pyrevolve's classic Revolve).

The call sequence an operator sees is pyrevolve's: reverse step t runs
``fwd_operator.apply(t_start=t, t_end=t+1)`` then ``rev_operator.apply(t_start=t, t_end=t+1)`` on
the live data restored to x_t (the forward step refills the time buffers a Devito-style adjoint
reads), except for t = n-1, whose forward step the forward sweep already ran.

Since the operators own their state, every checkpoint is a copy from the live data into a slot
and back: this is the deep-copy checkpointing that amcheck's own operator protocol avoids. The
copies are counted in ``stats.copies`` so that the difference stays measurable
(``benchmarks/zero_copy.py``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from math import comb
from typing import Any, Protocol

import numpy as np

from amcheck._errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    OperatorError,
    ScheduleError,
    SweepStateError,
)
from amcheck._operators import check_signature
from amcheck._state import StateSpec
from amcheck._stats import Stats, StatsRecorder
from amcheck._strategy import slot_size
from amcheck._timeline import Timeline, clock
from amcheck._validate import check_bool, check_int, check_optional_int
from amcheck.schedules import Advance, End, Free, Load, Prefetch, Reverse, Revolve, Save
from amcheck.schedules._revolve import binomial_split_left
from amcheck.storage import RamTier

__all__ = ["MemoryRevolver", "PyrevolveCheckpoint", "PyrevolveOperator", "Revolver", "adjust"]

_PORT = "port the operators to amcheck.Checkpointer (docs/migrating.md, step 2)"
#: pyrevolve's other public names, and what takes their place here.
_ELSEWHERE = {
    "DiskRevolver": f"for checkpoints on disk, {_PORT}, with disk=...",
    "MultiLevelRevolver": f"for RAM and disk levels, {_PORT}, with ram=... and disk=...",
    "SingleLevelRevolver": "Revolver is the single-level, in-RAM one",
    "Checkpoint": ("nothing to subclass: Revolver takes any object with get_data(t) and "
                   "get_data_location(t) (the PyrevolveCheckpoint protocol)"),
    "Operator": ("nothing to subclass: Revolver takes any object with apply(t_start, t_end) "
                 "(the PyrevolveOperator protocol)"),
    "Profiler": "wrp.stats and wrp.timeline say what ran and when",
    "NumpyStorage": "Revolver keeps its checkpoints in amcheck's RAM pool",
    "BytesStorage": "Revolver keeps its checkpoints in amcheck's RAM pool",
    "DiskStorage": f"for checkpoints on disk, {_PORT}, with disk=...",
}


def __getattr__(name: str) -> Any:
    """pyrevolve's names that have no counterpart here say what to use instead."""
    if name in _ELSEWHERE:  # ImportError, so that `from ... import` keeps the message
        raise ImportError(f"amcheck.compat.pyrevolve has no {name} (pyrevolve's): "
                          f"{_ELSEWHERE[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PyrevolveOperator(Protocol):
    """A pyrevolve operator: advances (or reverses) the live data it owns."""

    def apply(self, t_start: int, t_end: int) -> Any:
        """Run steps ``t_start … t_end-1`` on the live data."""


class PyrevolveCheckpoint(Protocol):
    """A pyrevolve checkpoint object: the live arrays that make up the state at step t."""

    def get_data(self, timestep: int) -> Sequence[np.ndarray]:
        """Arrays to copy into a checkpoint of x_timestep."""

    def get_data_location(self, timestep: int) -> Sequence[np.ndarray]:
        """Arrays to copy a checkpoint of x_timestep back into."""


def adjust(n_timesteps: int) -> int:
    """Checkpoints for ``n_timesteps`` when ``n_checkpoints=None``, as classic Revolve's ``adjust``.

    The result balances checkpoints c and repetitions r so that ``C(c + r, c) >= n`` with
    c close to r (Griewank & Walther, ACM TOMS 26(1), 2000, doi:10.1145/347837.347846).
    """
    steps = check_int("n_timesteps", n_timesteps, minimum=1)
    if steps <= 2:
        return 1  # one checkpoint (x_0) reverses two steps; classic adjust fails below that
    snaps, reps, s = 1, 1, 0
    while comb(snaps + s + reps + s, snaps + s) > steps:
        s -= 1
    while comb(snaps + s + reps + s, snaps + s) < steps:
        s += 1
    snaps += s
    reps += s
    s = -1
    while comb(snaps + reps, snaps) >= steps:
        if snaps > reps:
            snaps -= 1
            s = 0
        else:
            reps -= 1
            s = 1
    if s == 0:
        snaps += 1
    if s == 1:
        reps += 1
    return snaps


class _FewestCopies(Revolve):
    """Revolve with the leftmost optimal splits: the same forward steps, fewer saves, and each
    save of the adapter is a deep copy of the live state (78 steps, 8 checkpoints: 54 saves
    instead of 63)."""

    def _split(self, m: int, c: int) -> int:
        return binomial_split_left(m, c)


class Revolver:
    """pyrevolve's ``Revolver``, on amcheck: same constructor, ``apply_forward``, ``apply_reverse``.

    Parameters
    ----------
    checkpoint
        An object with ``get_data(t)`` and ``get_data_location(t)`` returning the live arrays
        (a ``pyrevolve.Checkpoint`` such as Devito's ``DevitoCheckpoint``).
    fwd_operator, rev_operator
        Objects with ``apply(t_start=…, t_end=…)`` (``pyrevolve.Operator``).
    n_checkpoints
        Checkpoints held in RAM (x_0's included), ``>= 1``; ``None`` picks :func:`adjust`.
        Memory: ``n_checkpoints`` copies of the state, allocated once, like pyrevolve's
        ``NumpyStorage``, at most ``n_timesteps`` of them (more are never used).
    n_timesteps
        Number of steps n, ``>= 1``.
    timings, profiler, compression_params
        pyrevolve's optional arguments, accepted so that its calls run unchanged. ``timings``:
        anything, kept as :attr:`timings` and not read (as pyrevolve does). ``profiler``: kept
        as :attr:`profiler` but not filled, with a ``UserWarning``; :attr:`stats` and
        :attr:`timeline` say what ran and when. ``compression_params``: ``None`` or
        ``{"scheme": None}``, pyrevolve's "no compression" (an empty dict is refused, as
        pyrevolve fails on it too); compress disk checkpoints through
        :class:`amcheck.Checkpointer` instead.
    timeline
        Record compute and reverse events in :attr:`timeline`.

    Raises
    ------
    ArgumentTypeError
        An operator has no ``apply``, or the checkpoint object lacks ``get_data`` /
        ``get_data_location`` or returns something other than numpy arrays.
    InvalidArgumentError
        ``n_checkpoints`` or ``n_timesteps`` below 1; ``compression_params`` other than
        ``None`` or ``{"scheme": None}``.
    OperatorError
        An operator's ``apply`` or a method of the checkpoint object raised (chained; the
        constructor's ``get_data(0)`` too), or ``get_data_location`` returned an array the
        restore cannot write (read-only).
    """

    def __init__(
        self,
        checkpoint: PyrevolveCheckpoint,
        fwd_operator: PyrevolveOperator,
        rev_operator: PyrevolveOperator,
        n_checkpoints: int | None,
        n_timesteps: int,
        timings: object = None,
        profiler: object = None,
        compression_params: object = None,
        *,
        timeline: bool = True,
    ) -> None:
        # pyrevolve's own "no compression"; an empty dict is not (pyrevolve reads its "scheme").
        no_compression = {"scheme": None}
        if isinstance(compression_params, dict) and compression_params == no_compression:
            compression_params = None
        if compression_params is not None:
            raise InvalidArgumentError(
                f"compression_params={compression_params!r}: amcheck's Revolver keeps its "
                f"checkpoints uncompressed in RAM and takes only None or {no_compression!r}; "
                "compress disk checkpoints with amcheck.Checkpointer(disk=..., compression=...) "
                "(docs/migrating.md)"
            )
        self.timings = timings  # pyrevolve keeps it and never reads it
        self.profiler = profiler
        if profiler is not None:
            warnings.warn(
                f"profiler={profiler!r} is kept as wrp.profiler but not filled: amcheck's "
                "Revolver records what ran in wrp.stats and when in wrp.timeline",
                UserWarning, stacklevel=2)
        for name, op in (("fwd_operator", fwd_operator), ("rev_operator", rev_operator)):
            if not callable(getattr(op, "apply", None)):
                raise ArgumentTypeError(
                    f"{name} must have a method apply(t_start, t_end), got {type(op).__name__}"
                )
            check_signature(op.apply, 0, f"{name}.apply", "pyrevolve's call apply(t_start=..., "
                            "t_end=...)", keywords=("t_start", "t_end"))
        for method in ("get_data", "get_data_location"):
            if not callable(getattr(checkpoint, method, None)):
                raise ArgumentTypeError(
                    f"checkpoint must have a method {method}(timestep), got "
                    f"{type(checkpoint).__name__}"
                )
            check_signature(getattr(checkpoint, method), 1, f"checkpoint.{method}",
                            "a timestep")
        if n_timesteps is None:
            raise ArgumentTypeError(
                "n_timesteps must be an integer >= 1, got None; for a sequence whose length is "
                "known only when it ends, port the operators to amcheck.Checkpointer, which "
                "takes n_steps=None (docs/migrating.md, step 2)")
        self.n_timesteps = check_int("n_timesteps", n_timesteps, minimum=1)
        given = check_optional_int("n_checkpoints", n_checkpoints, minimum=1)
        self.n_checkpoints = adjust(self.n_timesteps) if given is None else given
        self.checkpoint = checkpoint
        self.fwd_operator = fwd_operator
        self.rev_operator = rev_operator
        self._spec: StateSpec | None = None  # the layout of the first get_data's arrays
        arrays = self._arrays("get_data", 0)
        self._spec = StateSpec({str(i): (a.shape, a.dtype) for i, a in enumerate(arrays)})
        self._schedule = _FewestCopies(self.n_timesteps, self.n_checkpoints)
        # More slots than steps would only allocate memory Revolve never uses.
        slots = min(self.n_checkpoints, self.n_timesteps)
        self._pool = RamTier(slots * slot_size(self._spec), self._spec, slots=slots)
        self._timeline = Timeline(enabled=check_bool("timeline", timeline))
        self._stats = StatsRecorder(ram_pool_bytes=self._pool.allocated_bytes)
        self._live_t: int | None = 0  # the step whose state the live data holds
        self._last_step: int | None = None  # the forward step that produced it, if any
        self._phase = "ready"

    @property
    def stats(self) -> Stats:
        """Counts since the last :meth:`apply_forward`; ``copies`` counts saves and restores."""
        return self._stats.snapshot()

    @property
    def timeline(self) -> Timeline:
        """Compute and reverse events of the last sweeps."""
        return self._timeline

    @property
    def ratio(self) -> float:
        """pyrevolve's ``ratio``: ``T(n, s) / n``, the binomial optimum's recomputed forward
        steps per step (:func:`~amcheck.schedules.binomial_forward_steps` minus the step that
        makes x_n, over n)."""
        from amcheck.schedules import binomial_forward_steps

        forward = binomial_forward_steps(self.n_timesteps, self.n_checkpoints)
        return (forward - 1) / self.n_timesteps

    def apply_forward(self) -> None:
        """Run the forward sweep from the live data (x_0), saving checkpoints on the way.

        As with pyrevolve, the live data must hold x_0: after a reverse sweep it holds x_1, so
        set it back first. Straight after a forward sweep it holds x_n, which is refused.
        """
        if self._phase == "forwarded":
            raise SweepStateError(
                "apply_forward() was called again before apply_reverse(): the live data holds "
                f"x_{self.n_timesteps}, not x_0; call apply_reverse(), or make a new Revolver "
                "after setting the live data back to x_0"
            )
        for step in list(self._pool.steps):
            self._pool.discard(step)
        self._stats.reset()
        self._timeline.clear()
        self._live_t, self._last_step = 0, None
        self._stats.n_steps = self.n_timesteps
        try:
            for action in self._schedule.forward():
                self._execute(action)
        except BaseException:
            self._phase = "ready"
            raise
        self._phase = "forwarded"

    def apply_reverse(self) -> None:
        """Run the reverse sweep: ``rev_operator.apply`` for t = n-1 … 0."""
        if self._phase != "forwarded":
            raise SweepStateError(
                "apply_reverse() needs a forward sweep to reverse: call apply_forward() first"
            )
        self._phase = "ready"
        for action in self._schedule.reverse(self.n_timesteps):
            self._execute(action)

    # -- internals -----------------------------------------------------------------------------

    def _arrays(self, method: str, t: int) -> list[np.ndarray]:
        """The arrays ``checkpoint.method(t)`` returns, checked: a non-empty list of numpy
        arrays, after the first call the same count, sizes and dtypes every time."""
        try:
            got = getattr(self.checkpoint, method)(t)
        except Exception as exc:
            raise OperatorError(
                f"the checkpoint object raised {type(exc).__name__} in {method}({t}): {exc}"
            ) from exc
        if isinstance(got, np.ndarray) or not isinstance(got, (list, tuple)):
            raise ArgumentTypeError(
                f"checkpoint.{method}({t}) must return a list of numpy arrays, got {got!r:.80} of "
                f"type {type(got).__name__}"
            )
        arrays = list(got)
        if not arrays:
            raise InvalidArgumentError(f"checkpoint.{method}({t}) returned no arrays")
        for array in arrays:
            if not isinstance(array, np.ndarray):
                raise ArgumentTypeError(
                    f"checkpoint.{method}({t}) must return numpy arrays, got {type(array).__name__}"
                )
        spec = self._spec
        if spec is not None:
            fields = list(spec.values())
            if len(arrays) != len(fields) or any(
                a.size != math.prod(f.shape) or a.dtype != f.dtype for a, f in zip(arrays, fields)
            ):
                raise InvalidArgumentError(
                    f"checkpoint.{method}({t}) returned arrays of shapes "
                    f"{[a.shape for a in arrays]} and dtypes {[str(a.dtype) for a in arrays]}; "
                    f"the first call returned {[f.shape for f in fields]} and "
                    f"{[str(f.dtype) for f in fields]}: the live data must keep its layout"
                )
        return arrays

    def _apply(self, which: str, t0: int, t1: int) -> None:
        op = self.fwd_operator if which == "forward" else self.rev_operator
        start = clock()
        try:
            op.apply(t_start=t0, t_end=t1)
        except Exception as exc:
            raise OperatorError(
                f"the {which} operator raised {type(exc).__name__} in "
                f"apply(t_start={t0}, t_end={t1}): {exc}"
            ) from exc
        end = clock()
        if which == "forward":
            self._timeline._append("compute", start, end, step=t0)
            self._stats.compute_seconds += end - start
            self._stats.forward_steps += t1 - t0
            self._live_t, self._last_step = t1, t1 - 1
        else:
            self._timeline._append("reverse", start, end, step=t0)
            self._stats.reverse_seconds += end - start
            self._stats.reverse_steps += 1

    def _need_live(self, t: int, action: object) -> None:
        if self._live_t != t:
            raise ScheduleError(f"{action!r} needs the live data to hold x_{t}")

    def _execute(self, action: object) -> None:
        match action:
            case Advance(t0, t1, _):
                self._need_live(t0, action)
                self._apply("forward", t0, t1)
            case Save(t, "ram"):
                self._need_live(t, action)
                slot = self._pool.acquire()
                for i, array in enumerate(self._arrays("get_data", t)):
                    np.copyto(slot.state[str(i)], array.reshape(slot.state[str(i)].shape))
                self._pool.bind(t, slot)
                self._stats.copies += 1
                self._stats.writes["ram"] += 1
            case Load(t, "ram"):
                slot = self._pool.slot_of(t)
                for i, array in enumerate(self._arrays("get_data_location", t)):
                    try:
                        np.copyto(array, slot.state[str(i)].reshape(array.shape))
                    except ValueError as exc:  # a read-only array
                        raise OperatorError(
                            f"checkpoint.get_data_location({t}) returned array {i}, into which "
                            f"the restore of x_{t} cannot be written: {exc}") from exc
                self._live_t, self._last_step = t, None
                self._stats.copies += 1
                self._stats.reads["ram"] += 1
            case Free(t, "ram"):
                self._pool.discard(t)
            case Reverse(t):
                if not (self._live_t == t + 1 and self._last_step == t):
                    self._need_live(t, action)
                    self._apply("forward", t, t + 1)
                self._apply("reverse", t, t + 1)
            case Prefetch() | End():
                pass
            case _:  # pragma: no cover - Revolve uses RAM only
                raise ScheduleError(f"the pyrevolve adapter cannot run {action!r}")
        in_use = self._pool.n_slots - self._pool.n_free
        self._stats.peak_ram_bytes = max(
            self._stats.peak_ram_bytes, in_use * self._pool.slot_nbytes
        )


#: pyrevolve's name for the same class (pyrevolve's ``Revolver`` is ``MemoryRevolver``).
MemoryRevolver = Revolver
