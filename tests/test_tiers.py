"""Every tier against the conformance class, a state machine against a dict, and tier specifics."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RamTier, RawTier, Tier, TransferService, ZarrTier
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from zarr.storage import LocalStore, MemoryStore

from amcheck import (
    BudgetError,
    CheckpointNotFoundError,
    InvalidArgumentError,
    StateSpec,
    StoreMismatchError,
    TransferError,
)
from tests.tier_conformance import (
    SPEC,
    TierConformance,
    async_only_codec,
    empty_like,
    make_state,
)


def _stored_size(compression: Any) -> int:
    """Bytes one make_state(0) takes in a zarr tier with this compression."""

    async def measure() -> int:
        tier = ZarrTier(MemoryStore(), SPEC, compression)
        await tier.put(0, make_state(0))
        return tier.nbytes

    with TransferService() as service:  # runs it also where a test's own loop is running
        return service.run(measure())


class TestRamTier(TierConformance):
    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        probe = RamTier(10**9, spec, slots=1)
        slots = 8 if capacity is None else capacity
        return RamTier(slots * probe.slot_nbytes, spec)


class TestRawTier(TierConformance):
    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        return RawTier(tmp_path / "raw.bin", spec, records=capacity)


class TestRawTierPageCache(TierConformance):
    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        return RawTier(tmp_path / "raw.bin", spec, records=capacity, direct=False)


class TestRawTierInDirectoryDurable(TierConformance):
    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        record = -(-spec.nbytes // 4096) * 4096
        budget = None if capacity is None else capacity * record + 100
        return RawTier(tmp_path, spec, budget=budget, durable=True)


class TestZarrTierLocal(TierConformance):
    compression: Any = None

    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        budget = None if capacity is None else int(capacity * _stored_size(self.compression) * 1.2)
        return ZarrTier(tmp_path / "ckpt.zarr", spec, self.compression, budget=budget)


class TestZarrTierLocalPageCache(TierConformance):
    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        budget = None if capacity is None else int(capacity * _stored_size(None) * 1.2)
        return ZarrTier(tmp_path / "ckpt.zarr", spec, budget=budget, direct=False)


class TestZarrTierMemory(TierConformance):
    compression: Any = None

    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        budget = None if capacity is None else int(capacity * _stored_size(self.compression) * 1.2)
        return ZarrTier(MemoryStore(), spec, self.compression, budget=budget)


class TestZarrTierBlosc(TestZarrTierMemory):
    compression = "blosc"


class TestZarrTierZstdLocal(TestZarrTierLocal):
    compression = "zstd:level=1"


class TestZarrTierZfp(TestZarrTierMemory):
    compression = "zfp:tol=1e-4"

    def assert_restored(self, expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
        for key, want in expected.items():
            assert got[key].dtype == want.dtype
            if want.dtype.kind == "f":
                err = np.max(np.abs(got[key].astype(np.float64) - want))
                assert err <= 1e-4, (key, err)
            else:
                np.testing.assert_array_equal(got[key], want, strict=True)


class TestZarrTierBitround(TestZarrTierMemory):
    compression = "bitround:keepbits=10"

    def assert_restored(self, expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
        for key, want in expected.items():
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got[key], want, rtol=2.0**-11, atol=0)
            else:
                np.testing.assert_array_equal(got[key], want, strict=True)


# -- a tier against a dict -------------------------------------------------------------------------

SMALL = StateSpec({"u": ((2, 6, 5), "float32"), "n": ((3,), "int64")})


class TierVersusDict(RuleBasedStateMachine):
    """Random put/get/delete sequences: the tier must behave like a dict of copies."""

    kind = "ram"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(os.environ.get("AMCHECK_TEST_TMP", "/tmp"))
        if self.kind == "ram":
            self.tier: Tier = RamTier(10**6, SMALL)
        elif self.kind == "raw":
            self.tier = RawTier(self.tmp / f"sm-{os.getpid()}-{id(self)}.raw", SMALL)
        else:
            self.tier = ZarrTier(MemoryStore(), SMALL)
        self.model: dict[int, dict[str, np.ndarray]] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @rule(step=st.integers(0, 6), seed=st.integers(0, 2**16))
    def put(self, step: int, seed: int) -> None:
        state = make_state(seed, SMALL)
        self.run(self.tier.put(step, state))
        self.model[step] = {k: v.copy() for k, v in state.items()}

    @rule(step=st.integers(0, 6))
    def get(self, step: int) -> None:
        out = empty_like(SMALL)
        if step in self.model:
            self.run(self.tier.get(step, out))
            for key, array in self.model[step].items():
                np.testing.assert_array_equal(out[key], array, strict=True)
        else:
            with pytest.raises(CheckpointNotFoundError):
                self.run(self.tier.get(step, out))

    @rule(step=st.integers(0, 6))
    def delete(self, step: int) -> None:
        if step in self.model:
            self.run(self.tier.delete(step))
            del self.model[step]
        else:
            with pytest.raises(CheckpointNotFoundError):
                self.run(self.tier.delete(step))

    @invariant()
    def same_steps(self) -> None:
        assert self.tier.steps == frozenset(self.model)
        assert all((step in self.tier) for step in self.model)

    @invariant()
    def bytes_add_up(self) -> None:
        if self.kind == "zarr":
            # Uncompressed: raw bytes plus a 4-byte crc32c per chunk (u: 2 levels, n: 1), and per
            # field one shard index: an (offset, nbytes) uint64 pair per chunk and its crc32c.
            chunks, shards = 2 + 1, 2
            overhead = 4 * chunks + 16 * chunks + 4 * shards
            assert self.tier.nbytes == len(self.model) * (SMALL.nbytes + overhead)
        else:
            assert self.tier.nbytes == len(self.model) * SMALL.nbytes

    def teardown(self) -> None:
        self.run(self.tier.close())
        self.loop.close()


class RamVersusDict(TierVersusDict):
    kind = "ram"


class RawVersusDict(TierVersusDict):
    kind = "raw"


class ZarrVersusDict(TierVersusDict):
    kind = "zarr"


TestRamVersusDict = RamVersusDict.TestCase
TestRawVersusDict = RawVersusDict.TestCase
TestZarrVersusDict = ZarrVersusDict.TestCase


# -- zarr tier specifics ---------------------------------------------------------------------------


async def test_zarr_chunks_keep_the_field_dimensionality(tmp_path: Path) -> None:
    import zarr

    spec = StateSpec(
        {"u": ((2, 32, 16), "float32"), "w": ((8, 6, 5), "float64"), "s": ((), "float32")}
    )
    tier = ZarrTier(tmp_path / "z", spec)
    state = {"u": np.ones((2, 32, 16), np.float32), "w": np.ones((8, 6, 5)), "s": np.float32(2)}
    state["s"] = np.array(2, np.float32)
    await tier.put(0, state)
    await tier.close()
    group = zarr.open_group(tmp_path / "z", mode="r")
    assert group["u"].chunks == (32, 16)  # two 2-D chunks per checkpoint, not one (2, 32, 16)
    assert group["w"].chunks == (8, 6, 5)  # a 3-D field stays one 3-D chunk
    assert group["s"].chunks == (1,)
    assert group["u"].nchunks_initialized == 2
    meta = group.attrs["amcheck"]
    assert meta["spec"] == spec.to_json()
    assert meta["version"] and meta["index"] == {"0": [0, meta["index"]["0"][1]]}
    codecs = [type(c).__name__ for c in group["u"].compressors]
    assert codecs == ["Crc32cCodec"]
    assert group["u"].metadata.to_dict()["attributes"]["levels"] == 2
    assert group["u"].shards == (64, 16)  # both levels of a checkpoint in one shard
    assert group["w"].shards == (8, 6, 5)
    files = sorted(str(p.relative_to(tmp_path / "z")) for p in (tmp_path / "z").rglob("c*"))
    assert files == ["s/c.0", "u/c.0.0", "w/c.0.0.0"]  # one file per field, no row directories


@pytest.mark.parametrize(
    ("compression", "side", "big"),
    [(None, 1024, True), (None, 512, False), ("zfp:rtol=1e-4", 256, True),
     ("blosc", 128, False)],
)
def test_which_levels_get_jobs_of_their_own(compression: Any, side: int, big: bool) -> None:
    """Coded levels from 256 KiB, plain ones from 4 MiB: below that a job costs more than it saves."""
    tier = ZarrTier(MemoryStore(), StateSpec({"u": ((2, side, side), "float32")}), compression)
    (part,) = tier._io.parts({"u": np.zeros((2, side, side), np.float32)}, 0)
    assert part.big is big


@pytest.mark.parametrize("compression", [None, "blosc", "zfp:rtol=1e-4"])
@pytest.mark.parametrize("where", ["local", "memory"])
async def test_zarr_large_levels_take_parallel_jobs(
    tmp_path: Path, compression: Any, where: str
) -> None:
    """Large levels (coded from 256 KiB, plain from 4 MiB) are coded in the pool and read back."""
    import threading

    import zarr

    side = 1024 if compression is None else 256  # BIG_PLAIN_CHUNK, BIG_CHUNK
    spec = StateSpec({"u": ((2, side, side), "float32"), "n": ((5,), "int64")})
    store: Any = tmp_path / "z" if where == "local" else MemoryStore()
    tier = ZarrTier(store, spec, compression)
    rng = np.random.default_rng(7)
    states = [
        {"u": rng.standard_normal((2, side, side)).astype(np.float32) * 10.0**e,
         "n": np.arange(5) * e}
        for e in (-5, 2)
    ]
    threads: set[str] = set()
    encode = tier._fields["u"].codec.encode

    def spy(chunk: np.ndarray, tolerance: float | None = None) -> list[np.ndarray]:
        threads.add(threading.current_thread().name)
        return encode(chunk, tolerance)

    tier._fields["u"].codec.encode = spy  # type: ignore[method-assign]
    for step, state in enumerate(states):
        await tier.put(step, state)
    for step in (1, 0):  # overwrite row 0 in place with a smaller shard, then read both
        await tier.put(step, states[step])
    assert threads and "MainThread" not in threads  # coded off the loop, in the pool
    for step, state in enumerate(states):
        out = empty_like(spec)
        await tier.get(step, out)
        np.testing.assert_array_equal(out["n"], state["n"], strict=True)
        if compression == "zfp:rtol=1e-4":
            peak = float(np.max(np.abs(state["u"])))
            assert float(np.max(np.abs(out["u"] - state["u"]))) <= 1e-4 * peak
        else:
            np.testing.assert_array_equal(out["u"], state["u"], strict=True)
        if where == "local":
            group = zarr.open_group(tmp_path / "z", mode="r")
            row = tier._index[step][0]
            np.testing.assert_array_equal(
                group["u"][row * 2 * side : (row + 1) * 2 * side].reshape(2, side, side),
                out["u"],
                strict=True,
            )
    await tier.close()


async def test_zarr_codec_without_sync_calls_goes_through_zarrs_pipeline() -> None:
    """A third-party codec with only async calls: zarr codes the whole shard, same bytes back."""
    tier = ZarrTier(MemoryStore(), SPEC, [async_only_codec()])
    assert not any(f.sync for f in tier._fields.values())
    await tier.put(3, make_state(3))
    out = empty_like(SPEC)
    await tier.get(3, out)
    for key, array in make_state(3).items():
        np.testing.assert_array_equal(out[key], array, strict=True)


@pytest.mark.parametrize("compression", [None, "zfp:tol=1e-6"])
async def test_zarr_get_into_read_only_arrays_is_an_error(compression: Any) -> None:
    """A read-only ``out`` raises and stays untouched (libzfp would write into it regardless)."""
    tier = ZarrTier(MemoryStore(), SPEC, compression)
    await tier.put(1, make_state(1))
    out = empty_like(SPEC)
    for array in out.values():
        array.setflags(write=False)
    with pytest.raises(InvalidArgumentError, match=r"out\['\w+'\] is read-only"):
        await tier.get(1, out)
    for key, array in empty_like(SPEC).items():
        np.testing.assert_array_equal(out[key], array, strict=True)
    await tier.close()


async def test_zarr_reopen_keeps_checkpoints(tmp_path: Path) -> None:
    tier = ZarrTier(tmp_path / "z", SPEC, "blosc")
    for step in (3, 8, 20):
        await tier.put(step, make_state(step))
    await tier.delete(8)
    nbytes = tier.nbytes
    await tier.close()
    again = ZarrTier(str(tmp_path / "z"), SPEC, "blosc")
    assert again.steps == frozenset({3, 20}) and again.nbytes == nbytes
    out = empty_like(SPEC)
    await again.get(20, out)
    for key, array in make_state(20).items():
        np.testing.assert_array_equal(out[key], array)
    await again.put(30, make_state(30))  # reuses the freed row
    assert again.steps == frozenset({3, 20, 30})
    await again.close()


async def test_zarr_deleted_checkpoints_leave_the_store(tmp_path: Path) -> None:
    tier = ZarrTier(tmp_path / "z", SPEC, index_interval=0)
    await tier.put(0, make_state(0))

    def files() -> list[Path]:
        root = tmp_path / "z"
        return sorted(p.relative_to(root) for p in root.rglob("*")
                      if p.is_file() and p.name.startswith("c."))

    first = files()
    assert len(first) == 4  # one shard file per field and checkpoint, no directory per row
    await tier.delete(0)
    assert files() == first  # kept for reuse: creating and unlinking files is slow...
    await tier.put(1, make_state(1))
    assert files() == first  # ... and rewritten in place by the next checkpoint
    out = empty_like(SPEC)
    await tier.get(1, out)
    for key, array in make_state(1).items():
        np.testing.assert_array_equal(out[key], array, strict=True)
    await tier.put(2, make_state(2))
    await tier.delete(1)
    await tier.close()  # the files of rows no checkpoint holds go on close
    row1 = ["ids/c.1", "mask/c.1", "u/c.1.0", "v/c.1.0"]
    assert files() == [Path(p) for p in row1]


@pytest.mark.parametrize("compression", [None, "blosc", "zfp:tol=1e-4", "bitround:keepbits=10"])
async def test_zarr_store_reads_back_with_plain_zarr(tmp_path: Path, compression: Any) -> None:
    """The tier writes chunks itself: zarr alone must read them back, bit for bit."""
    import zarr

    tier = ZarrTier(tmp_path / "z", SPEC, compression)
    for step in (4, 9):
        await tier.put(step, make_state(step))
    got_tier = {step: empty_like(SPEC) for step in (4, 9)}
    for step, out in got_tier.items():
        await tier.get(step, out)
    await tier.close()
    group = zarr.open_group(tmp_path / "z", mode="r")
    index = group.attrs["amcheck"]["index"]
    for step, out in got_tier.items():
        row = index[str(step)][0]
        for key, field in SPEC.items():
            levels = group[key].attrs["levels"]
            span = levels * group[key].chunks[0]
            data = group[key][row * span : (row + 1) * span].reshape(field.shape)
            np.testing.assert_array_equal(data, out[key], strict=True)  # same bytes decoded
        if compression in (None, "blosc"):
            for key, array in make_state(step).items():
                np.testing.assert_array_equal(out[key], array, strict=True)


async def test_zarr_damaged_chunk_fails_its_checksum(tmp_path: Path) -> None:
    tier = ZarrTier(tmp_path / "z", SPEC)
    await tier.put(3, make_state(3))
    chunk = tmp_path / "z" / "u" / "c.0.0"  # the shard of both levels of u
    data = bytearray(chunk.read_bytes())
    data[100] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(TransferError, match=r"read of step 3 .*shard u/c.0.0, level 0: the crc32c"):
        await tier.get(3, empty_like(SPEC))
    chunk.write_bytes(bytes(data[:-9]))
    with pytest.raises(TransferError, match=r"read of step 3 .*bytes, expected"):
        await tier.get(3, empty_like(SPEC))
    await tier.close()


@pytest.mark.parametrize("compression", [None, "blosc"])
async def test_zarr_damaged_shard_index_is_an_error(tmp_path: Path, compression: Any) -> None:
    tier = ZarrTier(tmp_path / "z", SPEC, compression)
    await tier.put(3, make_state(3))
    shard = tmp_path / "z" / "u" / "c.0.0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 1  # inside the index: the second level's byte count
    shard.write_bytes(bytes(data))
    with pytest.raises(TransferError, match=r"read of step 3 .*index"):
        await tier.get(3, empty_like(SPEC))
    await tier.close()


async def test_zarr_reopen_without_close_never_returns_another_step(tmp_path: Path) -> None:
    """Between index saves a crash loses recent checkpoints, never maps a step to wrong data."""
    tier = ZarrTier(tmp_path / "z", SPEC, index_interval=3600)
    await tier.put(0, make_state(0))  # the first put saves the index
    await tier.put(1, make_state(1))
    await tier.delete(0)
    # Step 0's row is reused only after an index save drops it (this put saves first, so that
    # the files on disk stay as few as the checkpoints held); put 2's own entry is not saved.
    await tier.put(2, make_state(2))
    assert tier._index._next_row == 2  # no third row
    del tier  # no close(): as if the process died here
    gc.collect()
    again = ZarrTier(tmp_path / "z", SPEC)
    assert again.steps == frozenset({1})
    out = empty_like(SPEC)
    await again.get(1, out)
    for key, array in make_state(1).items():
        np.testing.assert_array_equal(out[key], array, strict=True)
    await again.flush()
    await again.close()


async def test_zarr_rows_on_disk_stay_as_few_as_the_checkpoints_held(tmp_path: Path) -> None:
    """A dropped row waited for the next timed index save, so every put in between made new
    files: disk use grew past what a disk budget allows (a thinning run, an optimiser's loop)."""
    tier = ZarrTier(tmp_path / "z", SPEC, index_interval=3600)
    for step in range(40):
        await tier.put(step, make_state(step % 3))
        if step >= 2:
            await tier.delete(step - 2)
    assert len(tier.steps) == 2 and tier._index._next_row <= 3
    assert len([p for p in (tmp_path / "z" / "u").iterdir() if p.name.startswith("c.")]) <= 3
    await tier.close()


def test_zarr_index_interval_is_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="index_interval"):
        ZarrTier(MemoryStore(), SPEC, index_interval=-1)
    with pytest.raises(TypeError, match="index_interval"):
        ZarrTier(MemoryStore(), SPEC, index_interval="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="index_interval must be a finite number, got "
                       "an integer too large"):  # was an OverflowError
        ZarrTier(MemoryStore(), SPEC, index_interval=10**400)


