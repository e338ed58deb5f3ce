"""How the zarr tier lays a checkpoint out on the store: chunks, shards and the shard index.

Each field of the state is one zarr array. A field's *chunk shape* is its own spatial shape:
leading axes shorter than 4 (time levels, e.g. the two levels of a ``(2, ny, nx)`` wave state)
are split off, so each level is its own 2-D (or 3-D) chunk. This matters for ZFP, which codes in
4^d blocks: a ``(1, ny, nx)`` or ``(2, ny, nx)`` chunk is coded as 3-D with padding (6.7x instead
of 11.6x at the same tolerance, and 4x slower; measured on the project's machines). The array
stacks chunks along the first axis: a field of spatial shape ``(ny, nx)`` with ``L`` levels is
an array of shape ``(R*L*ny, nx)`` with chunks ``(ny, nx)``; checkpoint row ``r`` holds chunks
``r*L … r*L + L - 1`` (``R`` is :data:`MAX_ROWS`; rows are handed out by :mod:`amcheck.storage._step_index`).

Those ``L`` chunks are one **shard** (zarr's sharding codec, shard shape ``(L*ny, nx)``): one file
per checkpoint and field, the levels back to back followed by the shard index (an (offset,
nbytes) pair per level and a crc32c), each level still coded as its own 2-D chunk. Chunk keys
use the ``"."`` separator (``u/c.<row>.0``), so a row is a file, not a directory with a file per
level: a 1 MB two-level checkpoint creates one file on a fresh store instead of two files and two
directories. Plain ``zarr.open_group`` reads it all back (tested).

This module builds and checks those bytes in memory: :class:`Layout` (the shapes),
:class:`FieldArray` (a field's array: layout, key encoding, codec), :class:`Part` (one field of
one checkpoint on its way, with the caller's memory), and the shard index as zarr's sharding
codec writes it with its default ``index_codecs`` (little-endian bytes, crc32c) and
``index_location="end"``. Moving the bytes is :mod:`amcheck.storage._local_io` (local files) or
the store's ``set``/``get`` (:mod:`amcheck.storage._zarr`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from amcheck.storage._checksum import ChecksumError, check_identity, crc_bytes, crc_value
from amcheck.storage._chunk_codec import ChunkCodec
from amcheck.storage._codecs import zfp_tolerance_floor

__all__ = [
    "BIG_CHUNK",
    "BIG_PLAIN_CHUNK",
    "KEY_ENCODING",
    "MAX_ROWS",
    "FieldArray",
    "Layout",
    "Part",
    "index_nbytes",
    "missing",
    "parse_index",
    "shard_index",
    "shard_pieces",
]

#: Rows (checkpoints held at once) each field array is declared with.
MAX_ROWS = 2**20

#: Chunk keys ``<field>/c.<row>.0``: with zarr's default "/" separator every row would be a
#: directory of its own (creating one took 0.1-0.5 ms on the benchmark machine).
KEY_ENCODING = {"name": "default", "separator": "."}

#: Levels of at least this many bytes (256 KiB) get pool jobs of their own (so large levels code,
#: write and read in parallel); smaller fields share one job per transfer.
BIG_CHUNK = 1 << 18

#: The same threshold for an uncompressed level (4 MiB): there is no coding to share out, and a
#: pool job and a file open cost more than writing a smaller level (0.2-0.4 ms against 0.15 ms
#: for 0.5 MiB into the page cache, measured here), so smaller plain levels move in one job.
BIG_PLAIN_CHUNK = 1 << 22

#: The shard index's entry for an inner chunk that is not there (zarr's sharding spec).
_NO_CHUNK = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Layout:
    """How one field maps onto its zarr array."""

    name: str
    levels: int  # inner chunks per checkpoint (one shard)
    chunk: tuple[int, ...]  # one inner chunk: the field's spatial shape
    empty: bool  # zero elements: nothing to store

    @classmethod
    def of(cls, name: str, shape: tuple[int, ...]) -> Layout:
        """The layout of field ``name`` of ``shape``: leading axes shorter than 4 are levels."""
        rest = shape if shape else (1,)
        lead: list[int] = []
        while len(rest) > 1 and rest[0] < 4:
            lead.append(rest[0])
            rest = rest[1:]
        empty = math.prod(shape) == 0
        return cls(name, math.prod(lead), tuple(rest), empty)

    @property
    def shard(self) -> tuple[int, ...]:
        """One checkpoint of the field: its levels stacked along the first axis."""
        return (self.levels * self.chunk[0], *self.chunk[1:])

    @property
    def array_shape(self) -> tuple[int, ...]:
        """The field's array: :data:`MAX_ROWS` shards stacked along the first axis."""
        return (MAX_ROWS * self.levels * self.chunk[0], *self.chunk[1:])

    def shard_coords(self, row: int) -> tuple[int, ...]:
        """The shard grid coordinates of checkpoint row ``row``."""
        return (row, *((0,) * (len(self.chunk) - 1)))

    def level_views(self, array: np.ndarray) -> list[np.ndarray]:
        """The field's inner chunks (one per level) as views of ``array``."""
        stacked = array.reshape(self.shard)
        span = self.chunk[0]
        return [stacked[level * span : (level + 1) * span] for level in range(self.levels)]


