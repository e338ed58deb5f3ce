"""Reporting for ``amcheck demo``: progress bars, per-gradient totals, the summary table, JSON.

Nothing here computes: it turns :class:`amcheck.Stats` and :class:`amcheck.Timeline` of the
gradients into what the demo prints and writes to ``summary.json``.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from amcheck._bytes import format_bytes, physical_memory

__all__ = ["Bars", "Echo", "Totals", "jsonable", "machine_info", "summary_table"]


class Bars:
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


class Echo:
    """Prints the run's report lines (stdout by default) and keeps them for summary.json."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, line: str = "") -> None:
        if self._stream is not None:
            print(line, file=self._stream, flush=True)


def plural(count: int, word: str) -> str:
    """``"1 gradient"``, ``"2 gradients"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass(slots=True)
class Totals:
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
    measured: bool = True  # the interval k was automatic (measured as the sweeps ran)

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

    def merge(self, other: Totals) -> None:
        """Add the totals of another evaluation (peaks: the larger; strategy: the latest)."""
        for name in ("seconds", "forward_steps", "reverse_steps", "n_steps", "disk_writes",
                     "disk_reads", "bytes_written", "bytes_read", "transfer_seconds",
                     "hidden_seconds", "stall_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.peak_ram_bytes = max(self.peak_ram_bytes, other.peak_ram_bytes)
        self.ram_pool_bytes = max(self.ram_pool_bytes, other.ram_pool_bytes)
        self.strategy, self.slots = other.strategy, other.slots
        self.intervals += other.intervals

    @property
    def disk_text(self) -> str:
        """How often the forward sweeps wrote to disk; empty without disk checkpoints."""
        if not self.disk_writes or not self.intervals:
            return ""
        shots = len(self.intervals)
        spacing = self.n_steps / self.disk_writes
        lo, hi = min(self.intervals), max(self.intervals)
        k = str(lo) if lo == hi else f"{lo}-{hi}"
        how = ("the interval k, measured as it runs, ended at" if self.measured else
               "the interval k given was")
        return (f"{self.disk_writes / shots:.3g} disk checkpoints per shot, one every "
                f"{spacing:.0f} steps on average; {how} {k}")

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


def summary_table(summary: dict[str, Any], first: Totals, all_totals: Totals | None,
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
            f"{plural(fwi['iterations'], 'iteration')}, "
            f"{plural(fwi['evaluations'][-1], 'gradient')}")
    rows.append(("misfit", fall))
    rows.append(("total time", f"{summary['seconds']:.1f} s"))
    files = f"model.png gradient.png misfit.png timeline.png{timeline_note} summary.json"
    rows.append(("outputs", f"{out}/: {files}"))
    width = max(len(name) for name, _ in rows)
    lines = ["", "summary (first gradient, all shots)"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return lines


def machine_info() -> dict[str, Any]:
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


def jsonable(value: Any) -> Any:
    """Plain JSON types: paths as strings, numpy scalars as numbers, NaN as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

