"""Compression specs for the disk tiers: parsing, zarr v3 codec pipelines and error bounds.

A compression spec is what a user writes (``"zfp:tol=1e-4"``, ``"blosc"``, a numcodecs codec
object); :func:`parse_compression` turns it into a :class:`Compression`, which knows

- which zarr v3 codecs go where (``filters=`` array->array, ``serializer=`` array->bytes,
  ``compressors=`` bytes->bytes; zarr 3.1 rejects plain numcodecs objects, so they are wrapped in
  :mod:`zarr.codecs.numcodecs`), always ending in a crc32c checksum;
- whether it is lossless and, for lossy codecs, the error bound it guarantees.

Spec strings
------------
``None`` or ``"none"``
    Stored as is (crc32c only).
``"blosc"``, ``"blosc:cname=zstd,clevel=5,shuffle=bitshuffle"``
    Lossless; blosc with lz4, level 5, byte shuffle by default (fast: about 1.4 GB/s compress on
    wavefields here, but only 1.2-1.45x on filled fields).
``"zstd"``, ``"zstd:level=3"``
    Lossless; slower and a little tighter than blosc-lz4.
``"zfp:tol=1e-4"``
    Lossy, fixed accuracy (ZFP mode 4). **The tolerance is absolute**: every value comes back with
    ``|x' - x| <= tol``. Wavefields often peak far below 1 (1e-5 here), so scale ``tol`` by the
    field's expected maximum: ``tol = 1e-3 * max|u|`` gave 11.6x on a filled 2-D wavefield.
``"zfp:rtol=1e-3"``
    Lossy, fixed accuracy relative to the field's peak: each checkpoint's field is coded with the
    absolute tolerance ``rtol * max|field|`` of that checkpoint and field (over its time levels),
    so ``max |x' - x| <= rtol * max|x|`` whatever the field's scale. The effective tolerance is
    in every chunk's ZFP header (ZFP writes its accuracy there), so a read, also by plain zarr,
    needs nothing else. A field holding NaN or infinity cannot be scaled and raises on put.
``"zfp:rate=8"``
    Lossy, fixed rate (bits per value; mode 2): a fixed size (32/8 = 4x for float32), no error bound.
``"zfp:precision=16"``
    Lossy, fixed precision (bit planes; mode 3): a relative error, no absolute bound.
``"bitround:keepbits=12"``
    Lossy; keeps ``keepbits`` mantissa bits, so the relative error is at most ``2**-(keepbits+1)``
    (round to nearest). BitRound only makes the bits compressible, so it is followed by zstd unless
    another lossless codec is chained: ``"bitround:keepbits=12+blosc"``.

Lossy codecs apply to floating-point fields (float32, float64) only; other fields of the same state
(integers, booleans, complex) go through the lossless part of the pipeline, if any, and come back
bit for bit. Codec objects (``numcodecs.ZFPY(...)``, ``numcodecs.Blosc(...)``, zarr v3 codecs) or a
list of them are accepted too; they are placed by their kind, and their error bound is unknown to
amcheck unless it is ZFPY in accuracy mode.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import numpy as np

from amcheck._errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "ChecksumError",
    "ChunkCodec",
    "Compression",
    "CompressionLike",
    "crc_bytes",
    "parse_compression",
]

CompressionLike: TypeAlias = "str | Compression | Any | None"
"""A spec string, a :class:`Compression`, a codec object, a list of codec objects, or ``None``."""


@contextlib.contextmanager
def quiet_numcodecs() -> Iterator[None]:
    """Silence zarr's warning that numcodecs codecs are outside the v3 spec (we choose them knowingly).

    Narrow: only that message; used where amcheck builds or reopens such codecs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Numcodecs codecs are not in the Zarr version 3 specification"
        )
        yield


_FAMILIES = ("none", "blosc", "zstd", "zfp", "bitround")
_FLOAT_KINDS = ("f",)