@dataclass(slots=True)
class FieldArray:
    """A field's array: its layout, chunk key encoding and codecs."""

    layout: Layout
    metadata: Any  # zarr ArrayV3Metadata
    codec: ChunkCodec  # one inner chunk (one level)
    pipeline: Any  # zarr's codec pipeline of whole shards: used only when ``sync`` is False
    shard_spec: Any  # zarr's ArraySpec of one shard
    sync: bool  # amcheck codes the shards itself (else zarr's pipeline does)
    peak_tol: float | None  # "zfp:rtol=": the ZFP tolerance is peak_tol * max|field| per put
    #: The index that ends a shard when the codec is plain (every level ``stride`` bytes), and
    #: its crc32c: the same for every checkpoint, so built once.
    plain_index: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.plain_index = np.concatenate(shard_index([self.stride] * self.layout.levels))

    def key(self, row: int) -> str:
        """Store key of the row's shard: ``<field>/c.<row>.0``."""
        return f"{self.layout.name}/{self.metadata.encode_chunk_key(self.layout.shard_coords(row))}"

    @property
    def stride(self) -> int:
        """Bytes one stored inner chunk takes when the codec is plain (payload and crc32c)."""
        return int(self.codec.nbytes) + (4 if self.codec.crc else 0)

    @property
    def plain_nbytes(self) -> int:
        """Bytes of a whole shard when the codec is plain (levels, then the index)."""
        return self.layout.levels * self.stride + index_nbytes(self.layout.levels)


@dataclass(slots=True)
class Part:
    """One field of one checkpoint (one shard) on its way to or from the store.

    The crc32c of each stored level is the checkpoint's identity: a put fills :attr:`crcs`
    with the values it computes anyway (the tier records them with the step), a get is given
    them back as :attr:`expected` and checks every level's stored crc32c against them, so an
    intact shard of another checkpoint (swapped files, a lost write into a reused row's file)
    is an error, not a wrong state.
    """

    field: FieldArray
    key: str
    levels: list[np.ndarray]  # the caller's memory: the state's levels (put) or out's (get)
    tolerance: float | None = None  # ZFP tolerance of this put ("zfp:rtol=")
    #: Get: each level's crc32c as recorded at its put (``None``: not recorded, not checked).
    expected: tuple[int, ...] | None = None
    #: Put: each level's crc32c as stored, set as levels are coded (parallel jobs set their own).
    crcs: list[int | None] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.crcs = [None] * len(self.levels)

    def note_crcs(self, coded: list[list[np.ndarray]], levels: range) -> None:
        """Put: keep the crc32c that ends each coded level of ``levels`` (its pieces in ``coded``)."""
        if self.field.codec.crc:
            for level, pieces in zip(levels, coded, strict=True):
                self.crcs[level] = crc_value(pieces[-1])

    def expected_crc(self, level: int) -> int | None:
        """Get: the crc32c recorded for ``level`` at the put, or ``None``."""
        return None if self.expected is None else self.expected[level]

    def check_stored_crcs(self, stored: np.ndarray, table: np.ndarray) -> None:
        """Get: check each level's stored crc32c (a whole shard, its :func:`parse_index`)
        against the recorded ones; for shards zarr's own pipeline decodes (and checks)."""
        if self.expected is None or not self.field.codec.crc:
            return
        for level, (offset, size) in enumerate(table.tolist()):
            try:
                check_identity(stored[offset + size - 4 : offset + size], self.expected[level])
            except ChecksumError as exc:
                raise ChecksumError(f"shard {self.key}, level {level}: {exc}") from None

    @property
    def big(self) -> bool:
        """Whether each level gets pool jobs of its own (:data:`BIG_CHUNK`, :data:`BIG_PLAIN_CHUNK`)."""
        return self.levels[0].nbytes >= (BIG_PLAIN_CHUNK if self.field.codec.plain else BIG_CHUNK)

    def scale(self) -> None:
        """Before a ZFP put: refuse NaN and infinity, and set the tolerance of a
        ``"zfp:rtol="`` put, rtol * max|field| of this checkpoint.

        Raises
        ------
        ValueError
            The field holds NaN or infinity. ZFP cannot code them: they came back as about ±2,
            and the finite values of their 4^d block were clipped (measured with "zfp:tol=1e-3").
        """
        codec = self.field.codec
        if not codec.zfp:
            return
        peak = _peak(self.levels)
        if not math.isfinite(peak):
            raise ValueError(
                f"field {self.field.layout.name!r} holds NaN or infinity, which zfp cannot code "
                "(they and the values near them would come back wrong); use a lossless codec "
                "for this field's data"
            )
        rtol = self.field.peak_tol
        if rtol is not None and codec.zfp_accuracy:
            # not below the tolerance zfp meets on this dtype (a field whose peak is within
            # 1/rtol of it: its error is then up to the floor, as documented)
            self.tolerance = max(rtol * peak, zfp_tolerance_floor(codec.dtype))

    def encode(self) -> list[np.ndarray]:
        """The whole shard as pieces to write back to back (scaling the tolerance first)."""
        self.scale()
        coded = [self.field.codec.encode(x, self.tolerance) for x in self.levels]
        self.note_crcs(coded, range(len(coded)))
        return shard_pieces(coded)

    def decode_level(self, stored: np.ndarray, table: np.ndarray, level: int) -> None:
        """Decode one level of a stored shard (``table``: its :func:`parse_index`) into place."""
        offset, size = (int(v) for v in table[level])
        try:
            self.field.codec.decode_into(
                stored[offset : offset + size], self.levels[level], self.expected_crc(level)
            )
        except ChecksumError as exc:
            raise ChecksumError(f"shard {self.key}, level {level}: {exc}") from None

    def decode(self, stored: np.ndarray) -> None:
        """Check a stored shard's index and decode every level into the caller's memory."""
        table = parse_index(stored, self.field.layout.levels, self.key)
        for level in range(self.field.layout.levels):
            self.decode_level(stored, table, level)


