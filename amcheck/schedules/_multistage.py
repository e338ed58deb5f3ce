"""Two-level checkpointing: periodic disk checkpoints, Revolve in RAM inside each segment.

What it computes
----------------
The forward sweep writes x_0, x_k, x_2k, … to disk, one checkpoint every ``interval = k`` steps, so
the sequence falls into segments ``[jk, min((j+1)k, n))``. The reverse sweep takes the segments last
to first: it reads the segment's start back from disk, keeps it in RAM (zero copy: the read lands in
a slot) and reverses the segment with binomial checkpointing over the RAM ``slots``
(:func:`amcheck.schedules._revolve.reverse_range`, shared by every strategy).

Cost, for n a multiple of k and ``T(k, s)`` the binomial count of :mod:`._revolve`:

- forward steps ``n + (n/k)·T(k, s)``: the recompute factor ``1 + T(k, s)/k`` depends on k and
  the slots, not on n. With ``s >= k − 1`` it is ``2 − 1/k``: every step but the last of a segment
  is run twice (once forward, once from the disk checkpoint).
- disk: ``ceil(n/k)`` writes and reads of one state each; RAM: ``s`` checkpoints.

Two-level schedules are optimal among schedules that write every disk checkpoint once, when a disk
write costs about as much as ``k`` steps (Aupy & Herrmann 2017). The asynchronous variant of Kukreja
et al. (2018) hides the disk traffic behind the computation: writes happen while the next steps run
and the start of segment j−1 is read (``Prefetch``) while segment j is being reversed; choosing k so
that one write takes no longer than k steps makes the disk cost vanish from the run time.

TwoLevel vs AsyncMultistage
---------------------------
:class:`TwoLevel` is the plain two-level plan: every segment start, the last one included, is written
to disk and read back when its segment is reversed; no prefetch hints. :class:`AsyncMultistage`
adds a ``Prefetch`` of segment j−1's start as soon as the reversal of segment j begins, and keeps
the last segment's start in RAM during the forward sweep, so the reverse sweep starts without a
disk read. x_0 *is* written to disk by both (segment 0 starts there), except by AsyncMultistage
when there is a single segment (n <= k), whose start stays in RAM. Both accept ``n_steps=None``
(unknown length): AsyncMultistage then keeps the current segment's start pinned in RAM as it goes
(freeing the previous one) and writes it to disk too, since any segment may turn out to be the
last; the disk copy of the last one is freed unread.

References
----------
M. Schanen, O. Marin, H. Zhang and M. Anitescu, "Asynchronous two-level checkpointing scheme for
large-scale adjoints in the spectral-element solver Nek5000", Procedia Computer Science 80,
1147–1158, 2016, doi:10.1016/j.procs.2016.05.444.

G. Aupy and J. Herrmann, "Periodicity in optimal hierarchical checkpointing schemes for adjoint
computations", Optimization Methods and Software 32(3), 594–624, 2017,
doi:10.1080/10556788.2016.1230612.

N. Kukreja, J. Hückelheim and G. J. Gorman, "Backpropagation for long sequences: beyond memory
constraints with constant overheads", arXiv:1812.05952, 2018.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import count

from amcheck._validate import check_int, check_optional_int
from amcheck.schedules._actions import (
    DISK,
    RAM,
    Action,
    Advance,
    End,
    Free,
    Load,
    Prefetch,
    Reverse,
    Save,
    TierName,
)
from amcheck.schedules._base import Schedule
from amcheck.schedules._revolve import check_reverse_length, reverse_range

__all__ = ["AsyncMultistage", "TwoLevel"]


class _Periodic(Schedule):
    """What TwoLevel and AsyncMultistage share: arguments, segments, the reversal of one segment."""

    def __init__(self, n_steps: int | None, slots: int, interval: int) -> None:
        self.n_steps: int | None = check_optional_int("n_steps", n_steps, minimum=1)
        self.slots: int = check_int("slots", slots, minimum=1)
        self.interval: int = check_int("interval", interval, minimum=1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_steps={self.n_steps}, slots={self.slots}, "
            f"interval={self.interval})"
        )

    @property
    def n_segments(self) -> int | None:
        """Number of segments ``ceil(n / interval)``, or ``None`` when n is unknown."""
        n = self.n_steps
        return None if n is None else (n - 1) // self.interval + 1

    def _reverse_segments(self, end: int) -> Iterator[Action]:
        """Reverse the segments before ``end`` (a multiple of k), last first, from disk.

        Each segment start is read from disk (prefetched by AsyncMultistage for the next segment)
        and, unless the segment has a single step, kept in RAM by pinning the buffer it was read
        into, for :func:`~amcheck.schedules._revolve.reverse_range`.
        """
        k = self.interval
        slots = self.slots
        prefetch = isinstance(self, AsyncMultistage)
        splits: dict[int, int] = {}  # one memo of binomial decisions for every segment
        for start in range(end - k, -1, -k):
            yield Load(start, DISK)
            if prefetch and start > 0:
                yield Prefetch(start - k, DISK)
            yield Free(start, DISK)
            if end - start > 1:
                yield Save(start, RAM)
                yield from reverse_range(start, end, slots, splits=splits)
                yield Free(start, RAM)
            else:
                yield Reverse(start)
            end = start
        yield End()


class TwoLevel(_Periodic):
    """A disk checkpoint every ``interval`` steps; Revolve over the RAM slots inside each segment.

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``, or ``None`` when the length is known only once the forward
        sweep ends (see :class:`~amcheck.schedules.Schedule`).
    slots
        RAM checkpoints held at most during a segment's reversal, its start included, ``>= 1``.
    interval
        Steps per segment k, ``>= 1``: one disk write per k forward steps, ``ceil(n/k)`` in all.

    Notes
    -----
    Recompute factor ``1 + T(k, slots)/k`` when k divides n (see :mod:`._multistage`); ``2 − 1/k``
    when ``slots >= k − 1``. Every segment start is written to disk and read back once.
    """

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        return {"ram": self.slots, "disk": self.n_segments}

    def forward(self) -> Iterator[Action]:
        """Write x_{jk} to disk and advance k steps, for j = 0, 1, …; the last advance makes x_n."""
        k = self.interval
        n = self.n_steps
        if n is None:
            for t in count(0, k):
                yield Save(t, DISK)
                yield Advance(t, t + k)
        else:
            last = (n - 1) // k * k
            for t in range(0, last, k):
                yield Save(t, DISK)
                yield Advance(t, t + k)
            yield Save(last, DISK)
            yield Advance(last, n, final=True)

    def reverse(self, n_steps: int) -> Iterator[Action]:
        """For each segment, last first: read its start from disk, keep it in RAM, reverse it."""
        check_reverse_length(self, n_steps)
        k = self.interval
        last = (n_steps - 1) // k * k
        if n_steps - last > 1:
            yield Load(last, DISK)
            yield Free(last, DISK)
            yield Save(last, RAM)
            yield from reverse_range(last, n_steps, self.slots)
            yield Free(last, RAM)
        else:
            yield Load(last, DISK)
            yield Free(last, DISK)
            yield Reverse(last)
        yield from self._reverse_segments(last)


class AsyncMultistage(_Periodic):
    """Asynchronous multistage checkpointing: TwoLevel with prefetching and the last segment in RAM.

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``, or ``None`` when the length is known only once the forward
        sweep ends (see :class:`~amcheck.schedules.Schedule`).
    slots
        RAM checkpoints held at most, ``>= 1``: a segment's start and the Revolve checkpoints inside
        it. The engine adds one buffer for the prefetched next start and its own staging buffers.
    interval
        Steps per segment k, ``>= 1``. Pick the smallest k for which writing one checkpoint takes
        no longer than computing k steps: the disk traffic is then hidden behind computation.

    Notes
    -----
    Forward steps and the recompute factor are those of :class:`TwoLevel` (``1 + T(k, slots)/k``
    when k divides n, whatever n); disk: one write and one read fewer (the last segment's start stays
    in RAM), or as many writes when n is unknown. Reads of segment j−1's start are hinted with
    ``Prefetch`` as soon as segment j's reversal begins, so a read overlaps a whole segment.
    """

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        n_segments = self.n_segments
        return {"ram": self.slots, "disk": None if n_segments is None else n_segments - 1}

    def forward(self) -> Iterator[Action]:
        """Write segment starts to disk; keep the last (or, n unknown, the current) one in RAM."""
        k = self.interval
        n = self.n_steps
        if n is None:
            yield Save(0, DISK)
            yield Save(0, RAM)
            yield Advance(0, k)
            for t in count(k, k):
                yield Save(t, DISK)
                yield Free(t - k, RAM)
                yield Save(t, RAM)
                yield Advance(t, t + k)
        else:
            last = (n - 1) // k * k
            for t in range(0, last, k):
                yield Save(t, DISK)
                yield Advance(t, t + k)
            yield Save(last, RAM)
            yield Advance(last, n, final=True)

    def reverse(self, n_steps: int) -> Iterator[Action]:
        """Reverse the last segment from RAM, then each earlier one from its prefetched start."""
        check_reverse_length(self, n_steps)
        n = n_steps
        k = self.interval
        start = (n - 1) // k * k
        if self.n_steps is None:
            # The sweep ended inside Advance(start, start + k): the current state is gone but x_start
            # is pinned in RAM; its disk copy was written in case a later segment followed.
            yield Free(start, DISK)
            if start > 0:
                yield Prefetch(start - k, DISK)
            yield Load(start, RAM)
        elif start > 0:
            yield Prefetch(start - k, DISK)
        yield from reverse_range(start, n, self.slots)
        yield Free(start, RAM)
        yield from self._reverse_segments(start)
