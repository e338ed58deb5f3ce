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
    It must be at least :func:`zfp_tolerance_floor` (2^-96 for float32), which zfp can meet.
``"zfp:rtol=1e-3"``
    Lossy, fixed accuracy relative to the field's peak: each checkpoint's field is coded with the
    absolute tolerance ``rtol * max|field|`` of that checkpoint and field (over its time levels),
    so ``max |x' - x| <= max(rtol * max|x|, floor)`` (:func:`zfp_tolerance_floor`) whatever
    the field's scale. The effective tolerance is
    in every chunk's ZFP header (ZFP writes its accuracy there), so a read, also by plain zarr,
    needs nothing else. ZFP cannot code NaN or infinity: in every zfp mode a put of a field
    holding one raises.
``"zfp:rate=8"``
    Lossy, fixed rate (bits per value; mode 2): a fixed size (32/8 = 4x for float32), no error
    bound. The rate must lie in :func:`zfp_rate_range` of each float field.
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
amcheck unless it is ZFPY in accuracy mode. ZFP (every mode, and a ``ZFPY`` codec object) codes
chunks of 1 to 4 dimensions: a float field whose chunk has more is refused when the tier is
built (:meth:`Compression.check_field`).

How the tier codes a chunk with these codecs is :mod:`amcheck.storage._chunk_codec`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import (
    check_bool,
    check_optional_int,
    check_positive_float,
)

__all__ = [
    "Compression",
    "CompressionLike",
    "import_zarr",
    "parse_compression",
    "quiet_numcodecs",
]

CompressionLike: TypeAlias = "str | Compression | Any | None"
"""A spec string, a :class:`Compression`, a codec object, a list of codec objects, or ``None``."""


_ZARR_IMPORT = threading.Lock()
_zarr_imported = False


def import_zarr() -> None:
    """Import zarr and the parts of it amcheck uses, once per process, under a lock.

    zarr's modules import each other circularly: a first import from two threads at once (two
    Checkpointers built in parallel) failed with ``ImportError: ... partially initialized
    module`` or a ``_DeadlockError``, and could leave the process unable to import them at all.
    Every entry point that builds zarr objects calls this first; later calls cost a flag test.
    """
    global _zarr_imported
    if _zarr_imported:
        return
    with _ZARR_IMPORT:
        if _zarr_imported:
            return
        import zarr
        import zarr.abc.codec
        import zarr.abc.store
        import zarr.api.asynchronous
        import zarr.codecs
        import zarr.codecs.numcodecs
        import zarr.core.array
        import zarr.core.array_spec
        import zarr.core.buffer
        import zarr.storage  # noqa: F401

        _zarr_imported = True


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

