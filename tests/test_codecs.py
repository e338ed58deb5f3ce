"""Compression specs: parsing, codec placement, error bounds on wavefield-like data."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr.codecs
from amcheck.storage import Compression, ZarrTier, parse_compression
from zarr.storage import MemoryStore

from amcheck import ArgumentTypeError, Checkpointer, InvalidArgumentError, StateSpec


def wavefield(shape: tuple[int, ...], dtype: str, peak: float = 1.0) -> np.ndarray:
    """A smooth expanding ring, like a wavefield a few hundred steps after the source fired."""
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum(a * a for a in axes))
    u = peak * np.sin(30 * r) * np.exp(-((r - 0.5) ** 2) / 0.05)
    return np.ascontiguousarray(u, dtype=dtype)


async def round_trip(compression: Any, state: dict[str, np.ndarray]) -> tuple[dict, ZarrTier]:
    tier = ZarrTier(MemoryStore(), StateSpec.from_arrays(state), compression)
    await tier.put(0, state)
    out = {k: np.zeros_like(v) for k, v in state.items()}
    await tier.get(0, out)
    return out, tier


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-6])
async def test_zfp_accuracy_mode_honours_the_absolute_bound(dtype: str, tol: float) -> None:
    u = np.stack([wavefield((96, 80), dtype), wavefield((96, 80), dtype)[::-1].copy()])
    v = wavefield((20, 24, 28), dtype, peak=3e-5)  # a 3-D field peaking at 3e-5
    out, tier = await round_trip(f"zfp:tol={tol}", {"u": u, "v": v})
    assert tier.compression.abs_tol == tol and not tier.compression.lossless
    for key, x in (("u", u), ("v", v)):
        err = float(np.max(np.abs(out[key].astype(np.float64) - x)))
        assert err <= tol, (key, err)
    if tol == 1e-2:
        assert tier.nbytes * 4 < u.nbytes + v.nbytes  # compresses at least 4x
        assert np.all(out["v"] == 0) or np.max(np.abs(out["v"])) <= 3e-5 + tol


async def test_zfp_fixed_rate_gives_the_size() -> None:
    u = wavefield((128, 128), "float32")
    out, tier = await round_trip("zfp:rate=8", {"u": u})
    assert tier.compression.abs_tol is None and not tier.compression.lossless
    assert u.nbytes / tier.nbytes == pytest.approx(4.0, rel=0.02)  # 32 bits -> 8 bits per value
    assert np.max(np.abs(out["u"] - u)) < 0.05


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dims", [1, 2, 3, 4])
async def test_zfp_rate_range_is_checked_when_the_tier_is_built(dtype: str, dims: int) -> None:
    """Below 1 + exponent bits a block of 4^d values zfpy corrupted the heap on the first put
    and the process died (rate 0.5 on a 2-D float32 field); above the dtype's bits the field
    took more room than uncompressed (2x at rate 64), so a disk budget overflowed mid-sweep.
    Both are refused when the tier is built, for spec strings and ZFPY objects alike; the
    range's ends themselves code (in this process: a heap corruption would kill the test run)."""
    shape = (2,) + (5,) * dims  # two levels of a d-D field: d-D chunks, partial zfp blocks
    spec = StateSpec({"u": (shape, dtype)})
    low = (1 + {"float32": 8, "float64": 11}[dtype]) / 4**dims
    high = 8.0 * np.dtype(dtype).itemsize
    for rate in (low * 0.99, high * 1.01):
        for compression in (f"zfp:rate={rate!r}", numcodecs.ZFPY(mode=2, rate=rate)):
            with pytest.raises(InvalidArgumentError, match=rf"field 'u' \({dtype}, coded in "
                               rf"{dims}-D chunks\) needs a zfp rate between {low:g} and "
                               rf"{high:g} bits a value, got"):
                ZarrTier(MemoryStore(), spec, compression)
    x = {"u": np.random.default_rng(dims).standard_normal(shape).astype(dtype)}
    for rate in (low, high):
        out, _ = await round_trip(f"zfp:rate={rate!r}", x)
        assert np.all(np.isfinite(out["u"]))
    exact, _ = await round_trip(f"zfp:rate={high!r}", x)
    assert np.max(np.abs(exact["u"] - x["u"])) < 1e-3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