def index_nbytes(levels: int) -> int:
    """Bytes of a shard index: an (offset, nbytes) uint64 pair per inner chunk and a crc32c."""
    return 16 * levels + 4


def shard_index(sizes: list[int]) -> list[np.ndarray]:
    """The index that ends a shard of inner chunks of ``sizes`` bytes stored back to back.

    zarr's sharding codec with its default ``index_codecs`` (little-endian bytes, crc32c) and
    ``index_location="end"``: a ``(levels, 1, …, 2)`` table of (offset, nbytes) from the start of
    the shard.
    """
    table = np.empty((len(sizes), 2), dtype="<u8")
    table[:, 1] = sizes
    table[:, 0] = np.cumsum([0, *sizes[:-1]])
    raw = table.reshape(-1).view(np.uint8)
    return [raw, crc_bytes(raw)]


def shard_pieces(coded: list[list[np.ndarray]]) -> list[np.ndarray]:
    """A whole shard as pieces to write back to back: each level's coded pieces, the index."""
    sizes = [sum(p.nbytes for p in pieces) for pieces in coded]
    return [p for pieces in coded for p in pieces] + shard_index(sizes)


def parse_index(stored: np.ndarray, levels: int, key: str) -> np.ndarray:
    """The (offset, nbytes) table of a stored shard, checked; raises if it is damaged."""
    n = index_nbytes(levels)
    body = stored.nbytes - n
    if body < 0:
        raise ChecksumError(f"shard {key} holds {stored.nbytes} bytes, too few for its index")
    raw = stored[body : body + n - 4]
    if not np.array_equal(crc_bytes(raw), stored[body + n - 4 :]):
        raise ChecksumError(f"the crc32c of the index of shard {key} does not match")
    table = raw.view("<u8").reshape(levels, 2)
    for level, (offset, size) in enumerate(table.tolist()):
        if offset == _NO_CHUNK:
            raise missing(f"{key}, level {level}")
        if offset + size > body:
            raise ChecksumError(f"shard {key}: level {level} runs past the end of the data")
    return table


def missing(key: str) -> FileNotFoundError:
    """The error for a chunk that is not on the store (zarr would return the fill value)."""
    return FileNotFoundError(f"a chunk of the checkpoint is missing from the store ({key})")


def _peak(levels: list[np.ndarray]) -> float:
    """max |x| over ``levels`` without a temporary array (two passes: max and min); NaN if any."""
    ends = [float(v) for x in levels for v in (x.max(), -x.min())]
    return max(ends) if all(math.isfinite(v) for v in ends) else math.nan