def test_zarr_tier_refuses_a_read_only_store(tmp_path: Path) -> None:
    """zarr's own ValueError ("Store is read-only but mode is 'w-'") came through before."""
    for store in (MemoryStore(read_only=True), LocalStore(tmp_path, read_only=True)):
        with pytest.raises(InvalidArgumentError, match=r"store .* is read-only: a zarr tier "
                           "writes checkpoints into it"):
            ZarrTier(store, SPEC)
    # the refused store's location was released, and nothing was made there
    asyncio.run(ZarrTier(LocalStore(tmp_path), SPEC).close())


@pytest.mark.parametrize(
    ("other", "problem"),
    [
        (StateSpec({"u": ((2, 24, 20), "float64")}), "spec"),
        (SPEC, "compression"),
    ],
)
async def test_zarr_reopen_with_another_spec_is_an_error(
    tmp_path: Path, other: StateSpec, problem: str
) -> None:
    tier = ZarrTier(tmp_path / "z", SPEC)
    await tier.put(1, make_state(1))
    await tier.close()
    compression = "zstd" if problem == "compression" else None
    with pytest.raises(StoreMismatchError, match=problem):
        ZarrTier(tmp_path / "z", other, compression)
    fresh = ZarrTier(tmp_path / "z", other, compression, overwrite=True)
    assert fresh.steps == frozenset()
    await fresh.close()


