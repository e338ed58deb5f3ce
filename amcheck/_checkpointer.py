"""The Checkpointer: amcheck's entry point.

It ties the user's operators and initial state to a schedule (chosen from a RAM budget by
:mod:`amcheck._strategy`), a preallocated RAM slot pool, an optional disk tier and the engine
(:mod:`amcheck._engine`), and keeps the calls in order: ``forward()``, then ``reverse()`` (once or,
when the strategy keeps what it needs, several times), then ``forward()`` again or ``close()``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from amcheck._bytes import ByteSize, format_bytes, parse_bytes
from amcheck._cores import (
    WARMUP,
    auto_chooser,
    check_compute_threads,
    chosen_threads,
    fixed_threads,
    numba_threads,
)
from amcheck._disk import DiskPath
from amcheck._engine import Engine, Progress
from amcheck._errors import (
    ArgumentTypeError,
    BudgetError,
    InvalidArgumentError,
    ScheduleError,
    StoreMismatchError,
    SweepStateError,
    TransferError,
)
from amcheck._folders import PREFIX, STORE_NAME, warn_stale_folders
from amcheck._operators import (
    as_forward,
    as_reverse,
    as_reverse_pair,
    check_signature,
    code_name,
    declares_reverse_from_next,
)
from amcheck._remember import INTERVALS, storage_of
from amcheck._state import StateSpec
from amcheck._stats import Stats, StatsRecorder
from amcheck._strategy import STRATEGIES, Plan, paired, plan, slot_size
from amcheck._timeline import Timeline
from amcheck._validate import check_bool, check_int, check_optional_int
from amcheck.schedules import AsyncMultistage, Paired, Schedule, TwoLevel, disk_interval_floor
from amcheck.schedules._simulate import declared_length
from amcheck.storage import RamTier, Tier
from amcheck.storage._cpus import check_cpus
from amcheck.storage._cpus import io_cpus as chosen_io_cpus
from amcheck.storage._users import OpenUsers

#: The disk writes in flight ``max_in_flight=None`` takes: MORE_IN_FLIGHT where its plan is
#: IN_FLIGHT's (``Checkpointer._more_in_flight``), else IN_FLIGHT. On the Intel host, 4 MiB
#: checkpoints at k = 16 (benchmarks/long_sequences.py's load, n = 10^4): 7.10 s with 2 in
#: flight, 6.60 s with 3 (medians of 3, session 21), the computation waiting 0.28-0.43 s and
#: 0.05-0.14 s for the disk (benchmarks/results/max_in_flight_ab.py, .log).
IN_FLIGHT, MORE_IN_FLIGHT = 2, 3

#: Directories the Checkpointers of this process made for their folders, with how many of them
#: use each: a Checkpointer given the same new path shares them, and the last to close removes
#: them (the first found them full, the second had not made them). Creation and removal hold
#: the lock, so that a directory is never removed between another's check and its mkdir.
_MADE_USERS: dict[Path, int] = {}
_MADE_LOCK = threading.Lock()


@dataclass(slots=True)
class _Owned:
    """What a Checkpointer made and removes on close: its disk tier, the directory it made for
    it (:mod:`amcheck._folders`) with the tier's lock, and the directories it had to create for
    that one, or shares with another Checkpointer of the process that created them (innermost
    first, counted in :data:`_MADE_USERS`)."""

    tier: Tier | None = None
    folder: Path | None = None
    made: list[Path] = field(default_factory=list)

    def remove_folder(self) -> None:
        """Remove the folder, then the directories made for it while nothing else is in them."""
        folder, self.folder = self.folder, None
        made, self.made = self.made, []
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            if os.path.lexists(folder):  # nothing may be left silently: say why, and where
                try:
                    shutil.rmtree(folder)
                except OSError as exc:
                    warnings.warn(
                        f"the folder amcheck made for its disk tier, {str(folder)!r}, could not "
                        f"be removed ({type(exc).__name__}: {exc}); remove it yourself",
                        UserWarning, stacklevel=3)
        removing = True
        with _MADE_LOCK:
            for parent in made:
                users = _MADE_USERS.pop(parent, 1) - 1
                if users:  # another Checkpointer still uses it: the last one removes it
                    _MADE_USERS[parent] = users
                    removing = False
                if not removing:
                    continue
                try:
                    parent.rmdir()
                except FileNotFoundError:
                    continue  # never made: interrupted first
                except OSError:
                    removing = False

    def close(self) -> None:
        """Close the tier amcheck created, then remove the folder. A tier that cannot write its
        index on closing (its folder was deleted under it) loses nothing: the folder goes."""
        tier, self.tier = self.tier, None
        try:
            if tier is not None:
                from amcheck.storage._sync import run_sync

                run_sync(tier.close())
        except TransferError:
            pass  # the tier's files are removed next: its index had nothing left to keep
        finally:
            self.remove_folder()


def _caller() -> str:
    """``file:line`` of the innermost frame outside amcheck (where a Checkpointer was made)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("amcheck"):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _collected(disk: DiskPath | None, written: set[int], owned: _Owned, pid: int,
               created: str) -> None:
    """A Checkpointer garbage-collected (or alive at exit) without ``close()``: stop its
    transfer threads, delete the disk checkpoints it wrote and remove what it made.

    Given only those parts, never the engine (which holds the operators): an operator that
    refers to its Checkpointer would otherwise keep it from ever being collected.
    """
    if os.getpid() != pid:  # a forked child exiting: the checkpoints are its parent's
        return

    def clean_up() -> None:
        # Nobody to report a failure to; at exit, after Python stopped its thread pools, the
        # tier cannot flush, but the folder amcheck made still goes.
        if disk is not None:
            with contextlib.suppress(Exception):
                disk.clean_up(written)
        with contextlib.suppress(Exception):
            owned.close()

    try:
        if threading.current_thread().name.startswith("amcheck"):
            # Collected on one of amcheck's transfer threads, which cannot stop themselves.
            threading.Thread(target=clean_up, name="amcheck-finalizer").start()
        else:
            clean_up()
    finally:
        # After the clean-up: with ResourceWarning made an error (-W error, pytest's
        # filterwarnings) the warning raises here, and nothing may be left behind for it.
        warnings.warn(
            f"an amcheck Checkpointer (made at {created}) was not closed; amcheck closed it "
            "(use it as a context manager, `with Checkpointer(...) as ckp:`, or call "
            "ckp.close())",
            ResourceWarning,
            stacklevel=2,
        )


