"""Direct I/O for shard files: checkpoints go to the disk without passing through the page cache.

Why
---
A buffered write copies the checkpoint into the kernel's page cache and leaves the disk write
to the kernel's writeback threads. On the benchmark machine (2 vCPU, ext4 on virtio) that copy
costs about as much CPU as the wall time of the write, and a long sweep that streams gigabytes
fills the page cache with dirty pages until the kernel throttles the writer and runs writeback
on the cores the computation needs: a forward sweep at n = 10^5 (8 GB written) ran 1.6x slower
per step than at n = 10^4 (benchmarks/long_sequences.py). With ``O_DIRECT`` the disk reads the
bytes by DMA, nothing is cached and nothing is left dirty, so the cost of a checkpoint is the
same at every n, and reads in the reverse sweep cost the same whether or not the bytes are
still cached.

How
---
``O_DIRECT`` wants the file offset, the length and the memory address of every transfer aligned
to the device's block size. A zarr shard is not aligned (each chunk is followed by its 4-byte
crc32c), and neither, in general, is the caller's memory, so the bytes move through a per-thread
aligned *bounce buffer* of :data:`BLOCK` bytes: a write gathers the pieces of a shard into it and
writes block after block from offset 0 (the last partial block, at most 4 KiB, goes through the
page cache: padding it and cutting the file afterwards cost 0.1 ms a file on ext4); a read reads
blocks into it and scatters them into the caller's pieces. Where the bounce buffer is empty (the
file offset is aligned) and the caller's piece is page-aligned at that point, its whole pages move
straight between it and the disk, no copy: a :class:`~amcheck.storage.RamTier` slot's large fields
start on pages, so a checkpoint's first time level (a single-level field: all of it) skips the
bounce buffer; the levels after it do not, since the crc32c after each level shifts the file by 4
bytes against memory. The copy through the bounce buffer
(0.12-0.15 ms per 4 MiB here) is far cheaper than the page cache's: in a forward sweep of 4 MiB
checkpoints the I/O threads spent 1.9 ms of CPU per checkpoint with direct I/O and 5.5-6.1 ms
through the page cache. The bytes on disk are exactly those of a buffered write: plain zarr
reads them.

Whether a directory supports ``O_DIRECT`` (tmpfs and some network file systems do not) is found
by writing one aligned block to a probe file (:func:`direct_supported`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from amcheck.storage._local_io import pwritev_all

from amcheck._errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "ALIGN",
    "BLOCK",
    "DirectFiles",
    "aligned_empty",
    "check_direct",
    "direct_files",
    "direct_supported",
]

#: Alignment of offsets, lengths and addresses (4 KiB: every common device's block size or a
#: multiple of it).
ALIGN = 4096
#: Bytes moved per system call through the bounce buffer.
BLOCK = 4 << 20

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def aligned_empty(nbytes: int, align: int = ALIGN) -> np.ndarray:
    """An uninitialised uint8 array of ``nbytes`` whose address is a multiple of ``align``
    (over-allocated by ``align`` bytes; the base keeps the whole block alive)."""
    raw = np.empty(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes]


def direct_supported(directory: Path) -> bool:
    """Whether files in ``directory`` can be written with ``O_DIRECT`` (probed, then removed)."""
    if not _O_DIRECT:
        return False
    probe = directory / f".amcheck-direct-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT | _CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        os.pwrite(fd, aligned_empty(ALIGN).data, 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def check_direct(direct: object) -> bool | None:
    """A tier's ``direct`` argument, checked: True, False (``numpy.bool_`` too) or None."""
    if direct is not None and not isinstance(direct, (bool, np.bool_)):
        raise ArgumentTypeError(f"direct must be True, False or None, got {direct!r}")
    return None if direct is None else bool(direct)


def direct_files(direct: object, directory: Path | None, where: str) -> DirectFiles | None:
    """A tier's ``direct`` argument resolved: bounce buffers for direct I/O, or ``None``.

    ``directory`` is where the tier's files go (``None``: not a local directory). ``None`` uses
    direct I/O where :func:`direct_supported`; ``True`` requires it; ``False`` declines it.

    Raises
    ------
    ArgumentTypeError
        ``direct`` is not True, False or None.
    InvalidArgumentError
        ``direct=True`` where direct I/O is not available (``where`` names the place).
    """
    direct = check_direct(direct)
    use = direct is not False and directory is not None and direct_supported(directory)
    if direct and not use:
        raise InvalidArgumentError(
            f"direct=True needs a writable local directory whose file system supports O_DIRECT; "
            f"{where} is not one (pass direct=None to fall back to the page cache where direct "
            "I/O is not available)"
        )
    return DirectFiles() if use else None


def _views(pieces: list[np.ndarray]) -> list[np.ndarray]:
    return [p.reshape(-1).view(np.uint8) for p in pieces if p.nbytes]