async def test_zarr_reopen_with_the_fields_in_another_order_is_refused(tmp_path: Path) -> None:
    """A checkpoint's checksums are stored in field order: the same fields in another order
    were accepted, and every get of an intact checkpoint then failed its checksum."""
    spec = StateSpec({"u": ((2, 6, 5), "float32"), "v": ((3,), "float64")})
    state = {"u": np.ones((2, 6, 5), np.float32), "v": np.arange(3.0)}
    tier = ZarrTier(tmp_path / "z", spec)
    await tier.put(1, state)
    await tier.close()
    swapped = StateSpec({"v": ((3,), "float64"), "u": ((2, 6, 5), "float32")})
    with pytest.raises(StoreMismatchError, match=r"the same fields in the order \['u', 'v'\], "
                       r"not \['v', 'u'\]; give the state's fields in the store's order"):
        ZarrTier(tmp_path / "z", swapped)
    again = ZarrTier(tmp_path / "z", spec)  # in the store's order: read back
    out = {"u": np.zeros((2, 6, 5), np.float32), "v": np.zeros(3)}
    await again.get(1, out)
    np.testing.assert_array_equal(out["v"], state["v"])
    await again.close()


async def test_zarr_tier_in_an_empty_directory_leaves_the_directory_as_it_was(
    tmp_path: Path,
) -> None:
    """An empty store was cleared before the group was made: for a local one a rmtree and a
    mkdir of the caller's directory, which lost its mode (setgid, group write) and failed on a
    symlink to an empty directory ("Cannot call rmtree on a symbolic link") and on an empty
    mount point (EBUSY)."""
    where = tmp_path / "shared"
    where.mkdir()
    where.chmod(0o2770)
    before = where.stat()
    tier = ZarrTier(where, SPEC)
    await tier.put(0, make_state(0))
    await tier.close()
    after = where.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    tier = ZarrTier(tmp_path / "link", SPEC)
    await tier.put(0, make_state(0))
    await tier.close()
    assert (tmp_path / "link").is_symlink() and (target / "zarr.json").exists()


