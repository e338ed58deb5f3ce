"""Direct I/O (``O_DIRECT``) of shard files: the bounce-buffer streaming and the zarr tier's use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RawTier, ZarrTier, _direct
from amcheck.storage._direct import ALIGN, DirectFiles, aligned_empty, direct_supported
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.storage import MemoryStore

from amcheck import ArgumentTypeError, InvalidArgumentError, StateSpec
from tests.tier_conformance import empty_like

pytestmark = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this OS")


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("direct")
    assert direct_supported(path), "the test machine's temporary directory supports O_DIRECT"
    return path


def _pieces(sizes: list[int], seed: int, paged: list[bool] | None = None) -> list[np.ndarray]:
    """Random pieces; those flagged in ``paged`` start on a page (they skip the bounce buffer)."""
    rng = np.random.default_rng(seed)
    pieces = [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]
    return [_place(p, bool(paged and paged[i % len(paged)])) for i, p in enumerate(pieces)]


def _place(piece: np.ndarray, paged: bool) -> np.ndarray:
    """A copy of ``piece`` at a page-aligned address, or one byte past a page."""
    out = aligned_empty(piece.nbytes + 1)[0 if paged else 1 :][: piece.nbytes]
    out[...] = piece
    return out


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * ALIGN + 7), min_size=1, max_size=6),
    blocks=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    paged=st.lists(st.booleans(), min_size=1, max_size=6),
)
def test_write_then_read_any_pieces(
    where: Path, sizes: list[int], blocks: int, seed: int, paged: list[bool]
) -> None:
    """Pieces of any sizes, page-aligned (moved straight, without the bounce buffer, while the
    file offset is aligned too) or not, cross bounce-buffer blocks intact, and the file ends
    where they end."""
    files = DirectFiles(block=blocks * ALIGN)
    pieces = _pieces(sizes, seed, paged)
    path = where / "f"
    with open(path, "wb") as f:  # a longer earlier file must be cut
        f.write(b"x" * (sum(sizes) + 5000))
    fd = files.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert files.write(fd, pieces) == sum(sizes)
    finally:
        os.close(fd)
    expected = b"".join(p.tobytes() for p in pieces)
    assert path.read_bytes() == expected
    back = [_place(np.empty_like(p), paged[i % len(paged)]) for i, p in enumerate(pieces)]
    fd = files.open(path, os.O_RDONLY)
    try:
        files.read(fd, back)
        assert files.read_whole(fd, len(expected)).tobytes() == expected
    finally:
        os.close(fd)
    for got, want in zip(back, pieces, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 2 * ALIGN + 9), min_size=1, max_size=4),
       record=st.integers(0, 3), seed=st.integers(0, 2**16),
       paged=st.lists(st.booleans(), min_size=1, max_size=4))
def test_records_at_an_offset_are_padded_not_cut(
    where: Path, sizes: list[int], record: int, seed: int, paged: list[bool]
) -> None:
    """A record write fills whole blocks at its offset and leaves the rest of the file alone."""
    files = DirectFiles(block=2 * ALIGN)
    pieces = _pieces(sizes, seed, paged)
    path = where / "records"
    before = np.random.default_rng(seed + 1).integers(0, 256, 12 * ALIGN, dtype=np.uint8)
    path.write_bytes(before.tobytes())
    fd = files.open(path, os.O_RDWR)
    try:
        assert files.write(fd, pieces, record * ALIGN) == sum(sizes)
        back = [np.empty_like(p) for p in pieces]
        files.read(fd, back, record * ALIGN)
    finally:
        os.close(fd)
    data = b"".join(p.tobytes() for p in pieces)
    padded = -(-len(data) // ALIGN) * ALIGN
    start = record * ALIGN
    after = path.read_bytes()
    assert after[start : start + len(data)] == data
    assert after[start + len(data) : start + padded] == bytes(padded - len(data))
    assert after[:start] == before.tobytes()[:start]
    assert after[start + padded :] == before.tobytes()[start + padded :]
    for got, want in zip(back, pieces, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


def test_raw_tier_moves_records_with_o_direct(where: Path) -> None:
    import fcntl

    spec = StateSpec({"u": ((2, 30, 20), "float32")})
    tier = RawTier(where / "raw.bin", spec, records=2)
    assert tier.direct
    assert tier._fd is not None and fcntl.fcntl(tier._fd, fcntl.F_GETFL) & os.O_DIRECT
    assert not RawTier(where / "raw2.bin", spec, direct=False).direct
    with pytest.raises(ArgumentTypeError, match="direct must be True, False or None, got 1"):
        RawTier(where / "raw3.bin", spec, direct=1)  # type: ignore[arg-type]


def test_reading_past_the_end_is_an_error(where: Path) -> None:
    files = DirectFiles(block=ALIGN)
    path = where / "short"
    path.write_bytes(b"a" * 5000)
    fd = files.open(path, os.O_RDONLY)
    try:
        with pytest.raises(EOFError, match="ends at byte 5000"):
            files.read(fd, [np.empty(4000, np.uint8), np.empty(2000, np.uint8)])
        with pytest.raises(EOFError, match="ends at byte 5000"):  # a page-aligned piece, no bounce
            files.read(fd, [aligned_empty(3 * ALIGN)])
    finally:
        os.close(fd)


def test_block_must_be_aligned() -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        DirectFiles(block=1000)


def test_aligned_empty_is_aligned() -> None:
    for n in (1, ALIGN, 3 * ALIGN + 1):
        a = _direct.aligned_empty(n)
        assert a.nbytes == n and a.ctypes.data % ALIGN == 0


def _spy_open(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    opened: list[tuple[str, int]] = []
    real = os.open

    def spy(path: Any, flags: int, *args: Any) -> int:
        opened.append((str(path), flags))
        return real(path, flags, *args)

    monkeypatch.setattr(_direct.os, "open", spy)
    return opened


@pytest.mark.parametrize("compression", [None, "zstd:level=1"])
async def test_zarr_tier_moves_shards_with_o_direct(
    where: Path, monkeypatch: pytest.MonkeyPatch, compression: Any
) -> None:
    spec = StateSpec({"u": ((2, 300, 200), "float32"), "n": ((3,), "int64")})
    tier = ZarrTier(where / f"z-{compression}", spec, compression, overwrite=True)
    assert tier.direct
    opened = _spy_open(monkeypatch)
    state = {"u": np.random.default_rng(1).random((2, 300, 200)).astype(np.float32),
             "n": np.arange(3)}
    await tier.put(4, state)
    out = empty_like(spec)
    await tier.get(4, out)
    for key, want in state.items():
        np.testing.assert_array_equal(out[key], want, strict=True)
    shards = [(p, f) for p, f in opened if "/u/c." in p]
    assert len(shards) == 2  # the write and the read of u's shard, both direct
    assert all(f & os.O_DIRECT for _, f in shards)
    await tier.close()


async def test_page_cache_and_direct_read_each_others_files(where: Path) -> None:
    spec = StateSpec({"u": ((2, 64, 48), "float64")})
    state = {"u": np.random.default_rng(2).random((2, 64, 48))}
    for first, second in ((False, True), (True, False)):
        path = where / f"cross-{first}"
        tier = ZarrTier(path, spec, direct=first, overwrite=True)
        assert tier.direct is first
        await tier.put(1, state)
        await tier.close()
        again = ZarrTier(path, spec, direct=second)
        out = empty_like(spec)
        await again.get(1, out)
        np.testing.assert_array_equal(out["u"], state["u"], strict=True)
        await again.close()


def test_direct_argument_is_checked() -> None:
    spec = StateSpec({"u": ((4,), "float32")})
    with pytest.raises(ArgumentTypeError, match="direct must be True, False or None, got 'yes'"):
        ZarrTier(MemoryStore(), spec, direct="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="direct=True needs a writable local directory"):
        ZarrTier(MemoryStore(), spec, direct=True)
    assert ZarrTier(MemoryStore(), spec).direct is False  # auto: not a local directory


def test_a_refused_direct_tier_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """direct=True where the file system has no O_DIRECT (tmpfs, many network file systems)
    is refused after the store was made: its directory, group and arrays stayed."""
    monkeypatch.setattr(_direct, "direct_supported", lambda directory: False)
    spec = StateSpec({"u": ((2, 16, 16), "float32")})
    with pytest.raises(InvalidArgumentError, match="direct=True"):
        ZarrTier(tmp_path / "new", spec, direct=True)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="direct=True"):
        ZarrTier(tmp_path / "empty", spec, direct=True)
    assert list((tmp_path / "empty").iterdir()) == []
