"""Cores for compute and for I/O: how many numba threads a sweep with disk traffic uses.

Why
---
On a small machine a parallel numba kernel with a barrier every step stalls whenever one of its
threads is preempted, and the transfer thread (copies, syscalls, codecs) preempts one every time
it wakes up. Measured on 2 cores (FIELD-NOTES.md, issue 5): a 2-thread kernel overlapped with its
own checkpoint I/O ran *slower* than kernel and I/O one after the other, while a 1-thread kernel
let the second core absorb the I/O. So during a sweep that moves checkpoints to or from disk the
engine may run the user's numba kernels on fewer threads, leaving cores to I/O, and restores the
thread count afterwards.

amcheck never imports numba for this: if the user's operator has not imported it, there is
nothing to set. ``numba.set_num_threads`` applies to parallel regions launched from the calling
thread, the compute thread, which is where the operators run.

The choice (``Checkpointer(compute_threads=...)``) is resolved by :func:`compute_threads_for`;
the default ``None`` ("auto") leaves one core to I/O when numba has at least 2 threads and the
machine has at most :data:`AUTO_RESERVE_MAX_CORES` cores (the measurements behind it are in
docs/benchmarks.md, "Long sequences"); on larger machines one core fewer costs little either
way, and all threads are kept.
"""

from __future__ import annotations

import numbers
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from amcheck._errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["AUTO_RESERVE_MAX_CORES", "check_compute_threads", "compute_threads_for", "numba_threads"]

#: "auto" leaves a core to I/O on machines with at most this many cores.
AUTO_RESERVE_MAX_CORES: Final = 4


def check_compute_threads(value: Any) -> int | str | None:
    """Validate ``compute_threads``: ``None`` (auto), ``"all"``, or an int ``>= 1``."""
    if value is None or (isinstance(value, str) and value == "all"):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(
            "compute_threads must be None (auto), 'all' or an integer >= 1, "
            f"got {value!r} of type {type(value).__name__}"
        )
    if value < 1:
        raise InvalidArgumentError(
            f"compute_threads must be None (auto), 'all' or an integer >= 1, got {value}"
        )
    return int(value)


def _numba() -> Any | None:
    return sys.modules.get("numba")


def compute_threads_for(setting: int | str | None, *, cores: int | None = None) -> int | None:
    """numba threads to use during a sweep with disk traffic, or ``None`` to leave them alone.

    Parameters
    ----------
    setting
        ``None`` (auto), ``"all"`` or a thread count (capped at numba's ``NUMBA_NUM_THREADS``).
    cores
        CPU cores available (default: ``os.sched_getaffinity`` or ``os.cpu_count``).
    """
    numba = _numba()
    if numba is None or setting == "all":
        return None
    limit = int(numba.config.NUMBA_NUM_THREADS)
    if isinstance(setting, int):
        return min(setting, limit)
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - platform dependent
            cores = os.cpu_count() or 1
    current = int(numba.get_num_threads())
    if current >= 2 and cores <= AUTO_RESERVE_MAX_CORES:
        return current - 1
    return None


@contextmanager
def numba_threads(threads: int | None) -> Iterator[None]:
    """Run the ``with`` body with ``numba.set_num_threads(threads)``, then restore the count.

    Does nothing when ``threads`` is ``None`` or numba has not been imported.
    """
    numba = _numba()
    if threads is None or numba is None:
        yield
        return
    before = int(numba.get_num_threads())
    if before == threads:
        yield
        return
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(before)