async def test_zarr_refuses_a_foreign_store(tmp_path: Path) -> None:
    import zarr

    zarr.create_array(LocalStore(tmp_path / "a"), shape=(4,), dtype="i4")
    with pytest.raises(StoreMismatchError, match="overwrite=True"):
        ZarrTier(tmp_path / "a", SPEC)
    zarr.open_group(LocalStore(tmp_path / "g"), mode="w")
    with pytest.raises(StoreMismatchError, match="did not write"):
        ZarrTier(tmp_path / "g", SPEC)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("not zarr")
    with pytest.raises(StoreMismatchError, match="holds no zarr store"):
        ZarrTier(tmp_path / "d", SPEC)  # no zarr metadata: a mismatch, not an I/O error
    for where in ("a", "g"):  # overwrite=True erases another zarr store
        tier = ZarrTier(tmp_path / where, SPEC, overwrite=True)
        await tier.put(2, make_state(2))
        out = empty_like(SPEC)
        await tier.get(2, out)
        for key, array in make_state(2).items():
            np.testing.assert_array_equal(out[key], array, strict=True)
        await tier.close()
    # ... but never files that are no zarr store (a working directory, say: ZarrTier("."))
    with pytest.raises(StoreMismatchError, match="overwrite=True erases only zarr stores"):
        ZarrTier(tmp_path / "d", SPEC, overwrite=True)
    assert (tmp_path / "d" / "notes.txt").read_text() == "not zarr"
    for blank in ("", "   ", "\t"):
        with pytest.raises(InvalidArgumentError,
                           match=f"store must name a directory, got {re.escape(repr(blank))}"):
            ZarrTier(blank, SPEC, overwrite=True)


