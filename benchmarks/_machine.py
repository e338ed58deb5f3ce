"""One line that says which machine a benchmark ran on, for its log and JSON.

The project's 2-vCPU machines are not all alike: the same commit has met hosts whose memory
bandwidth differed by 2x (a one-thread triad of 13.7-14.8 GB/s on an Intel Xeon with 2 MiB of L2
a core, 29-32 GB/s on an AMD EPYC with 1 MiB), and a roofline or a ratio means little without
the host. ``platform.processor()`` is empty or ``x86_64`` on Linux, so the CPU model and the cache
sizes come from ``/proc/cpuinfo`` and ``/sys``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> str:
    """``L2 2 MiB, L3 480 MiB`` from CPU 0's cache entries in sysfs ('' where there are none)."""
    sizes: dict[int, str] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            kib = int((index / "size").read_text().strip().removesuffix("K"))
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and level >= 2:
            sizes[level] = f"{kib // 1024} MiB" if kib % 1024 == 0 else f"{kib} KiB"
    return ", ".join(f"L{level} {size}" for level, size in sorted(sizes.items()))


def describe() -> str:
    """The CPU model, the CPU count, the cache sizes (L2 is a core's) and Python's version."""
    caches = _caches()
    return (f"{_cpu_model()}, {os.cpu_count()} CPUs" + (f", {caches}" if caches else "")
            + f", Python {platform.python_version()}")


if __name__ == "__main__":
    print(describe())
