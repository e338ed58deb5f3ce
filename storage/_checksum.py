"""The crc32c checksum as zarr v3 stores it, and the error raised when stored bytes fail it.

zarr's ``Crc32cCodec`` appends the crc32c (Castagnoli) of a chunk's coded bytes as 4 bytes,
little-endian; its sharding codec ends every shard index the same way. The zarr tier writes
and reads those bytes itself (:mod:`amcheck.storage._chunk_codec`, :mod:`amcheck.storage._shard`),
so it computes the checksum here, on the caller's memory without a copy, and checks it on every
read: a mismatch, a truncated file or a damaged index raises :class:`ChecksumError`, which the
tier reports as a :class:`~amcheck.TransferError` naming the step, the tier and the path.

A chunk's own crc32c says the bytes are intact, not *whose* they are: two swapped shard files,
or a write the OS reported done that never reached the file (a reused row's file then still
holds its previous checkpoint), pass it. So the tier also keeps, with each step, the crc32c
values its put computed anyway, and a read compares the stored ones with them
(:func:`check_identity`): no extra pass over the data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChecksumError", "check_identity", "crc_bytes", "crc_value"]


class ChecksumError(ValueError):
    """A stored chunk failed its crc32c check, or holds another checkpoint's bytes."""


def crc_bytes(data: np.ndarray) -> np.ndarray:
    """The crc32c of ``data``'s bytes as zarr stores it: 4 bytes, little-endian, as uint8."""
    import crc32c

    value = crc32c.crc32c(np.ascontiguousarray(data).data.cast("B"))
    return np.frombuffer(int(value).to_bytes(4, "little"), dtype=np.uint8)


def crc_value(stored: np.ndarray) -> int:
    """The crc32c held in 4 stored bytes (little-endian), as an int."""
    return int.from_bytes(np.ascontiguousarray(stored, dtype=np.uint8).tobytes(), "little")


def check_identity(stored: np.ndarray, expected: int | None) -> None:
    """Raise :class:`ChecksumError` if a chunk's stored crc32c (4 bytes) is not ``expected``,
    the value recorded when its checkpoint was written (``None``: nothing recorded, no check).

    Call it after the chunk has passed its own crc32c check: the bytes are then intact, so a
    different value means they are another checkpoint's.
    """
    if expected is None:
        return
    found = crc_value(stored)
    if found != expected:
        raise ChecksumError(
            f"the chunk is intact but is not the one written for this checkpoint (its crc32c "
            f"is {found:#010x}, the put recorded {expected:#010x}): the stored bytes belong to "
            "another checkpoint or to an older write (files swapped or copied over, or a write "
            "that never reached the store)"
        )
