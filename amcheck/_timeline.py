"""A record of what each thread did and when: compute, reverse steps, disk writes and reads, waits.

The engine appends an :class:`Event` for every advance ("compute"), reverse step ("reverse"),
background transfer ("write", "read") and every time the compute thread had to wait for one
("wait"). From the events come the overlap figures (how much transfer time was hidden behind
compute) and :meth:`Timeline.plot`, the picture of Figure 8 in Kukreja et al. (2018): one lane per
thread against wall-clock time.

A long sequence records about two events a step (an advance and a reverse step), so the events
are stored as numpy records of 39 bytes, in blocks of :data:`_BLOCK` (as Python
objects they took about 200 bytes each, and a summary of 10^5 steps took seconds); the summaries
are vectorised, and the plot merges bars closer than a pixel. :class:`Event` objects are made
only when :attr:`Timeline.events` is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import numpy as np

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import (
    check_bool,
    check_finite_float,
    check_int,
    check_name,
    check_optional_int,
    check_path,
)

__all__ = ["EVENT_KINDS", "Event", "EventKind", "Timeline", "clock"]

EventKind: TypeAlias = Literal["compute", "reverse", "write", "read", "wait"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = ("compute", "reverse", "write", "read", "wait")
_CODE: Final = {kind: code for code, kind in enumerate(EVENT_KINDS)}
_TRANSFER: Final = (_CODE["write"], _CODE["read"])
_WORK: Final = (_CODE["compute"], _CODE["reverse"])
_WAIT: Final = _CODE["wait"]

#: One event as stored: 39 bytes. ``thread`` and ``tier`` index the timeline's name tables.
_RECORD: Final = np.dtype([("start", "f8"), ("end", "f8"), ("step", "i8"), ("nbytes", "i8"),
                           ("kind", "u1"), ("tier", "u2"), ("thread", "u4")])
_NO_STEP: Final = np.iinfo(np.int64).min  # an event without a step
_INT64_MAX: Final = int(np.iinfo(np.int64).max)
_BLOCK: Final = 4096  # events gathered as tuples before they become one block of records

#: The clock every event uses (seconds, monotonic, high resolution).
clock = time.perf_counter


def _check_event(kind: object, step: object, nbytes: object, **names: object
                 ) -> tuple[int | None, int]:
    """Check an event's kind, step (an integer >= 0 or ``None``), nbytes (an integer >= 0),
    both below 2**63 (the records are int64), and its ``names`` (str or ``None``); return the
    step and nbytes as ints."""
    allowed = ", ".join(map(repr, EVENT_KINDS))
    if not isinstance(kind, str):
        raise ArgumentTypeError(
            f"kind must be a str, one of {allowed}, got {kind!r} of type {type(kind).__name__}"
        )
    if kind not in _CODE:
        raise InvalidArgumentError(f"kind must be one of {allowed}, got {kind!r}")
    checked_step = check_optional_int("step", step, minimum=0)
    checked_nbytes = check_int("nbytes", nbytes, minimum=0)
    for what, value in (("step", checked_step), ("nbytes", checked_nbytes)):
        if value is not None and value > _INT64_MAX:
            raise InvalidArgumentError(f"{what} must be at most 2**63 - 1, got {value}")
    for what, name in names.items():
        if name is not None:
            check_name(what, name)
    return checked_step, checked_nbytes


@dataclass(frozen=True, slots=True)
class Event:
    """One interval of activity.

    ``Event("write", 1.20, 1.23, "amcheck-transfer", step=40, tier="disk", nbytes=16777216)``
    reads: "the transfer thread wrote checkpoint x_40 (16 MiB) to the disk tier from 1.20 s to
    1.23 s on the :data:`clock`".
    """

    kind: EventKind
    start: float
    end: float
    thread: str
    step: int | None = None
    tier: str | None = None
    nbytes: int = 0

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.end - self.start


def _union(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals as sorted, disjoint intervals (touching ones merged)."""
    if start.size == 0:
        return start, end
    order = np.argsort(start, kind="stable")
    start, end = start[order], end[order]
    reach = np.maximum.accumulate(end)
    first = np.flatnonzero(np.concatenate(([True], start[1:] > reach[:-1])))
    return start[first], np.maximum.reduceat(end, first)