async def test_zarr_missing_chunk_is_an_error_not_zeros() -> None:
    store = MemoryStore()
    tier = ZarrTier(store, SPEC)
    await tier.put(5, make_state(5))
    await store.delete("v/c.0.0")
    with pytest.raises(TransferError, match=r"read of step 5 at memory://.*missing"):
        await tier.get(5, empty_like(SPEC))


async def test_zarr_store_errors_name_step_tier_and_path() -> None:
    class BrokenStore(MemoryStore):
        async def set(self, key: str, value: Any, byte_range: Any = None) -> None:
            if "/c." in key:
                raise OSError(28, "No space left on device")
            await super().set(key, value)

    tier = ZarrTier(BrokenStore(), SPEC, name="scratch")
    with pytest.raises(TransferError, match=r"'scratch'.*write of step 12 at memory://") as info:
        await tier.put(12, make_state(12))
    assert isinstance(info.value.__cause__, OSError)
    assert 12 not in tier and tier.nbytes == 0


def test_zarr_url_without_fsspec_names_the_fix() -> None:
    try:
        import fsspec  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidArgumentError, match="fsspec"):
            ZarrTier("s3://bucket/run", SPEC)
    else:  # pragma: no cover - fsspec present: memory:// works
        tier = ZarrTier("memory://amcheck-test", SPEC)
        asyncio.run(tier.close())


