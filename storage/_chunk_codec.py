"""Code one chunk synchronously with an array's own zarr v3 codecs (:class:`ChunkCodec`).

zarr's write path for a whole chunk allocates a chunk-sized array, copies the selection into it,
hops to a thread per codec and appends the crc32c with a copy of the whole chunk; its read path
reads into a fresh allocation and copies the decoded chunk into the output. That cost about
6.3 ms of a 7 ms put of 1 MB on the benchmark machine, where fresh large allocations are slow
to touch (measured on the project's machines). The zarr tier therefore codes each chunk itself,
in one call on one pool thread, with the same codec calls zarr's pipeline makes, so the bytes
are exactly what zarr writes and plain zarr reads them back (``tests/test_tiers.py`` checks
it). A plain chunk (native-endian bytes and a crc32c) is the caller's own memory plus 4 bytes,
so it is written and read without any copy; ZFP streams decode straight into the caller's array through
:mod:`amcheck.storage._libzfp`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from amcheck.storage._checksum import ChecksumError, check_identity, crc_bytes
from amcheck.storage._libzfp import libzfp

__all__ = ["ChunkCodec"]


class _NoSyncCodec(Exception):
    """A codec offers no synchronous encode/decode (the tier then uses zarr's async pipeline)."""


def _is_numcodecs_wrapper(codec: Any) -> bool:
    from zarr.codecs.numcodecs._codecs import _NumcodecsCodec

    return isinstance(codec, _NumcodecsCodec)


def _inner_numcodec(codec: Any) -> Any:
    """The numcodecs codec inside zarr's wrapper ``codec`` (a codec without zarr sync calls)."""
    if not _is_numcodecs_wrapper(codec):  # pragma: no cover - checked by ``sync``
        raise _NoSyncCodec(repr(codec))
    return codec._codec


def _unround(chunk: np.ndarray, rounded: np.ndarray, keepbits: int) -> np.ndarray:
    """``rounded`` (numcodecs' BitRound of ``chunk``) with what it made infinite put right.

    BitRound adds half a unit of the kept mantissa and masks the rest, so a finite value within
    half a unit of the dtype's largest carries into the exponent and becomes infinite
    (float32's max came back as inf with keepbits=12), and a NaN whose payload lies in the
    masked bits becomes an infinity (0x7f800001 came back as +inf). Such values are truncated
    instead, to the largest kept value below them (a relative error below ``2**-(keepbits+1)``
    still, as they lie within half a unit of the dtype's max), and NaNs stay NaN.
    """
    if chunk.dtype.kind != "f" or chunk.dtype.itemsize not in (4, 8):
        return rounded
    values = rounded.view(chunk.dtype)  # BitRound returns the bits as integers
    wrong = np.isinf(values) & ~np.isinf(chunk.reshape(values.shape))
    if not wrong.any():
        return rounded
    fixed = np.array(rounded)  # writable, whatever BitRound returned
    bits = np.dtype(f"u{chunk.dtype.itemsize}")
    drop = np.finfo(chunk.dtype).nmant - keepbits
    mask = np.array(~((1 << drop) - 1) & np.iinfo(bits).max, dtype=bits)
    was = chunk.reshape(values.shape)[wrong]
    fixed.view(chunk.dtype)[wrong] = np.where(
        np.isnan(was), np.nan, (was.view(bits) & mask).view(chunk.dtype))
    return fixed


class ChunkCodec:
    """Encode and decode one chunk synchronously with an array's own zarr v3 codecs.

    One call codes one chunk on the calling (pool) thread; the tier moves the bytes itself:

    - **plain** chunks (the ``bytes`` serializer in native byte order and a crc32c, nothing
      else): the stored bytes are the array's own memory followed by its 4-byte checksum, so
      :meth:`encode` returns ``[array bytes, checksum]`` without a copy, and a read can land in the
      caller's buffer directly and be checked in place (:meth:`check_crc`);
    - other chains run codec by codec through zarr's synchronous codec calls (``_encode_sync``,
      which the native codecs provide) or the numcodecs codec inside zarr's wrapper, the same
      calls zarr's pipeline makes, so the bytes are exactly what zarr writes and reads.

    ``sync`` is False when a codec has neither (a third-party zarr codec): the tier then falls
    back to zarr's asynchronous codec pipeline for that array.

    Parameters
    ----------
    codecs
        The array's codecs as in its metadata (``array.metadata.codecs``).
    chunk_spec
        zarr's ``ArraySpec`` of one chunk.
    """

    def __init__(self, codecs: Sequence[Any], chunk_spec: Any) -> None:
        from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec
        from zarr.codecs import BytesCodec, Crc32cCodec

        self.spec = chunk_spec
        self.shape: tuple[int, ...] = tuple(chunk_spec.shape)
        self.dtype: np.dtype[Any] = chunk_spec.dtype.to_native_dtype()
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        codecs = list(codecs)
        self.crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
        if self.crc:
            codecs = codecs[:-1]
        self.filters = [c for c in codecs if isinstance(c, ArrayArrayCodec)]
        serializers = [c for c in codecs if isinstance(c, ArrayBytesCodec)]
        self.serializer = serializers[0] if serializers else None
        self.compressors = [c for c in codecs if isinstance(c, BytesBytesCodec)]
        native = self.dtype.itemsize == 1 or self.dtype.byteorder in ("=", "|") or (
            self.dtype.byteorder == ("<" if sys.byteorder == "little" else ">")
        )
        endian = getattr(self.serializer, "endian", None)
        endian_ok = endian is None or getattr(endian, "value", endian) == sys.byteorder
        self.plain = (
            isinstance(self.serializer, BytesCodec)
            and endian_ok
            and native
            and not self.filters
            and not self.compressors
        )
        self.sync = all(self._has_sync(c) for c in codecs)
        inner: Any = getattr(self.serializer, "_codec", None)
        #: The serializer is numcodecs ZFPY (any mode): it cannot code NaN or infinity.
        self.zfp = _is_numcodecs_wrapper(self.serializer) and getattr(inner, "codec_id", None) == "zfpy"
        #: ... in fixed-accuracy mode: :meth:`encode` can take another tolerance per call
        #: (``"zfp:rtol=…"``).
        self.zfp_accuracy = self.zfp and getattr(inner, "mode", None) == 4
        #: ZFP streams decode straight into the caller's array (no filters after the serializer).
        self.zfp_in_place = self.zfp and not self.filters and libzfp() is not None
        #: The mantissa bits a BitRound filter keeps (``None`` without one): see :func:`_unround`.
        numcodecs_filters = [_inner_numcodec(c) for c in self.filters if _is_numcodecs_wrapper(c)]
        self.keepbits: int | None = next((int(f.keepbits) for f in numcodecs_filters
                                          if getattr(f, "codec_id", None) == "bitround"), None)

    @staticmethod
    def _has_sync(codec: Any) -> bool:
        return callable(getattr(codec, "_encode_sync", None)) or _is_numcodecs_wrapper(codec)

    # -- one codec at a time, as zarr's pipeline calls them, without the thread hops --

    def _encode_one(self, codec: Any, data: Any) -> Any:
        from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec

        if callable(getattr(codec, "_encode_sync", None)):
            return codec._encode_sync(data, self.spec)
        numcodec = _inner_numcodec(codec)
        proto = self.spec.prototype
        if isinstance(codec, ArrayArrayCodec):
            return proto.nd_buffer.from_ndarray_like(numcodec.encode(data.as_ndarray_like()))
        if isinstance(codec, ArrayBytesCodec):
            return proto.buffer.from_bytes(numcodec.encode(data.as_ndarray_like()))
        return codec._encode(data, proto)

    def _decode_one(self, codec: Any, data: Any, shape: tuple[int, ...] | None) -> Any:
        from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec
        from zarr.core.buffer.cpu import as_numpy_array_wrapper

        if callable(getattr(codec, "_decode_sync", None)):
            return codec._decode_sync(data, self.spec)
        numcodec = _inner_numcodec(codec)
        proto = self.spec.prototype
        if isinstance(codec, ArrayArrayCodec):
            out = numcodec.decode(data.as_ndarray_like())
            return proto.nd_buffer.from_ndarray_like(out.reshape(shape))
        if isinstance(codec, ArrayBytesCodec):
            out = numcodec.decode(data.as_numpy_array())
            return proto.nd_buffer.from_ndarray_like(out.reshape(shape))
        return as_numpy_array_wrapper(numcodec.decode, data, proto)

    # -- public --

    def payload(self, chunk: np.ndarray, tolerance: float | None = None) -> np.ndarray:
        """The coded bytes of ``chunk`` (uint8, checksum not included); a view when plain.

        ``tolerance`` replaces the ZFP accuracy-mode tolerance for this chunk (ignored by other
        codecs); the stream's header records it, so decoding needs nothing else.
        """
        if self.plain:
            return chunk.reshape(-1).view(np.uint8)
        proto = self.spec.prototype
        data: Any = proto.nd_buffer.from_ndarray_like(chunk)
        for aa in self.filters:
            data = self._encode_one(aa, data)
        if self.keepbits is not None:
            data = proto.nd_buffer.from_ndarray_like(
                _unround(chunk, np.asarray(data.as_ndarray_like()), self.keepbits))
        if tolerance is not None and self.zfp_accuracy:
            import zfpy

            # What numcodecs' ZFPY.encode does, with this chunk's own tolerance.
            values = np.ascontiguousarray(data.as_ndarray_like())
            data = proto.buffer.from_bytes(
                zfpy.compress_numpy(values, tolerance=float(tolerance), write_header=True)
            )
        else:
            data = self._encode_one(self.serializer, data)
        for bb in self.compressors:
            data = self._encode_one(bb, data)
        return np.asarray(data.as_numpy_array()).reshape(-1).view(np.uint8)

    def encode(self, chunk: np.ndarray, tolerance: float | None = None) -> list[np.ndarray]:
        """The stored bytes of ``chunk``, as pieces to write back to back.

        Plain chunks: ``[the chunk's own memory, 4-byte crc32c]``, no copy (the pieces keep
        referring to ``chunk``). ``tolerance``: see :meth:`payload`.
        """
        data = self.payload(chunk, tolerance)
        if not self.crc:
            return [data]
        return [data, crc_bytes(data)]

    def check_crc(
        self, stored: np.ndarray, payload: np.ndarray | None = None, expected: int | None = None
    ) -> None:
        """Raise :class:`ChecksumError` if the crc32c of a stored chunk does not match.

        ``stored`` is the chunk's bytes; or, with ``payload`` given, ``stored`` holds only the
        4 checksum bytes and ``payload`` the bytes they cover (e.g. read straight into the
        caller's array). ``expected``: the crc32c recorded when the checkpoint was written; an
        intact chunk with another one is another checkpoint's (see
        :func:`~amcheck.storage._checksum.check_identity`).
        """
        if payload is None:
            if len(stored) < 4:
                raise ChecksumError(f"a chunk of {len(stored)} bytes cannot hold a crc32c")
            payload, stored = stored[:-4], stored[-4:]
        if not np.array_equal(crc_bytes(payload), stored):
            raise ChecksumError(
                "the crc32c of a chunk does not match its stored checksum (the file was "
                "changed or damaged)"
            )
        check_identity(stored, expected)

    def decode_into(self, stored: np.ndarray, out: np.ndarray, expected: int | None = None) -> None:
        """Decode a stored chunk (uint8, checksum included if the chain has one) into ``out``.

        ``expected``: the chunk's crc32c recorded at the put, checked before anything is decoded
        (ignored when the chain has no crc32c).
        """
        if self.crc:
            self.check_crc(stored, expected=expected)
            stored = stored[:-4]
        if self.plain:
            if stored.nbytes != self.nbytes:
                raise ChecksumError(
                    f"a chunk holds {stored.nbytes} bytes, expected {self.nbytes}"
                )
            np.copyto(out.reshape(-1).view(np.uint8), stored)
            return
        proto = self.spec.prototype
        data: Any = proto.buffer.from_array_like(stored)
        for bb in reversed(self.compressors):
            data = self._decode_one(bb, data, None)
        if self.zfp_in_place and out.shape == self.shape:
            lib = libzfp()
            assert lib is not None
            if lib.decode_into(np.asarray(data.as_numpy_array()).view(np.uint8), out):
                return
        data = self._decode_one(self.serializer, data, self.shape)
        for aa in reversed(self.filters):
            data = self._decode_one(aa, data, self.shape)
        np.copyto(out, np.asarray(data.as_ndarray_like()).reshape(self.shape), casting="no")