#: ZFP codes arrays of 1 to 4 dimensions (zfpy raises "Greater than 4 dimensions not supported").
_ZFP_MAX_DIMS = 4


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
    keepbits
        For BitRound: the mantissa bits kept (at most 23 for float32 fields, 52 for float64).
    custom
        Built from codec objects the caller gave, not from a spec string: the tier checks that
        they decode what they code (a filter may change the dtype or the size).
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
    keepbits: int | None = None
    custom: bool = False

    def __post_init__(self) -> None:
        """Check a Compression built by hand as parse_compression checks what it builds."""
        if not isinstance(self.text, str) or not self.text.strip():
            raise ArgumentTypeError(f"Compression text must be a non-empty str, got {self.text!r}")
        check_bool("Compression lossless", self.lossless)
        check_bool("Compression custom", self.custom)
        for name in ("abs_tol", "rel_tol", "peak_tol"):
            if getattr(self, name) is not None:
                check_positive_float(f"Compression {name}", getattr(self, name))
        check_optional_int("Compression keepbits", self.keepbits, minimum=1)
        codecs = {"filters": self.filters, "compressors": self.compressors,
                  "_lossless_compressors": self._lossless_compressors}
        for name, value in codecs.items():
            if not isinstance(value, tuple):
                raise ArgumentTypeError(
                    f"Compression {name} must be a tuple of zarr v3 codecs, got {value!r}")
        if not (self.serializer is not None or any(codecs.values())):
            return
        import_zarr()
        from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec

        kinds = {"filters": ArrayArrayCodec, "compressors": BytesBytesCodec,
                 "_lossless_compressors": BytesBytesCodec}
        for name, value in codecs.items():
            for codec in value:
                if not isinstance(codec, kinds[name]):
                    raise ArgumentTypeError(
                        f"Compression {name} must hold zarr v3 {kinds[name].__name__}s, got "
                        f"{codec!r} of type {type(codec).__name__}; parse_compression builds a "
                        "Compression from a spec string or codec objects")
        if self.serializer is not None and not isinstance(self.serializer, ArrayBytesCodec):
            raise ArgumentTypeError(
                f"Compression serializer must be None or a zarr v3 ArrayBytesCodec, got "
                f"{self.serializer!r} of type {type(self.serializer).__name__}")

    @staticmethod
    def lossy_applies(dtype: np.dtype[Any]) -> bool:
        """Whether the lossy codecs code fields of ``dtype`` (float32 and float64 only)."""
        return dtype.kind in _FLOAT_KINDS and dtype.itemsize in (4, 8)

    def check(self, dtype: np.dtype[Any]) -> None:
        """Raise :class:`~amcheck.InvalidArgumentError` if a field of ``dtype`` cannot take
        these codecs (bitround keeping more mantissa bits than the dtype has)."""
        if self.lossy_applies(dtype) and self.keepbits is not None:
            nmant = np.finfo(dtype).nmant
            if self.keepbits > nmant:
                raise InvalidArgumentError(
                    f"compression {self.text!r}: bitround keepbits must be 1..{nmant} for "
                    f"{dtype} fields (its mantissa bits), got {self.keepbits}"
                )

    @property
    def zfp(self) -> bool:
        """Whether the array->bytes codec is ZFP (a ``"zfp:…"`` spec or a ``ZFPY`` codec object)."""
        config = getattr(self.serializer, "codec_config", None)
        return isinstance(config, dict) and config.get("id") == "zfpy"

    @property
    def zfp_rate(self) -> float | None:
        """Bits a value of ZFP's fixed-rate mode (``"zfp:rate=…"`` or a ``ZFPY(mode=2)``
        object), ``None`` for every other codec."""
        config = getattr(self.serializer, "codec_config", None)
        if not (self.zfp and isinstance(config, dict) and config.get("mode") == 2):
            return None
        return float(config["rate"])

    def check_field(self, key: str, dtype: np.dtype[Any], chunk: tuple[int, ...]) -> None:
        """Refuse, before anything is written, a field these codecs cannot code.

        Parameters
        ----------
        key
            The field's name (for the message).
        dtype
            The field's dtype.
        chunk
            The shape of one chunk of the field (:attr:`amcheck.storage._shard.Layout.chunk`).

        Raises
        ------
        InvalidArgumentError
            What :meth:`check` refuses; ZFP on a float field whose chunk has more than 4
            dimensions (zfpy codes 1 to 4: the first put would fail mid-sweep); a ZFP rate
            outside :func:`zfp_rate_range` for the field (below it zfpy corrupts the heap and
            the process dies; above it the field takes more room than uncompressed); a ZFP
            tolerance below :func:`zfp_tolerance_floor`.
        """
        self.check(dtype)
        if not (self.zfp and self.lossy_applies(dtype)):
            return
        floor = zfp_tolerance_floor(dtype)
        if self.abs_tol is not None and self.abs_tol < floor:
            raise InvalidArgumentError(
                f"compression {self.text!r}: field {key!r} ({dtype}) needs a zfp tolerance of "
                f"at least {floor:.3g} (2^{math.log2(floor):.0f}), got {self.abs_tol:g}: below "
                f"it zfp does not meet its bound on {dtype} values; use a larger tol, "
                "'zfp:rtol=…', or a lossless codec"
            )
        rate = self.zfp_rate
        if rate is not None:
            low, high = zfp_rate_range(dtype, max(len(chunk), 1))
            if not low <= rate <= high:
                raise InvalidArgumentError(
                    f"compression {self.text!r}: field {key!r} ({dtype}, coded in "
                    f"{max(len(chunk), 1)}-D chunks) needs a zfp rate between {low:g} and "
                    f"{high:g} bits a value, got {rate:g}: below, zfp cannot code a block's "
                    "exponent (1 + exponent bits a block of 4^d values); above, the field takes "
                    "more room than uncompressed (use 'zstd' or 'blosc' for lossless)"
                )
        if len(chunk) > _ZFP_MAX_DIMS:
            raise InvalidArgumentError(
                f"compression {self.text!r}: field {key!r} ({dtype}) is coded in chunks of shape "
                f"{chunk} ({len(chunk)} dimensions), and zfp codes 1 to {_ZFP_MAX_DIMS} "
                "dimensions; reshape the field so that its chunk has at most 4 (leading axes "
                "shorter than 4 are split off as levels), or use another codec ('zstd', "
                "'bitround:keepbits=…')"
            )

    def codecs_for(self, dtype: np.dtype[Any]) -> dict[str, Any]:
        """The ``filters``/``serializer``/``compressors`` arguments of ``create_array`` for ``dtype``.

        Lossy parts apply to float32/float64 only; other dtypes get the lossless compressors.
        A crc32c checksum always ends the chain.
        """
        from zarr.codecs import Crc32cCodec

        self.check(dtype)
        if self.lossy_applies(dtype) or self.lossless:
            filters = list(self.filters)
            serializer = self.serializer if self.serializer is not None else "auto"
            compressors = list(self.compressors)
        else:
            filters, serializer, compressors = [], "auto", list(self._lossless_compressors)
        compressors.append(Crc32cCodec())
        return {"filters": filters, "serializer": serializer, "compressors": compressors}

    def __str__(self) -> str:
        return self.text