def test_zarr_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="store"):
        ZarrTier(3.5, SPEC)
    with pytest.raises(InvalidArgumentError, match="field name"):
        ZarrTier(MemoryStore(), StateSpec({"a/b": ((3,), "f4")}))
    # these failed when the store was made, as EEXIST and ENAMETOOLONG TransferErrors
    with pytest.raises(InvalidArgumentError, match="must not be 'zarr.json'"):
        ZarrTier(tmp_path / "a", StateSpec({"zarr.json": ((3,), "f4")}))
    with pytest.raises(InvalidArgumentError, match="at most 255 characters, got 256"):
        ZarrTier(tmp_path / "b", StateSpec({"x" * 256: ((3,), "f4")}))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with TransferService() as service:
        service.run(ZarrTier(tmp_path / "c", StateSpec({"x" * 255: ((3,), "f4")})).close())
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        ZarrTier(tmp_path / "file", SPEC)


async def test_zarr_can_be_built_inside_a_running_loop() -> None:
    tier = ZarrTier(MemoryStore(), SPEC)  # the constructor's own open runs on a helper thread
    await tier.put(0, make_state(0))
    assert 0 in tier


# -- raw tier specifics ----------------------------------------------------------------------------


async def test_raw_tier_preallocates_and_removes_its_file(tmp_path: Path) -> None:
    tier = RawTier(tmp_path / "r.bin", SPEC, records=5)
    assert os.path.getsize(tier.path) == 5 * tier.record_nbytes
    assert tier.record_nbytes % 4096 == 0 and tier.record_nbytes >= SPEC.nbytes
    assert tier.capacity == 5 * SPEC.nbytes
    await tier.put(0, make_state(0))
    await tier.flush()
    await tier.close()
    assert not (tmp_path / "r.bin").exists()


async def test_a_growing_raw_tier_gives_back_deleted_records_on_trim(tmp_path: Path) -> None:
    """After a full disk the Checkpointer trims its tier; a RawTier that grows with its
    checkpoints kept its file at full size (a retry found the disk still full)."""
    tier = RawTier(tmp_path / "r.bin", SPEC)
    for step in range(5):
        await tier.put(step, make_state(step))
    assert os.path.getsize(tier.path) == 5 * tier.record_nbytes
    for step in (1, 3, 4):
        await tier.delete(step)
    await tier.trim()
    assert os.path.getsize(tier.path) == 3 * tier.record_nbytes  # up to x_2's record
    for step in (5, 6, 7):  # the freed record 1 first, then the file grows again
        await tier.put(step, make_state(step))
    assert os.path.getsize(tier.path) == 5 * tier.record_nbytes
    for step in (0, 2, 5, 6, 7):
        out = empty_like(make_state(0))
        await tier.get(step, out)
        for key, want in make_state(step).items():
            np.testing.assert_array_equal(out[key], want, strict=True)
        await tier.delete(step)
    await tier.trim()
    assert os.path.getsize(tier.path) == 0
    await tier.close()
    fixed = RawTier(tmp_path / "f.bin", SPEC, records=3)
    await fixed.trim()  # preallocated: its size is its capacity
    assert os.path.getsize(fixed.path) == 3 * fixed.record_nbytes
    await fixed.close()


def test_raw_tier_budget_too_small(tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="8192 bytes"):
        RawTier(tmp_path / "r.bin", SPEC, budget=100)
    with pytest.raises(InvalidArgumentError, match="not both"):
        RawTier(tmp_path / "r.bin", SPEC, budget="1 MiB", records=3)


def test_a_raw_tier_on_a_relative_path_removes_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It kept the path relative: after a chdir, close() deleted another directory's file of
    that name and left its own behind."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ck.raw").write_bytes(b"someone else's")
    monkeypatch.chdir(tmp_path / "a")
    tier = RawTier("ck.raw", SPEC, records=2)
    assert tier.path == str(tmp_path / "a" / "ck.raw")
    monkeypatch.chdir(tmp_path / "b")
    asyncio.run(tier.close())
    assert not (tmp_path / "a" / "ck.raw").exists()
    assert (tmp_path / "b" / "ck.raw").read_bytes() == b"someone else's"


