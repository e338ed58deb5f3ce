"""Stored bytes must be the checkpoint asked for, not merely intact ones.

Every zarr chunk carries its own crc32c, but that says nothing about *which* checkpoint it
holds: two shard files swapped on disk, or a put whose writes the OS reported done but never
made (a reused row's file then still holds its previous checkpoint), passed every check and
the adjoint silently got another state. RawTier had no checksum at all. Each test here damages
the store between a put and a get and expects a :class:`~amcheck.TransferError` naming the step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RawTier, ZarrTier, _direct, _local_io, _raw
from zarr.storage import MemoryStore

from amcheck import Checkpointer, StateSpec, TransferError
from tests.tier_conformance import SPEC, async_only_codec, empty_like, make_state
from tests.toy_problem import Adjoint, Forward, initial_state

#: Fields with levels large enough for pool jobs of their own (plain from 4 MiB, coded from
#: 256 KiB), so the parallel per-level write and read paths are covered too.
BIG = {None: (2, 1024, 1024), "zstd:level=1": (2, 256, 256), "zfp:tol=1e-4": (2, 256, 256)}
COMPRESSIONS = list(BIG)
ANOTHER = r"belong to another checkpoint or to an older write"


def _spec(size: str, compression: Any) -> StateSpec:
    if size == "small":
        return SPEC
    return StateSpec({"u": (BIG[compression], "float32"), "n": ((5,), "int64")})


def _swap(a: Path, b: Path) -> None:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


async def _get(tier: Any, step: int, spec: StateSpec) -> dict[str, np.ndarray]:
    out = empty_like(spec)
    await tier.get(step, out)
    return out


def _overwrite(path: str, offset: int, data: bytes) -> None:
    """Write ``data`` into the file at ``offset``, as damage on disk would."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _no_write(fd: int, pieces: list[np.ndarray], offset: int = 0) -> int:
    """``pwritev_all`` of a write the OS reports done but never makes."""
    return sum(p.nbytes for p in pieces)


def _lose_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write from now on is lost: through the page cache and with direct I/O alike."""
    for module in (_local_io, _direct, _raw):
        monkeypatch.setattr(module, "pwritev_all", _no_write)


# -- ZarrTier --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("direct", [None, False])
@pytest.mark.parametrize("size", ["small", "big"])
async def test_zarr_swapped_shard_files_are_an_error(
    tmp_path: Path, compression: Any, direct: bool | None, size: str
) -> None:
    spec = _spec(size, compression)
    tier = ZarrTier(tmp_path / "z", spec, compression, direct=direct)
    for step in (0, 1):
        await tier.put(step, make_state(step, spec))
    assert [tier._index[s][0] for s in (0, 1)] == [0, 1]
    _swap(tmp_path / "z/u/c.0.0", tmp_path / "z/u/c.1.0")
    for step in (0, 1):
        with pytest.raises(TransferError, match=rf"read of step {step} at .*shard u/c.{step}.0, "
                                                rf"level 0: .*{ANOTHER}"):
            await _get(tier, step, spec)
    _swap(tmp_path / "z/u/c.0.0", tmp_path / "z/u/c.1.0")  # back in place: read as written
    await _get(tier, 1, spec)
    await tier.close()


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("direct", [None, False])
@pytest.mark.parametrize("size", ["small", "big"])
async def test_zarr_lost_write_into_a_reused_row_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: Any, direct: bool | None,
    size: str,
) -> None:
    """The second sweep's put reuses row 0, whose file still holds the first sweep's step 0."""
    spec = _spec(size, compression)
    tier = ZarrTier(tmp_path / "z", spec, compression, direct=direct, index_interval=0)
    await tier.put(0, make_state(0, spec))
    await tier.delete(0)
    _lose_writes(monkeypatch)
    await tier.put(1, make_state(1, spec))
    assert tier._index[1][0] == 0  # rewritten in place, or so the OS said
    # Coded shards of another size also fail the index check; same-size ones only the identity.
    with pytest.raises(TransferError, match=r"read of step 1 at .*shard u/c.0.0"):
        await _get(tier, 1, spec)
    if compression is None:
        with pytest.raises(TransferError, match=ANOTHER):
            await _get(tier, 1, spec)
    await tier.close()


async def test_zarr_lost_write_of_one_level_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large plain levels are written by parallel jobs, each at its offset: one job's lost write
    leaves that level of the row's previous checkpoint between the new ones."""
    spec = _spec("big", None)
    tier = ZarrTier(tmp_path / "z", spec, direct=False, index_interval=0)
    await tier.put(0, make_state(0, spec))
    await tier.delete(0)
    write = _local_io.pwritev_all
    first_level = spec["u"].nbytes // 2 + 4

    def lose_level_1(fd: int, pieces: list[np.ndarray], offset: int = 0) -> int:
        return _no_write(fd, pieces) if offset == first_level else write(fd, pieces, offset)

    monkeypatch.setattr(_local_io, "pwritev_all", lose_level_1)
    await tier.put(1, make_state(1, spec))
    with pytest.raises(TransferError, match=rf"read of step 1 .*u/c.0.0, level 1: .*{ANOTHER}"):
        await _get(tier, 1, spec)
    await tier.close()