def _overlap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Length of the intersection of two sorted, disjoint interval lists."""
    b_start, b_end = b
    if a[0].size == 0 or b_start.size == 0:
        return 0.0
    covered = np.concatenate(([0.0], np.cumsum(b_end - b_start)))

    def measure(x: np.ndarray) -> np.ndarray:  # length of b below each x
        k = np.searchsorted(b_start, x, side="right")
        beyond = np.where(k > 0, np.maximum(b_end[k - 1] - x, 0.0), 0.0)
        return covered[k] - beyond

    return float(np.sum(measure(a[1]) - measure(a[0])))


def _hidden_fraction(records: np.ndarray) -> float | None:
    """:meth:`Timeline.hidden_fraction` of these event records."""

    def union(codes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        chosen = records[np.isin(records["kind"], codes)]
        return _union(chosen["start"], chosen["end"])

    transfer = union(_TRANSFER)
    busy = float(np.sum(transfer[1] - transfer[0]))
    if busy <= 0.0:
        return None
    return min(1.0, max(0.0, _overlap(transfer, union(_WORK)) / busy))


class Timeline:
    """Thread-safe record of :class:`Event` intervals, with summaries and a plot.

    Recording an event is a lock and a tuple appended (under a microsecond), cheap next to a
    step of a real operator, and it keeps 39 bytes; pass ``enabled=False`` to record nothing.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = check_bool("enabled", enabled)
        self._lock = threading.Lock()
        self._blocks: list[np.ndarray] = []
        self._pending: list[tuple[float, float, int, int, int, int, int]] = []
        self._threads: dict[str, int] = {}
        self._tiers: dict[str | None, int] = {None: 0}
        self._transfers = 0  # "write" and "read" events since the last clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (e.g. back from a worker process) without its lock."""
        with self._lock:
            return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                    for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def record(
        self,
        kind: EventKind,
        start: float,
        end: float,
        *,
        step: int | None = None,
        tier: str | None = None,
        nbytes: int = 0,
        thread: str | None = None,
    ) -> None:
        """Append one event; ``thread`` defaults to the calling thread's name.

        Raises
        ------
        ArgumentTypeError, InvalidArgumentError
            ``kind`` is not one of :data:`EVENT_KINDS`; ``start`` or ``end`` is not a finite
            number or ``end < start``; ``step`` is not an integer >= 0 or ``None``; ``nbytes``
            is not an integer >= 0; either is 2**63 or more; ``tier`` or ``thread`` is not a
            str or ``None``.
        """
        if not self.enabled:
            return
        step, nbytes = _check_event(kind, step, nbytes, tier=tier, thread=thread)
        start = check_finite_float("start", start)
        end = check_finite_float("end", end)
        if end < start:
            raise InvalidArgumentError(f"end must be >= start, got start={start}, end={end}")
        self._append(kind, start, end, step=step, tier=tier, nbytes=nbytes, thread=thread)

    def _append(self, kind: EventKind, start: float, end: float, *, step: int | None = None,
                tier: str | None = None, nbytes: int = 0, thread: str | None = None) -> None:
        """:meth:`record` without its checks, for amcheck's own calls on the hot path (about
        two events a step), which pass values of the right types."""
        if not self.enabled:
            return
        code = _CODE[kind]
        name = threading.current_thread().name if thread is None else thread
        lock = self._lock
        lock.acquire()  # not ``with``: its special-method lookups cost twice the acquire/release
        try:
            threads, tiers = self._threads, self._tiers
            row = (start, end, _NO_STEP if step is None else step, nbytes, code,
                   tiers.setdefault(tier, len(tiers)), threads.setdefault(name, len(threads)))
            self._pending.append(row)
            if code in _TRANSFER:
                self._transfers += 1
            if len(self._pending) >= _BLOCK:
                self._roll()
        finally:
            lock.release()

    def _add_steps(self, rows: list[tuple[EventKind, float, float, int]]) -> None:
        """Append the calling thread's operator calls, ``(kind, start, end, step)`` rows of
        "compute" and "reverse" events, in one go: the engine gathers them while it makes a
        batch of calls, so that between two kernel calls it only appends a tuple. Appended one
        by one, after a kernel had evicted the lock, the thread's name and the tables from the
        caches, they cost the engine 11.7 µs an operator call on the long-sequences load (Revolve
        in RAM over pairs: 29.9 µs against 18.2 with no timeline; in one go 19.4 against 19.3,
        benchmarks/results/timeline_append_cost.py and planned_calls_ab.log)."""
        if not self.enabled or not rows:
            return
        name = threading.current_thread().name
        with self._lock:
            thread = self._threads.setdefault(name, len(self._threads))
            self._pending.extend((start, end, step, 0, _CODE[kind], 0, thread)
                                 for kind, start, end, step in rows)
            if len(self._pending) >= _BLOCK:
                self._roll()

    def _roll(self) -> None:
        """Turn the pending tuples into blocks of :data:`_BLOCK` records (the lock held)."""
        pending = self._pending
        whole = len(pending) - len(pending) % _BLOCK
        self._blocks.extend(np.array(pending[at : at + _BLOCK], dtype=_RECORD)
                            for at in range(0, whole, _BLOCK))
        self._pending = pending[whole:]

    @contextmanager
    def span(
        self, kind: EventKind, *, step: int | None = None, tier: str | None = None, nbytes: int = 0
    ) -> Iterator[None]:
        """Record the time the ``with`` body takes as one event (also when it raises); the
        arguments are checked as :meth:`record` checks them."""
        step, nbytes = _check_event(kind, step, nbytes, tier=tier)
        start = clock()
        try:
            yield
        finally:
            self._append(kind, start, clock(), step=step, tier=tier, nbytes=nbytes)

    def _snapshot(self) -> tuple[np.ndarray, list[str], list[str | None]]:
        """The events as one record array, in the order recorded, and the name tables."""
        with self._lock:
            parts = [*self._blocks, np.array(self._pending, dtype=_RECORD)]
            return np.concatenate(parts), list(self._threads), list(self._tiers)

    @property
    def events(self) -> list[Event]:
        """A snapshot of the events, in the order they were recorded."""
        records, threads, tiers = self._snapshot()
        return [
            Event(EVENT_KINDS[kind], start, end, threads[thread],
                  None if step == _NO_STEP else step, tiers[tier], nbytes)
            for start, end, step, nbytes, kind, tier, thread in records.tolist()
        ]

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self._blocks.clear()
            self._pending = []
            self._transfers = 0

    def __len__(self) -> int:
        with self._lock:
            return _BLOCK * len(self._blocks) + len(self._pending)

    def __repr__(self) -> str:
        return f"Timeline(events={len(self)}{'' if self.enabled else ', enabled=False'})"

    def totals(self) -> dict[str, float]:
        """Seconds spent per event kind (summed; overlapping events of one kind add up)."""
        records = self._snapshot()[0]
        seconds = np.bincount(records["kind"], weights=records["end"] - records["start"],
                              minlength=len(EVENT_KINDS))
        return {kind: float(seconds[code]) for code, kind in enumerate(EVENT_KINDS)}

    def hidden_fraction(self) -> float | None:
        """Fraction of transfer time (writes and reads) that overlapped compute or reverse steps.

        1.0 means every transfer ran while the compute thread was busy, 0.0 that none did;
        ``None`` when there was no transfer.
        """
        if not self._transfers:  # RAM-only sweeps: no need to gather every event
            return None
        return _hidden_fraction(self._snapshot()[0])

    def to_json(self) -> list[dict[str, Any]]:
        """The events as a list of plain dicts (times in seconds from the first event)."""
        events = self.events
        t0 = min((e.start for e in events), default=0.0)
        return [
            {"kind": e.kind, "start": e.start - t0, "end": e.end - t0, "thread": e.thread,
             "step": e.step, "tier": e.tier, "nbytes": e.nbytes}
            for e in events
        ]

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Draw one lane per thread against wall-clock time and save it (PNG, SVG, PDF ...).

        Compute and reverse steps, writes, reads and waits get their own colours, so the picture
        shows at a glance how much of the disk traffic hid behind compute (the picture of Figure 8
        in Kukreja et al. 2018). Bars of one lane and kind less than a pixel apart are drawn as
        one, so a run of 10^5 steps draws as fast as a short one. Needs matplotlib (``pip install
        amcheck[plot]``).

        Returns
        -------
        Path
            Where the figure was written.

        Raises
        ------
        InvalidArgumentError
            ``path``'s folder does not exist, its suffix is not a format matplotlib writes, or
            the file cannot be written (the ``OSError`` chained).
        """
        check_path("path", path, "an image file")
        if title is not None and not isinstance(title, str):
            raise ArgumentTypeError(
                f"title must be a str or None, got {title!r} of type {type(title).__name__}"
            )
        if not self.enabled:
            raise InvalidArgumentError(
                "this timeline is disabled (enabled=False, as with Checkpointer(..., "
                "timeline=False)) and recorded nothing to plot; leave the timeline on to plot it"
            )
        out = Path(path).expanduser()
        if not out.parent.is_dir():
            raise InvalidArgumentError(
                f"path={str(out)!r}: the folder {str(out.parent)!r} does not exist; create it "
                "first or save elsewhere"
            )
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from matplotlib.patches import Patch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "Timeline.plot needs matplotlib: pip install 'amcheck[plot]'"
            ) from exc
        from matplotlib.backend_bases import FigureCanvasBase

        suffix = out.suffix.lower().lstrip(".")
        formats = FigureCanvasBase.get_supported_filetypes()
        if suffix not in formats:
            what = "has no suffix to name a format" if not suffix else (
                f"names a format the plot cannot be saved in, {suffix!r}")
            raise InvalidArgumentError(
                f"path={str(out)!r} {what}; use one of {', '.join(sorted(formats))}")
        records, threads, _ = self._snapshot()
        colours = {
            "compute": "#4C72B0",
            "reverse": "#55A868",
            "write": "#DD8452",
            "read": "#8172B3",
            "wait": "#C44E52",
        }
        t0 = float(records["start"].min()) if records.size else 0.0
        width_px = 1200  # 10 inches at 120 dpi
        pixel = (float(records["end"].max()) - t0) / width_px if records.size else 0.0
        # Lanes: one per thread, its waits on a lane of their own below it; the threads that ran
        # the operators first, then the others, each group in the order the threads first appear.
        thread = records["thread"].astype(np.int64)
        lane_of = thread * 2 + (records["kind"] == _WAIT)
        keys = np.unique(lane_of)
        ids, first = np.unique(thread, return_index=True)
        appears = first[np.searchsorted(ids, keys // 2)]
        steps = np.isin(records["kind"], [_CODE["compute"], _CODE["reverse"]])
        computes = np.isin(keys // 2, thread[steps])
        order = keys[np.lexsort((keys % 2, appears, ~computes))]
        lanes = [threads[key // 2] + (" (wait)" if key % 2 else "") for key in order.tolist()]
        fig, ax = plt.subplots(figsize=(10, 1.0 + 0.6 * max(len(lanes), 1)))
        for y, key in enumerate(order.tolist()):
            for code, kind in enumerate(EVENT_KINDS):
                chosen = records[(lane_of == key) & (records["kind"] == code)]
                if chosen.size == 0:
                    continue
                start, end = _union(chosen["start"], chosen["end"] + pixel)
                ax.broken_barh(
                    list(zip((start - t0).tolist(), np.maximum(end - pixel - start, 1e-6).tolist(),
                             strict=True)),
                    (y - 0.4, 0.8),
                    facecolors=colours[kind],
                    edgecolors="none",
                )
        ax.set_yticks(range(len(lanes)), lanes)
        ax.set_ylim(-0.6, len(lanes) - 0.4)
        ax.invert_yaxis()
        ax.set_xlabel("wall-clock time (s)")
        hidden = _hidden_fraction(records)
        subtitle = "" if hidden is None else f" — {100 * hidden:.0f}% of transfer time hidden"
        ax.set_title((title or "amcheck timeline") + subtitle)
        present = set(records["kind"].tolist())
        kinds = [kind for code, kind in enumerate(EVENT_KINDS) if code in present]
        ax.legend(  # outside the axes, on the right: inside it hid bars
            handles=[Patch(color=colours[k], label=k) for k in kinds],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
        )
        try:
            fig.tight_layout()
            fig.savefig(out, dpi=120, bbox_inches="tight")
        except OSError as exc:  # a folder of that name, no permission, a full disk ...
            raise InvalidArgumentError(
                f"path={str(out)!r} could not be written ({type(exc).__name__}: {exc}); save "
                "elsewhere") from exc
        finally:
            plt.close(fig)
        return out