def test_a_raw_tier_of_empty_fields_holds_its_records(tmp_path: Path) -> None:
    """A state whose fields are all empty takes 0 bytes: max_checkpoints() divided that
    capacity by it and gave 0, and a Checkpointer refused the tier ("holds no checkpoint of 0
    bytes within its capacity of 0 bytes")."""
    from amcheck import Checkpointer

    spec = StateSpec({"u": ((0, 4), "float32")})
    tier = RawTier(tmp_path / "r.bin", spec, records=3)
    assert tier.capacity == 0 and tier.max_checkpoints() == 3
    x0 = {"u": np.zeros((0, 4), np.float32)}
    seen: list[int] = []
    with Checkpointer(lambda src, dst, t0, t1: None, lambda state, t: seen.append(t), x0, 20,
                      ram="64 KiB", disk=tier, strategy="two_level", interval=7) as ckp:
        ckp.forward()
        ckp.reverse()
    assert seen == list(range(19, -1, -1))


def test_import_storage_does_not_import_zarr() -> None:
    code = "import sys, amcheck.storage; print('zarr' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


#: One field of every fixed-size dtype kind a StateSpec takes (no objects).
_ODD_FIELDS = {
    "dt64": np.arange(5).astype("datetime64[s]"),
    "td64": np.arange(-3, 4).astype("timedelta64[ms]"),
    "dt0d": np.array(np.datetime64("2024-02-29T12:00")),
    "f16": np.linspace(-2, 2, 9, dtype=np.float16),
    "c128": np.arange(6) * (1 - 2j),
    "bool": np.arange(21).reshape(7, 3) % 3 == 0,
    "bytes": np.array([b"ab", b"c", b""]),
    "unicode": np.array(["ab", "cde", "\u00e9"]),
    "struct": np.array([(1.5, 2), (-3.0, 4)], dtype=[("a", "f8"), ("b", "i4")]),
    "big_endian": np.arange(4, dtype=">f8"),
}


@pytest.mark.parametrize("direct", [None, False])
@pytest.mark.parametrize("key", sorted(_ODD_FIELDS))
async def test_raw_tier_stores_every_fixed_size_dtype_bitwise(
    tmp_path: Path, key: str, direct: bool | None
) -> None:
    """datetime64 and timedelta64 fields failed their first put ("cannot include dtype 'M' in a
    buffer"): the tier moves and checksums a uint8 view of each field, whatever its dtype."""
    state = {key: _ODD_FIELDS[key], "u": np.arange(3.0)}
    tier = RawTier(tmp_path / "r.bin", StateSpec.from_arrays(state), direct=direct)
    await tier.put(3, state)
    out = {k: np.zeros_like(a) for k, a in state.items()}
    await tier.get(3, out)
    for k, a in state.items():
        assert out[k].dtype == a.dtype and out[k].tobytes() == a.tobytes(), k
    record = bytearray(Path(tier.path).read_bytes())
    record[0] ^= 0xFF  # damage the field's first byte: the crc32c sees it
    Path(tier.path).write_bytes(record)
    with pytest.raises(TransferError, match=r"read of step 3 .*crc32c"):
        await tier.get(3, out)
    await tier.close()


async def test_raw_tier_drops_a_checkpoint_its_failed_in_place_overwrite_tore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full RawTier overwrites a held step in place; if that write fails half way, the step is
    dropped rather than kept half old, half new (its checksum would fail every later get)."""
    import amcheck.storage._raw as raw

    spec = StateSpec({"u": ((1024,), "float64")})
    tier = RawTier(tmp_path / "r.bin", spec, records=1, direct=False)
    await tier.put(5, {"u": np.zeros(1024)})
    write = raw._write

    async def torn(files: Any, fd: int, pieces: Any, offset: int, checksum: bool) -> None:
        await write(files, fd, [pieces[0][:512]], offset, checksum)  # half of the new data lands
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(raw, "_write", torn)
    with pytest.raises(TransferError, match=r"write of step 5 .*No space left") as info:
        await tier.put(5, {"u": np.ones(1024)})
    assert any("x_5 it replaced in place is lost" in note for note in info.value.__notes__)
    assert 5 not in tier and tier.steps == frozenset()
    monkeypatch.setattr(raw, "_write", write)
    await tier.put(6, {"u": np.full(1024, 6.0)})  # the record is free again
    out = {"u": np.empty(1024)}
    await tier.get(6, out)
    assert np.all(out["u"] == 6.0)
    await tier.close()


async def test_one_store_serves_one_open_zarr_tier(tmp_path: Path) -> None:
    """Two tiers on one store took the same rows: each overwrote the other's checkpoints (two
    Checkpointers given one zarr store reversed on each other's states, without an error)."""
    first = ZarrTier(tmp_path / "z", SPEC)
    for other in (tmp_path / "z", str(tmp_path / "z"), LocalStore(tmp_path / "z")):
        with pytest.raises(InvalidArgumentError, match="used by another open ZarrTier"):
            ZarrTier(other, SPEC)
    store = MemoryStore()
    in_memory = ZarrTier(store, SPEC)
    with pytest.raises(InvalidArgumentError, match="used by another open ZarrTier"):
        ZarrTier(store, SPEC)
    await first.close()
    await in_memory.close()
    again = ZarrTier(tmp_path / "z", SPEC)  # free once the first is closed
    await again.close()