def zfp_rate_range(dtype: np.dtype[Any], dims: int) -> tuple[float, float]:
    """The ZFP fixed rates, in bits a value, that a float field of ``dtype`` coded in
    ``dims``-dimensional chunks can use.

    The lowest gives each block of ``4**dims`` values room for a sign bit and the block's
    exponent (8 bits for float32, 11 for float64): zfpy miscounts its buffer below that and
    corrupts the heap (measured with zfpy 1.0.1: rate 2 on a 1-D float32 field, 0.5 on a 2-D
    one, killed the process). The highest is the dtype's own bits.
    """
    exponent_bits = {4: 8, 8: 11}[dtype.itemsize]
    return (1 + exponent_bits) / 4**dims, 8.0 * dtype.itemsize


def zfp_rate_nbytes(chunk: tuple[int, ...], rate: float) -> int:
    """The most bytes a ZFP fixed-rate stream of a chunk of this shape takes, header included.

    Every block of 4^d values gets ``ceil(4^d * rate)`` bits, partial blocks padded to whole
    ones (a 5 x 5 chunk is 4 blocks, 64 values: at the dtype's own rate 2.6x its raw size), in
    64-bit words, after a header of at most 32 bytes (checked against zfpy for 1-D to 4-D
    chunks of 1 to 17 points a side: never above).
    """
    dims = max(len(chunk), 1)
    blocks = math.prod(-(-n // 4) for n in chunk)
    bits = blocks * math.ceil(4**dims * rate)
    return int(32 + 8 * -(-bits // 64))


def zfp_tolerance_floor(dtype: np.dtype[Any]) -> float:
    """The smallest ZFP accuracy-mode tolerance that zfp meets on float fields of ``dtype``:
    2^-96 (1.3e-29) for float32, 2^-960 (1.1e-289) for float64.

    ZFP scales each block of 4^d values by 2^(bits - 2 - e), e the exponent of the block's
    largest value, and that factor overflows for blocks below about 2^(bits - 2 - emax). Such
    blocks came back wrong by several times their size: measured with zfpy 1.0.1, "zfp:tol=1e-31"
    on float32 values of 1e-28 gave errors of 6.5e-30; below the floor every tested
    tolerance failed, at the floor and above none did (random 1-D to 4-D fields whose values
    spanned 60 binary orders of magnitude).
    """
    info = np.finfo(dtype)
    return float(2.0 ** (info.minexp + 8 * dtype.itemsize - 2))


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
        if key in out:
            raise InvalidArgumentError(
                f"compression {text!r}: {family} {key} is given twice ({out[key]!r} and "
                f"{value!r}); give it once")
        out[key] = value
    return out


#: zfp codes at most this many bit planes (ZFP_MAX_PREC).
_ZFP_MAX_PRECISION = 64


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
            f"compression {text!r}: {family} {key} must be a finite number > 0, got {value!r}"
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
        if level > 22:
            raise InvalidArgumentError(f"compression {text!r}: zstd level must be 1..22, got {level}")
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
    keepbits: int | None = None
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
                if prec > _ZFP_MAX_PRECISION:
                    raise InvalidArgumentError(
                        f"compression {text!r}: zfp precision is a number of bit planes from 1 "
                        f"to {_ZFP_MAX_PRECISION}, got {prec}")
                serializer = ZFPY(mode=3, precision=prec)
                canon.append(f"zfp:precision={prec}")
            lossless = False
        else:  # bitround
            if keepbits is not None:  # two roundings: the error bound would be the last one's
                raise InvalidArgumentError(f"compression {text!r}: bitround given twice")
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
            keepbits = keep
            canon.append(f"bitround:keepbits={keep}")
    if keepbits is not None and serializer is not None:
        raise InvalidArgumentError(
            f"compression {text!r}: bitround and zfp are both lossy and their error bounds do "
            "not combine; choose one"
        )
    if keepbits is not None and not compressors:
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
        keepbits,
    )


def _wrap_object(obj: Any) -> Any:
    """A zarr v3 codec for a numcodecs codec object (zarr v3 codecs pass through)."""
    from zarr.abc.codec import Codec

    if isinstance(obj, Codec):
        return obj
    if isinstance(obj, type):  # numcodecs.Zstd for numcodecs.Zstd(): get_config() needs self
        raise ArgumentTypeError(
            f"compression must be a codec instance, got the class {obj.__module__}."
            f"{obj.__qualname__}: call it, e.g. {obj.__qualname__}() or with its settings")
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
        custom=True,
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
    import_zarr()
    with quiet_numcodecs():
        if isinstance(compression, str):
            return _parse_string(compression.strip())
        if isinstance(compression, (list, tuple)):
            if not compression:
                return Compression("none")
            if any(isinstance(item, str) for item in compression):
                raise ArgumentTypeError(
                    f"compression={list(compression)!r}: a list holds codec objects; chain spec "
                    "strings with '+' in one string instead, e.g. 'bitround:keepbits=12+zstd'"
                )
            return _from_objects(list(compression))
        return _from_objects([compression])
