"""A record of what each thread did and when: compute, reverse steps, disk writes and reads, waits.

The engine appends an :class:`Event` for every advance ("compute"), reverse step ("reverse"),
background transfer ("write", "read") and every time the compute thread had to wait for one
("wait"). From the events come the overlap figures (how much transfer time was hidden behind
compute) and :meth:`Timeline.plot`, the picture of Figure 8 in Kukreja et al. (2018): one lane per
thread against wall-clock time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from amcheck._errors import InvalidArgumentError

__all__ = ["EVENT_KINDS", "Event", "EventKind", "Timeline", "clock"]

EventKind: TypeAlias = Literal["compute", "reverse", "write", "read", "wait"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = ("compute", "reverse", "write", "read", "wait")
_TRANSFER: Final = ("write", "read")
_WORK: Final = ("compute", "reverse")

#: The clock every event uses (seconds, monotonic, high resolution).
clock = time.perf_counter


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


def _union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the intersection of two sorted, disjoint interval lists."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


class Timeline:
    """Thread-safe list of :class:`Event` objects with summaries and a plot.

    Appending is a lock and a list append (about a microsecond), cheap next to a step of a real
    operator; pass ``enabled=False`` to record nothing at all.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._events: list[Event] = []
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
        """Append one event; ``thread`` defaults to the calling thread's name."""
        if not self.enabled:
            return
        if kind not in EVENT_KINDS:
            raise InvalidArgumentError(
                f"kind must be one of {', '.join(map(repr, EVENT_KINDS))}, got {kind!r}"
            )
        name = threading.current_thread().name if thread is None else thread
        event = Event(kind, start, end, name, step, tier, nbytes)
        with self._lock:
            self._events.append(event)

    @contextmanager
    def span(
        self, kind: EventKind, *, step: int | None = None, tier: str | None = None, nbytes: int = 0
    ) -> Iterator[None]:
        """Record the time the ``with`` body takes as one event (also when it raises)."""
        start = clock()
        try:
            yield
        finally:
            self.record(kind, start, clock(), step=step, tier=tier, nbytes=nbytes)

    @property
    def events(self) -> list[Event]:
        """A snapshot of the events, in the order they were recorded."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def totals(self) -> dict[str, float]:
        """Seconds spent per event kind (summed; overlapping events of one kind add up)."""
        out: dict[str, float] = dict.fromkeys(EVENT_KINDS, 0.0)
        for event in self.events:
            out[event.kind] += event.duration
        return out

    def hidden_fraction(self) -> float | None:
        """Fraction of transfer time (writes and reads) that overlapped compute or reverse steps.

        1.0 means every transfer ran while the compute thread was busy, 0.0 that none did;
        ``None`` when there was no transfer.
        """
        events = self.events
        transfer = _union([(e.start, e.end) for e in events if e.kind in _TRANSFER])
        busy = sum(hi - lo for lo, hi in transfer)
        if busy <= 0.0:
            return None
        work = _union([(e.start, e.end) for e in events if e.kind in _WORK])
        return _overlap(transfer, work) / busy

    def to_json(self) -> list[dict[str, Any]]:
        """The events as a list of plain dicts (times in seconds from the first event)."""
        events = self.events
        t0 = min((e.start for e in events), default=0.0)
        rows = []
        for event in events:
            row = asdict(event)
            row["start"] -= t0
            row["end"] -= t0
            rows.append(row)
        return rows

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Draw one lane per thread against wall-clock time and save it (PNG, SVG, PDF ...).

        Compute and reverse steps, writes, reads and waits get their own colours, so the picture
        shows at a glance how much of the disk traffic hid behind compute (the picture of Figure 8
        in Kukreja et al. 2018). Needs matplotlib (``pip install amcheck[plot]``).

        Returns
        -------
        Path
            Where the figure was written.
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from matplotlib.patches import Patch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "Timeline.plot needs matplotlib: pip install 'amcheck[plot]'"
            ) from exc
        events = self.events
        colours = {
            "compute": "#4C72B0",
            "reverse": "#55A868",
            "write": "#DD8452",
            "read": "#8172B3",
            "wait": "#C44E52",
        }
        t0 = min((e.start for e in events), default=0.0)
        # Lanes: the compute thread first, then transfer threads; waits drawn on their own lane.
        lanes: list[str] = []
        for event in events:
            lane = f"{event.thread} (wait)" if event.kind == "wait" else event.thread
            if lane not in lanes:
                lanes.append(lane)
        fig, ax = plt.subplots(figsize=(10, 1.0 + 0.6 * max(len(lanes), 1)))
        for event in events:
            lane = f"{event.thread} (wait)" if event.kind == "wait" else event.thread
            y = lanes.index(lane)
            ax.broken_barh(
                [(event.start - t0, max(event.duration, 1e-6))],
                (y - 0.4, 0.8),
                facecolors=colours[event.kind],
                edgecolors="none",
            )
        ax.set_yticks(range(len(lanes)), lanes)
        ax.set_ylim(-0.6, len(lanes) - 0.4)
        ax.invert_yaxis()
        ax.set_xlabel("wall-clock time (s)")
        hidden = self.hidden_fraction()
        subtitle = "" if hidden is None else f" — {100 * hidden:.0f}% of transfer time hidden"
        ax.set_title((title or "amcheck timeline") + subtitle)
        kinds = [k for k in EVENT_KINDS if any(e.kind == k for e in events)]
        ax.legend(
            handles=[Patch(color=colours[k], label=k) for k in kinds],
            loc="upper right",
            ncols=max(len(kinds), 1),
            fontsize="small",
        )
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out