async def test_zarr_a_row_named_by_a_save_in_flight_is_not_reused_before_it_lands(
    tmp_path: Path,
) -> None:
    """A row recorded after the last save, named by a save in flight and dropped meanwhile went
    straight to the free list: the next put took it, and after a crash the index that landed
    mapped the dropped step to the new step's data (with a valid checksum)."""
    tier = ZarrTier(tmp_path / "t", SPEC, index_interval=3600)
    await tier.put(0, make_state(0))  # the first put saves the index: row 0
    await tier.put(1, make_state(1))  # row 1, not saved yet

    async def meanwhile() -> None:
        await asyncio.sleep(0)  # the save below is in flight, its index names row 1
        await tier.delete(1)
        await tier.put(2, make_state(2))

    await asyncio.gather(tier.flush(), meanwhile())
    shutil.copytree(tmp_path / "t", tmp_path / "crash")  # the process dies here
    again = ZarrTier(tmp_path / "crash", SPEC)
    assert again.steps
    for step in again.steps:
        out = empty_like(SPEC)
        await again.get(step, out)
        for key, array in make_state(step).items():
            np.testing.assert_array_equal(out[key], array, strict=True)
    await again.close()
    await tier.close()


async def test_zarr_scratch_store_writes_no_index_and_reuses_rows(tmp_path: Path) -> None:
    """index_interval=None (the Checkpointer's own store): no index is ever written, a deleted
    checkpoint's row is free at once, and the tier says it does not persist."""
    import zarr

    tier = ZarrTier(tmp_path / "s.zarr", SPEC, index_interval=None)
    assert not tier.is_persistent and ZarrTier.is_persistent
    for step in range(5):
        await tier.put(step, make_state(step))
        await tier.delete(step)
    await tier.put(9, make_state(9))
    out = empty_like(SPEC)
    await tier.get(9, out)
    for key, array in make_state(9).items():
        np.testing.assert_array_equal(out[key], array, strict=True)
    # One row in use, no limbo rows waiting for a save: the files of row 0 only.
    assert sorted(p.name for p in (tmp_path / "s.zarr" / "u").glob("c.*")) == ["c.0.0"]
    await tier.close()
    saved = dict(zarr.open_group(LocalStore(tmp_path / "s.zarr"), mode="r").attrs)["amcheck"]
    assert saved["index"] == {}  # as created: the close wrote nothing either


async def test_zarr_failed_index_save_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amcheck.storage import _step_index

    tier = ZarrTier(tmp_path / "i.zarr", SPEC, index_interval=0)
    await tier.put(3, make_state(3))

    async def no_room(self: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_step_index.StepIndex, "save", no_room)
    with pytest.raises(TransferError, match="delete of step 3 .* succeeded, but saving the tier's "
                                            "index afterwards failed: OSError"):
        await tier.delete(3)
    assert 3 not in tier  # the delete itself happened
    monkeypatch.undo()
    await tier.close()


def test_ram_tier_zero_copy_calls_keep_their_promises() -> None:
    """Found by mutation testing (each of these could break without a test failing): bind()
    frees the slot of the checkpoint it replaces; release_all() leaves checkpoints' slots alone;
    unbind() gives back an acquired slot that release() takes; a field of exactly 64 KiB starts
    on a page, as larger ones do."""
    from amcheck.storage import slot_layout

    spec = StateSpec({"u": ((4,), "float64")})
    tier = RamTier("1 MiB", spec, slots=3)
    first = tier.acquire()
    tier.bind(0, first)
    tier.bind(0, tier.acquire())
    assert tier.n_free == 2
    tier = RamTier("1 MiB", spec, slots=2)
    slot = tier.acquire()
    slot.state["u"][:] = 7
    tier.bind(5, slot)
    tier.release_all()
    for free in [tier.acquire() for _ in range(tier.n_free)]:
        free.state["u"][:] = -1
    assert (tier.slot_of(5).state["u"] == 7).all()
    tier = RamTier("1 MiB", spec, slots=2)
    tier.bind(1, tier.acquire())
    back = tier.unbind(1)
    assert tier.is_acquired(back)
    tier.release(back)
    assert tier.n_free == 2
    paged = StateSpec({"small": ((3,), "float64"), "big": ((8192,), "float64")})  # 64 KiB
    offsets, size = slot_layout(paged)
    assert offsets["big"] % 4096 == 0 and size % 4096 == 0
    tier = RamTier(2 * size, paged, slots=2)
    assert all(tier.acquire().state["big"].ctypes.data % 4096 == 0 for _ in range(2))