@pytest.mark.parametrize(
    ("compression", "size"),
    # the pure-Python test codec of zarr's pipeline path is too slow for big levels
    [*((c, s) for c in COMPRESSIONS for s in ("small", "big")), ("pipeline", "small")],
)
async def test_zarr_swapped_store_values_are_an_error(compression: Any, size: str) -> None:
    """The generic store path (``set``/``get``), and zarr's own pipeline for async-only codecs."""
    codecs = [async_only_codec()] if compression == "pipeline" else compression
    spec = _spec(size, None if compression == "pipeline" else compression)
    store = MemoryStore()
    tier = ZarrTier(store, spec, codecs)
    for step in (0, 1):
        await tier.put(step, make_state(step, spec))
    stored = store._store_dict
    stored["u/c.0.0"], stored["u/c.1.0"] = stored["u/c.1.0"], stored["u/c.0.0"]
    for step in (0, 1):
        with pytest.raises(TransferError, match=rf"read of step {step} at memory://.*shard "
                                                rf"u/c.{step}.0, level 0: .*{ANOTHER}"):
            await _get(tier, step, spec)
    await tier.close()


async def test_zarr_reopened_store_checks_the_saved_crcs(tmp_path: Path) -> None:
    tier = ZarrTier(tmp_path / "z", SPEC)
    for step in (3, 7):
        await tier.put(step, make_state(step))
    await tier.close()
    _swap(tmp_path / "z/v/c.0.0", tmp_path / "z/v/c.1.0")
    again = ZarrTier(tmp_path / "z", SPEC)
    with pytest.raises(TransferError, match=rf"read of step 3 .*shard v/c.0.0.*{ANOTHER}"):
        await _get(again, 3, SPEC)
    await again.close()


async def test_zarr_index_saved_without_crcs_is_read_unchecked(tmp_path: Path) -> None:
    """An index saved before the crc32c values were recorded (or with a damaged entry) still
    reopens, and its steps read back without that check; new puts record theirs."""
    import zarr

    tier = ZarrTier(tmp_path / "z", SPEC)
    for step in (3, 7):
        await tier.put(step, make_state(step))
    await tier.close()
    group = zarr.open_group(tmp_path / "z", mode="r+")
    meta = dict(group.attrs["amcheck"])
    assert sorted(meta["crcs"]) == ["3", "7"] and len(meta["crcs"]["3"]) == 7  # a crc32c per level:
    # u 2, v 1, ids 1, mask 3 (a leading axis shorter than 4 is levels)
    meta["crcs"] = {"7": [1, 2]}  # step 3: none; step 7: not one per level
    group.attrs["amcheck"] = meta
    again = ZarrTier(tmp_path / "z", SPEC)
    assert again._index.crcs(3) is None and again._index.crcs(7) is None
    for step in (3, 7):
        out = await _get(again, step, SPEC)
        for key, array in make_state(step).items():
            np.testing.assert_array_equal(out[key], array, strict=True)
    await again.put(9, make_state(9))
    assert again._index.crcs(9) is not None
    await again.close()