#: The open Checkpointer each caller-owned tier serves, by id (a tier may define __eq__ and so
#: not hash; a Checkpointer holds its tier, so the id is not reused while it lives); and each
#: schedule instance of an unknown length, which follows the one forward sweep it plans.
_TIER_USERS: OpenUsers[int, Checkpointer] = OpenUsers()
_SCHEDULE_USERS: OpenUsers[int, Checkpointer] = OpenUsers()

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
        ``"25%"`` (of physical memory; the default). It bounds every buffer the engine holds:
        checkpoint slots, the current state, x_n and, with a disk, ``max_in_flight`` staging
        buffers (in the forward sweep; the reverse sweep writes nothing and uses them as
        checkpoint slots).
        Only what the chosen schedule needs is allocated (``stats.ram_pool_bytes``), once, when
        the Checkpointer is built.
    disk
        Where disk checkpoints go, or ``None`` (RAM only):

        - a directory path (``str`` or ``os.PathLike``; ``~`` is the home directory): amcheck
          creates a :class:`~amcheck.storage.ZarrTier` there with ``compression``, in a fresh
          ``amcheck-*`` subdirectory (the directory and its parents are created if missing),
          and removes what it created on ``close()`` (the directories it made, while empty).
          The subdirectory is locked while the Checkpointer is open (a lock file inside it,
          see :mod:`amcheck._folders`); one left by a run that was killed is not reused or
          deleted, but the next Checkpointer given the directory warns (``UserWarning``),
          naming it and its size;
        - a zarr store (``zarr.storage.LocalStore``, ``MemoryStore``, ...): a ZarrTier in it
          (a store serves one open tier at a time); amcheck deletes its checkpoints on
          ``close()`` but leaves the store's group;
        - a :class:`~amcheck.storage.Tier` (``ZarrTier``, ``RawTier``): caller-owned; its spec
          must match ``initial_state``; it must hold no checkpoints and serve no other open
          Checkpointer; ``close()`` deletes the checkpoints amcheck wrote and does not close
          the tier.
    strategy
        ``"auto"`` (default): ``"store_all"`` when all states fit ``ram``, else ``"revolve"``
        with the most slots that fit when ``disk`` is ``None``, or with a disk when n is known
        and Revolve recomputes no more than ``"async_multistage"`` would in the same RAM (n up
        to about R²/2 for R states of RAM, R² over pairs), else ``"async_multistage"``.
        Or one of those names, ``"two_level"``, or an :class:`amcheck.schedules.Schedule`
        planned for ``n_steps``. The rules are in :mod:`amcheck._strategy`.
    interval
        Steps k between disk checkpoints for ``"two_level"`` and ``"async_multistage"``: disk
        traffic is one state per k steps, the recompute factor ``1 + T(k, slots)/k``. ``None``
        (default) is automatic for ``"async_multistage"``: k starts at ``slots + 1`` (over pairs
        of steps ``slots + 1`` pairs, ``2 (slots + 1)`` steps, with a known n, and ``2 slots +
        1`` steps with ``n_steps=None``) and an
        :class:`~amcheck.IntervalController` moves it during the forward sweep to the smallest
        k whose compute time covers one checkpoint write, from the step and write times the
        engine measures (see docs/api.md, "The interval"). ``"two_level"`` keeps that start.
    compression
        Codec for a disk tier amcheck creates (``disk`` a path or a zarr store): ``None`` (raw),
        ``"blosc"``, ``"zstd"``, ``"zfp:tol=1e-4"``, ... (see
        :func:`amcheck.storage.parse_compression`). Must be ``None`` when ``disk`` is a Tier
        instance (configure compression on the tier) or ``None``.
    disk_budget
        Bytes the disk checkpoints may take at once (``"8 GiB"``; not a percentage, which
        would be one of memory), or ``None`` for no bound.
        Each checkpoint counts as the state's uncompressed size (``spec.nbytes``), or with
        ``"zfp:rate=..."`` its fixed coded size (``Tier.data_nbytes()``; on the disk each also
        takes a crc32c and a shard index per field level, tens of bytes, the store a few KiB of
        metadata, and blosc/zstd may add a few bytes per chunk on incompressible data), so the
        schedule holds at most ``disk_budget // tier.data_nbytes()`` disk checkpoints: with a
        known ``n_steps`` the interval becomes at least ``ceil(n / that)``; with
        ``n_steps=None`` the schedule drops every other disk checkpoint and doubles the interval
        whenever the tier is full. A Tier instance with a capacity of its own (e.g.
        ``ZarrTier(path, spec, budget="8 GiB")``) bounds the count the same way
        (``Tier.max_checkpoints()``), with or without ``disk_budget``.
    max_in_flight
        Disk writes in flight at most. Each holds the RAM slot it writes from until it is done
        (no copy), so the pool gets this many staging slots within ``ram`` on top of the
        forward sweep's buffers (the reverse sweep reuses them as checkpoint slots); when all
        are busy the compute thread waits for the oldest (back-pressure, recorded as a
        ``"wait"`` on the timeline and in ``stats.stall_seconds``). ``None`` (the default): 3
        where ``ram`` holds the third staging slot with the same plan (the same checkpoint
        slots and interval) as with 2, else 2 (:data:`MORE_IN_FLIGHT`); ``ckp.max_in_flight``
        says which.
    compute_threads
        numba threads for the user's kernels during sweeps with disk traffic: ``None`` (the
        default: measured; after 2 advances the forward sweep times 3 on one thread fewer than
        numba's count, which leaves a core to the transfer thread, and the next 3 on all, the
        reverse sweep (from its start) windows of 8 reverse steps likewise; the sweep goes on
        with the faster, one fewer unless all threads are 5 % faster and none of their units
        stalled (1.5x one fewer's median), and times both again after 64 units, then 128, ...;
        the process remembers the choice for later Checkpointers of the same operators, state
        and disk tier kind, which go on from it without probing), ``"all"`` (leave numba alone)
        or a number. The count is restored after each sweep and
        ``stats.compute_threads`` says what a sweep ended on. Applies only when the operator
        has imported numba; amcheck never imports it. Why: see :mod:`amcheck._cores`.
    io_cpus
        CPUs the transfer threads run on. ``None`` (the default): on Linux, the CPUs that take
        the interrupts of the disk tier's disk, when those are some but not all of the CPUs the
        process may use (a disk with one request queue; one per CPU, as NVMe has, confines
        nothing); else anywhere. The computation then runs on the other CPUs, where no disk
        completion preempts it (measured on 2 cores: the whole sweep 1.035-1.042x faster, see
        :mod:`amcheck.storage._cpus`). ``"any"``: wherever the
        scheduler puts them. A collection of CPU ids: those (Linux only).
        ``stats.io_cpus`` says which.
    timeline
        Record a :class:`amcheck.Timeline` of compute, reverse, transfer and wait events
        (default ``True``; about a microsecond per event).
    pairs
        Plan over pairs of steps (:class:`amcheck.schedules.Paired`: one state serves reverse
        steps t and t - 1): ``None`` (default) when the reverse operator declares
        ``reverse_from_next = True`` (see :class:`amcheck.ReverseOperator`), ``n_steps >= 3``
        is known and ``strategy`` is a name; with ``n_steps=None`` the disk strategies reverse
        each segment over pairs (``pairs=True`` of :class:`~amcheck.schedules.AsyncMultistage`)
        and store-all keeps the odd states and an even one only while the advance from it runs;
        ``False`` never (e.g. to check the declaration: the results must be bitwise the same; a
        :class:`~amcheck.schedules.Paired` instance as ``strategy`` is then refused); ``True``
        as ``None``, but an ``InvalidArgumentError`` where pairs cannot be planned (no
        declaration, a Schedule instance; below 3 known steps pairs change nothing). Steps,
        intervals and counts stay real steps; with a known n ``interval`` is rounded up to
        whole pairs.

    Raises
    ------
    ArgumentTypeError
        An operator is neither an object with the method nor a callable of the right signature;
        ``initial_state`` is not a mapping of numpy arrays; ``disk`` is not a path, a zarr
        store or a Tier.
    InvalidArgumentError
        ``n_steps < 1``; a state array is not C-contiguous; a disk strategy without ``disk``;
        a schedule planned for another length; ``interval`` with ``"store_all"``,
        ``"revolve"`` or a Schedule instance; ``disk`` a URL string (give a zarr store), a Tier
        of another state spec, one that holds checkpoints or serves another open Checkpointer;
        ``compression`` or ``disk_budget`` without a disk amcheck can apply them to;
        ``pairs=True`` where pairs of steps cannot be planned (the message says why).
    BudgetError
        ``ram`` is below what the strategy needs (staging buffers included), or ``disk_budget``
        below one checkpoint; the message says how many bytes are needed.
    StoreLockedError
        ``disk`` is a zarr ``LocalStore`` that a ZarrTier of another process has open (one of
        this process: InvalidArgumentError).
    StoreMismatchError
        ``disk`` is a zarr store that holds checkpoints of another state spec or compression,
        or other data.

    Warns
    -----
    UserWarning
        ``disk`` is a directory holding ``amcheck-*`` folders of runs that ended without
        ``close()`` (killed, crashed); the message names them and their sizes.

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
        disk: Any = None,
        strategy: str | Schedule = "auto",
        interval: int | None = None,
        compression: Any = None,
        disk_budget: ByteSize | None = None,
        max_in_flight: int | None = None,
        compute_threads: int | str | None = None,
        io_cpus: Iterable[int] | str | None = None,
        timeline: bool = True,
        pairs: bool | None = None,
    ) -> None:
        self._phase: _Phase = "closed"  # until fully built
        self._owned = _Owned()
        self._finalizer: weakref.finalize[Any, Any] | None = None
        advance_fn = as_forward(forward)
        reverse_fn = as_reverse(reverse)
        spec = StateSpec.from_arrays(initial_state, "initial_state")
        spec.check(initial_state, "initial_state")
        self._n_given = check_optional_int("n_steps", n_steps, minimum=1)
        budget = parse_bytes(ram, "ram")
        self._max_in_flight = (IN_FLIGHT if max_in_flight is None
                               else check_int("max_in_flight", max_in_flight, minimum=1))
        self._compute_threads = check_compute_threads(compute_threads)
        io_given: frozenset[int] | Literal["any"] | None = None
        if io_cpus == "any":
            io_given = "any"
        elif isinstance(io_cpus, str):
            raise InvalidArgumentError(
                f"io_cpus must be None (the disk's interrupt CPUs), 'any' or a collection "
                f"of CPU ids, got {io_cpus!r}")
        elif io_cpus is not None:
            io_given = check_cpus("io_cpus", io_cpus)
        timeline = check_bool("timeline", timeline)
        disk_bytes = self._disk_budget(disk, disk_budget)
        slot_nbytes = slot_size(spec)
        self._auto_interval = interval is None
        interval = check_optional_int("interval", interval, minimum=1)
        n = self._n_given
        from_next = declares_reverse_from_next(reverse)
        self._reverse_pair = as_reverse_pair(reverse) if from_next else None
        if pairs is not None:
            if not isinstance(pairs, (bool, np.bool_)):
                raise ArgumentTypeError(
                    f"pairs must be None (pairs where they apply), True or False, got {pairs!r} "
                    f"of type {type(pairs).__name__}")
            pairs = bool(pairs)
        if (isinstance(strategy, Schedule) and getattr(strategy, "reverse_from_next", False) is True
                and (not from_next or pairs is False)):
            raise InvalidArgumentError(
                f"strategy {strategy!r} runs reverse step t from x_{{t+1}}, which "
                + ("pairs=False rules out" if from_next else "the reverse operator does not "
                   "allow: it does not declare reverse_from_next = True")
                + ("; pass its inner schedule (strategy.inner) to run step by step"
                   if isinstance(strategy, Paired) else
                   "; build it without pairs=True to run step by step"))
        # Pairs of steps: a known n >= 3 plans over Paired.pairs(n) macro steps (paired_n);
        # n_steps=None pairs inside each disk segment, whose length is known when it is
        # reversed, and store-all keeps what pairs need (unknown_pairs).
        want_pairs = from_next and pairs is not False and isinstance(strategy, str)
        unknown_pairs = want_pairs and n is None
        if pairs:
            why = ("the reverse operator does not declare reverse_from_next = True"
                   if not from_next else "strategy is a Schedule instance (it runs as planned)"
                   if not isinstance(strategy, str) else
                   f"n_steps={n} has no pair to plan (pairs need n_steps >= 3)"
                   if n is not None and n < 3 else None)
            if why is not None:
                raise InvalidArgumentError(
                    f"pairs=True cannot plan over pairs of steps: {why}; leave pairs=None to "
                    "use them where they apply")
        tier = self._tier(disk, compression, spec)  # after the checks: it may create a folder
        # An interval that plan() refuses anyway is left whole, for its message.
        paired_n = n if (
            want_pairs and n is not None and n >= 3
            and not (interval is not None and (tier is None or strategy in ("store_all", "revolve")))
        ) else None
        try:
            if (isinstance(strategy, Schedule) and declared_length(strategy) is None
                    and _SCHEDULE_USERS.claim(id(strategy), self) is not None):
                raise InvalidArgumentError(
                    f"strategy {strategy!r} is already used by another open Checkpointer; with "
                    "n_steps=None a schedule follows the forward sweep it plans, and two would "
                    "mix theirs: give each its own instance (or close the other first)")
            disk_slots = self._disk_slots(tier, disk_bytes, isinstance(strategy, str))
            def planned(staging: int) -> Plan:
                return plan(
                    strategy,
                    n if paired_n is None else Paired.pairs(paired_n),
                    budget=budget,
                    slot_nbytes=slot_nbytes,
                    disk=tier,
                    interval=(interval if paired_n is None or interval is None
                              else Paired.interval_pairs(interval, paired_n)),
                    staging=staging,
                    disk_slots=disk_slots,
                    pairs=unknown_pairs,
                )

            try:
                self._plan: Plan = planned(self._max_in_flight)
                if max_in_flight is None and self._plan.staging:
                    self._more_in_flight(planned)
            except BudgetError as error:
                if paired_n is not None:
                    error.add_note(
                        f"the reverse operator declares reverse_from_next, so the plan covers "
                        f"{Paired.pairs(paired_n)} pairs of steps for n_steps={paired_n} (steps "
                        "and intervals above count pairs; pairs=False plans step by step)")
                raise
            if paired_n is not None:
                self._plan = paired(self._plan, paired_n)
            if interval is not None and n is not None and self._plan.interval is not None:
                units = Paired.pairs(paired_n) if paired_n is not None else n
                k = interval if paired_n is None else Paired.interval_pairs(interval, paired_n)
                if k < disk_interval_floor(units, disk_slots):
                    held = f"{disk_slots} checkpoint{'s' if disk_slots != 1 else ''}"
                    warnings.warn(
                        f"interval={interval} was raised to {self._plan.interval}: the disk "
                        f"budget holds {held} of the state, and {n} steps in segments of "
                        f"{interval} need more (raise disk_budget, or the tier's own budget, to "
                        "keep the interval)", UserWarning, stacklevel=2)
            self._spec = spec
            # what the process remembers thread choices and intervals for (amcheck._remember)
            self._workload = (code_name(advance_fn), code_name(reverse_fn), spec,
                              type(tier).__name__, storage_of(tier))
            self._initial = initial_state
            self._budget = budget
            self._disk = tier
            # Store-all of an unknown length sizes its pool to the whole budget but may use a
            # few slots of it: those pages are committed as the run reaches them.
            growing = self._plan.name == "store_all" and self._n_given is None
            self._pool = RamTier(budget, spec, slots=self._plan.pool_buffers, touch=not growing)
            self._timeline = Timeline(enabled=timeline)
            cpus = None  # the transfer threads' CPUs: None runs them anywhere
            if self._plan.staging and io_given is None:
                assert tier is not None
                cpus = chosen_io_cpus(tier.local_path)
            elif self._plan.staging and io_given != "any":
                cpus = io_given
            self._stats = StatsRecorder(ram_pool_bytes=self._pool.allocated_bytes,
                                        io_cpus=None if cpus is None else tuple(sorted(cpus)))
            self._engine = Engine(
                advance_fn,
                reverse_fn,
                self._pool,
                known_length=self._n_given is not None,
                disk=tier if self._plan.staging else None,
                timeline=self._timeline,
                stats=self._stats,
                max_in_flight=self._max_in_flight,
                reverse_from_next=from_next,
                io_cpus=cpus,
            )
        except BaseException as error:
            self._close_owned()
            if isinstance(error, BudgetError) and isinstance(ram, str) and "%" in ram:
                error.add_note(
                    f"ram={ram!r}{' (the default)' if ram == '25%' else ''} is "
                    f"{format_bytes(budget)} "
                    "of the memory this process may use (the machine's, or a lower cgroup "
                    "limit)")
            raise
        # With a disk tier, not closed before it is garbage-collected (or at exit): stop its
        # threads, delete its disk checkpoints and remove what it made, with a ResourceWarning.
        # (RAM alone is memory, which the collector frees anyway.)
        if tier is not None:
            self._finalizer = weakref.finalize(
                self, _collected, self._engine.disk_path, self._engine.disk_written, self._owned,
                os.getpid(), _caller(),
            )
        self._schedule: Schedule | None = None
        self._n_seen: int | None = None
        self._busy: object | None = None  # the claim of the call running (see _enter)
        self._claim = threading.Lock()
        self._closing = threading.Lock()
        self._phase = "ready"

    @staticmethod
    def _disk_budget(disk: Any, disk_budget: Any) -> int | None:
        """``disk_budget`` in bytes, checked before anything is created for the disk."""
        if disk_budget is None:
            return None
        if disk is None:
            raise InvalidArgumentError(
                f"disk_budget={disk_budget!r} needs a disk; with disk=None nothing goes to disk"
            )
        return parse_bytes(disk_budget, "disk_budget", on_disk=True)

    @staticmethod
    def _disk_slots(tier: Tier | None, disk_budget: int | None, named: bool) -> int | None:
        """Disk checkpoints ``disk_budget`` holds, each counting ``tier.data_nbytes()`` (see
        above), and for a strategy ``named`` (not a schedule instance, which brings its own
        bound) at most what the tier's own capacity holds (``Tier.max_checkpoints()``)."""
        if tier is None:
            return None
        # A Tier subclass of the caller's answers these: what it says is checked like any input.
        what = f"the disk tier {type(tier).__name__}'s"
        per = max(check_int(f"{what} data_nbytes()", tier.data_nbytes(), minimum=0), 1)
        check_optional_int(f"{what} capacity", tier.capacity, minimum=0)
        held = (check_optional_int(f"{what} max_checkpoints()", tier.max_checkpoints(), minimum=0)
                if named else None)
        if held is not None and held < 1:
            raise BudgetError(
                f"the disk tier {tier!r} holds no checkpoint of {per} bytes "
                f"({format_bytes(per)}) within its capacity of {tier.capacity} bytes "
                "(a checkpoint takes more than the state's bytes there: the tier's checksums "
                "and index, and room for a compressor's worst case); raise its budget"
            )
        if disk_budget is None:
            return held
        slots = disk_budget // per
        if slots < 1:
            raise BudgetError(
                f"disk_budget={disk_budget} bytes ({format_bytes(disk_budget)}) holds no "
                f"checkpoint of {per} bytes ({format_bytes(per)}); raise it to at least {per} "
                "bytes"
            )
        return slots if held is None else min(slots, held)

    def _tier(self, disk: Any, compression: Any, spec: StateSpec) -> Tier | None:
        """The disk tier for ``disk``: a caller's Tier, or a ZarrTier amcheck creates."""
        if disk is None:
            if compression is not None:
                raise InvalidArgumentError(
                    f"compression={compression!r} cannot be applied here: disk is None, so "
                    "nothing is compressed"
                )
            return None
        if isinstance(disk, Tier):
            if disk.closed:
                raise InvalidArgumentError(f"disk tier {disk!r} is closed; pass an open tier")
            if not isinstance(getattr(disk, "spec", None), StateSpec):
                raise ArgumentTypeError(
                    f"disk tier {disk!r} has no StateSpec as its spec (got "
                    f"{getattr(disk, 'spec', None)!r}): a Tier sets self.spec to the layout of "
                    "the states it stores")
            if disk.spec != spec:
                raise InvalidArgumentError(
                    f"disk tier stores states {disk.spec!r}, but initial_state is {spec!r}"
                )
            if compression is not None:
                raise InvalidArgumentError(
                    f"compression={compression!r} cannot be applied here: disk is a Tier "
                    "instance; set compression on the tier itself"
                )
            if _TIER_USERS.claim(id(disk), self) is not None:  # checked and claimed at once
                raise InvalidArgumentError(
                    f"disk tier {disk!r} is already used by another open Checkpointer; both "
                    "would write and delete the same steps: give each its own tier (or close "
                    "the other first)"
                )
            if disk.steps:
                _TIER_USERS.release(self)
                held = sorted(disk.steps)
                raise InvalidArgumentError(
                    f"disk tier {disk!r} already holds checkpoints (steps {held[:5]}"
                    f"{', ...' if len(held) > 5 else ''}), which the sweeps would overwrite "
                    "and delete: give the Checkpointer an empty tier"
                )
            return disk
        # Without importing zarr: a store exists only once zarr is imported. getattr: another
        # thread may be importing zarr right now, its module not yet complete.
        store_class = getattr(sys.modules.get("zarr.abc.store"), "Store", None)
        is_store = store_class is not None and isinstance(disk, store_class)
        if not is_store and not isinstance(disk, (str, os.PathLike)):
            raise ArgumentTypeError(
                "disk must be None, a directory path, a zarr store or an amcheck.storage.Tier "
                f"(e.g. ZarrTier(path, spec)), got {disk!r} of type {type(disk).__name__}"
            )
        from amcheck.storage import ZarrTier
        from amcheck.storage._codecs import parse_compression
        from amcheck.storage._sync import run_sync

        compression = parse_compression(compression)  # its errors its own, before any folder

        if is_store:
            try:
                tier = ZarrTier(disk, spec, compression)
            except StoreMismatchError as exc:
                raise StoreMismatchError(
                    f"disk={disk!r}: {exc}. The Checkpointer needs an empty store (or one an "
                    "amcheck tier of this spec and compression left empty): erase it yourself, "
                    "or pass disk=ZarrTier(store, spec, overwrite=True)"
                ) from exc
            if tier.steps:
                held = sorted(tier.steps)
                run_sync(tier.close())  # leaves the store's checkpoints alone
                raise InvalidArgumentError(
                    f"disk store {disk!r} already holds checkpoints (steps {held[:5]}"
                    f"{', ...' if len(held) > 5 else ''}), which the sweeps would overwrite and "
                    "delete: give the Checkpointer an empty store"
                )
        else:
            if isinstance(disk, str) and not disk.strip():
                raise InvalidArgumentError(
                    f"disk={disk!r} names no directory (an unset environment variable?); pass "
                    "a directory path, or None to keep every checkpoint in RAM"
                )
            if isinstance(disk, str) and "://" in disk:
                raise InvalidArgumentError(
                    f"disk={disk!r}: pass a URL as a zarr store (zarr.storage.FsspecStore."
                    "from_url(url)) or a ZarrTier; a str is a local directory"
                )
            # Absolute and normalised now, so that a later chdir cannot redirect the removal;
            # "~/scratch" means the home directory's, as in a shell.
            root = Path(os.path.abspath(os.path.expanduser(disk)))
            if root.exists() and not root.is_dir():
                raise InvalidArgumentError(f"disk={str(root)!r} exists and is not a directory")
            # Always a subdirectory of its own: other Checkpointers may be given the same path,
            # and one closing must not remove another's checkpoints. The directories made for
            # it go when empty. All are named and recorded before they exist, so that an
            # interrupt (Ctrl-C) inside a mkdir leaves nothing behind; 64 random bits never
            # name another's folder.
            folder = root / f"{PREFIX}{secrets.token_hex(8)}"
            try:
                with _MADE_LOCK:  # see _MADE_USERS
                    self._owned.made = [p for p in (root, *root.parents)
                                        if not p.exists() or p in _MADE_USERS]
                    for made in self._owned.made:
                        _MADE_USERS[made] = _MADE_USERS.get(made, 0) + 1
                    root.mkdir(parents=True, exist_ok=True)
                    self._owned.folder = folder
                    # parents: a Checkpointer of another process closing may have removed
                    # root, empty, meanwhile
                    folder.mkdir(mode=0o700, parents=True)
            except BaseException as exc:
                if isinstance(exc, FileExistsError):
                    self._owned.folder = None  # not ours
                self._owned.remove_folder()
                if not isinstance(exc, OSError):
                    raise
                raise InvalidArgumentError(
                    f"disk={str(root)!r}: the directory for the disk tier could not be created "
                    f"({type(exc).__name__}: {exc}); pass a directory you can write to"
                ) from exc
            try:
                # Scratch: removed on close and never reopened, so no index is written.
                tier = ZarrTier(self._owned.folder / STORE_NAME, spec, compression,
                                index_interval=None)
            except BaseException as exc:
                self._owned.remove_folder()
                if type(exc) is InvalidArgumentError:  # a field the store cannot hold
                    raise InvalidArgumentError(
                        f"initial_state cannot be checkpointed in a zarr store on disk="
                        f"{disk!r}: {exc}") from exc
                raise
            self._owned.tier = tier
            if tier.locked:  # else no flock here: a live run's folder would look stale
                try:
                    warn_stale_folders(root, self._owned.folder, stacklevel=3)
                except BaseException:  # the warning filtered into an error: nothing stays
                    self._owned.close()
                    raise
        self._owned.tier = tier
        return tier

    def _close_owned(self) -> None:
        """Close the tier amcheck created and remove the directory it made for it; release a
        caller's tier for other Checkpointers; no finalizer is needed any more."""
        if self._finalizer is not None:
            self._finalizer.detach()
        _TIER_USERS.release(self)
        _SCHEDULE_USERS.release(self)
        self._owned.close()

    # -- sweeps --------------------------------------------------------------------------------

    def forward(
        self,
        progress: Progress | None = None,
        *,
        initial_state: Mapping[str, np.ndarray] | None = None,
    ) -> Mapping[str, Any]:
        """Run the forward sweep and return x_n.

        Parameters
        ----------
        progress
            Called with the number of forward steps just completed, after each advance of the
            first sweep (``tqdm(total=n).update`` fits); ``None`` (default) costs nothing.
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
        if isinstance(progress, Mapping):
            raise ArgumentTypeError(
                "forward(progress) got a mapping; pass a new x_0 as forward(initial_state=...)"
            )
        _check_progress(progress)
        with self._claimed("forward()"):
            return self._forward(progress, initial_state)

    def _forward(self, progress: Progress | None,
                 initial_state: Mapping[str, np.ndarray] | None) -> Mapping[str, Any]:
        try:
            x0 = self._initial if initial_state is None else initial_state
            self._spec.check(x0, "initial_state")
            self._schedule = self._plan.make()
            # one call for two reverse steps, where the schedule runs over pairs of steps
            paired_reverse = getattr(self._schedule, "reverse_from_next", False) is True
            self._engine.reverse_pair = self._reverse_pair if paired_reverse else None
            self._timeline.clear()
            self._phase = "ready"
            self._n_seen = None
            self._engine.progress = progress
            self._engine.tuner = tuner = self._make_tuner(self._schedule)
            with self._cores(forward=True):
                n = self._engine.run_forward(self._schedule.forward(), x0, self._n_given)
            self._stats.interval = ended = getattr(self._schedule, "interval", None)
            if tuner is not None and ended and not getattr(self._schedule, "thinning_rounds", 0):
                if tuner.probing:
                    # too few writes to measure (a k remembered from a slower disk, or a busy
                    # moment, can be as long as the sweep): the next sweep measures from the
                    # start again instead of keeping a k it cannot correct
                    INTERVALS.discard(self._interval_key)
                else:  # measured, not doubled by a full disk tier: where the next one starts
                    INTERVALS.put(self._interval_key, ended)
            if self._n_given is not None and n != self._n_given:
                raise ScheduleError(
                    f"the schedule's forward sweep produced x_{n}, but n_steps={self._n_given}"
                )
            self._n_seen = n
            self._phase = "forwarded"
            final = self._engine.final_state  # before the claim goes: a close() may follow
        except BaseException as error:
            self._reset(error)
            raise
        finally:
            self._engine.progress = None
            self._engine.tuner = None
            self._stats.hidden_fraction = self._timeline.hidden_fraction()
        assert final is not None
        return final

    def reverse(self, progress: Progress | None = None) -> None:
        """Run the reverse sweep: the reverse operator for t = n-1 … 0, in that order.

        May be called again after it returned (several adjoint sources over one forward sweep)
        when the strategy keeps what it needs; :attr:`can_reverse_again` says whether it does.

        Parameters
        ----------
        progress
            Called with 1 after each reverse step; ``None`` (default) costs nothing.

        Raises
        ------
        SweepStateError
            No forward sweep to reverse: ``reverse()`` before ``forward()``, after an error, or
            again when the strategy reused its forward checkpoints' memory.
        OperatorError
            An operator raised (chained); the Checkpointer is reset (call ``forward()`` again).
        """
        _check_progress(progress)
        with self._claimed("reverse()"):  # first: a sweep running elsewhere is the reason
            self._check_reversible()
            self._reverse(progress)

    def _reverse(self, progress: Progress | None) -> None:
        try:
            schedule = self._schedule
            n = self._engine.n_steps
            assert schedule is not None and n is not None
            actions = schedule.reverse(n) if self._phase == "forwarded" else None
            self._engine.progress = progress
            with self._cores(forward=False):
                self._engine.run_reverse(actions)
            self._phase = "reversed"
        except BaseException as error:
            self._reset(error)
            raise
        finally:
            self._engine.progress = None
            self._stats.hidden_fraction = self._timeline.hidden_fraction()

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
        """The schedule of the current sweep (a fresh one per ``forward()`` for named strategies).

        For the disk strategies named by a string, a :meth:`~amcheck.schedules.TwoLevel.replay`
        of it: ``simulate(ckp.schedule)`` then counts what the sweep did, with the intervals an
        automatic interval chose, and cannot disturb the sweep in progress.
        """
        schedule = self._schedule if self._schedule is not None else self._plan.make()
        if isinstance(schedule, (TwoLevel, AsyncMultistage)) and self._plan.name in STRATEGIES:
            return schedule.replay()
        if (isinstance(schedule, Paired) and self._plan.name in STRATEGIES
                and isinstance(schedule.inner, (TwoLevel, AsyncMultistage))):
            return schedule.replay()
        return schedule

    @property
    def slots(self) -> int | None:
        """RAM checkpoint slots of the strategy (``None`` for a schedule instance)."""
        return self._plan.slots

    @property
    def interval(self) -> int | None:
        """Steps between disk checkpoints, for the disk strategies; else ``None``.

        The ``interval`` given, or with an automatic interval the plan's first guess. A sweep
        starts there unless the process remembers the interval the last sweep of the same
        workload ended with (``stats.interval``), where it starts instead (docs/api.md, "The
        interval").
        """
        return self._plan.interval

    @property
    def disk(self) -> Tier | None:
        """The disk tier (the caller's, or the one amcheck created), or ``None``."""
        return self._disk

    @property
    def max_in_flight(self) -> int:
        """Disk writes in flight at most (staging slots in the pool)."""
        return self._max_in_flight

    def _more_in_flight(self, planned: Callable[[int], Plan]) -> None:
        """``max_in_flight=None``: take :data:`MORE_IN_FLIGHT` writes where that plan fits
        ``ram`` with the same checkpoint slots and interval as :data:`IN_FLIGHT`'s (a disk that
        keeps several writes going, as one behind virtio or NVMe, then keeps up at a shorter
        interval; a tight budget keeps its Revolve slots)."""
        try:
            more = planned(MORE_IN_FLIGHT)
        except BudgetError:
            return
        if (more.slots, more.interval, more.disk_slots, more.buffers) == (
                self._plan.slots, self._plan.interval, self._plan.disk_slots, self._plan.buffers):
            self._plan, self._max_in_flight = more, MORE_IN_FLIGHT

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
        """Release the RAM pool and the checkpoints written to disk; idempotent.

        Raises
        ------
        SweepStateError
            A sweep is running (close() from inside an operator, or from another thread while
            a sweep runs there): to stop a sweep, raise an exception in your operator.
        """
        with self._closing:  # a second close() waits for the first, then finds it closed
            self._close()

    def _close(self) -> None:
        if self._phase == "closed":
            return
        token = object()
        try:
            self._enter("close()", token)
            try:
                self._engine.close()
            except Exception:
                self._phase = "closed"  # closed all the same, the error raised
                raise
            # (an interrupt, Ctrl-C, leaves it open: the next close() finishes the work)
            self._phase = "closed"
        finally:
            claimed = self._busy is token
            self._leave(token)  # after the phase: no sweep may start on a closed engine
            if claimed and self._phase == "closed":
                self._close_owned()

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

    def _check_reversible(self) -> None:
        """Raise SweepStateError unless a forward sweep is there to reverse."""
        if self._phase == "ready":
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

    def _enter(self, what: str, token: object) -> None:
        """Claim the Checkpointer for a sweep or close() with ``token``: one at a time, checked
        and claimed under a lock, so that another thread cannot slip in between. The caller
        calls it inside a ``try`` whose ``finally`` is :meth:`_leave`: an interrupt (Ctrl-C)
        just after the claim, where the lock's exit lets Python deliver it, must not leave the
        Checkpointer claimed for good; nor may a refused call release another's claim."""
        with self._claim:
            self._check_open()
            if self._busy is not None:
                raise SweepStateError(
                    f"{what} was called while a sweep or close() is running (from inside an "
                    "operator, or from another thread): a Checkpointer serves one call at a "
                    "time, and operators must not call it"
                )
            self._busy = token

    def _leave(self, token: object) -> None:
        """Release the claim :meth:`_enter` made with ``token``, if it made one."""
        if self._busy is token:
            self._busy = None

    @contextlib.contextmanager
    def _claimed(self, what: str) -> Iterator[None]:
        """The Checkpointer claimed for the ``with`` body (:meth:`_enter`, :meth:`_leave`)."""
        token = object()
        try:
            self._enter(what, token)
            yield
        finally:
            self._leave(token)

    @contextlib.contextmanager
    def _cores(self, *, forward: bool) -> Iterator[None]:
        """numba threads for a sweep with disk traffic (``compute_threads``): fixed, or chosen
        by measurement (going on from the process's last choice for this workload, direction
        and numba count); ``stats.compute_threads`` says what the sweep ended on."""
        self._engine.threads = None
        if not self._plan.staging:
            yield
            return
        if self._compute_threads is not None:
            threads = fixed_threads(self._compute_threads)
            with numba_threads(threads):
                yield
            self._stats.compute_threads = threads
            return
        key = (self._workload, forward)
        chooser = auto_chooser(key, warmup=WARMUP if forward else 0)
        if chooser is None:  # numba not imported, or one thread: nothing to choose
            yield
            return
        self._engine.threads = chooser
        try:
            with chosen_threads(chooser, key):
                yield
        finally:
            self._engine.threads = None
        self._stats.compute_threads = chooser.threads

    def _make_tuner(self, schedule: Schedule) -> _AutoInterval | None:
        """An automatic interval for this sweep's schedule, or ``None`` when k is fixed. It
        starts from the interval the last forward sweep of this workload ended with, in this
        process (:data:`amcheck._remember.INTERVALS`), else from the plan's."""
        if not (self._auto_interval and self._plan.name == "async_multistage"):
            return None
        if not hasattr(schedule, "set_interval"):
            return None
        remembered = INTERVALS.get(self._interval_key)
        tuner = _AutoInterval(schedule, remembered or self._plan.interval or 1, self._stats)
        if remembered is not None:
            schedule.set_interval(tuner.controller.interval())  # the first segment's too
        return tuner

    @property
    def _interval_key(self) -> Hashable:
        """The workload, and the disk tier's codec: what the write time depends on."""
        return self._workload, str(getattr(self._disk, "compression", None))

    def _reset(self, error: BaseException) -> None:
        """After ``error``: drop the sweep's buffers and checkpoints, or close if that fails.

        ``error`` stays the one raised (a disk that failed once often fails the clean-up too);
        a failed clean-up is added to it as a note.
        """
        self._phase = "ready"
        try:
            self._engine.clear(trim=True)  # a full disk is not left full
            if self._plan.name == "store_all" and self._n_given is None:
                self._engine.renew_pool()  # what a run that overflowed ram touched goes back
        except Exception as cleanup:  # noqa: BLE001 - any failure: report it, close
            self._phase = "closed"
            with contextlib.suppress(Exception):
                try:
                    self._engine.close()
                finally:
                    self._close_owned()
            error.add_note(
                "amcheck could not clean up after it and closed the Checkpointer (make a new "
                "one; a disk tier you passed may still hold some of its checkpoints): "
                f"{type(cleanup).__name__}: {cleanup}"
            )


def _check_progress(progress: object) -> None:
    """A callable that takes one argument (checked here, not at its first call mid-sweep)."""
    if progress is not None and not callable(progress):
        raise ArgumentTypeError(
            "progress must be a callable taking the number of steps completed (e.g. "
            f"tqdm(total=n).update) or None, got {progress!r} of type {type(progress).__name__}"
        )
    if progress is not None:
        check_signature(progress, 1, "progress", "the number of steps completed")


class _AutoInterval:
    """Feeds the engine's step and write times to an IntervalController, sets the interval.

    Between two segments (right after each disk checkpoint of the forward sweep is submitted)
    the schedule takes ``controller.interval()``; the schedule applies it from its next segment
    on. The controller's floor follows the schedule's ``interval_floor`` (the disk budget's
    ``ceil(n / disk_slots)``, doubled by each thinning round of an unknown-length sweep). The
    controller is told the schedule's ``knee`` and ``recompute_factor``, and each segment's
    stall (the growth of ``stats.stall_seconds`` from its start to the next), so that it may
    keep k at the knee (:mod:`amcheck._interval`).

    The first estimate is the median of :data:`PROBE_WRITES` writes, each with the disk to itself
    (:attr:`probing`): the first write of a sweep pays one-off costs (the transfer threads'
    buffers, the store's first files), and with the initial short segments two writes would
    otherwise share the disk and each take about twice as long. Measured with the
    long-sequences load (4 MiB states, 0.11 ms steps, writes of about 5 ms): the first
    estimate from one write, with two in flight, was k = 61-99 where the writes that followed
    called for 40-50, and at n = 1000 the sweep ended before k came down.
    """

    #: Writes measured alone before the first estimate.
    PROBE_WRITES = 3

    def __init__(self, schedule: Schedule, initial: int, stats: StatsRecorder) -> None:
        from amcheck._interval import IntervalController

        self._schedule = schedule
        self._stats = stats
        self._segment: tuple[int, float] | None = None  # the current one's start and stall then
        floor = int(getattr(schedule, "interval_floor", 1))
        # a known n caps k: a longer segment would be the whole sequence anyway
        n = schedule.n_steps
        knee = getattr(schedule, "knee", None)
        self.controller = IntervalController(
            max(initial, floor), floor=floor, cap=None if n is None else max(n, floor),
            warmup_writes=self.PROBE_WRITES, knee=knee,
            recompute=None if knee is None else schedule.recompute_factor)  # type: ignore[attr-defined]

    @property
    def probing(self) -> bool:
        return not self.controller.ready

    def observe_step(self, seconds_per_step: float) -> None:
        self.controller.observe_step(seconds_per_step)

    def observe_write(self, seconds: float) -> None:
        self.controller.observe_write(seconds)

    def segment_started(self, step: int) -> None:
        stall = self._stats.stall_seconds
        if self._segment is not None and step > self._segment[0]:
            start, before = self._segment
            self.controller.observe_segment(step - start, stall - before)
        self._segment = step, stall
        floor = int(getattr(self._schedule, "interval_floor", 1))
        if floor != self.controller.floor:
            self.controller.set_floor(floor)
        self._schedule.set_interval(self.controller.interval())  # type: ignore[attr-defined]
