"""The zarr v3 disk tier: one shard per checkpoint and field, one inner chunk per time level.

Layout
------
The store holds one zarr group. Its attributes (``attrs["amcheck"]``) record the format, amcheck's
version, the state spec (:meth:`StateSpec.to_json`), the compression and the **index**: which row
holds which step, and how many bytes it takes. Each field of the state is one zarr array.

A field's *chunk shape* is its own spatial shape: leading axes shorter than 4 (time levels, e.g.
the two levels of a ``(2, ny, nx)`` wave state) are split off, so each level is its own 2-D (or
3-D) chunk. This matters for ZFP, which codes in 4^d blocks: a ``(1, ny, nx)`` or ``(2, ny, nx)``
chunk is coded as 3-D with padding (6.7x instead of 11.6x at the same tolerance, and 4x slower;
see FIELD-NOTES). The array stacks chunks along the first axis: a field of spatial shape
``(ny, nx)`` with ``L`` levels is an array of shape ``(R*L*ny, nx)`` with chunks ``(ny, nx)``;
checkpoint row ``r`` holds chunks ``r*L … r*L + L - 1``.

Those ``L`` chunks are one **shard** (zarr's sharding codec, shard shape ``(L*ny, nx)``): one file
per checkpoint and field, the levels back to back followed by the shard index (an (offset,
nbytes) pair per level and a crc32c), each level still coded as its own 2-D chunk. Chunk keys
use the ``"."`` separator (``u/c.<row>.0``), so a row is a file, not a directory with a file per
level: a 1 MB two-level checkpoint creates one file on a fresh store instead of two files and two
directories. Plain ``zarr.open_group`` reads it all back (tested).

Steps are not known in advance (unknown-length runs), so rows are allocated as checkpoints come:
the arrays are declared with :data:`MAX_ROWS` rows (zarr arrays are sparse: a chunk never written
takes no space and no metadata), a deleted checkpoint's row goes to a free list, and an overwrite
writes a fresh row before dropping the old one (so a failed or over-budget write leaves the old
checkpoint intact). The alternatives measured worse: one new array per checkpoint costs about
3.5 ms of metadata per put (FIELD-NOTES), and growing the arrays with ``resize`` rewrites metadata
and serialises concurrent writers.

Speed
-----
zarr's own ``setitem``/``getitem`` cost about 7 ms per 1 MB put here, 6.3 ms of it in its chunk
write (a chunk-sized allocation and copy, a thread hop per codec, the crc32c appended with another
copy, a temporary file and a rename), and its reads land in fresh allocations that are copied out.
So this tier codes each chunk itself with the array's own codecs (:class:`ChunkCodec`, the same
codec calls zarr makes, so the bytes are what zarr writes), builds the shard index itself, and on a
local directory moves the bytes with ``pwritev``/``preadv`` from and into the caller's arrays:
uncompressed, no copy at all. Levels of 256 KiB or more get one pool job each (uncompressed, each
job writes or reads its level at its known offset in the shard; compressed, the levels are coded
in parallel and the shard written in one call), so the two levels of a large state use both
cores. File creation and unlinking are the costly operations on the
benchmark machine's ext4 (0.4-0.7 ms and 2.7 ms), so a freed row's files are rewritten in place by
the next checkpoint and only removed on close. The step index lives in the group attributes and
is written at most every ``index_interval`` seconds and on flush/close; a row a saved index may
refer to is not reused before the next save, so a reopened store never maps a step to another
step's data.

Integrity: every chunk ends with a crc32c checksum, checked on every read, and a read checks that
every chunk of the checkpoint exists (zarr would silently return the fill value for a missing
chunk).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from amcheck.storage._codecs import (
    ChecksumError,
    ChunkCodec,
    Compression,
    CompressionLike,
    crc_bytes,
    parse_compression,
    quiet_numcodecs,
)
from amcheck.storage._tier import Tier

from amcheck._bytes import ByteSize, format_bytes, parse_bytes
from amcheck._errors import (
    ArgumentTypeError,
    CheckpointNotFoundError,
    InvalidArgumentError,
    StoreMismatchError,
    SweepStateError,
    TierFullError,
    TransferError,
)
from amcheck._state import State, StateSpec
from amcheck._validate import check_int

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["FORMAT", "MAX_ROWS", "ZarrTier"]

#: Rows (checkpoints held at once) each field array is declared with.
MAX_ROWS = 2**20

#: Format tag written into the store's attributes.
FORMAT = "amcheck.zarr-tier/2"

#: Chunk keys ``<field>/c.<row>.0``: with zarr's default "/" separator every row would be a
#: directory of its own (creating one took 0.1-0.5 ms on the benchmark machine).
_KEY_ENCODING = {"name": "default", "separator": "."}

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_T = TypeVar("_T")


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code, also when a loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="amcheck-zarr-open")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one field maps onto its zarr array."""

    name: str
    levels: int  # inner chunks per checkpoint (one shard)
    chunk: tuple[int, ...]  # one inner chunk: the field's spatial shape
    empty: bool  # zero elements: nothing to store

    @classmethod
    def of(cls, name: str, shape: tuple[int, ...]) -> _Layout:
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
        return (MAX_ROWS * self.levels * self.chunk[0], *self.chunk[1:])

    def shard_coords(self, row: int) -> tuple[int, ...]:
        return (row, *((0,) * (len(self.chunk) - 1)))

    def level_views(self, array: np.ndarray) -> list[np.ndarray]:
        """The field's inner chunks (one per level) as views of ``array``."""
        stacked = array.reshape(self.shard)
        span = self.chunk[0]
        return [stacked[level * span : (level + 1) * span] for level in range(self.levels)]


