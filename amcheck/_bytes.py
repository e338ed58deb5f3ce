"""Byte budgets: ``"8 GiB"``, ``"512 MB"``, ``2**33`` or ``"25%"`` of physical memory, parsed in one place."""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import TypeAlias

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_bool, check_finite_float

__all__ = ["ByteSize", "format_bytes", "parse_bytes", "physical_memory"]

ByteSize: TypeAlias = int | str
"""A byte count: an ``int``, or a string such as ``"8 GiB"``, ``"1.5GB"``, ``"4096"`` or ``"25%"``."""

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}
# A decimal number as Python's float() reads one ("2", "+2", "1.5", ".5", "1.", "1e3"), a unit.
_PATTERN = re.compile(r"^\s*(\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z%]*)\s*$")


def cgroup_memory_limit(root: str = "/sys/fs/cgroup", proc: str = "/proc/self/cgroup") -> int | None:
    """The lowest memory limit of this process's cgroup and its ancestors (a batch job's, such
    as SLURM's, or a container's), or ``None`` if none is set or none can be read.

    cgroup v2 (``0::/path`` in ``proc``: ``root/path/memory.max``) and v1 (``N:memory:/path``:
    ``root/memory/path/memory.limit_in_bytes``); ``max`` or a number beyond physical memory
    means no limit.
    """
    try:
        with open(proc) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = os.path.join(root, "memory"), "memory.limit_in_bytes"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts) + 1):  # the root cgroup, ..., this process's
            try:
                with open(os.path.join(base, *parts[:depth], name)) as fh:
                    text = fh.read().strip()
            except OSError:
                continue
            if text.isdigit():
                limits.append(int(text))
    return min(limits) if limits else None


def physical_memory() -> int:
    """Return the memory this process may use in bytes: the machine's (``os.sysconf``), or its
    cgroup's limit where that is lower (:func:`cgroup_memory_limit`)."""
    memory = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    limit = cgroup_memory_limit()
    return memory if limit is None else min(memory, limit)


def parse_bytes(value: ByteSize, name: str = "budget", *, on_disk: bool = False) -> int:
    """Parse a byte budget into a number of bytes.

    Parameters
    ----------
    value
        An integer (bytes; numpy integers too), or a string: a number with an optional unit
        (``B``, ``kB``, ``MB``, ``GB``, ``TB`` are powers of 10; ``KiB``, ``MiB``, ``GiB``,
        ``TiB`` and the bare letters ``K``, ``M``, ``G``, ``T`` are powers of 2; case does not
        matter), or a percentage of physical memory such as ``"25%"`` (of :func:`physical_memory`: a
        cgroup's memory limit where that is lower). A size in a unit rounds to whole bytes.
    name
        The parameter's name, for the error message.
    on_disk
        The size is one on disk, which a share of memory does not measure: a percentage is
        refused.

    Returns
    -------
    int
        The number of bytes, >= 0.

    Raises
    ------
    ArgumentTypeError
        ``value`` is neither an integer (``int``, ``numpy.int64``, ...) nor a ``str``.
    InvalidArgumentError
        The string cannot be parsed, the unit is unknown, or the value is negative, above 0
        but below one byte, or a percentage outside (0, 100] (or any percentage ``on_disk``).
    """
    on_disk = check_bool("on_disk", on_disk)  # "no" would read as True
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise ArgumentTypeError(
            f"{name} must be a number of bytes (an integer) or a string such as '2 GiB' or "
            f"'25%', got {value!r} of type {type(value).__name__}"
        )
    if not isinstance(value, str):
        if value < 0:
            raise InvalidArgumentError(f"{name} must be >= 0 bytes, got {value}")
        return int(value)
    match = _PATTERN.match(value)
    if match is None and _PATTERN.match(value.strip().removeprefix("-")) is not None:
        if value.strip().endswith("%"):
            raise InvalidArgumentError(
                f"{name} must be a percentage of physical memory in (0, 100], got {value!r}")
        raise InvalidArgumentError(f"{name} must be >= 0 bytes, got {value!r}")
    if match is None:
        raise InvalidArgumentError(
            f"{name} could not be parsed as a byte size: {value!r}; "
            "expected e.g. '512 MiB', '2 GB', '1073741824' or '25%'"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        if on_disk:
            raise InvalidArgumentError(
                f"{name}={value!r}: a percentage is a share of memory, not of a disk; give the "
                "size the checkpoints may take on disk, such as '8 GiB'")
        if not 0.0 < number <= 100.0:
            raise InvalidArgumentError(
                f"{name} must be a percentage of physical memory in (0, 100], got {value!r}"
            )
        return int(physical_memory() * number / 100.0)
    if unit not in _UNITS:
        raise InvalidArgumentError(
            f"{name} has an unknown unit {match.group(2)!r} in {value!r}; "
            "allowed: B, kB, MB, GB, TB (powers of 10), KiB, MiB, GiB, TiB or K, M, G, T (powers "
            "of 2), or %"
        )
    if unit in ("", "b") and math.isfinite(number) and not number.is_integer():
        raise InvalidArgumentError(
            f"{name} must be a whole number of bytes, got {value!r}; a fraction needs a larger "
            "unit, such as '1.5 GiB'")
    nbytes = number * _UNITS[unit]
    if not math.isfinite(nbytes):
        raise InvalidArgumentError(
            f"{name} is too large to be a byte size: {value!r}; give a finite size such as "
            "'64 GiB' or '2 TB'"
        )
    if 0 < nbytes < 0.5:  # "0.0001 KiB": not a size anyone means by it
        raise InvalidArgumentError(
            f"{name}={value!r} is less than one byte ({nbytes:g} bytes); give a size of at least "
            "one byte")
    return round(nbytes)  # "1e-3 KiB" is 1.024 bytes: 1; a fraction of a unit rounds to bytes


def format_bytes(nbytes: float) -> str:
    """Format a byte count for people, in powers of 2 (``"1.5 GiB"``).

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        ``nbytes`` is not a finite real number.
    """
    size = check_finite_float("nbytes", nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024.0:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024.0
    return f"{size:.1f} TiB"
