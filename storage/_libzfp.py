"""In-place decoding of ZFP streams through the libzfp that zfpy ships (a ctypes binding).

``zfpy.decompress_numpy`` returns a fresh array (64 MB for a level of a 128 MB state) that the
zarr tier would then copy into the caller's buffer; a fresh allocation that size is slow to
touch on the benchmark machine (memory left free is handed back to the host), and
zfpy's ``out=`` variant takes header-less streams only. So :class:`LibZfp` calls the libzfp that
zfpy bundles (``zfpy.libs/libzfp*.so*``) through ctypes to decode a stream with its full header
(as numcodecs' ZFPY writes it) straight into the caller's array. Only decoding: encoding into a
reused buffer gained too little to keep (see :class:`LibZfp`). :func:`libzfp` finds the library
once per process; ``None`` means "decode through zfpy", never an error.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np
from amcheck.storage._checksum import ChecksumError

__all__ = ["LibZfp", "libzfp"]


class LibZfp:
    """Decode a ZFP stream (full header, as numcodecs' ZFPY writes it) straight into an array.

    :meth:`decode_into` reads the header, checks that it describes exactly ``out`` (dimensions
    and type, so nothing is written outside it) and decompresses into ``out``; ctypes releases
    the GIL during the call. Measured on one 64 MB float32 level of the benchmark wavefield
    (median of 7, shared machine, load 2.7): 190 ms for ``decompress_numpy`` plus the copy,
    145 ms decoding in place. Encoding into a reused buffer the same way gained only 7% (203 vs
    189 ms, inside the noise: zfpy's worst-case output buffer is allocated but only the
    compressed tenth of it is touched), so encoding stays with zfpy.

    Parameters
    ----------
    lib
        The loaded library (a ``ctypes.CDLL`` of zfp 1.0.x); see :func:`libzfp`.
    """

    _TYPES: ClassVar[dict[np.dtype[Any], int]] = {
        np.dtype(np.int32): 1, np.dtype(np.int64): 2, np.dtype(np.float32): 3,
        np.dtype(np.float64): 4,
    }
    _HEADER_FULL = 7

    def __init__(self, lib: Any) -> None:
        import ctypes

        ptr, size = ctypes.c_void_p, ctypes.c_size_t
        for name, res, args in (
            ("stream_open", ptr, [ptr, size]),
            ("stream_close", None, [ptr]),
            ("zfp_stream_open", ptr, [ptr]),
            ("zfp_stream_close", None, [ptr]),
            ("zfp_field_alloc", ptr, []),
            ("zfp_field_free", None, [ptr]),
            ("zfp_field_set_pointer", None, [ptr, ptr]),
            ("zfp_field_type", ctypes.c_int, [ptr]),
            ("zfp_field_size", size, [ptr, ctypes.POINTER(size)]),
            ("zfp_read_header", size, [ptr, ptr, ctypes.c_uint]),
            ("zfp_decompress", size, [ptr, ptr]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self._lib = lib
        self._dims = size * 4

    def decode_into(self, stream: np.ndarray, out: np.ndarray) -> bool:
        """Decode ``stream`` into ``out``; False (nothing written) if the header does not fit.

        Also False for an ``out`` that is not C-contiguous or not writeable (libzfp would write
        into read-only memory): the caller's own path then raises.
        """
        ztype = self._TYPES.get(out.dtype)
        if (
            ztype is None
            or not out.flags.c_contiguous
            or not out.flags.writeable
            or not 1 <= out.ndim <= 4
        ):
            return False
        stream = np.ascontiguousarray(stream)
        lib = self._lib
        bits = lib.stream_open(stream.ctypes.data, stream.nbytes)
        zstream = lib.zfp_stream_open(bits)
        field = lib.zfp_field_alloc()
        try:
            if lib.zfp_read_header(zstream, field, self._HEADER_FULL) == 0:
                return False
            dims = self._dims()
            lib.zfp_field_size(field, dims)
            shape = tuple(reversed([int(d) for d in dims if d]))  # zfp counts x (fastest) first
            if lib.zfp_field_type(field) != ztype or shape != out.shape:
                return False
            lib.zfp_field_set_pointer(field, out.ctypes.data)
            if lib.zfp_decompress(zstream, field) == 0:
                raise ChecksumError("libzfp could not decode a chunk (the stream is damaged)")
            return True
        finally:
            lib.zfp_field_free(field)
            lib.zfp_stream_close(zstream)
            lib.stream_close(bits)


@functools.cache
def libzfp() -> LibZfp | None:
    """The libzfp that zfpy ships, for in-place decoding; ``None`` if not usable."""
    import ctypes
    import glob
    import os

    try:
        import zfpy
    except ImportError:
        return None
    here = os.path.dirname(zfpy.__file__)
    for path in sorted(glob.glob(os.path.join(here, "zfpy.libs", "libzfp*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            version = ctypes.c_uint.in_dll(lib, "zfp_library_version").value
        except (OSError, ValueError):
            continue
        if version >> 8 == 0x10:  # zfp 1.0.x: the API declared above
            return LibZfp(lib)
    return None
