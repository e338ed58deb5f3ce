"""The Checkpointer: amcheck's entry point.

It ties the user's operators and initial state to a schedule (chosen from a RAM budget by
:mod:`amcheck._strategy`), a preallocated RAM slot pool, an optional disk tier and the engine
(:mod:`amcheck._engine`), and keeps the calls in order: ``forward()``, then ``reverse()`` (once or,
when the strategy keeps what it needs, several times), then ``forward()`` again or ``close()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from amcheck._bytes import ByteSize, format_bytes, parse_bytes
from amcheck._engine import Engine
from amcheck._errors import ArgumentTypeError, InvalidArgumentError, ScheduleError, SweepStateError
from amcheck._operators import as_forward, as_reverse
from amcheck._state import StateSpec
from amcheck._stats import Stats, StatsRecorder
from amcheck._strategy import Plan, plan, slot_size
from amcheck._timeline import Timeline
from amcheck._validate import check_optional_int
from amcheck.schedules import Schedule
from amcheck.storage import RamTier, Tier

__all__ = ["Checkpointer"]

_Phase = Literal["ready", "forwarded", "reversed", "closed"]


class Checkpointer:
    """Run a time-stepping computation forward, then its adjoint backward, within a RAM budget.

    Parameters
    ----------
    forward
        The forward operator: an object with ``advance(src, dst, t0, t1)`` or a callable with that
        signature. It computes x_t1 from x_t0 (see :class:`amcheck.ForwardOperator`).
    reverse
        The reverse operator: an object with ``reverse(state, t)`` or a callable ``(state, t)``,
        called for t = n-1 … 0 with x_t (see :class:`amcheck.ReverseOperator`).
    initial_state
        x_0: a mapping name -> C-contiguous numpy array. Its shapes and dtypes define the state;
        several time levels in one field are fine (shape ``(2, nx, ny)`` for a wave equation).
        amcheck never writes to these arrays; ``forward()`` copies them into its pool when called.
    n_steps
        Number of steps n (``>= 1``), or ``None`` when the forward operator decides when the
        sequence ends (run to convergence; see :class:`amcheck.ForwardOperator`).
    ram
        Bytes amcheck may allocate for states: an ``int`` or a string such as ``"2 GiB"`` or
        ``"25%"`` (of physical memory). It bounds every buffer the engine holds: checkpoint
        slots, the current state, x_n. Only what the chosen schedule needs is allocated
        (``stats.ram_pool_bytes``), once, when the Checkpointer is built.
    disk
        A :class:`amcheck.storage.Tier` (e.g. ``ZarrTier``) for the disk strategies, or ``None``.
        Its state spec must match ``initial_state``. The caller owns it: ``close()`` deletes the
        checkpoints amcheck wrote but does not close the tier.
    strategy
        ``"auto"`` (default): ``"store_all"`` when all states fit ``ram``, else ``"revolve"``
        with the most slots that fit when ``disk`` is ``None``, else ``"async_multistage"``.
        Or one of those names, ``"two_level"``, or an :class:`amcheck.schedules.Schedule`
        planned for ``n_steps``. The rules are in :mod:`amcheck._strategy`.
    interval
        Steps between disk checkpoints for ``"two_level"`` and ``"async_multistage"``;
        ``None`` picks ``slots + 1`` (:func:`amcheck._strategy.default_interval`). Disk traffic
        is one state per ``interval`` steps.
    compression
        Reserved for disk tiers amcheck creates itself; must be ``None`` when ``disk`` is a
        Tier instance (configure compression on the tier).
    timeline
        Record a :class:`amcheck.Timeline` of compute, reverse and transfer events
        (about a microsecond per event).

    Raises
    ------
    ArgumentTypeError
        An operator is neither an object with the method nor a callable of the right signature;
        ``initial_state`` is not a mapping of numpy arrays; ``disk`` is not a Tier.
    InvalidArgumentError
        ``n_steps < 1``; a state array is not C-contiguous; a disk strategy without ``disk``;
        a schedule planned for another length; ``disk`` has another state spec.
    BudgetError
        ``ram`` is below what the strategy needs; the message says how many bytes that is.

    Examples
    --------
    >>> import numpy as np, amcheck
    >>> def advance(src, dst, t0, t1):
    ...     x = src["x"].copy()
    ...     for t in range(t0, t1):
    ...         x = x + 0.1 * np.sin(x)
    ...     dst["x"][...] = x
    >>> seen = []
    >>> with amcheck.Checkpointer(advance, lambda s, t: seen.append(t),
    ...                           {"x": np.ones(4)}, 10, ram="1 MiB") as ckp:
    ...     x_n = ckp.forward()
    ...     ckp.reverse()
    >>> seen == list(range(9, -1, -1))
    True
    """

    def __init__(
        self,
        forward: object,
        reverse: object,
        initial_state: Mapping[str, np.ndarray],
        n_steps: int | None,
        *,
        ram: ByteSize = "25%",
        disk: Tier | None = None,
        strategy: str | Schedule = "auto",
        interval: int | None = None,
        compression: Any = None,
        timeline: bool = True,
    ) -> None:
        self._phase: _Phase = "closed"  # until fully built
        advance_fn = as_forward(forward)
        reverse_fn = as_reverse(reverse)
        spec = StateSpec.from_arrays(initial_state)
        spec.check(initial_state, "initial_state")
        self._n_given = check_optional_int("n_steps", n_steps, minimum=1)
        budget = parse_bytes(ram, "ram")
        if disk is not None:
            if not isinstance(disk, Tier):
                raise ArgumentTypeError(
                    "disk must be an amcheck.storage.Tier (e.g. ZarrTier(path, spec)) or None, "
                    f"got {disk!r} of type {type(disk).__name__}"
                )
            if disk.spec != spec:
                raise InvalidArgumentError(
                    f"disk tier stores states {disk.spec!r}, but initial_state is {spec!r}"
                )
        if compression is not None:
            raise InvalidArgumentError(
                f"compression={compression!r} cannot be applied here: "
                + (
                    "disk is None, so nothing is compressed"
                    if disk is None
                    else "disk is a Tier instance; set compression on the tier itself"
                )
            )
        if not isinstance(timeline, bool):
            raise ArgumentTypeError(f"timeline must be True or False, got {timeline!r}")
        slot_nbytes = slot_size(spec)
        self._plan: Plan = plan(
            strategy,
            self._n_given,
            budget=budget,
            slot_nbytes=slot_nbytes,
            disk=disk,
            interval=interval,
        )
        self._spec = spec
        self._initial = initial_state
        self._budget = budget
        self._disk = disk
        self._pool = RamTier(budget, spec, slots=self._plan.buffers)
        self._timeline = Timeline(enabled=timeline)
        self._stats = StatsRecorder(ram_pool_bytes=self._pool.allocated_bytes)
        self._engine = Engine(
            advance_fn,
            reverse_fn,
            self._pool,
            known_length=self._n_given is not None,
            disk=disk,
            timeline=self._timeline,
            stats=self._stats,
        )
        self._schedule: Schedule | None = None
        self._n_seen: int | None = None
        self._busy = False
        self._phase = "ready"

    # -- sweeps --------------------------------------------------------------------------------

    def forward(self, initial_state: Mapping[str, np.ndarray] | None = None) -> Mapping[str, Any]:
        """Run the forward sweep and return x_n.

        Parameters
        ----------
        initial_state
            A new x_0 of the same spec (e.g. for the next iteration of an optimisation);
            ``None`` uses the one given to the constructor, read now.

        Returns
        -------
        Mapping[str, numpy.ndarray]
            x_n as read-only arrays. They are views into amcheck's pool, valid until the next
            ``forward()`` or ``close()`` (``reverse()`` leaves them alone); ``np.copy`` them to
            keep them longer.

        Raises
        ------
        OperatorError
            The forward operator raised (chained) or returned an invalid value; the
            Checkpointer is reset and ``forward()`` may be called again.
        SweepStateError
            The Checkpointer is closed, or ``forward()`` was called from inside an operator.
        """
        self._enter("forward()")
        try:
            x0 = self._initial if initial_state is None else initial_state
            self._spec.check(x0, "initial_state")
            self._schedule = self._plan.make()
            self._timeline.clear()
            self._phase = "ready"
            self._n_seen = None
            n = self._engine.run_forward(self._schedule.forward(), x0)
            if self._n_given is not None and n != self._n_given:
                raise ScheduleError(
                    f"the schedule's forward sweep produced x_{n}, but n_steps={self._n_given}"
                )
            self._n_seen = n
            self._phase = "forwarded"
        except BaseException:
            self._reset()
            raise
        finally:
            self._busy = False
        final = self._engine.final_state
        assert final is not None
        return final

    def reverse(self) -> None:
        """Run the reverse sweep: the reverse operator for t = n-1 … 0, in that order.

        May be called again after it returned (several adjoint sources over one forward sweep)
        when the strategy keeps what it needs; :attr:`can_reverse_again` says whether it does.

        Raises
        ------
        SweepStateError
            No forward sweep to reverse: ``reverse()`` before ``forward()``, after an error, or
            again when the strategy reused its forward checkpoints' memory.
        OperatorError
            An operator raised (chained); the Checkpointer is reset (call ``forward()`` again).
        """
        if self._phase == "ready":
            self._check_open()
            raise SweepStateError(
                "reverse() needs a forward sweep to reverse: call forward() first "
                "(after an error the Checkpointer is reset and forward() must run again)"
            )
        if self._phase == "reversed" and not self._engine.can_reverse_again:
            raise SweepStateError(
                f"strategy {self._plan.name!r} reused the memory of its forward checkpoints "
                "during the last reverse sweep, so another reverse() needs a new forward() "
                "first; a strategy that keeps every state ('store_all', with enough ram) can "
                "reverse several times"
            )
        self._enter("reverse()")
        try:
            schedule = self._schedule
            n = self._engine.n_steps
            assert schedule is not None and n is not None
            actions = schedule.reverse(n) if self._phase == "forwarded" else None
            self._engine.run_reverse(actions)
            self._phase = "reversed"
        except BaseException:
            self._reset()
            raise
        finally:
            self._busy = False

    # -- introspection -------------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """Counts and times since the last ``forward()`` (see :class:`amcheck.Stats`)."""
        return self._stats.snapshot()

    @property
    def timeline(self) -> Timeline:
        """Events of the last ``forward()`` and the reverse sweeps after it."""
        return self._timeline

    @property
    def strategy(self) -> str:
        """The strategy in use ("store_all", "revolve", …, or the schedule's class name)."""
        return self._plan.name

    @property
    def schedule(self) -> Schedule:
        """The schedule of the current sweep (a fresh one per ``forward()`` for named strategies)."""
        return self._schedule if self._schedule is not None else self._plan.make()

    @property
    def slots(self) -> int | None:
        """RAM checkpoint slots of the strategy (``None`` for a schedule instance)."""
        return self._plan.slots

    @property
    def interval(self) -> int | None:
        """Steps between disk checkpoints, for the disk strategies; else ``None``."""
        return self._plan.interval

    @property
    def n_steps(self) -> int | None:
        """n: as given, or, for an unknown length, where the last forward sweep ended."""
        return self._n_given if self._n_given is not None else self._n_seen

    @property
    def spec(self) -> StateSpec:
        """The state's fields, shapes and dtypes."""
        return self._spec

    @property
    def ram_pool_bytes(self) -> int:
        """Bytes of RAM the pool allocated (at most the ``ram`` budget)."""
        return int(self._pool.allocated_bytes)

    @property
    def can_reverse_again(self) -> bool:
        """Whether ``reverse()`` may be called now without a new ``forward()``."""
        return self._phase == "forwarded" or (
            self._phase == "reversed" and self._engine.can_reverse_again
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._phase == "closed"

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the RAM pool and the checkpoints written to disk; idempotent."""
        if self._phase == "closed":
            return
        self._phase = "closed"
        try:
            self._engine.close()
        finally:
            self._schedule = None

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        n = "None" if self._n_given is None else str(self._n_given)
        pool = getattr(self, "_pool", None)
        size = "" if pool is None else f", pool={format_bytes(pool.allocated_bytes)}"
        return (
            f"Checkpointer(strategy={getattr(self, '_plan', None) and self._plan.name!r}, "
            f"n_steps={n}{size}, phase={self._phase!r})"
        )

    # -- internals -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._phase == "closed":
            raise SweepStateError("this Checkpointer is closed; create a new one")

    def _enter(self, what: str) -> None:
        self._check_open()
        if self._busy:
            raise SweepStateError(
                f"{what} was called while a sweep is running (from inside an operator?); "
                "operators must not call the Checkpointer"
            )
        self._busy = True

    def _reset(self) -> None:
        """After a failure: drop the sweep's buffers and checkpoints, or close if that fails."""
        self._phase = "ready"
        try:
            self._engine.clear()
        except BaseException:
            self._phase = "closed"
            with contextlib.suppress(Exception):  # the first error is the one to report
                self._engine.close()
            raise