@dataclass(slots=True)
class _Field:
    """A field's array: its layout, chunk key encoding and codecs."""

    layout: _Layout
    metadata: Any  # zarr ArrayV3Metadata
    codec: ChunkCodec  # one inner chunk (one level)
    pipeline: Any  # zarr's codec pipeline of whole shards: used only when ``sync`` is False
    shard_spec: Any  # zarr's ArraySpec of one shard
    sync: bool  # amcheck codes the shards itself (else zarr's pipeline does)
    peak_tol: float | None  # "zfp:rtol=": the ZFP tolerance is peak_tol * max|field| per put

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
        return self.layout.levels * self.stride + _index_nbytes(self.layout.levels)


@dataclass(slots=True)
class _Part:
    """One field of one checkpoint (one shard) on its way to or from the store."""

    field: _Field
    key: str
    levels: list[np.ndarray]  # the caller's memory: the state's levels (put) or out's (get)
    tolerance: float | None = None  # ZFP tolerance of this put ("zfp:rtol=")

    @property
    def big(self) -> bool:
        return self.levels[0].nbytes >= _BIG_CHUNK


#: Levels of at least this many bytes (256 KiB) get pool jobs of their own (so large levels code,
#: write and read in parallel); smaller fields share one job per transfer.
_BIG_CHUNK = 1 << 18

#: The shard index's entry for an inner chunk that is not there (zarr's sharding spec).
_NO_CHUNK = 2**64 - 1


def _index_nbytes(levels: int) -> int:
    """Bytes of a shard index: an (offset, nbytes) uint64 pair per inner chunk and a crc32c."""
    return 16 * levels + 4


def _shard_index(sizes: list[int]) -> list[np.ndarray]:
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


def _shard_pieces(coded: list[list[np.ndarray]]) -> list[np.ndarray]:
    """A whole shard as pieces to write back to back: each level's coded pieces, the index."""
    sizes = [sum(p.nbytes for p in pieces) for pieces in coded]
    return [p for pieces in coded for p in pieces] + _shard_index(sizes)


def _parse_index(stored: np.ndarray, levels: int, key: str) -> np.ndarray:
    """The (offset, nbytes) table of a stored shard, checked; raises if it is damaged."""
    n = _index_nbytes(levels)
    body = stored.nbytes - n
    if body < 0:
        raise ChecksumError(f"shard {key} holds {stored.nbytes} bytes, too few for its index")
    raw = stored[body : body + n - 4]
    if not np.array_equal(crc_bytes(raw), stored[body + n - 4 :]):
        raise ChecksumError(f"the crc32c of the index of shard {key} does not match")
    table = raw.view("<u8").reshape(levels, 2)
    for level, (offset, size) in enumerate(table.tolist()):
        if offset == _NO_CHUNK:
            raise _missing(f"{key}, level {level}")
        if offset + size > body:
            raise ChecksumError(f"shard {key}: level {level} runs past the end of the data")
    return table


def _pwritev_all(fd: int, pieces: list[np.ndarray], offset: int = 0) -> int:
    """Write ``pieces`` back to back from ``offset``; the number of bytes written."""
    buffers = [p.data.cast("B") for p in pieces if p.nbytes]
    total = sum(len(b) for b in buffers)
    while buffers:
        done = os.pwritev(fd, buffers, offset)
        offset += done
        while buffers and done >= len(buffers[0]):
            done -= len(buffers[0])
            buffers = buffers[1:]
        if buffers and done:
            buffers = [buffers[0][done:], *buffers[1:]]
    return total


def _preadv_all(fd: int, pieces: list[np.ndarray], offset: int = 0) -> None:
    """Fill ``pieces`` from ``offset``; a short file raises ``EOFError``."""
    buffers = [p.data.cast("B") for p in pieces if p.nbytes]
    while buffers:
        done = os.preadv(fd, buffers, offset)
        if done == 0:
            raise EOFError(f"the chunk file ends at byte {offset}")
        offset += done
        while buffers and done >= len(buffers[0]):
            done -= len(buffers[0])
            buffers = buffers[1:]
        if buffers and done:
            buffers = [buffers[0][done:], *buffers[1:]]


def _peak(levels: list[np.ndarray]) -> float:
    """max |x| over ``levels`` without a temporary array (two passes: max and min); NaN if any."""
    ends = [float(v) for x in levels for v in (x.max(), -x.min())]
    return max(ends) if all(math.isfinite(v) for v in ends) else math.nan


def _missing(key: str) -> FileNotFoundError:
    return FileNotFoundError(f"a chunk of the checkpoint is missing from the store ({key})")


