"""Counts and times of one checkpointed sweep: what the engine did, measured, not predicted.

:class:`Stats` is an immutable snapshot (``Checkpointer.stats``); :class:`StatsRecorder` is the
mutable counter the engine updates as it executes actions. Counts that a schedule also predicts
(forward steps, reads and writes per tier) equal those of :func:`amcheck.schedules.simulate`
for the same schedule, which the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from amcheck._bytes import format_bytes

__all__ = ["Stats", "StatsRecorder"]

_TIERS = ("ram", "disk")


def _rates(nbytes: Mapping[str, int], seconds: Mapping[str, float]) -> Mapping[str, float | None]:
    return MappingProxyType(
        {tier: (nbytes[tier] / seconds[tier] if seconds[tier] > 0 else None) for tier in nbytes}
    )


def _frozen(values: Mapping[str, int] | Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(values))


def _stats_of(values: dict[str, Any]) -> Stats:
    """A :class:`Stats` of its fields by name, the dicts among them made read-only (a
    snapshot of the recorder, or an unpickled copy)."""
    frozen: dict[str, Any] = {k: _frozen(v) if isinstance(v, dict) else v
                              for k, v in values.items()}
    return Stats(**frozen)


@dataclass(frozen=True, slots=True)
class Stats:
    """What a :class:`~amcheck.Checkpointer` did since its last ``forward()``.

    The counts cover the forward sweep and every reverse sweep run after it.

    Attributes
    ----------
    n_steps
        n, the number of steps of the sequence: from the start of ``forward()`` when
        ``n_steps`` was given, else once the forward sweep ended; ``None`` before the first
        ``forward()``.
    forward_steps
        Forward steps executed, recomputations included.
    reverse_steps
        Reverse steps executed (n per reverse sweep).
    copies
        State copies made from one RAM buffer into another: always 0 for a Checkpointer, whose
        operators write straight into checkpoint slots; the pyrevolve adapter
        (:mod:`amcheck.compat.pyrevolve`) counts its saves and restores here. The copy of
        ``initial_state`` into the pool at the start of ``forward()`` is the input, not a
        checkpoint copy, and is not counted. Disk transfers are counted in
        ``reads``/``writes``, not here.
    peak_ram_bytes
        Most bytes of the RAM pool in use at once (slots holding checkpoints, the current
        state, x_n and staging buffers), padding included. Never above ``ram_pool_bytes``.
    ram_pool_bytes
        Bytes the RAM pool allocated; never above the ``ram`` budget.
    reads, writes
        Checkpoints loaded and stored per tier (``"ram"``, ``"disk"``). A RAM write pins a
        buffer and a RAM read hands one over: neither moves bytes.
    bytes_read, bytes_written
        Bytes moved per tier (0 for RAM).
    read_seconds, write_seconds
        Seconds the transfers took per tier, as seen by the thread that ran them.
    compute_seconds, reverse_seconds
        Seconds inside the forward and the reverse operator.
    stall_seconds
        Seconds the compute thread waited for disk transfers: back-pressure (every staging slot
        held by a write in flight), a load whose prefetch had not finished or that nobody
        prefetched, the last writes at the end of ``forward()``.
    waits
        How many times the compute thread waited (each is a ``"wait"`` event on the timeline).
    hidden_fraction
        Fraction of disk transfer time that overlapped compute or reverse steps (see
        :meth:`amcheck.Timeline.hidden_fraction`), taken from the timeline when each sweep ends
        (so clearing the timeline later does not change it); ``None`` without transfers or
        without a timeline, and until the first sweep ends.
    interval
        Steps between disk checkpoints at the end of the forward sweep (it changes during the
        sweep when the interval is automatic); ``None`` for RAM-only strategies.
    compute_threads
        numba threads the last sweep with disk traffic ran the operators on at its end (chosen
        by measurement with ``compute_threads=None``; see :class:`~amcheck.Checkpointer`);
        ``None`` when amcheck left numba's count alone.
    io_cpus
        The CPU ids the transfer threads are confined to (``Checkpointer(io_cpus=...)``), or
        ``None`` where they run anywhere.
    """

    n_steps: int | None
    forward_steps: int
    reverse_steps: int
    copies: int
    peak_ram_bytes: int
    ram_pool_bytes: int
    reads: Mapping[str, int]
    writes: Mapping[str, int]
    bytes_read: Mapping[str, int]
    bytes_written: Mapping[str, int]
    read_seconds: Mapping[str, float]
    write_seconds: Mapping[str, float]
    compute_seconds: float
    reverse_seconds: float
    stall_seconds: float = 0.0
    waits: int = 0
    hidden_fraction: float | None = None
    interval: int | None = None
    compute_threads: int | None = None
    io_cpus: tuple[int, ...] | None = None

    @property
    def write_throughput(self) -> Mapping[str, float | None]:
        """Bytes per second of the writes per tier (bytes over the seconds each write took on
        the transfer thread; concurrent writes overlap, so their sum can exceed the disk's
        rate); ``None`` for a tier without writes."""
        return _rates(self.bytes_written, self.write_seconds)

    @property
    def read_throughput(self) -> Mapping[str, float | None]:
        """Bytes per second of the reads per tier, as :attr:`write_throughput`."""
        return _rates(self.bytes_read, self.read_seconds)

    @property
    def recompute_factor(self) -> float | None:
        """Forward steps executed divided by n (1.0: nothing recomputed); ``None`` before n is known."""
        if not self.n_steps:
            return None
        return self.forward_steps / self.n_steps

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickles (e.g. back from a worker process): the read-only mappings travel as dicts."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return _stats_of, ({k: dict(v) if isinstance(v, Mapping) else v
                                  for k, v in values.items()},)

    def __str__(self) -> str:
        factor = self.recompute_factor
        factor_s = "n/a" if factor is None else f"{factor:.3f}"
        return (
            f"n={self.n_steps} forward_steps={self.forward_steps} (recompute factor {factor_s}) "
            f"reverse_steps={self.reverse_steps} copies={self.copies} "
            f"peak RAM {format_bytes(self.peak_ram_bytes)} of {format_bytes(self.ram_pool_bytes)}; "
            f"ram writes/reads {self.writes['ram']}/{self.reads['ram']}, "
            f"disk writes/reads {self.writes['disk']}/{self.reads['disk']} "
            f"({format_bytes(self.bytes_written['disk'])} / {format_bytes(self.bytes_read['disk'])})"
            + (
                ""
                if not self.writes["disk"]
                else f", stalled {self.stall_seconds:.3f} s in {self.waits} wait(s)"
                + (
                    ""
                    if self.hidden_fraction is None
                    else f", {100 * self.hidden_fraction:.0f}% of transfer time hidden"
                )
            )
        )


@dataclass(slots=True)
class StatsRecorder:
    """The engine's mutable counters; :meth:`snapshot` gives a :class:`Stats`."""

    ram_pool_bytes: int = 0
    n_steps: int | None = None
    forward_steps: int = 0
    reverse_steps: int = 0
    copies: int = 0
    peak_ram_bytes: int = 0
    compute_seconds: float = 0.0
    reverse_seconds: float = 0.0
    stall_seconds: float = 0.0
    waits: int = 0
    interval: int | None = None
    compute_threads: int | None = None
    io_cpus: tuple[int, ...] | None = None
    reads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TIERS, 0))
    writes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TIERS, 0))
    bytes_read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TIERS, 0))
    bytes_written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TIERS, 0))
    read_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_TIERS, 0.0))
    write_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_TIERS, 0.0))
    hidden_fraction: float | None = None

    def reset(self) -> None:
        """Zero every counter (the pool size and the I/O CPUs stay)."""
        fresh = StatsRecorder(ram_pool_bytes=self.ram_pool_bytes, io_cpus=self.io_cpus)
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))

    def snapshot(self) -> Stats:
        """An immutable copy of the counters (every field of :class:`Stats`, by name)."""
        return _stats_of({f.name: getattr(self, f.name) for f in fields(Stats)})