def _straight(piece: np.ndarray, at: int) -> int:
    """Bytes of ``piece`` from ``at`` that can move straight between it and the file: the whole
    pages from ``at`` when its address is page-aligned (a RamTier slot's large fields are), else 0.
    The caller checks that the file offset is aligned too (the bounce buffer is empty)."""
    if (piece.ctypes.data + at) % ALIGN:
        return 0
    return (piece.nbytes - at) // ALIGN * ALIGN


class DirectFiles:
    """Whole-file ``O_DIRECT`` writes and reads through per-thread aligned bounce buffers.

    Every method blocks; each thread that calls them gets its own bounce buffer of ``block``
    bytes (the transfer service's I/O threads: ``io_threads * block`` bytes in all).

    Parameters
    ----------
    block
        Bytes per system call, a multiple of :data:`ALIGN`.
    """

    def __init__(self, block: int = BLOCK) -> None:
        if block <= 0 or block % ALIGN:
            raise ValueError(f"block must be a positive multiple of {ALIGN}, got {block}")
        self.block = block
        self._local = threading.local()

    def _bounce(self) -> np.ndarray:
        bounce: np.ndarray | None = getattr(self._local, "bounce", None)
        if bounce is None:
            bounce = self._local.bounce = aligned_empty(self.block)
        return bounce

    def open(self, path: Path, flags: int) -> int:
        """``os.open`` with ``O_DIRECT``."""
        return os.open(path, flags | _O_DIRECT | _CLOEXEC, 0o644)

    def write(self, fd: int, pieces: list[np.ndarray], record: int | None = None) -> int:
        """Write ``pieces`` back to back; the bytes written (without padding).

        ``record=None``: from offset 0, a whole file, cut where the pieces end. Else the pieces
        fill a fixed-size record at byte ``record`` (a multiple of :data:`ALIGN`), whose last
        block is padded with zeros, and the file's length is left alone.
        """
        bounce = self._bounce()
        block = self.block
        filled = 0
        offset = 0 if record is None else record
        for piece in _views(pieces):
            at, size = 0, piece.nbytes
            while at < size:
                if filled == 0 and (run := _straight(piece, at)):
                    pwritev_all(fd, [piece[at : at + run]], offset)  # no bounce copy
                    offset += run
                    at += run
                    continue
                take = min(block - filled, size - at)
                bounce[filled : filled + take] = piece[at : at + take]
                filled += take
                at += take
                if filled == block:
                    pwritev_all(fd, [bounce], offset)
                    offset += block
                    filled = 0
        total = offset + filled
        if record is not None:
            padded = -(-filled // ALIGN) * ALIGN
            bounce[filled:padded] = 0
            if padded:
                pwritev_all(fd, [bounce[:padded]], offset)
            return total - record
        whole = filled - filled % ALIGN
        if whole:
            pwritev_all(fd, [bounce[:whole]], offset)
        if whole < filled:  # the last partial block: through the page cache, no padding to cut
            import fcntl  # POSIX only, as O_DIRECT

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)
            pwritev_all(fd, [bounce[whole:filled]], offset + whole)
        if os.fstat(fd).st_size > total:  # a longer earlier file
            os.ftruncate(fd, total)
        return total

    def read(self, fd: int, pieces: list[np.ndarray], offset: int = 0) -> None:
        """Fill ``pieces`` back to back from ``offset`` (a multiple of :data:`ALIGN`); a file too
        short raises ``EOFError``."""
        bounce = self._bounce()
        views = _views(pieces)
        left = sum(v.nbytes for v in views)  # bytes still to read from the file
        got = used = 0
        for piece in views:
            at, size = 0, piece.nbytes
            while at < size:
                if used == got and (run := _straight(piece, at)):
                    done = os.preadv(fd, [piece[at : at + run].data], offset)  # no bounce copy
                    if done < run:  # O_DIRECT reads of a regular file stop short only at its end
                        raise EOFError(
                            f"the file ends at byte {offset + done}, before the buffers were filled"
                        )
                    offset += run
                    left -= run
                    at += run
                    continue
                if used == got:  # the bounce buffer is spent: read the next block (no more)
                    want = min(self.block, -(-left // ALIGN) * ALIGN)
                    got = os.preadv(fd, [bounce[:want].data], offset)
                    left -= got
                    if got == 0:
                        raise EOFError(f"the file ends at byte {offset}, before the buffers were filled")
                    offset += got
                    used = 0
                take = min(got - used, size - at)
                piece[at : at + take] = bounce[used : used + take]
                used += take
                at += take

    def read_whole(self, fd: int, size: int) -> np.ndarray:
        """The file's first ``size`` bytes, read straight into a fresh aligned array."""
        padded = -(-size // ALIGN) * ALIGN
        stored = aligned_empty(padded)
        offset = 0
        while offset < size:
            got = os.preadv(fd, [stored[offset:].data], offset)
            if got == 0:
                raise EOFError(f"the file ends at byte {offset}, expected {size}")
            offset += got
        return stored[:size]