async def test_zfp_tolerance_has_a_floor(dtype: str) -> None:
    """zfp misses its bound on blocks below about 2^(bits - 2 - emax) ("zfp:tol=1e-31" gave
    errors of 6.5e-30 on float32 values of 1e-28; "zfp:rtol=1e-3" on a field peaking at 1e-30
    gave 4x the peak): a tol below the floor is refused when the tier is built, and the
    documented bound, max(rtol * peak, floor) for rtol, holds at and around the floor."""
    from amcheck.storage._codecs import zfp_tolerance_floor

    floor = zfp_tolerance_floor(np.dtype(dtype))
    assert floor == {"float32": 2.0**-96, "float64": 2.0**-960}[dtype]
    spec = StateSpec({"u": ((2, 40, 36), dtype)})
    for below in (f"zfp:tol={floor * 0.9!r}", numcodecs.ZFPY(mode=4, tolerance=floor * 0.9)):
        with pytest.raises(InvalidArgumentError, match=rf"field 'u' \({dtype}\) needs a zfp "
                           rf"tolerance of at least {floor:.3g} \(2\^-{-math.log2(floor):.0f}\)"):
            ZarrTier(MemoryStore(), spec, below)
    rng = np.random.default_rng(7)
    for peak in (floor * 2**20, floor * 100, floor, floor / 2**20):
        u = np.stack([wavefield((40, 36), dtype, peak), wavefield((40, 36), dtype, peak)[::-1]])
        u[:, ::7] += (rng.uniform(-1, 1, u[:, ::7].shape) * peak * 2**-30).astype(dtype)
        for compression, bound in ((f"zfp:tol={floor!r}", floor),
                                   ("zfp:rtol=1e-3", max(1e-3 * float(np.abs(u).max()), floor))):
            out, _ = await round_trip(compression, {"u": u})
            err = float(np.max(np.abs(out["u"].astype(np.float64) - u)))
            assert err <= bound, (compression, peak, err, bound)


