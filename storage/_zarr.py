"""The zarr v3 disk tier: one chunk per checkpoint, time level and field.

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

Steps are not known in advance (unknown-length runs), so rows are allocated as checkpoints come:
the arrays are declared with :data:`MAX_ROWS` rows (zarr arrays are sparse: a chunk never written
takes no space and no metadata), a deleted checkpoint's chunks are removed from the store and its
row goes to a free list, and an overwrite writes a fresh row before dropping the old one (so a
failed or over-budget write leaves the old checkpoint intact). The alternatives measured worse:
one new array per checkpoint costs about 3.5 ms of metadata per put (FIELD-NOTES), and growing the
arrays with ``resize`` rewrites metadata and serialises concurrent writers.

Integrity: every chunk ends with a crc32c checksum, and a read checks that every chunk of the
checkpoint exists (zarr would silently return the fill value for a missing chunk).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from amcheck.storage._codecs import (
    Compression,
    CompressionLike,
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
FORMAT = "amcheck.zarr-tier/1"

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
    levels: int  # chunks per checkpoint
    chunk: tuple[int, ...]  # one chunk: the field's spatial shape
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
    def array_shape(self) -> tuple[int, ...]:
        return (MAX_ROWS * self.levels * self.chunk[0], *self.chunk[1:])

    def rows_slice(self, row: int) -> slice:
        span = self.levels * self.chunk[0]
        return slice(row * span, (row + 1) * span)

    def stacked(self, array: np.ndarray) -> np.ndarray:
        return array.reshape(self.levels * self.chunk[0], *self.chunk[1:])

    def chunk_coords(self, row: int) -> list[tuple[int, ...]]:
        zeros = (0,) * (len(self.chunk) - 1)
        return [(row * self.levels + level, *zeros) for level in range(self.levels)]


@dataclass(slots=True)
class _Handles:
    loop: asyncio.AbstractEventLoop
    group: Any
    arrays: dict[str, Any]


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
        ``"zfp:tol=1e-4"`` (absolute error bound), ``"zfp:rate=8"``, ``"bitround:keepbits=12"``,
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
    Calls are coroutines: run them on one event loop at a time (the transfer service's). Up to
    :data:`MAX_ROWS` checkpoints can be held at once.
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
        name: str = "disk",
    ) -> None:
        if not isinstance(spec, StateSpec):
            raise ArgumentTypeError(f"spec must be a StateSpec, got {type(spec).__name__}")
        if not isinstance(overwrite, bool):
            raise ArgumentTypeError(f"overwrite must be a bool, got {overwrite!r}")
        for key in spec:
            if not _NAME.match(key) or key.startswith("__"):
                raise InvalidArgumentError(
                    f"spec field name {key!r} cannot name a zarr array; use letters, digits, "
                    "'_', '.' and '-' (not starting with '.', '-' or '__')"
                )
        self.spec = spec
        self.name = name
        self.compression: Compression = parse_compression(compression)
        self._budget = None if budget is None else parse_bytes(budget, "budget")
        self._layouts = {key: _Layout.of(key, f.shape) for key, f in spec.items()}
        # Without filters, serializer or compressors a chunk is its raw bytes plus a 4-byte crc32c.
        plain = not (
            self.compression.filters or self.compression.serializer or self.compression.compressors
        )
        self._known_nbytes: int | None = (
            sum(spec[k].nbytes + 4 * lay.levels for k, lay in self._layouts.items() if not lay.empty)
            if plain
            else None
        )
        self._store, self._owns_store, self.path = _open_store(store)
        self._index: dict[int, tuple[int, int]] = {}  # step -> (row, stored bytes)
        self._free_rows: list[int] = []
        self._next_row = 0
        self._nbytes = 0
        self._closed = False
        self._handles: _Handles | None = None
        self._index_version = 0
        self._saved_version = 0
        self._index_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
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
            if not empty:
                group = await za.open_group(store=self._store, mode="r+", zarr_format=3)
                found = dict(group.attrs).get("amcheck")
                problem = self._mismatch(found)
                if problem is None and isinstance(found, dict):
                    self._load_index(found)
                    return
                if not overwrite:
                    raise StoreMismatchError(
                        f"zarr tier {self.name!r} at {self.path}: {problem}; pass overwrite=True "
                        "to erase it, or use another store"
                    )
            group = await za.open_group(
                store=self._store, mode="w", zarr_format=3, attributes=self._attrs()
            )
            for key, layout in self._layouts.items():
                if layout.empty:
                    continue
                await group.create_array(
                    key,
                    shape=layout.array_shape,
                    dtype=self.spec[key].dtype,
                    chunks=layout.chunk,
                    fill_value=0,
                    config={"write_empty_chunks": True},
                    attributes={"levels": layout.levels},
                    **self.compression.codecs_for(self.spec[key].dtype),
                )
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

    def _load_index(self, found: dict[str, Any]) -> None:
        for step_text, (row, nb) in dict(found.get("index", {})).items():
            self._index[int(step_text)] = (int(row), int(nb))
        used = {row for row, _ in self._index.values()}
        self._next_row = max(used) + 1 if used else 0
        self._free_rows = sorted(set(range(self._next_row)) - used, reverse=True)
        self._nbytes = sum(nb for _, nb in self._index.values())

    async def _get_handles(self) -> _Handles:
        loop = asyncio.get_running_loop()
        handles = self._handles
        if handles is not None and handles.loop is loop:
            return handles
        import zarr.api.asynchronous as za

        with quiet_numcodecs():
            group = await za.open_group(store=self._store, mode="r+", zarr_format=3)
            arrays = {}
            for key, layout in self._layouts.items():
                if not layout.empty:
                    # The array config is not stored in the metadata: set it on every open.
                    array: Any = await group.getitem(key)
                    arrays[key] = array.with_config({"write_empty_chunks": True})
        self._handles = _Handles(loop, group, arrays)
        self._index_lock = asyncio.Lock()
        return self._handles

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

    async def _drop_row(self, handles: _Handles, row: int) -> None:
        """Delete a row's chunks from the store and put the row on the free list."""
        keys = [
            (arr, arr.metadata.encode_chunk_key(coords))
            for key, arr in handles.arrays.items()
            for coords in self._layouts[key].chunk_coords(row)
        ]
        try:
            await asyncio.gather(*((arr.store_path / k).delete() for arr, k in keys))
        finally:
            self._free_rows.append(row)

    async def _chunk_sizes(self, handles: _Handles, row: int) -> list[int | None]:
        async def size(arr: Any, key: str) -> int | None:
            path = arr.store_path / key
            if not await path.exists():
                return None
            return int(await self._store.getsize(path.path))

        return await asyncio.gather(
            *(
                size(arr, arr.metadata.encode_chunk_key(coords))
                for key, arr in handles.arrays.items()
                for coords in self._layouts[key].chunk_coords(row)
            )
        )

    async def _save_index(self, handles: _Handles) -> None:
        """Write the index into the group attributes; concurrent calls coalesce."""
        self._index_version += 1
        assert self._index_lock is not None
        async with self._index_lock:
            if self._saved_version >= self._index_version:
                return
            version = self._index_version
            await handles.group.update_attributes(self._attrs())
            self._saved_version = version

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
        try:
            handles = await self._get_handles()
        except Exception as exc:
            raise self._io_error("write", step, exc) from exc
        row = self._take_row()
        try:
            await asyncio.gather(
                *(
                    arr.setitem(self._layouts[key].rows_slice(row), self._layouts[key].stacked(
                        np.asarray(state[key])))
                    for key, arr in handles.arrays.items()
                )
            )
            if self._known_nbytes is None:
                sizes = await self._chunk_sizes(handles, row)
            else:  # uncompressed: the size is known, skip a stat per chunk
                sizes = [self._known_nbytes]
        except BaseException as exc:
            await self._drop_row_quietly(handles, row)
            if isinstance(exc, Exception):
                raise self._io_error("write", step, exc) from exc
            raise
        nbytes = sum(s or 0 for s in sizes)
        old = self._index.get(step)  # may have changed while writing
        held = self._nbytes - (old[1] if old else 0)
        if self._budget is not None and held + nbytes > self._budget:
            await self._drop_row_quietly(handles, row)
            raise self._full(step, held, nbytes)
        self._index[step] = (row, nbytes)
        self._nbytes = held + nbytes
        try:
            if old is not None:
                await self._drop_row(handles, old[0])
            await self._save_index(handles)
        except Exception as exc:
            raise self._io_error("write", step, exc) from exc

    def _full(self, step: int, held: int, nbytes: int) -> TierFullError:
        assert self._budget is not None
        return TierFullError(
            f"zarr tier {self.name!r} at {self.path}: step {step} needs {format_bytes(nbytes)}, "
            f"but {format_bytes(held)} of the {format_bytes(self._budget)} budget are held by "
            f"{len(self._index)} checkpoint(s); delete some or raise the budget"
        )

    async def _drop_row_quietly(self, handles: _Handles, row: int) -> None:
        try:
            await self._drop_row(handles, row)
        except Exception:  # noqa: BLE001, S110 - the original error is what the caller needs
            pass

    async def get(self, step: int, out: State) -> None:
        self._check_open()
        if step not in self._index:
            raise self._not_found(step)
        self.spec.check(out, "out")
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.indexing import BasicIndexer

        row = self._index[step][0]
        try:
            handles = await self._get_handles()
            sizes = await self._chunk_sizes(handles, row)
            if any(s is None for s in sizes):
                raise FileNotFoundError("a chunk of the checkpoint is missing from the store")
            prototype = default_buffer_prototype()
            reads = []
            for key, arr in handles.arrays.items():
                layout = self._layouts[key]
                indexer = BasicIndexer(
                    layout.rows_slice(row),
                    shape=arr.metadata.shape,
                    chunk_grid=arr.metadata.chunk_grid,
                )
                target = prototype.nd_buffer.from_ndarray_like(
                    layout.stacked(out[key])  # type: ignore[arg-type]
                )
                reads.append(arr._get_selection(indexer, prototype=prototype, out=target))
            await asyncio.gather(*reads)
        except Exception as exc:
            raise self._io_error("read", step, exc) from exc

    async def delete(self, step: int) -> None:
        self._check_open()
        entry = self._index.pop(step, None)
        if entry is None:
            raise self._not_found(step)
        self._nbytes -= entry[1]
        try:
            handles = await self._get_handles()
            await self._drop_row(handles, entry[0])
            await self._save_index(handles)
        except Exception as exc:
            raise self._io_error("delete", step, exc) from exc

    async def close(self) -> None:
        if self._closed:
            return
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
