"""Which CPUs the transfer threads run on: the ones that take the disk's interrupts.

Why
---
When a write or read of a checkpoint completes, the disk interrupts one CPU (the one its
queue's interrupt is routed to), and the kernel's completion work runs there and wakes the
transfer thread that waited for it, on that CPU. With the user's kernel on that CPU, every
completion preempts it. Measured on the benchmark machine (2 vCPUs, a virtio disk whose one
request queue interrupts CPU 1; ``benchmarks/results/io_cpus_ab.py``, ``.log``, two runs of 6
rounds): with the transfer threads anywhere, the computing thread of the overlapped forward
sweep (200 writes) was preempted 200-400 times in the rounds where it sat on CPU 1, and 4-5
times where it sat on CPU 0. With them confined to CPU 1 the scheduler moves it to CPU 0
(5-98 preemptions); the forward sweep took 1.077x and 1.107x compute alone on that CPU, and
the whole sweep of the headline variant (pairs, automatic k) ran 1.035x and 1.042x faster than
with the threads anywhere (medians, round by round).

So a :class:`~amcheck.storage.TransferService` may be given CPUs (``cpus=``), and amcheck's
engine gives it :func:`interrupt_cpus` of the disk tier's directory when those are some, not
all, of the CPUs this process may use. Where they are all of them (a disk with a queue per
CPU, as NVMe has), or unknown (not Linux, no block device behind the path, an unreadable
``/sys``), nothing is confined.

How (Linux): the path's device number leads, through ``/sys/dev/block``, to the disk and then
up its ``/sys/devices`` ancestors to the first that lists ``msi_irqs`` (its PCI function);
``/proc/interrupts`` says how many interrupts each of those took, and each busy one's
``/proc/irq/N/effective_affinity_list`` which CPUs take it now.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from amcheck._errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["BUSY_SHARE", "check_cpus", "confine", "interrupt_cpus", "io_cpus", "usable_cpus"]

#: An interrupt of the disk counts when it took at least this share of the count of the
#: device's busiest one (a configuration interrupt that fired once does not).
BUSY_SHARE: Final = 0.1


def usable_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on, or ``None`` where the platform cannot say or confine
    threads (no ``os.sched_getaffinity``, e.g. macOS and Windows)."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    return frozenset(os.sched_getaffinity(0))


def check_cpus(name: str, value: object) -> frozenset[int]:
    """Validate a collection of CPU ids: non-empty, each one this process may use."""
    usable = usable_cpus()
    if usable is None:
        raise InvalidArgumentError(
            f"{name}={value!r}: this platform cannot confine threads to CPUs "
            "(no os.sched_setaffinity); leave it None"
        )
    allowed = f"a non-empty collection of the CPU ids this process may use, {sorted(usable)}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(
            f"{name} must be {allowed}, got {value!r} of type {type(value).__name__}"
        )
    cpus = list(value)
    for cpu in cpus:
        if isinstance(cpu, bool) or not isinstance(cpu, numbers.Integral):
            raise ArgumentTypeError(
                f"{name} must be {allowed}; it holds {cpu!r} of type {type(cpu).__name__}"
            )
    cpus = [int(cpu) for cpu in cpus]
    if not cpus or not set(cpus) <= usable:
        raise InvalidArgumentError(f"{name} must be {allowed}, got {sorted(set(cpus))}")
    return frozenset(cpus)


def confine(cpus: frozenset[int] | None) -> None:
    """Confine the calling thread to ``cpus`` (nothing for ``None``)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _interrupt_counts(proc: Path) -> dict[int, list[int]]:
    """``/proc/interrupts``: numbered interrupt -> its count on each CPU."""
    counts: dict[int, list[int]] = {}
    with open(proc / "interrupts") as lines:
        ncpu = len(next(lines).split())
        for line in lines:
            name, _, rest = line.partition(":")
            if name.strip().isdigit():
                fields = rest.split()[:ncpu]
                if all(field.isdigit() for field in fields):
                    counts[int(name)] = [int(field) for field in fields]
    return counts


def _parse_cpu_list(text: str) -> set[int]:
    """``"0-2,5"`` -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _device_irqs(path: str, sysfs: Path) -> list[int]:
    """The interrupts of the PCI function behind the block device holding ``path``."""
    here = Path(path)
    while not here.exists():  # a directory the tier will create
        here = here.parent
    dev = here.stat().st_dev
    node = (sysfs / "dev" / "block" / f"{os.major(dev)}:{os.minor(dev)}").resolve(strict=True)
    if (node / "partition").exists():
        node = node.parent
    device = (node / "device").resolve(strict=True)
    top = (sysfs / "devices").resolve()
    for ancestor in (device, *device.parents):
        if (ancestor / "msi_irqs").is_dir():
            return sorted(int(irq.name) for irq in (ancestor / "msi_irqs").iterdir())
        if ancestor == top:
            break
    return []


def interrupt_cpus(path: str | os.PathLike[str], *, sysfs: str | os.PathLike[str] = "/sys",
                   procfs: str | os.PathLike[str] = "/proc") -> frozenset[int] | None:
    """The CPUs that take the interrupts of the disk holding ``path`` (an existing path, or
    one whose nearest existing parent is on that disk); ``None`` where that is unknown.
    ``sysfs`` and ``procfs``: where those are mounted."""
    proc = Path(procfs)
    try:
        irqs = _device_irqs(os.fspath(path), Path(sysfs))
        if not irqs:
            return None
        counts = _interrupt_counts(proc)
        totals = {irq: sum(counts.get(irq, ())) for irq in irqs}
        busiest = max(totals.values())
        if busiest == 0:
            return None
        cpus: set[int] = set()
        for irq, total in totals.items():
            if total >= BUSY_SHARE * busiest:
                cpus |= _parse_cpu_list((proc / "irq" / str(irq) / "effective_affinity_list")
                                        .read_text())
        return frozenset(cpus) or None
    except (OSError, ValueError, StopIteration, AttributeError):  # not Linux (no os.major on
        # Windows), no /sys or /proc, not a block device
        return None


def io_cpus(path: str | os.PathLike[str] | None) -> frozenset[int] | None:
    """The CPUs for the transfer threads of a tier at ``path``: those of :func:`interrupt_cpus`
    this process may use, when they are some but not all of them; else ``None`` (confine
    nothing)."""
    usable = usable_cpus()
    if path is None or usable is None:
        return None
    cpus = interrupt_cpus(path)
    if cpus is None:
        return None
    cpus &= usable
    return cpus if cpus and cpus != usable else None