async def test_bitround_relative_bound_and_exact_integers() -> None:
    state = {
        "u": wavefield((64, 64), "float32"),
        "w": wavefield((50,), "float64"),
        "ids": np.arange(-20, 20, dtype=np.int16),
        "mask": np.arange(12) % 3 == 0,
    }
    out, tier = await round_trip("bitround:keepbits=9", state)
    assert tier.compression.rel_tol == 2.0**-10
    assert tier.compression.text == "bitround:keepbits=9+zstd:level=3"
    for key in ("u", "w"):
        np.testing.assert_allclose(out[key], state[key], rtol=2.0**-10, atol=0)
        assert not np.array_equal(out[key], state[key])  # it did round
    np.testing.assert_array_equal(out["ids"], state["ids"], strict=True)
    np.testing.assert_array_equal(out["mask"], state["mask"], strict=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("keepbits", [3, 12])
async def test_bitround_keeps_finite_values_finite_and_nans_nan(dtype: str, keepbits: int) -> None:
    """numcodecs' BitRound carries values within half a kept unit of the dtype's max into the
    exponent (float32's max came back as inf) and turns a NaN whose payload lies in the masked
    bits into an infinity; amcheck truncates those instead, within the bound."""
    info = np.finfo(dtype)
    bits = np.dtype(f"u{info.dtype.itemsize}")
    nan_low = np.array(int(np.array(np.inf, dtype).view(bits)) | 1, bits).view(dtype)
    x = np.array([info.max, -info.max, info.max * 0.999, nan_low, np.nan, np.inf, -np.inf,
                  1.0, -2.5], dtype)
    out, _ = await round_trip(f"bitround:keepbits={keepbits}", {"u": x})
    y = out["u"]
    assert np.array_equal(np.isnan(y), np.isnan(x)) and np.array_equal(np.isinf(y), np.isinf(x))
    finite = np.isfinite(x)
    err = np.abs(y[finite].astype(np.float64) - x[finite]) / np.abs(x[finite].astype(np.float64))
    assert np.all(err <= 2.0 ** -(keepbits + 1)), err
    assert np.array_equal(y[~finite & ~np.isnan(x)], x[~finite & ~np.isnan(x)])


@pytest.mark.parametrize("compression", [None, "none", "blosc", "zstd", "blosc:cname=zstd,clevel=3,shuffle=bitshuffle", "zstd:level=7"])
async def test_lossless_is_bitwise_for_every_dtype(compression: Any) -> None:
    rng = np.random.default_rng(3)
    state = {
        "f4": wavefield((40, 30), "float32"),
        "f8": rng.standard_normal((2, 17, 9)),
        "i8": rng.integers(-(2**62), 2**62, (33,)),
        "u1": rng.integers(0, 255, (5, 6, 7), dtype=np.uint8),
        "c8": (rng.standard_normal(10) + 1j * rng.standard_normal(10)).astype(np.complex64),
        "b": rng.integers(0, 2, (9,)).astype(bool),
    }
    out, tier = await round_trip(compression, state)
    assert tier.compression.lossless
    for key, x in state.items():
        np.testing.assert_array_equal(out[key], x, strict=True)


async def test_zfp_leaves_non_float_fields_exact() -> None:
    state = {"u": wavefield((64, 64), "float32"), "n": np.arange(100, dtype=np.int32) * 7}
    out, _ = await round_trip("zfp:tol=1e-3+blosc", state)
    np.testing.assert_array_equal(out["n"], state["n"], strict=True)
    assert np.max(np.abs(out["u"] - state["u"])) <= 1e-3


async def test_codec_objects_are_placed_by_kind() -> None:
    comp = parse_compression([numcodecs.BitRound(keepbits=12), numcodecs.Blosc(cname="lz4")])
    assert len(comp.filters) == 1 and comp.serializer is None and len(comp.compressors) == 1
    assert not comp.lossless
    zfp = parse_compression(numcodecs.ZFPY(mode=4, tolerance=1e-3))
    assert zfp.abs_tol == 1e-3 and zfp.serializer is not None
    native = parse_compression(zarr.codecs.ZstdCodec(level=2))
    assert native.lossless and native.compressors == (zarr.codecs.ZstdCodec(level=2),)
    u = wavefield((64, 48), "float64")
    out, _tier = await round_trip(numcodecs.ZFPY(mode=4, tolerance=1e-5), {"u": u})
    assert np.max(np.abs(out["u"] - u)) <= 1e-5


def test_every_pipeline_ends_with_a_checksum() -> None:
    for spec in (None, "blosc", "zfp:tol=1e-3", "bitround:keepbits=8"):
        codecs = parse_compression(spec).codecs_for(np.dtype("float32"))
        assert type(codecs["compressors"][-1]).__name__ == "Crc32cCodec"
    assert parse_compression(None).codecs_for(np.dtype("f4"))["compressors"][:-1] == []


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("gzip", "unknown codec 'gzip'.*allowed"),
        ("zfp", "exactly one of tol=, rtol=, rate=, precision="),
        ("zfp:tol=1e-3,rate=8", "exactly one"),
        ("zfp:tol=-1", "tol must be a finite number > 0, got '-1'"),
        ("zfp:rate=1e400", "rate must be a finite number > 0, got '1e400'"),
        ("zfp:precision=65", "zfp precision is a number of bit planes from 1 to 64, got 65"),
        ("zfp:tol=abc", "tol must be a number, got 'abc'"),
        ("zfp:tolerance=1", "unknown parameter.*tolerance"),
        ("bitround", "keepbits="),
        ("bitround:keepbits=60", "1..52"),
        ("zstd:level=23", "zstd level must be 1..22, got 23"),
        ("blosc:cname=snappy", "cname must be one of"),
        ("blosc:clevel", "key=value"),
        ("zstd:level=3,level=4", "zstd level is given twice \\('3' and '4'\\); give it once"),
        ("zfp:tol=1e-4,TOL=1e-3", "zfp tol is given twice"),
        ("zstd+", "empty part"),
        ("none+zstd", "cannot be chained"),
        ("zfp:tol=1+zfp:rate=4", "zfp given twice"),
        ("bitround:keepbits=4+bitround:keepbits=8", "bitround given twice"),
        ("bitround:keepbits=8+zfp:tol=1e-3", "bitround and zfp are both lossy"),
    ],
)
def test_bad_specs_say_what_is_allowed(bad: str, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        parse_compression(bad)


def test_bitround_keepbits_beyond_the_fields_mantissa() -> None:
    """keepbits above a float32 field's 23 mantissa bits is refused when the tier is built,
    before anything is written; float64 fields take up to 52."""
    spec32 = StateSpec({"u": ((4, 4), "float32")})
    with pytest.raises(InvalidArgumentError, match=r"keepbits must be 1..23 for float32.*got 30"):
        ZarrTier(MemoryStore(), spec32, "bitround:keepbits=30")
    ZarrTier(MemoryStore(), StateSpec({"u": ((4, 4), "float64")}), "bitround:keepbits=30")
    ZarrTier(MemoryStore(), spec32, "bitround:keepbits=23")


def test_bad_types() -> None:
    with pytest.raises(ArgumentTypeError, match="compression"):
        parse_compression(3.5)
    # a codec class for an instance: numcodecs' raised a bare TypeError from get_config()
    for codec in (numcodecs.Zstd, [numcodecs.Zstd]):
        with pytest.raises(ArgumentTypeError, match=r"compression must be a codec instance, got "
                           r"the class numcodecs\.zstd\.Zstd: call it, e\.g\. Zstd\(\)"):
            parse_compression(codec)
    with pytest.raises(ArgumentTypeError, match=r"a list holds codec objects; chain spec strings "
                       r"with '\+'"):
        parse_compression(["zstd"])
    with pytest.raises(InvalidArgumentError, match="two array->bytes"):
        parse_compression([numcodecs.ZFPY(mode=4, tolerance=1e-3), numcodecs.ZFPY(mode=2, rate=8)])


@pytest.mark.parametrize(("fields", "error", "match"), [
    ({"text": 5}, ArgumentTypeError, "Compression text must be a non-empty str, got 5"),
    ({"lossless": "no"}, ArgumentTypeError, "Compression lossless must be True or False"),
    ({"compressors": ("zstd",)}, ArgumentTypeError,
     "Compression compressors must hold zarr v3 BytesBytesCodecs, got 'zstd' of type str"),
    ({"filters": (5,)}, ArgumentTypeError, "Compression filters must hold zarr v3 ArrayArray"),
    ({"filters": [zarr.codecs.TransposeCodec(order=(0,))]}, ArgumentTypeError,
     "Compression filters must be a tuple"),
    ({"serializer": zarr.codecs.ZstdCodec()}, ArgumentTypeError,
     "Compression serializer must be None or a zarr v3 ArrayBytesCodec"),
    ({"abs_tol": -1.0}, InvalidArgumentError, "Compression abs_tol must be a finite number > 0"),
    ({"keepbits": 0}, InvalidArgumentError, "Compression keepbits must be an integer >= 1"),
])  # fmt: skip
def test_a_compression_built_by_hand_is_checked(
    fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    # zarr's own TypeError, deep inside a tier's opening, was what a bad field gave before
    with pytest.raises(error, match=match):
        Compression(**{"text": "mine", **fields})
    made = parse_compression("bitround:keepbits=12+zstd")  # what parse_compression builds passes
    again = Compression(made.text, made.filters, made.serializer, made.compressors, lossless=False)
    assert (again.filters, again.compressors) == (made.filters, made.compressors)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rtol", [1e-2, 1e-3, 1e-5])
async def test_zfp_relative_tolerance_scales_with_each_checkpoint(dtype: str, rtol: float) -> None:
    """``zfp:rtol=``: max abs error <= rtol * max|field|, per checkpoint and field, any scale."""
    import zfpy

    spec = StateSpec({"u": ((2, 96, 80), dtype), "v": ((20, 24, 28), dtype)})
    tier = ZarrTier(MemoryStore(), spec, f"zfp:rtol={rtol}")
    assert tier.compression.peak_tol == rtol and tier.compression.abs_tol is None
    assert tier.compression.text == f"zfp:rtol={rtol!r}"
    states = [
        {"u": np.stack([wavefield((96, 80), dtype, peak), wavefield((96, 80), dtype, peak / 3)]),
         "v": wavefield((20, 24, 28), dtype, 3e-5 * peak)}
        for peak in (1.5e-5, 1.0, 4e3)
    ]
    sizes = []
    for step, state in enumerate(states):
        await tier.put(step, state)
        sizes.append(tier.stored_nbytes(step))
    for step, state in enumerate(states):
        out = {k: np.zeros_like(v) for k, v in state.items()}
        await tier.get(step, out)
        for key, x in state.items():
            peak = float(np.max(np.abs(x)))
            err = float(np.max(np.abs(out[key].astype(np.float64) - x)))
            assert 0 < err <= rtol * peak, (step, key, err, rtol * peak)
    # The same relative accuracy at every scale: sizes within a few percent of each other
    # (an absolute tolerance would keep nothing of the 1.5e-5 field or everything of the 4e3 one).
    assert max(sizes) < 1.1 * min(sizes)
    # The effective tolerance is in each chunk's ZFP header: zfpy alone decodes a level.
    key = tier._fields["u"].key(tier._index[2][0])
    stored = np.frombuffer((await tier._store.get(key, prototype=_proto())).to_bytes(), np.uint8)
    (offset, size), _ = stored[-36:-4].view("<u8").reshape(2, 2)
    level0 = zfpy.decompress_numpy(stored[offset : offset + size - 4].tobytes())
    assert float(np.max(np.abs(level0 - states[2]["u"][0]))) <= rtol * 4e3


def _proto() -> Any:
    from zarr.core.buffer import default_buffer_prototype

    return default_buffer_prototype()


async def test_zfp_relative_tolerance_edge_cases() -> None:
    from amcheck import TransferError

    spec = StateSpec({"u": ((2, 16, 16), "float32"), "ids": ((4,), "int32")})
    tier = ZarrTier(MemoryStore(), spec, "zfp:rtol=1e-3")
    zero = {"u": np.zeros((2, 16, 16), np.float32), "ids": np.arange(4, dtype=np.int32)}
    await tier.put(0, zero)  # a zero field: tolerance 0, comes back as zeros
    out = {"u": np.ones((2, 16, 16), np.float32), "ids": np.zeros(4, np.int32)}
    await tier.get(0, out)
    assert np.all(out["u"] == 0) and np.array_equal(out["ids"], zero["ids"])
    bad = {"u": zero["u"].copy(), "ids": zero["ids"]}
    bad["u"][1, 3, 3] = np.nan
    with pytest.raises(TransferError, match=r"step 1 .*NaN or infinity, which zfp cannot code"):
        await tier.put(1, bad)
    assert 1 not in tier


@pytest.mark.parametrize("spec_text", ["zfp:tol=1e-3", "zfp:rate=8", "zfp:precision=16"])
@pytest.mark.parametrize("bad_value", [np.inf, -np.inf, np.nan])
async def test_zfp_refuses_what_it_cannot_code(spec_text: str, bad_value: float) -> None:
    """ZFP returns about ±2 for an infinity or NaN and clips the finite values of its 4^d block
    (-2.83 came back as +2.0 with "zfp:tol=1e-3"), so every zfp mode refuses them on put."""
    from amcheck import TransferError

    rng = np.random.default_rng(0)
    spec = StateSpec({"u": ((1, 64, 48), "float32")})
    tier = ZarrTier(MemoryStore(), spec, spec_text)
    x = {"u": rng.standard_normal((1, 64, 48)).astype(np.float32)}
    await tier.put(0, x)  # finite: fine
    x["u"][0, 5, 7] = bad_value
    with pytest.raises(TransferError, match=r"step 1 .*'u' holds NaN or infinity"):
        await tier.put(1, x)
    assert 1 not in tier and 0 in tier


@pytest.mark.parametrize(
    "compression",
    ["zfp:tol=1e-3", "zfp:rtol=1e-4+blosc", "zfp:rate=8", numcodecs.ZFPY(mode=4, tolerance=1e-3)],
    ids=["tol", "rtol", "rate", "ZFPY"],
)
@pytest.mark.parametrize(
    ("shape", "chunk"), [((5, 5, 5, 5, 5), (5, 5, 5, 5, 5)), ((2, 4, 4, 4, 4, 4), (4, 4, 4, 4, 4))]
)
def test_zfp_refuses_a_chunk_of_more_than_4_dimensions(
    tmp_path: Path, compression: Any, shape: tuple[int, ...], chunk: tuple[int, ...]
) -> None:
    """ZFP codes 1 to 4 dimensions: a float field whose chunk has more was accepted and failed
    the first put mid-sweep ("Greater than 4 dimensions not supported"). It is refused when the
    tier is built, before the store is touched; 5-D fields of other dtypes are not coded by zfp."""
    spec = StateSpec({"n": ((5, 5, 5, 5, 5), "int16"), "u": (shape, "float32")})
    shape_text = re.escape(str(chunk))
    match = rf"field 'u' \(float32\) is coded in chunks of shape {shape_text} \(5 dimensions\), "
    with pytest.raises(InvalidArgumentError, match=match + "and zfp codes 1 to 4 dimensions"):
        ZarrTier(tmp_path / "s.zarr", spec, compression)
    assert not (tmp_path / "s.zarr").exists()
    x0 = {key: np.zeros(field.shape, field.dtype) for key, field in spec.items()}
    with pytest.raises(InvalidArgumentError, match=match):
        Checkpointer(lambda src, dst, t0, t1: None, lambda state, t: None, x0, 4,
                     ram="1 MiB", disk=tmp_path / "ckp", compression=compression)
    assert not (tmp_path / "ckp").exists()
    ZarrTier(MemoryStore(), StateSpec({"u": ((2, 5, 5, 5, 5), "float32")}), compression)  # 4-D


@pytest.mark.parametrize(
    "compression",
    ["zfp:tol=1e-3", "zfp:rtol=1e-3", "zfp:rate=8", "zfp:precision=16",
     numcodecs.ZFPY(mode=4, tolerance=1e-3)],
    ids=["tol", "rtol", "rate", "precision", "ZFPY"],
)
async def test_zfp_leaves_every_non_float_field_of_the_state_exact(compression: Any) -> None:
    """Only float32/float64 fields are zfp-coded; int16, bool, float16, complex and datetime
    fields of the same state (a 5-D one too, which zfp could not code) come back bit for bit."""
    rng = np.random.default_rng(5)
    state = {
        "u": np.stack([wavefield((48, 40), "float32"), wavefield((48, 40), "float32")]),
        "n": rng.integers(-3000, 3000, (16, 16)).astype(np.int16),
        "mask": rng.random((5, 5, 5, 5, 5)) > 0.5,
        "h": rng.standard_normal((8, 8)).astype(np.float16),
        "z": (rng.standard_normal(6) + 1j * rng.standard_normal(6)).astype(np.complex64),
        "t": np.arange(4).astype("datetime64[s]"),
    }
    out, _ = await round_trip(compression, state)
    for key in ("n", "mask", "h", "z", "t"):
        np.testing.assert_array_equal(out[key], state[key], strict=True)
    assert 0 < np.max(np.abs(out["u"] - state["u"])) < 0.1  # coded lossily


async def test_codec_objects_take_datetime_fields() -> None:
    """The round-trip check of codec objects compared the decoded zeros with ``== 0``, which is
    never true for datetime64: such fields were refused although they round-trip."""
    state = {"t": np.arange(6).astype("datetime64[ms]"), "d": np.arange(3).astype("m8[s]")}
    out, _ = await round_trip(numcodecs.Zstd(level=1), state)
    for key, x in state.items():
        np.testing.assert_array_equal(out[key], x, strict=True)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("zfp:rtol=1", "must be < 1"),
        ("zfp:rtol=0", "must be a finite number > 0"),
        ("zfp:rtol=1e-3,tol=1e-4", "exactly one of"),
    ],
)
def test_bad_relative_tolerances(bad: str, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        parse_compression(bad)


@pytest.mark.parametrize("shape", [(37, 29), (6, 10, 12), (1000,)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zfp_decodes_in_place_like_zfpy(shape: tuple[int, ...], dtype: str) -> None:
    """libzfp decoding into the caller's array gives zfpy's values, and refuses a wrong target."""
    import zfpy
    from amcheck.storage._libzfp import libzfp

    lib = libzfp()
    if lib is None:  # pragma: no cover - zfpy without its bundled libzfp: zfpy decodes
        pytest.skip("zfpy ships no usable libzfp here")
    x = wavefield(shape, dtype, peak=2e-5)
    stream = np.frombuffer(zfpy.compress_numpy(x, tolerance=1e-8, write_header=True), np.uint8)
    out = np.full(shape, np.nan, dtype)
    assert lib.decode_into(stream, out)
    np.testing.assert_array_equal(out, zfpy.decompress_numpy(stream.tobytes()), strict=True)
    other = np.zeros(shape[::-1] if len(shape) > 1 else (999,), dtype)
    assert not lib.decode_into(stream, other) and not other.any()  # wrong shape: untouched
    wrong = np.zeros(shape, "float64" if dtype == "float32" else "float32")
    assert not lib.decode_into(stream, wrong) and not wrong.any()  # wrong type: untouched
    assert not lib.decode_into(np.zeros(64, np.uint8), out)  # no header