@dataclass(frozen=True)
class Compression:
    """A parsed compression spec: zarr v3 codecs and the error bound they guarantee.

    Attributes
    ----------
    text
        Canonical description (recorded in the store's metadata and compared on reopen).
    filters, serializer, compressors
        Factories' arguments as stored: lists of zarr v3 codec objects. ``serializer`` is
        ``None`` for zarr's plain bytes serializer.
    lossless
        Whether every field comes back bit for bit.
    abs_tol
        For ZFP accuracy mode: the guaranteed bound on ``max |x' - x|`` of float fields.
    rel_tol
        For BitRound: the guaranteed bound on ``|x' - x| / |x|`` of float fields.
    peak_tol
        For ``"zfp:rtol=…"``: the guaranteed bound on ``max |x' - x| / max |x|`` of each float
        field of each checkpoint; the tier scales the ZFP tolerance by ``max |x|`` per put.
    """

    text: str
    filters: tuple[Any, ...] = ()
    serializer: Any = None
    compressors: tuple[Any, ...] = ()
    lossless: bool = True
    abs_tol: float | None = None
    rel_tol: float | None = None
    _lossless_compressors: tuple[Any, ...] = field(default=(), repr=False)
    peak_tol: float | None = None

    def codecs_for(self, dtype: np.dtype[Any]) -> dict[str, Any]:
        """The ``filters``/``serializer``/``compressors`` arguments of ``create_array`` for ``dtype``.

        Lossy parts apply to float32/float64 only; other dtypes get the lossless compressors.
        A crc32c checksum always ends the chain.
        """
        from zarr.codecs import Crc32cCodec

        lossy_ok = dtype.kind in _FLOAT_KINDS and dtype.itemsize in (4, 8)
        if lossy_ok or self.lossless:
            filters = list(self.filters)
            serializer = self.serializer if self.serializer is not None else "auto"
            compressors = list(self.compressors)
        else:
            filters, serializer, compressors = [], "auto", list(self._lossless_compressors)
        compressors.append(Crc32cCodec())
        return {"filters": filters, "serializer": serializer, "compressors": compressors}

    def __str__(self) -> str:
        return self.text


