"""The crc32c checksum as zarr v3 stores it, and the error raised when stored bytes fail it.

zarr's ``Crc32cCodec`` appends the crc32c (Castagnoli) of a chunk's coded bytes as 4 bytes,
little-endian; its sharding codec ends every shard index the same way. The zarr tier writes
and reads those bytes itself (:mod:`amcheck.storage._chunk_codec`, :mod:`amcheck.storage._shard`),
so it computes the checksum here, on the caller's memory without a copy, and checks it on every
read: a mismatch, a truncated file or a damaged index raises :class:`ChecksumError`, which the
tier reports as a :class:`~amcheck.TransferError` naming the step, the tier and the path.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChecksumError", "crc_bytes"]


class ChecksumError(ValueError):
    """A stored chunk failed its crc32c check."""


def crc_bytes(data: np.ndarray) -> np.ndarray:
    """The crc32c of ``data``'s bytes as zarr stores it: 4 bytes, little-endian, as uint8."""
    import crc32c

    value = crc32c.crc32c(np.ascontiguousarray(data).data.cast("B"))
    return np.frombuffer(int(value).to_bytes(4, "little"), dtype=np.uint8)