# -- RawTier ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("direct", [None, False])
async def test_raw_flipped_byte_is_an_error(tmp_path: Path, direct: bool | None) -> None:
    tier = RawTier(tmp_path / "r.bin", SPEC, records=3, direct=direct, name="scratch")
    for step in (0, 1):
        await tier.put(step, make_state(step))
    at = tier.record_nbytes + 1000  # inside step 1's record
    byte = Path(tier.path).read_bytes()[at]
    _overwrite(tier.path, at, bytes([byte ^ 0x10]))
    await _get(tier, 0, SPEC)  # the other record is intact
    with pytest.raises(TransferError, match=r"'scratch': read of step 1 at .*r.bin failed: .*crc32c"):
        await _get(tier, 1, SPEC)
    await tier.close()


@pytest.mark.parametrize("direct", [None, False])
async def test_raw_zeroed_page_is_an_error(tmp_path: Path, direct: bool | None) -> None:
    tier = RawTier(tmp_path / "r.bin", SPEC, records=3, direct=direct)
    await tier.put(5, make_state(5))
    _overwrite(tier.path, 0, bytes(4096))  # the record's first page: most of u
    with pytest.raises(TransferError, match=r"read of step 5 at .*crc32c of record 0"):
        await _get(tier, 5, SPEC)
    await tier.close()


@pytest.mark.parametrize("direct", [None, False])
async def test_raw_lost_write_into_a_reused_record_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool | None
) -> None:
    tier = RawTier(tmp_path / "r.bin", SPEC, records=2, direct=direct)
    await tier.put(0, make_state(0))
    await tier.delete(0)
    _lose_writes(monkeypatch)
    await tier.put(1, make_state(1))  # into record 0, which still holds step 0
    with pytest.raises(TransferError, match=r"read of step 1 .*older checkpoint"):
        await _get(tier, 1, SPEC)
    await tier.close()


async def test_raw_without_checksum_checks_nothing(tmp_path: Path) -> None:
    """``checksum=False`` (the benchmark's raw baseline): damage comes back as data, as documented."""
    tier = RawTier(tmp_path / "r.bin", SPEC, records=2, checksum=False)
    await tier.put(5, make_state(5))
    _overwrite(tier.path, 0, bytes(4096))
    out = await _get(tier, 5, SPEC)
    assert not np.array_equal(out["u"], make_state(5)["u"])
    await tier.close()
    with pytest.raises(TypeError, match="checksum"):
        RawTier(tmp_path / "r.bin", SPEC, checksum=1)  # type: ignore[arg-type]


# -- through the Checkpointer ----------------------------------------------------------------------


def test_checkpointer_reverse_refuses_swapped_shard_files(tmp_path: Path) -> None:
    """The audit's case: shard files swapped between forward() and reverse() gave the adjoint
    the wrong states, without an error."""
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), 30, ram="1 MiB", disk=tmp_path,
                      strategy="async_multistage", interval=6) as ckp:
        x_n = ckp.forward()
        assert ckp.disk is not None and len(ckp.disk.steps) >= 2
        (root,) = tmp_path.glob("amcheck-*")
        shards = sorted((root / "checkpoints.zarr" / "u").glob("c.*"))
        assert len(shards) >= 2
        _swap(shards[0], shards[1])
        adj.start(x_n)
        with pytest.raises(TransferError, match=rf"read of step \d+ .*{ANOTHER}"):
            ckp.reverse()