def _parse_params(family: str, text: str, params: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not params:
        return out
    for item in params.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise InvalidArgumentError(
                f"compression {text!r}: parameter {item!r} of {family!r} must read key=value"
            )
        out[key] = value
    return out


def _number(text: str, family: str, key: str, value: str, *, integer: bool = False) -> float:
    try:
        number = float(int(value)) if integer else float(value)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InvalidArgumentError(
            f"compression {text!r}: {family} {key} must be {kind}, got {value!r}"
        ) from None
    if not (math.isfinite(number) and number > 0):
        raise InvalidArgumentError(
            f"compression {text!r}: {family} {key} must be > 0, got {value!r}"
        )
    return number


def _check_keys(text: str, family: str, params: dict[str, str], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise InvalidArgumentError(
            f"compression {text!r}: unknown parameter(s) {', '.join(extra)} for {family!r}; "
            f"allowed: {', '.join(allowed) if allowed else 'none'}"
        )


def _lossless(text: str, family: str, params: dict[str, str]) -> tuple[Any, str]:
    """A zarr v3 bytes->bytes codec for 'blosc' or 'zstd' and its canonical text."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if family == "zstd":
        _check_keys(text, family, params, ("level",))
        level = int(_number(text, family, "level", params.get("level", "3"), integer=True))
        return ZstdCodec(level=level), f"zstd:level={level}"
    _check_keys(text, family, params, ("cname", "clevel", "shuffle"))
    cname = params.get("cname", "lz4")
    cnames = ("lz4", "lz4hc", "blosclz", "zstd", "zlib")
    if cname not in cnames:
        raise InvalidArgumentError(
            f"compression {text!r}: blosc cname must be one of {', '.join(cnames)}, got {cname!r}"
        )
    clevel = int(_number(text, family, "clevel", params.get("clevel", "5"), integer=True))
    if clevel > 9:
        raise InvalidArgumentError(f"compression {text!r}: blosc clevel must be 1..9, got {clevel}")
    shuffle = params.get("shuffle", "shuffle")
    shuffles = ("noshuffle", "shuffle", "bitshuffle")
    if shuffle not in shuffles:
        raise InvalidArgumentError(
            f"compression {text!r}: blosc shuffle must be one of {', '.join(shuffles)}, "
            f"got {shuffle!r}"
        )
    codec = BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)  # type: ignore[arg-type]
    return codec, f"blosc:cname={cname},clevel={clevel},shuffle={shuffle}"


def _parse_string(text: str) -> Compression:
    from zarr.codecs.numcodecs import ZFPY, BitRound

    parts = [p.strip() for p in text.split("+")]
    if any(not p for p in parts):
        raise InvalidArgumentError(f"compression {text!r} has an empty part between '+' signs")
    filters: list[Any] = []
    serializer: Any = None
    compressors: list[Any] = []
    lossless = True
    abs_tol: float | None = None
    rel_tol: float | None = None
    peak_tol: float | None = None
    canon: list[str] = []
    has_bitround = False
    for part in parts:
        family, _, params_text = part.partition(":")
        family = family.strip().lower()
        if family not in _FAMILIES:
            raise InvalidArgumentError(
                f"compression {text!r}: unknown codec {family!r}; allowed: "
                "None, 'none', 'blosc', 'zstd', 'zfp:tol=…', 'zfp:rtol=…', 'zfp:rate=…', "
                "'zfp:precision=…', "
                "'bitround:keepbits=…', chained with '+', or codec objects"
            )
        params = _parse_params(family, text, params_text)
        if family == "none":
            _check_keys(text, family, params, ())
            if len(parts) > 1:
                raise InvalidArgumentError(f"compression {text!r}: 'none' cannot be chained")
            return Compression("none")
        if family in ("blosc", "zstd"):
            codec, canon_text = _lossless(text, family, params)
            compressors.append(codec)
            canon.append(canon_text)
        elif family == "zfp":
            if serializer is not None:
                raise InvalidArgumentError(f"compression {text!r}: zfp given twice")
            modes = [k for k in ("tol", "rtol", "rate", "precision") if k in params]
            _check_keys(text, family, params, ("tol", "rtol", "rate", "precision"))
            if len(modes) != 1:
                raise InvalidArgumentError(
                    f"compression {text!r}: zfp needs exactly one of tol=, rtol=, rate=, "
                    f"precision= (got {len(modes)})"
                )
            mode = modes[0]
            if mode == "tol":
                tol = _number(text, family, "tol", params["tol"])
                serializer = ZFPY(mode=4, tolerance=tol)
                abs_tol = tol
                canon.append(f"zfp:tol={tol!r}")
            elif mode == "rtol":
                rtol = _number(text, family, "rtol", params["rtol"])
                if rtol >= 1:
                    raise InvalidArgumentError(
                        f"compression {text!r}: zfp rtol is a fraction of the field's peak and "
                        f"must be < 1, got {params['rtol']!r}"
                    )
                # The metadata's tolerance is nominal: every put codes with rtol * max|field|,
                # and decoding reads the effective tolerance from each chunk's ZFP header.
                serializer = ZFPY(mode=4, tolerance=rtol)
                peak_tol = rtol
                canon.append(f"zfp:rtol={rtol!r}")
            elif mode == "rate":
                rate = _number(text, family, "rate", params["rate"])
                serializer = ZFPY(mode=2, rate=rate)
                canon.append(f"zfp:rate={rate!r}")
            else:
                prec = int(_number(text, family, "precision", params["precision"], integer=True))
                serializer = ZFPY(mode=3, precision=prec)
                canon.append(f"zfp:precision={prec}")
            lossless = False
        else:  # bitround
            _check_keys(text, family, params, ("keepbits",))
            if "keepbits" not in params:
                raise InvalidArgumentError(f"compression {text!r}: bitround needs keepbits=")
            keep = int(_number(text, family, "keepbits", params["keepbits"], integer=True))
            if keep > 52:
                raise InvalidArgumentError(
                    f"compression {text!r}: bitround keepbits must be 1..52, got {keep}"
                )
            filters.append(BitRound(keepbits=keep))
            rel_tol = 2.0 ** -(keep + 1)
            lossless = False
            has_bitround = True
            canon.append(f"bitround:keepbits={keep}")
    if has_bitround and not compressors and serializer is None:
        from zarr.codecs import ZstdCodec

        compressors.append(ZstdCodec(level=3))
        canon.append("zstd:level=3")
    return Compression(
        "+".join(canon),
        tuple(filters),
        serializer,
        tuple(compressors),
        lossless,
        abs_tol,
        rel_tol,
        tuple(compressors),
        peak_tol,
    )


def _wrap_object(obj: Any) -> Any:
    """A zarr v3 codec for a numcodecs codec object (zarr v3 codecs pass through)."""
    from zarr.abc.codec import Codec

    if isinstance(obj, Codec):
        return obj
    get_config = getattr(obj, "get_config", None)
    if get_config is None:
        raise ArgumentTypeError(
            "compression must be None, a spec string such as 'zfp:tol=1e-4', a numcodecs codec "
            f"or a zarr v3 codec (or a list of them), got {obj!r} of type {type(obj).__name__}"
        )
    import zarr.codecs.numcodecs as zn

    config = dict(get_config())
    codec_id = str(config.pop("id"))
    wrappers = {name.lower(): getattr(zn, name) for name in zn.__all__}
    wrapper = wrappers.get(codec_id.lower())
    if wrapper is None:
        raise InvalidArgumentError(
            f"compression: numcodecs codec {codec_id!r} has no zarr v3 wrapper; "
            f"supported: {', '.join(sorted(wrappers))}"
        )
    return wrapper(**config)


def _from_objects(objs: list[Any]) -> Compression:
    from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec

    filters: list[Any] = []
    serializer: Any = None
    compressors: list[Any] = []
    for obj in objs:
        codec = _wrap_object(obj)
        if isinstance(codec, ArrayArrayCodec):
            filters.append(codec)
        elif isinstance(codec, ArrayBytesCodec):
            if serializer is not None:
                raise InvalidArgumentError(
                    f"compression: two array->bytes codecs given ({serializer!r} and {codec!r}); "
                    "give at most one (e.g. ZFPY)"
                )
            serializer = codec
        elif isinstance(codec, BytesBytesCodec):
            compressors.append(codec)
        else:  # pragma: no cover - every zarr codec is one of the three kinds
            raise ArgumentTypeError(f"compression: unsupported codec {codec!r}")
    abs_tol: float | None = None
    cfg = getattr(serializer, "codec_config", None)
    if isinstance(cfg, dict) and cfg.get("id") == "zfpy" and cfg.get("mode") == 4:
        abs_tol = float(cfg["tolerance"])
    lossless = not filters and serializer is None
    text = "+".join(repr(c) for c in (*filters, *([serializer] if serializer else []), *compressors))
    return Compression(
        text or "none",
        tuple(filters),
        serializer,
        tuple(compressors),
        lossless,
        abs_tol,
        None,
        tuple(compressors),
    )


def parse_compression(compression: CompressionLike) -> Compression:
    """Parse a compression spec (see the module docstring for the strings).

    Parameters
    ----------
    compression
        ``None``, a spec string, a :class:`Compression`, a numcodecs or zarr v3 codec object, or
        a list/tuple of codec objects.

    Returns
    -------
    Compression

    Raises
    ------
    InvalidArgumentError
        An unknown codec or parameter, or a value out of range; the message lists what is allowed.
    ArgumentTypeError
        ``compression`` is of another type.

    Examples
    --------
    >>> parse_compression("zfp:tol=1e-4").abs_tol
    0.0001
    >>> parse_compression(None).lossless
    True
    """
    if compression is None:
        return Compression("none")
    if isinstance(compression, Compression):
        return compression
    with quiet_numcodecs():
        if isinstance(compression, str):
            return _parse_string(compression.strip())
        if isinstance(compression, (list, tuple)):
            if not compression:
                return Compression("none")
            return _from_objects(list(compression))
        return _from_objects([compression])


# -- coding one chunk ------------------------------------------------------------------------------


class _LibZfp:
    """Decode a ZFP stream (as numcodecs' ZFPY writes it: full header) straight into an array.

    ``zfpy.decompress_numpy`` returns a fresh array (64 MB for a level of a 128 MB state) that the
    tier then copies into the caller's buffer; a fresh allocation that size is slow to touch on
    the benchmark machine (FIELD-NOTES), and zfpy's ``out=`` variant takes header-less streams
    only. So this calls the libzfp that zfpy ships (``zfpy.libs/libzfp*.so*``) through ctypes:
    read the header, check that it describes exactly ``out`` (dimensions and type, so nothing is
    written outside it), decompress into ``out``. ctypes releases the GIL during the call.
    Measured on one 64 MB float32 level of the benchmark wavefield (median of 7, shared machine,
    load 2.7): 190 ms for ``decompress_numpy`` plus the copy, 145 ms decoding in place. Encoding
    into a reused buffer the same way gained only 7% (203 vs 189 ms, inside the noise: zfpy's
    worst-case output buffer is allocated but only the compressed tenth of it is touched), so
    encoding stays with zfpy. :func:`libzfp` returns ``None`` when the library is not found or is
    not zfp 1.0; decoding then goes through zfpy.
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
        """Decode ``stream`` into ``out``; False (nothing written) if the header does not fit."""
        ztype = self._TYPES.get(out.dtype)
        if ztype is None or not out.flags.c_contiguous or not 1 <= out.ndim <= 4:
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
def libzfp() -> _LibZfp | None:
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
            return _LibZfp(lib)
    return None


class _NoSyncCodec(Exception):
    """A codec offers no synchronous encode/decode (the tier then uses zarr's async pipeline)."""


def _is_numcodecs_wrapper(codec: Any) -> bool:
    from zarr.codecs.numcodecs._codecs import _NumcodecsCodec

    return isinstance(codec, _NumcodecsCodec)


class ChunkCodec:
    """Encode and decode one chunk synchronously with an array's own zarr v3 codecs.

    zarr's write path for a whole chunk allocates a chunk-sized array, copies the selection into
    it, hops to a thread per codec and appends the crc32c with a copy of the whole chunk; its read
    path reads into a fresh allocation and copies the decoded chunk into the output. Fresh large
    allocations are slow on the machines this was written for (FIELD-NOTES), so the tier codes
    each chunk here instead, in one call on one pool thread, and moves the bytes itself:

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
        #: The serializer is numcodecs ZFPY in fixed-accuracy mode: :meth:`encode` can take
        #: another tolerance per call (``"zfp:rtol=…"``).
        self.zfp_accuracy = (
            _is_numcodecs_wrapper(self.serializer)
            and getattr(inner, "codec_id", None) == "zfpy"
            and getattr(inner, "mode", None) == 4
        )
        #: ZFP streams decode straight into the caller's array (no filters after the serializer).
        self.zfp_in_place = (
            _is_numcodecs_wrapper(self.serializer)
            and getattr(inner, "codec_id", None) == "zfpy"
            and not self.filters
            and libzfp() is not None
        )

    @staticmethod
    def _has_sync(codec: Any) -> bool:
        return callable(getattr(codec, "_encode_sync", None)) or _is_numcodecs_wrapper(codec)

    # -- one codec at a time, as zarr's pipeline calls them, without the thread hops --

    def _encode_one(self, codec: Any, data: Any) -> Any:
        from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec

        if callable(getattr(codec, "_encode_sync", None)):
            return codec._encode_sync(data, self.spec)
        if not _is_numcodecs_wrapper(codec):  # pragma: no cover - checked by ``sync``
            raise _NoSyncCodec(repr(codec))
        proto = self.spec.prototype
        numcodec: Any = codec._codec
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
        if not _is_numcodecs_wrapper(codec):  # pragma: no cover - checked by ``sync``
            raise _NoSyncCodec(repr(codec))
        proto = self.spec.prototype
        numcodec: Any = codec._codec
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

    def check_crc(self, stored: np.ndarray, payload: np.ndarray | None = None) -> None:
        """Raise :class:`ChecksumError` if the crc32c of a stored chunk does not match.

        ``stored`` is the chunk's bytes; or, with ``payload`` given, ``stored`` holds only the
        4 checksum bytes and ``payload`` the bytes they cover (e.g. read straight into the
        caller's array).
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

    def decode_into(self, stored: np.ndarray, out: np.ndarray) -> None:
        """Decode a stored chunk (uint8, checksum included if the chain has one) into ``out``."""
        if self.crc:
            self.check_crc(stored)
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


class ChecksumError(ValueError):
    """A stored chunk failed its crc32c check."""


def crc_bytes(data: np.ndarray) -> np.ndarray:
    """The crc32c of ``data``'s bytes as zarr stores it: 4 bytes, little-endian, as uint8."""
    import crc32c

    value = crc32c.crc32c(np.ascontiguousarray(data).data.cast("B"))
    return np.frombuffer(int(value).to_bytes(4, "little"), dtype=np.uint8)
