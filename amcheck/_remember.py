"""What the process remembers of earlier Checkpointers of the same workload.

An inversion builds a Checkpointer per gradient (``fwi_gradient`` does), each for the same
operators, state and disk tier. What a sweep measured about the machine serves the next one:
the numba thread count :mod:`amcheck._cores` chose (:data:`CHOICES`) and the disk interval the
automatic interval ended with (:data:`INTERVALS`). Each is a :class:`Recent`, the
:data:`SIZE` most recent workloads; :func:`forget` clears both (the next sweeps measure
again). A workload includes where its disk tier writes (:func:`storage_of`): the same operators
writing to a local disk and to a network file system are two workloads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Final, Generic, TypeVar

__all__ = ["CHOICES", "INTERVALS", "SIZE", "Recent", "forget", "storage_of"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Workloads each memory keeps, the most recent ones.
SIZE: Final = 256


class Recent(Generic[K, V]):
    """A thread-safe mapping of the ``size`` most recently put keys."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._values: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._values.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._values.pop(key, None)  # the most recent last
            self._values[key] = value
            while len(self._values) > self.size:
                del self._values[next(iter(self._values))]

    def discard(self, key: K) -> None:
        with self._lock:
            self._values.pop(key, None)

    def items(self) -> list[tuple[K, V]]:
        with self._lock:
            return list(self._values.items())

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


#: :attr:`amcheck._cores.ThreadChooser.snapshot` by ``(workload, numba's thread count)``.
CHOICES: Recent[Hashable, tuple[int, int, int]] = Recent()
#: The automatic interval a forward sweep ended with, by workload (see ``Checkpointer``).
INTERVALS: Recent[Hashable, int] = Recent()


def forget() -> None:
    """Forget what the process remembers: the next sweeps probe and measure again."""
    CHOICES.clear()
    INTERVALS.clear()


def storage_of(tier: object) -> Hashable:
    """Where ``tier`` writes, as far as its write times depend on it: the file system (device
    number) holding a local ``tier.path``, the scheme and host of a URL (``"s3://bucket"``), or
    ``None`` (no tier, no path, or one that cannot be looked at)."""
    path = getattr(tier, "path", None)
    if not isinstance(path, (str, os.PathLike)):
        return None
    text = os.fspath(path)
    if not isinstance(text, str):
        return None
    if "://" in text:
        scheme, rest = text.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}"
    local = Path(text).absolute()
    for folder in (local, *local.parents):  # the tier's own path may not exist yet
        try:
            return os.stat(folder).st_dev
        except OSError:
            continue
    return None