def _open_store(store: Any) -> tuple[Store, bool, str]:
    """The zarr store for ``store``, whether amcheck owns it, and a path for messages."""
    from zarr.abc.store import Store as StoreABC
    from zarr.storage import LocalStore

    if isinstance(store, StoreABC):
        return store, False, str(store)
    if isinstance(store, str) and "://" in store:
        if store.startswith("file://"):
            path = store[len("file://") :]
            return LocalStore(path), True, store
        try:
            import fsspec  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            raise InvalidArgumentError(
                f"store {store!r} is a URL, which needs fsspec (and the filesystem's own package, "
                "e.g. s3fs); install it with `pip install fsspec`, or pass a local path"
            ) from None
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(store), True, store
    if isinstance(store, (str, os.PathLike)):
        local = Path(store)
        if local.exists() and not local.is_dir():
            raise InvalidArgumentError(f"store {str(local)!r} exists and is not a directory")
        return LocalStore(local), True, str(local)
    raise ArgumentTypeError(
        "store must be a local path, an fsspec URL or a zarr.storage store, "
        f"got {store!r} of type {type(store).__name__}"
    )


class ZarrTier(Tier):
    """Checkpoints in a zarr v3 store, one chunk per checkpoint, time level and field.

    Parameters
    ----------
    store
        Where: a local directory (``str`` or path, created if missing; the default use), a
        ``zarr.storage`` store (``MemoryStore`` for tests, ``LocalStore``, ...), or an fsspec URL
        such as ``"s3://bucket/run1"`` (needs ``fsspec``).
    spec
        The state layout.
    compression
        ``None`` (default: raw bytes, fastest on 2 cores), ``"blosc"``, ``"zstd"``,
        ``"zfp:tol=1e-4"`` (absolute error bound), ``"zfp:rtol=1e-3"`` (error bound relative to
        each checkpoint's max|field|), ``"zfp:rate=8"``, ``"bitround:keepbits=12"``,
        or codec objects; see :func:`amcheck.storage.parse_compression`.
    overwrite
        Whether an existing store written for another spec or compression (or holding something
        else) may be **erased** and reused. Without it, such a store raises
        :class:`StoreMismatchError`; a store written with the same spec and compression is
        reopened with its checkpoints.
    budget
        Bytes the held checkpoints may take on the store (after compression), e.g. ``"20 GiB"``;
        ``None`` for no limit. A put that would exceed it raises :class:`TierFullError` and leaves
        the tier as it was.
    index_interval
        Seconds between writes of the step index into the store's metadata while checkpoints
        come and go (it is always written by :meth:`flush` and :meth:`close`). ``0`` writes it
        after every put and delete (about 1 ms each on a local disk). A process that dies
        without ``close`` loses, on reopen, at most the checkpoints of the last
        ``index_interval`` seconds; it never gets a wrong one back.
    name
        Tier name in statistics and messages.

    Raises
    ------
    StoreMismatchError
        The store holds checkpoints of another spec or compression, or other data.
    InvalidArgumentError, ArgumentTypeError
        A bad argument; the message names it.

    Notes
    -----
    Calls are coroutines: run them on one event loop at a time (the transfer service's). Coding
    and file I/O run in the loop's default executor (the transfer service's bounded pool): each
    level of 256 KiB or more is one pool job, so the levels of a large state are coded in
    parallel. Each checkpoint of a field is one shard (one file or object), keys
    ``<field>/c.<row>.0``. On a local directory chunks are written and read with
    ``pwritev``/``preadv`` from and into the caller's arrays (uncompressed: no copy at all); on
    other stores through the store's ``set``/``get``. Up to :data:`MAX_ROWS` checkpoints can be
    held at once.
    """

    is_persistent = True

    def __init__(
        self,
        store: Any,
        spec: StateSpec,
        compression: CompressionLike = None,
        *,
        overwrite: bool = False,
        budget: ByteSize | None = None,
        index_interval: float = 1.0,
        name: str = "disk",
    ) -> None:
        if not isinstance(spec, StateSpec):
            raise ArgumentTypeError(f"spec must be a StateSpec, got {type(spec).__name__}")
        if not isinstance(overwrite, bool):
            raise ArgumentTypeError(f"overwrite must be a bool, got {overwrite!r}")
        if isinstance(index_interval, bool) or not isinstance(index_interval, (int, float)):
            raise ArgumentTypeError(
                f"index_interval must be a number of seconds, got {index_interval!r}"
            )
        if not (0 <= index_interval < math.inf):
            raise InvalidArgumentError(
                f"index_interval must be a finite number of seconds >= 0, got {index_interval!r}"
            )
        for key in spec:
            if not _NAME.match(key) or key.startswith("__"):
                raise InvalidArgumentError(
                    f"spec field name {key!r} cannot name a zarr array; use letters, digits, "
                    "'_', '.' and '-' (not starting with '.', '-' or '__')"
                )
        self.spec = spec
        self.name = name
        self.index_interval = float(index_interval)
        self.compression: Compression = parse_compression(compression)
        self._budget = None if budget is None else parse_bytes(budget, "budget")
        self._layouts = {key: _Layout.of(key, f.shape) for key, f in spec.items()}
        self._store, self._owns_store, self.path = _open_store(store)
        self._root: Path | None = None  # set for a writable local directory: direct file I/O
        self._fields: dict[str, _Field] = {}
        self._index: dict[int, tuple[int, int]] = {}  # step -> (row, stored bytes)
        self._free_rows: list[int] = []  # rows no saved index refers to: reusable
        self._limbo_rows: list[int] = []  # rows dropped since the last index save
        self._next_row = 0
        self._nbytes = 0
        self._closed = False
        self._dirs: set[str] = set()
        self._index_version = 0
        self._saved_version = 0
        self._saved_at = -math.inf
        self._group: tuple[asyncio.AbstractEventLoop, Any] | None = None
        self._index_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        with quiet_numcodecs():
            run_sync(self._open(overwrite))

    # -- opening -------------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        import amcheck

        return {
            "format": FORMAT,
            "version": amcheck.__version__,
            "spec": self.spec.to_json(),
            "compression": self.compression.text,
            "max_rows": MAX_ROWS,
        }

    def _attrs(self) -> dict[str, Any]:
        header = self._header()
        header["index"] = {str(step): [row, nb] for step, (row, nb) in self._index.items()}
        return {"amcheck": header}

    async def _open(self, overwrite: bool) -> None:
        import zarr.api.asynchronous as za

        try:
            empty = await self._store.is_empty("")
            reopened = False
            if not empty:
                group = await za.open_group(store=self._store, mode="r+", zarr_format=3)
                found = dict(group.attrs).get("amcheck")
                problem = self._mismatch(found)
                if problem is None and isinstance(found, dict):
                    arrays = {k: await group.getitem(k) for k, lay in self._layouts.items()
                              if not lay.empty}
                    reopened = True
                elif not overwrite:
                    raise StoreMismatchError(
                        f"zarr tier {self.name!r} at {self.path}: {problem}; pass overwrite=True "
                        "to erase it, or use another store"
                    )
            if not reopened:
                group = await za.open_group(
                    store=self._store, mode="w", zarr_format=3, attributes=self._attrs()
                )
                arrays = {}
                for key, layout in self._layouts.items():
                    if layout.empty:
                        continue
                    arrays[key] = await group.create_array(
                        key,
                        shape=layout.array_shape,
                        dtype=self.spec[key].dtype,
                        chunks=layout.chunk,
                        shards=layout.shard,
                        chunk_key_encoding=_KEY_ENCODING,  # type: ignore[arg-type]
                        fill_value=0,
                        config={"write_empty_chunks": True},
                        attributes={"levels": layout.levels},
                        **self.compression.codecs_for(self.spec[key].dtype),
                    )
            self._fields = {key: self._field(key, arr) for key, arr in arrays.items()}
            self._use_local_files()
            if reopened and isinstance(found, dict):
                await self._load_index(found)
        except (StoreMismatchError, InvalidArgumentError, ArgumentTypeError):
            raise
        except Exception as exc:
            if isinstance(exc, OSError):
                raise TransferError(
                    f"zarr tier {self.name!r}: could not open the store at {self.path}: {exc}"
                ) from exc
            if type(exc).__name__ in ("ContainsArrayError", "GroupNotFoundError",
                                      "NodeTypeValidationError", "ZarrUserWarning"):
                raise StoreMismatchError(
                    f"zarr tier {self.name!r} at {self.path}: the store holds something other "
                    f"than an amcheck checkpoint group ({exc}); pass overwrite=True to erase it"
                ) from exc
            raise

    def _field(self, key: str, array: Any) -> _Field:
        from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
        from zarr.core.array import create_codec_pipeline
        from zarr.core.array_spec import ArrayConfig
        from zarr.core.buffer import default_buffer_prototype

        metadata = array.metadata
        layout = self._layouts[key]
        codecs = tuple(metadata.codecs)
        sharding = codecs[0] if len(codecs) == 1 else None
        if (
            not isinstance(sharding, ShardingCodec)
            or tuple(sharding.chunk_shape) != layout.chunk
            or tuple(metadata.shards) != layout.shard
            or tuple(metadata.shape) != layout.array_shape
        ):
            raise StoreMismatchError(
                f"zarr tier {self.name!r} at {self.path}: array {key!r} has shape "
                f"{metadata.shape}, shards {metadata.shards} and chunks {metadata.chunks}, "
                f"expected {layout.array_shape}, {layout.shard} and {layout.chunk}; pass "
                "overwrite=True to erase it"
            )
        shard_spec = metadata.get_chunk_spec(
            layout.shard_coords(0), ArrayConfig("C", True), default_buffer_prototype()
        )
        codec = ChunkCodec(sharding.codecs, sharding._get_chunk_spec(shard_spec))
        index = tuple(sharding.index_codecs)
        index_ok = (
            len(index) == 2
            and isinstance(index[0], BytesCodec)
            and getattr(index[0].endian, "value", index[0].endian) in ("little", None)
            and isinstance(index[1], Crc32cCodec)
            and getattr(sharding.index_location, "value", sharding.index_location) == "end"
        )
        return _Field(
            layout, metadata, codec, create_codec_pipeline(metadata), shard_spec,
            codec.sync and index_ok, self.compression.peak_tol,
        )

    def _use_local_files(self) -> None:
        from zarr.storage import LocalStore

        store = self._store
        if type(store) is LocalStore and not store.read_only:
            self._root = Path(store.root)

    def _mismatch(self, found: Any) -> str | None:
        if not isinstance(found, dict):
            return "the store holds data that amcheck did not write"
        want = self._header()
        if found.get("format") != FORMAT:
            return f"format {found.get('format')!r}, expected {FORMAT!r}"
        if found.get("spec") != want["spec"]:
            return f"it was written for spec {found.get('spec')}, not {want['spec']}"
        if found.get("compression") != want["compression"]:
            return (
                f"it was written with compression {found.get('compression')!r}, "
                f"not {want['compression']!r}"
            )
        if found.get("max_rows") != MAX_ROWS:
            return f"it has {found.get('max_rows')} rows per array, expected {MAX_ROWS}"
        return None

    async def _load_index(self, found: dict[str, Any]) -> None:
        """Read the saved index; drop checkpoints all of whose chunks are gone.

        Those were deleted (or replaced) after the index was last saved. A checkpoint missing
        only some chunks stays listed, and reading it raises (the store was damaged).
        """
        entries = {int(s): (int(r), int(nb)) for s, (r, nb) in dict(found.get("index", {})).items()}
        keys = {step: self._row_keys(row) for step, (row, _) in entries.items()}
        flat = [k for ks in keys.values() for k in ks]
        present = dict(zip(flat, await asyncio.gather(*(self._exists(k) for k in flat)),
                           strict=True))
        for step, entry in entries.items():
            if not keys[step] or any(present[k] for k in keys[step]):
                self._index[step] = entry
        used = {row for row, _ in entries.values()}
        held = {row for row, _ in self._index.values()}
        self._next_row = max(used) + 1 if used else 0
        self._free_rows = sorted(set(range(self._next_row)) - held, reverse=True)
        self._nbytes = sum(nb for _, nb in self._index.values())
        if len(self._index) != len(entries):
            await self._save_index()

    async def _exists(self, key: str) -> bool:
        if self._root is not None:
            return os.path.exists(self._root / key)
        return bool(await self._store.exists(key))

    # -- helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SweepStateError(f"zarr tier {self.name!r} at {self.path} is closed")

    def _not_found(self, step: int) -> CheckpointNotFoundError:
        return CheckpointNotFoundError(
            f"zarr tier {self.name!r} at {self.path} holds no checkpoint at step {step}; "
            f"it holds steps {sorted(self._index)}"
        )

    def _io_error(self, what: str, step: int, exc: BaseException) -> TransferError:
        error = TransferError(
            f"zarr tier {self.name!r}: {what} of step {step} at {self.path} failed: "
            f"{type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return error

    def _take_row(self) -> int:
        if self._free_rows:
            return self._free_rows.pop()
        if self._next_row >= MAX_ROWS:
            raise TierFullError(
                f"zarr tier {self.name!r} at {self.path} holds {len(self._index)} checkpoints, "
                f"the most it can hold at once ({MAX_ROWS})"
            )
        self._next_row += 1
        return self._next_row - 1

    def _parts(self, state: State, row: int) -> list[_Part]:
        """The row's shards, one per field, with the state's memory."""
        return [
            _Part(fld, fld.key(row), fld.layout.level_views(np.asarray(state[key])))
            for key, fld in self._fields.items()
        ]

    # -- shard I/O (pool threads) ----------------------------------------------------------------

    def _scale(self, part: _Part) -> None:
        """Set the ZFP tolerance of a ``"zfp:rtol="`` put: rtol * max|field| of this checkpoint."""
        rtol = part.field.peak_tol
        if rtol is None or not part.field.codec.zfp_accuracy:
            return
        peak = _peak(part.levels)
        if not math.isfinite(peak):
            raise ValueError(
                f"field {part.field.layout.name!r} holds NaN or infinity: the relative zfp "
                f"tolerance (rtol={rtol!r}) cannot be scaled to it"
            )
        part.tolerance = rtol * peak

    def _write_file(self, key: str, pieces: list[np.ndarray], offset: int = 0,
                    end: bool = True) -> int:
        """Write ``pieces`` into a shard file at ``offset`` (a freed row's file is reused).

        ``end``: these pieces end the shard, so anything a longer earlier shard left after them
        is cut off.
        """
        assert self._root is not None
        path = self._root / key
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            written = _pwritev_all(fd, pieces, offset)
            if end and os.fstat(fd).st_size > offset + written:
                os.ftruncate(fd, offset + written)
            return written
        finally:
            os.close(fd)

    def _write_plain(self, part: _Part, levels: range) -> int:
        """Local directory, plain codec: write ``levels`` of a shard where they belong.

        Every stored level has the same size, so each level's place is known and the levels of a
        large field are written by parallel jobs straight from the caller's arrays.
        """
        fld = part.field
        pieces = [p for i in levels for p in fld.codec.encode(part.levels[i])]
        last = levels.stop == fld.layout.levels
        if last:
            pieces += _shard_index([fld.stride] * fld.layout.levels)
        return self._write_file(part.key, pieces, levels.start * fld.stride, last)

    def _encode(self, part: _Part) -> list[np.ndarray]:
        self._scale(part)
        return _shard_pieces([part.field.codec.encode(x, part.tolerance) for x in part.levels])

    def _put_small(self, parts: list[_Part]) -> list[int] | list[bytes]:
        """Pool job: code (and on a local directory write) the shards of small fields."""
        if self._root is None:
            return [b"".join(p.data.cast("B") for p in self._encode(part)) for part in parts]
        return [
            self._write_plain(part, range(part.field.layout.levels)) if part.field.codec.plain
            else self._write_file(part.key, self._encode(part))
            for part in parts
        ]

    def _read_file(self, key: str) -> np.ndarray:
        assert self._root is not None
        try:
            fd = os.open(self._root / key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise _missing(key) from None
        try:
            stored = np.empty(os.fstat(fd).st_size, np.uint8)
            _preadv_all(fd, [stored])
            return stored
        finally:
            os.close(fd)

    def _read_plain(self, part: _Part, levels: range) -> None:
        """Local directory, plain codec: read ``levels`` straight into the caller's arrays."""
        assert self._root is not None
        fld = part.field
        codec = fld.codec
        crcs = [np.empty(4 if codec.crc else 0, np.uint8) for _ in levels]
        pieces: list[np.ndarray] = []
        for i, crc in zip(levels, crcs, strict=True):
            pieces += [part.levels[i].reshape(-1).view(np.uint8), crc]
        last = levels.stop == fld.layout.levels
        index = np.empty(_index_nbytes(fld.layout.levels), np.uint8)
        if last:
            pieces.append(index)
        try:
            fd = os.open(self._root / part.key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise _missing(part.key) from None
        try:
            size = os.fstat(fd).st_size
            if size != fld.plain_nbytes:
                raise ChecksumError(
                    f"shard {part.key} holds {size} bytes, expected {fld.plain_nbytes}"
                )
            _preadv_all(fd, pieces, levels.start * fld.stride)
        finally:
            os.close(fd)
        if codec.crc:
            for i, crc in zip(levels, crcs, strict=True):
                codec.check_crc(crc, part.levels[i].reshape(-1).view(np.uint8))
        if last:
            expected = b"".join(p.tobytes() for p in _shard_index([fld.stride] * fld.layout.levels))
            if index.tobytes() != expected:
                raise ChecksumError(f"the index of shard {part.key} is not the expected one")

    @staticmethod
    def _decode_level(part: _Part, stored: np.ndarray, table: np.ndarray, level: int) -> None:
        offset, size = (int(v) for v in table[level])
        part.field.codec.decode_into(stored[offset : offset + size], part.levels[level])

    def _decode(self, part: _Part, stored: np.ndarray) -> None:
        table = _parse_index(stored, part.field.layout.levels, part.key)
        for level in range(part.field.layout.levels):
            self._decode_level(part, stored, table, level)

    def _get_small(self, parts: list[_Part], stored: list[np.ndarray] | None) -> None:
        """Pool job: read (local directory) and decode the shards of small fields."""
        for i, part in enumerate(parts):
            if stored is not None:
                self._decode(part, stored[i])
            elif part.field.codec.plain:
                self._read_plain(part, range(part.field.layout.levels))
            else:
                self._decode(part, self._read_file(part.key))

    # -- shard I/O (the loop) --------------------------------------------------------------------

    async def _set(self, key: str, blob: bytes) -> None:
        from zarr.core.buffer import default_buffer_prototype

        await self._store.set(key, default_buffer_prototype().buffer.from_bytes(blob))

    async def _fetch(self, key: str) -> np.ndarray:
        from zarr.core.buffer import default_buffer_prototype

        buf = await self._store.get(key, prototype=default_buffer_prototype())
        if buf is None:
            raise _missing(key)
        return np.asarray(buf.as_numpy_array()).view(np.uint8).reshape(-1)

    async def _put_parts(self, state: State, row: int) -> int:
        """Write the row's shards; the bytes they take."""
        loop = asyncio.get_running_loop()
        parts = self._parts(state, row)
        small = [p for p in parts if p.field.sync and not p.big]
        jobs = [self._put_big(loop, p) for p in parts if p.field.sync and p.big]
        jobs += [self._put_pipeline(p) for p in parts if not p.field.sync]
        if small:
            jobs.append(self._put_small_parts(loop, small))
        return sum(await asyncio.gather(*jobs))

    async def _put_small_parts(self, loop: asyncio.AbstractEventLoop, parts: list[_Part]) -> int:
        done = await loop.run_in_executor(None, self._put_small, parts)
        if self._root is not None:
            return sum(done)  # type: ignore[arg-type]
        blobs: list[bytes] = done  # type: ignore[assignment]
        await asyncio.gather(*(self._set(p.key, b) for p, b in zip(parts, blobs, strict=True)))
        return sum(len(b) for b in blobs)

    async def _put_big(self, loop: asyncio.AbstractEventLoop, part: _Part) -> int:
        """A large field: one pool job per level, then one write of the shard."""
        fld = part.field
        if self._root is not None and fld.codec.plain:
            sizes = await asyncio.gather(*(
                loop.run_in_executor(None, self._write_plain, part, range(i, i + 1))
                for i in range(fld.layout.levels)
            ))
            return sum(sizes)
        if fld.peak_tol is not None:
            await loop.run_in_executor(None, self._scale, part)
        coded = await asyncio.gather(*(
            loop.run_in_executor(None, fld.codec.encode, x, part.tolerance) for x in part.levels
        ))
        pieces = _shard_pieces(list(coded))
        if self._root is not None:
            return await loop.run_in_executor(None, self._write_file, part.key, pieces)
        blob = await loop.run_in_executor(None, b"".join, [p.data.cast("B") for p in pieces])
        await self._set(part.key, blob)
        return len(blob)

    async def _put_pipeline(self, part: _Part) -> int:
        """A codec without synchronous calls: zarr's own pipeline codes the whole shard."""
        spec = part.field.shard_spec
        shard = np.concatenate(part.levels)
        nd = spec.prototype.nd_buffer.from_ndarray_like(shard)
        (encoded,) = await part.field.pipeline.encode([(nd, spec)])
        await self._store.set(part.key, encoded)
        return len(encoded)

    async def _get_parts(self, out: State, row: int) -> None:
        loop = asyncio.get_running_loop()
        parts = self._parts(out, row)
        small = [p for p in parts if p.field.sync and not p.big]
        jobs = [self._get_big(loop, p) for p in parts if p.field.sync and p.big]
        jobs += [self._get_pipeline(p) for p in parts if not p.field.sync]
        if small:
            jobs.append(self._get_small_parts(loop, small))
        await asyncio.gather(*jobs)

    async def _get_small_parts(self, loop: asyncio.AbstractEventLoop, parts: list[_Part]) -> None:
        stored = None
        if self._root is None:
            stored = list(await asyncio.gather(*(self._fetch(p.key) for p in parts)))
        await loop.run_in_executor(None, self._get_small, parts, stored)

    async def _get_big(self, loop: asyncio.AbstractEventLoop, part: _Part) -> None:
        """A large field: read the shard, then decode its levels in parallel pool jobs."""
        fld = part.field
        levels = range(fld.layout.levels)
        if self._root is not None and fld.codec.plain:
            await asyncio.gather(*(
                loop.run_in_executor(None, self._read_plain, part, range(i, i + 1)) for i in levels
            ))
            return
        if self._root is not None:
            stored = await loop.run_in_executor(None, self._read_file, part.key)
        else:
            stored = await self._fetch(part.key)
        table = _parse_index(stored, fld.layout.levels, part.key)
        await asyncio.gather(*(
            loop.run_in_executor(None, self._decode_level, part, stored, table, i) for i in levels
        ))

    async def _get_pipeline(self, part: _Part) -> None:
        from zarr.core.buffer import default_buffer_prototype

        buf = await self._store.get(part.key, prototype=default_buffer_prototype())
        if buf is None:
            raise _missing(part.key)
        (decoded,) = await part.field.pipeline.decode([(buf, part.field.shard_spec)])
        shard = np.asarray(decoded.as_ndarray_like()).reshape(part.field.layout.shard)
        span = part.field.layout.chunk[0]
        for level, array in enumerate(part.levels):
            np.copyto(array, shard[level * span : (level + 1) * span], casting="no")

    async def _delete_keys(self, keys: list[str]) -> None:
        if self._root is not None:
            root = self._root

            def unlink_all() -> None:
                for key in keys:
                    try:
                        os.unlink(root / key)
                    except FileNotFoundError:
                        pass

            await asyncio.get_running_loop().run_in_executor(None, unlink_all)
        else:
            await asyncio.gather(*(self._store.delete(k) for k in keys))

    def _row_keys(self, row: int) -> list[str]:
        return [f.key(row) for f in self._fields.values()]

    async def _drop_row(self, row: int, *, indexed: bool) -> None:
        """Free a row: delete its chunks from the store, or keep its files for reuse.

        On a local directory the files stay until the row is written again (in place) or the
        tier is closed: creating and unlinking files is what costs most there (0.4 ms and 2.7 ms
        each on the machine of ``benchmarks/disk_vs_ram.py``, against 0.1 ms to rewrite one).
        A row a saved index may still refer to (``indexed``) is reused only after the next
        index save, so a reopened store never maps a step to another step's data.
        """
        try:
            if self._root is None:
                await self._delete_keys(self._row_keys(row))
        finally:
            (self._limbo_rows if indexed else self._free_rows).append(row)

    async def _remove_free_files(self) -> None:
        """Delete the kept files of rows no checkpoint holds (on close)."""
        if self._root is None:
            return
        rows = sorted(set(self._free_rows) | set(self._limbo_rows))
        await self._delete_keys([k for row in rows for k in self._row_keys(row)])

    async def _drop_row_quietly(self, row: int) -> None:
        try:
            await self._drop_row(row, indexed=False)
        except Exception:  # noqa: BLE001, S110 - the original error is what the caller needs
            pass

    # -- the index -------------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._index_lock is None or self._index_lock[0] is not loop:
            self._index_lock = (loop, asyncio.Lock())
        return self._index_lock[1]

    async def _save_index(self) -> None:
        """Write the index into the group attributes; concurrent calls coalesce."""
        import zarr.api.asynchronous as za

        self._index_version += 1
        async with self._lock():
            if self._saved_version >= self._index_version:
                return
            version = self._index_version
            limbo, self._limbo_rows = self._limbo_rows, []
            attrs = self._attrs()
            try:
                loop = asyncio.get_running_loop()
                if self._group is None or self._group[0] is not loop:
                    with quiet_numcodecs():
                        group = await za.open_group(store=self._store, mode="r+", zarr_format=3)
                    self._group = (loop, group)
                await self._group[1].update_attributes(attrs)
            except BaseException:
                self._limbo_rows.extend(limbo)
                raise
            self._free_rows.extend(limbo)
            self._saved_version = version
            self._saved_at = time.monotonic()

    async def _index_changed(self) -> None:
        self._index_version += 1
        if time.monotonic() - self._saved_at >= self.index_interval:
            await self._save_index()

    async def flush(self) -> None:
        """Write the step index into the store now, so a reopen finds every checkpoint held.

        Chunk files are not fsync'ed (as zarr's own stores do not): the checkpoints survive the
        process, not a crash of the machine.
        """
        self._check_open()
        if self._saved_version >= self._index_version:
            return
        try:
            await self._save_index()
        except Exception as exc:
            raise TransferError(
                f"zarr tier {self.name!r}: writing the index to {self.path} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # -- Tier interface ------------------------------------------------------------------------

    async def put(self, step: int, state: State) -> None:
        self._check_open()
        step = check_int("step", step, minimum=0)
        self.spec.check(state)
        old = self._index.get(step)
        held = self._nbytes - (old[1] if old else 0)
        if (
            self._budget is not None
            and self.compression.lossless
            and not self.compression.compressors
            and held + self.spec.nbytes > self._budget
        ):
            raise self._full(step, held, self.spec.nbytes)
        row = self._take_row()
        try:
            nbytes = await self._put_parts(state, row)
        except BaseException as exc:
            await self._drop_row_quietly(row)
            if isinstance(exc, Exception):
                raise self._io_error("write", step, exc) from exc
            raise
        old = self._index.get(step)  # may have changed while writing
        held = self._nbytes - (old[1] if old else 0)
        if self._budget is not None and held + nbytes > self._budget:
            await self._drop_row_quietly(row)
            raise self._full(step, held, nbytes)
        self._index[step] = (row, nbytes)
        self._nbytes = held + nbytes
        try:
            if old is not None:
                await self._drop_row(old[0], indexed=True)
            await self._index_changed()
        except Exception as exc:
            raise self._io_error("write", step, exc) from exc

    def _full(self, step: int, held: int, nbytes: int) -> TierFullError:
        assert self._budget is not None
        return TierFullError(
            f"zarr tier {self.name!r} at {self.path}: step {step} needs {format_bytes(nbytes)}, "
            f"but {format_bytes(held)} of the {format_bytes(self._budget)} budget are held by "
            f"{len(self._index)} checkpoint(s); delete some or raise the budget"
        )

    async def get(self, step: int, out: State) -> None:
        self._check_open()
        if step not in self._index:
            raise self._not_found(step)
        self.spec.check(out, "out")
        row = self._index[step][0]
        try:
            await self._get_parts(out, row)
        except Exception as exc:
            raise self._io_error("read", step, exc) from exc

    async def delete(self, step: int) -> None:
        self._check_open()
        entry = self._index.pop(step, None)
        if entry is None:
            raise self._not_found(step)
        self._nbytes -= entry[1]
        try:
            await self._drop_row(entry[0], indexed=True)
            await self._index_changed()
        except Exception as exc:
            raise self._io_error("delete", step, exc) from exc

    async def close(self) -> None:
        """Write the index (see :meth:`flush`) and release the store; calling it again does nothing.

        Raises
        ------
        TransferError
            Writing the index failed; the tier is closed anyway.
        """
        if self._closed:
            return
        try:
            await self.flush()
            try:
                await self._remove_free_files()
            except OSError as exc:
                raise TransferError(
                    f"zarr tier {self.name!r}: removing the files of deleted checkpoints at "
                    f"{self.path} failed: {exc}"
                ) from exc
        finally:
            self._closed = True
            if self._owns_store:
                self._store.close()

    def __contains__(self, step: object) -> bool:
        return step in self._index

    @property
    def steps(self) -> frozenset[int]:
        return frozenset(self._index)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def capacity(self) -> int | None:
        return self._budget

    def stored_nbytes(self, step: int) -> int:
        """Bytes checkpoint x_step takes on the store (after compression, checksums included)."""
        if step not in self._index:
            raise self._not_found(step)
        return self._index[step][1]

    def __repr__(self) -> str:
        return (
            f"ZarrTier({self.path!r}, compression={self.compression.text!r}, "
            f"checkpoints={len(self._index)}, nbytes={format_bytes(self._nbytes)})"
        )
