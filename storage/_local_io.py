"""Direct shard-file I/O for a zarr tier on a local directory: ``pwritev``/``preadv``, in place.

zarr's ``LocalStore`` writes a temporary file and renames it, and reads into a fresh allocation
that is then copied out (measured); file creation and unlinking are the costly operations on
the benchmark machine's ext4 (0.4-0.7 ms and 2.7 ms, against about 0.1 ms to rewrite a file).
So on a writable local directory the tier bypasses the store for chunk data and uses
:class:`LocalShards`:

- a shard is written with one ``pwritev`` of its pieces (the caller's arrays and the small
  checksum and index arrays) and read with one ``preadv``, so an uncompressed checkpoint is
  never copied: its crc32c is computed on, and checked against, the caller's memory (and
  checked against the value recorded at its put, which says the file holds this checkpoint);
- with a plain codec every level has the same stored size, so each level's offset in the shard
  is known and the levels of a large field are written and read by parallel pool jobs;
- an existing file is rewritten in place (a freed row's file is reused by the next checkpoint)
  and cut to the new length; files are removed only when the tier asks (on close).

The files are the ones zarr itself would write (same keys, same bytes), so plain zarr reads the
store. Like zarr's stores, nothing is fsync'ed: checkpoints survive the process, not a crash of
the machine. Every method blocks: the tier runs them on the transfer service's I/O threads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from amcheck.storage._checksum import ChecksumError
from amcheck.storage._shard import Part, index_nbytes, missing

if TYPE_CHECKING:
    from amcheck.storage._direct import DirectFiles

__all__ = ["LocalShards", "preadv_all", "pwritev_all"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def pwritev_all(fd: int, pieces: list[np.ndarray], offset: int = 0) -> int:
    """Write ``pieces`` back to back from ``offset``; the number of bytes written.

    Shared by the shard files here and :class:`~amcheck.storage.RawTier`'s records.

    ``pwritev`` may write less than asked; it is called again for the rest.
    """
    buffers = [p.data.cast("B") for p in pieces if p.nbytes]
    total = sum(len(b) for b in buffers)
    while buffers:
        done = os.pwritev(fd, buffers, offset)
        offset += done
        buffers = _advance(buffers, done)
    return total


def preadv_all(fd: int, pieces: list[np.ndarray], offset: int = 0) -> None:
    """Fill ``pieces`` from ``offset``; a short file raises ``EOFError``."""
    buffers = [p.data.cast("B") for p in pieces if p.nbytes]
    while buffers:
        done = os.preadv(fd, buffers, offset)
        if done == 0:
            raise EOFError(f"the file ends at byte {offset}, before the buffers were filled")
        offset += done
        buffers = _advance(buffers, done)


def _open(path: Path, flags: int) -> int:
    return os.open(path, flags | _CLOEXEC, 0o644)


def _advance(buffers: list[memoryview], done: int) -> list[memoryview]:
    """What is left of ``buffers`` once their first ``done`` bytes have moved."""
    while buffers and done >= len(buffers[0]):
        done -= len(buffers[0])
        buffers = buffers[1:]
    if buffers and done:
        buffers = [buffers[0][done:], *buffers[1:]]
    return buffers


class LocalShards:
    """Shard files under ``root``, written and read straight from and into the caller's arrays.

    Parameters
    ----------
    root
        The local store's directory; a key ``u/c.3.0`` is the file ``root / "u/c.3.0"``.
    direct
        Whole shards move with ``O_DIRECT`` through these bounce buffers
        (:mod:`amcheck.storage._direct`); ``None``: through the page cache.
    """

    def __init__(self, root: Path, direct: DirectFiles | None = None) -> None:
        self.root = root
        self.direct = direct

    def exists(self, key: str) -> bool:
        """Whether the shard file of ``key`` is there."""
        return os.path.exists(self.root / key)

    def unlink(self, keys: list[str]) -> None:
        """Remove the files of ``keys``; those already gone are skipped."""
        for key in keys:
            try:
                os.unlink(self.root / key)
            except FileNotFoundError:
                pass

    def write(self, key: str, pieces: list[np.ndarray], offset: int = 0, end: bool = True) -> int:
        """Write ``pieces`` into a shard file at ``offset`` (a freed row's file is reused).

        ``end``: these pieces end the shard, so anything a longer earlier shard left after them
        is cut off. Returns the bytes written.
        """
        path = self.root / key
        direct = self.direct if offset == 0 and end else None
        flags = os.O_WRONLY | os.O_CREAT
        opener = direct.open if direct is not None else _open
        try:
            fd = opener(path, flags)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = opener(path, flags)
        try:
            if direct is not None:
                return direct.write(fd, pieces)
            written = pwritev_all(fd, pieces, offset)
            if end and os.fstat(fd).st_size > offset + written:
                os.ftruncate(fd, offset + written)
            return written
        finally:
            os.close(fd)

    def read(self, key: str) -> np.ndarray:
        """A whole shard file, as uint8; a missing file raises ``FileNotFoundError``."""
        fd = self._open_for_reading(key, self.direct)
        try:
            size = os.fstat(fd).st_size
            if self.direct is not None:
                return self.direct.read_whole(fd, size)
            stored = np.empty(size, np.uint8)
            preadv_all(fd, [stored])
            return stored
        finally:
            os.close(fd)

    def write_plain(self, part: Part, levels: range) -> int:
        """Plain codec: write ``levels`` of a shard where they belong; the bytes written.

        Every stored level has the same size, so each level's place is known and the levels of a
        large field are written by parallel jobs straight from the caller's arrays. The job that
        writes the last level also writes the index.
        """
        fld = part.field
        coded = [fld.codec.encode(part.levels[i]) for i in levels]
        part.note_crcs(coded, levels)
        pieces = [p for level in coded for p in level]
        last = levels.stop == fld.layout.levels
        if last:
            pieces.append(fld.plain_index)
        return self.write(part.key, pieces, levels.start * fld.stride, last)

    def read_plain(self, part: Part, levels: range) -> None:
        """Plain codec: read ``levels`` straight into the caller's arrays and check them there.

        The file must have exactly the plain shard's size; each level's crc32c is checked on the
        caller's memory (and against the one its put recorded, ``part.expected``), and the job
        that reads the last level checks the index too.
        """
        fld = part.field
        codec = fld.codec
        crcs = [np.empty(4 if codec.crc else 0, np.uint8) for _ in levels]
        pieces: list[np.ndarray] = []
        for i, crc in zip(levels, crcs, strict=True):
            pieces += [part.levels[i].reshape(-1).view(np.uint8), crc]
        last = levels.stop == fld.layout.levels
        index = np.empty(index_nbytes(fld.layout.levels), np.uint8)
        if last:
            pieces.append(index)
        direct = self.direct if levels.start == 0 and last else None
        fd = self._open_for_reading(part.key, direct)
        try:
            size = os.fstat(fd).st_size
            if size != fld.plain_nbytes:
                raise ChecksumError(
                    f"shard {part.key} holds {size} bytes, expected {fld.plain_nbytes}"
                )
            if direct is not None:
                direct.read(fd, pieces)
            else:
                preadv_all(fd, pieces, levels.start * fld.stride)
        finally:
            os.close(fd)
        if codec.crc:
            for i, crc in zip(levels, crcs, strict=True):
                try:
                    payload = part.levels[i].reshape(-1).view(np.uint8)
                    codec.check_crc(crc, payload, part.expected_crc(i))
                except ChecksumError as exc:
                    raise ChecksumError(f"shard {part.key}, level {i}: {exc}") from None
        if last and not np.array_equal(index, fld.plain_index):
            raise ChecksumError(f"the index of shard {part.key} is not the expected one")

    def _open_for_reading(self, key: str, direct: DirectFiles | None = None) -> int:
        opener = direct.open if direct is not None else _open
        try:
            return opener(self.root / key, os.O_RDONLY)
        except FileNotFoundError:
            raise missing(key) from None
