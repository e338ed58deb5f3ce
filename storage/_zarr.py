"""The zarr v3 disk tier (:class:`ZarrTier`): one shard per checkpoint and field.

A checkpoint is stored as one shard (file or object) per field of the state, one chunk per time
level inside it, in a plain zarr v3 group that ``zarr.open_group`` reads back. The pieces live
in their own modules:

- :mod:`amcheck.storage._shard`: the layout (chunk and shard shapes, keys, the shard index);
- :mod:`amcheck.storage._step_index`: which row holds which step, free rows, the saved index;
- :mod:`amcheck.storage._chunk_codec`: coding one chunk with the array's own zarr codecs;
- :mod:`amcheck.storage._shard_io`: how a put or get is cut into pool jobs;
- :mod:`amcheck.storage._local_io`: ``pwritev``/``preadv`` of shard files on a local directory;
- :mod:`amcheck.storage._direct`: the same with ``O_DIRECT``, bypassing the page cache;
- :mod:`amcheck.storage._codecs`: the compression specs.

This module locks a local store against other processes (:mod:`amcheck.storage._lock`), opens
the store (or erases and creates it), checks its arrays, and keeps the tier's contract: the
budget, an overwrite that writes a fresh row before dropping the old one, errors that name the
step, the tier and the path.

Speed
-----
zarr's own ``setitem``/``getitem`` cost about 7 ms per 1 MB put here, 6.3 ms of it in its chunk
write (a chunk-sized allocation and copy, a thread hop per codec, the crc32c appended with another
copy, a temporary file and a rename), and its reads land in fresh allocations that are copied out.
So this tier codes each chunk itself with the array's own codecs (the same codec calls zarr
makes, so the bytes are what zarr writes), builds the shard index itself, and on a local
directory moves the bytes itself: by default with direct I/O (``O_DIRECT`` through a small
aligned bounce buffer: no page cache, so the cost of a checkpoint does not grow with the bytes
a sweep has written), else with ``pwritev``/``preadv`` from and into the caller's arrays
(uncompressed, no copy at all). Compressed levels of 256 KiB or more get one pool job each (coded
in parallel, the shard written in one call), so the two levels of a large state use both cores;
through the page cache, uncompressed levels of 4 MiB or more do too (each job writes or reads its
level at its known offset in the shard); smaller fields of a transfer share one job. A codec
without synchronous calls (a third-party zarr codec) falls back to zarr's asynchronous codec
pipeline for its array. File creation and unlinking are the costly operations on the benchmark
machine's ext4 (0.4-0.7 ms and 2.7 ms), so a freed row's files are rewritten in place by the
next checkpoint and only removed on close.

Integrity: every chunk ends with a crc32c checksum, checked on every read, and a read checks that
every chunk of the checkpoint exists (zarr would silently return the fill value for a missing
chunk). A chunk's crc32c says its bytes are intact, not which checkpoint they are: two shard
files swapped on disk, or a put whose writes the OS reported done but never made (a reused
row's file then still holds its previous checkpoint), would pass it. So the step index keeps,
with each step, the crc32c values the put computed for its levels anyway (and saves them with
the index, beside it, so a reopened store checks too), and a read compares each stored crc32c
with the recorded one: a mismatch raises :class:`~amcheck.TransferError` naming the step, the
tier and the shard, saying the bytes belong to another checkpoint or an older write. This costs
no pass over the data and leaves the store's format as zarr reads it. A step saved by an
amcheck that recorded no crc32c values is read with the per-chunk check only.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from amcheck.storage._chunk_codec import ChunkCodec
from amcheck.storage._codecs import (
    Compression,
    CompressionLike,
    import_zarr,
    parse_compression,
    quiet_numcodecs,
    zfp_rate_nbytes,
)
from amcheck.storage._direct import check_direct, direct_files
from amcheck.storage._local_io import LocalShards
from amcheck.storage._lock import StoreLock
from amcheck.storage._shard import (
    KEY_ENCODING,
    MAX_ROWS,
    FieldArray,
    Layout,
    index_nbytes,
)
from amcheck.storage._shard_io import ShardIO
from amcheck.storage._step_index import FORMAT, StepIndex
from amcheck.storage._sync import run_sync
from amcheck.storage._tier import Tier, not_held
from amcheck.storage._users import OpenUsers

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
from amcheck._validate import check_bool, check_finite_float, check_int, check_name, check_path

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["ZarrTier"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
#: The longest field name: a directory's name on the file systems amcheck meets (255 bytes).
_NAME_MAX = 255

#: zarr's errors (by name: zarr is imported lazily) when a store holds something other than a
#: zarr v3 group: an array, files without zarr metadata, a node of another type.
_FOREIGN = ("ContainsArrayError", "GroupNotFoundError", "NodeTypeValidationError", "ZarrUserWarning")


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
        check_path("store", store, "a directory")
        # Absolute: "." has no name to put the lock file beside, and a later chdir must not move
        # the store.
        local = Path(os.path.abspath(os.path.expanduser(store)))
        if local.exists() and not local.is_dir():
            raise InvalidArgumentError(f"store {str(local)!r} exists and is not a directory")
        return LocalStore(local), True, str(local)
    raise ArgumentTypeError(
        "store must be a local path, an fsspec URL or a zarr.storage store, "
        f"got {store!r} of type {type(store).__name__}"
    )


#: The open ZarrTier of this process using each store: two tiers on one store would take the
#: same rows, each overwriting the other's checkpoints (another process's tier is not seen).
_OPEN_STORES: OpenUsers[tuple[str, Any], ZarrTier] = OpenUsers()


def _store_key(store: Any) -> tuple[str, Any]:
    """What identifies ``store`` (a path, a URL or a store object) among the open tiers."""
    from zarr.storage import LocalStore

    if isinstance(store, LocalStore):
        return ("path", os.path.realpath(store.root))
    if isinstance(store, (str, os.PathLike)) and "://" not in os.fspath(store):
        return ("path", os.path.realpath(os.path.expanduser(store)))
    if isinstance(store, str):
        return ("url", store)
    return ("object", id(store))


def _lock_store(store: Store, what: str) -> tuple[StoreLock | None, list[Path]]:
    """Lock a local directory store against other processes, before anything is created or
    looked at (:class:`~amcheck.storage._lock.StoreLock`); other stores take no lock.

    Returns the lock (``None``: not a local store, or no lock to be had there) and the missing
    parent directories made for the lock file, innermost first (the store would have made them
    too; a failed opening removes them again while they are empty).

    Raises
    ------
    StoreLockedError
        A ZarrTier of another process has the store open.
    """
    from zarr.storage import LocalStore

    if not isinstance(store, LocalStore):
        return None, []
    parent = Path(os.path.realpath(store.root)).parent
    made = [p for p in (parent, *parent.parents) if not p.exists()]
    if made and store.read_only:
        return None, []  # nothing to create on a read-only store: its opening will say why
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = StoreLock.acquire(store.root, what)
    except OSError:  # the store's own opening reports a directory it cannot make
        lock = None
    except BaseException:
        _remove_empty(made)
        raise
    if lock is None:
        _remove_empty(made)
        made = []
    return lock, made


def _remove_empty(made: list[Path]) -> None:
    """Remove directories made in this call (innermost first) while they are empty."""
    for directory in made:
        try:
            directory.rmdir()
        except OSError:
            break


def _fresh_directory(store: Any) -> tuple[Path, bool] | None:
    """A local directory path that is missing or empty (and whether it exists): what opening a
    tier there creates may all go again if the opening fails.

    Looked at only with the store's lock held (:func:`_lock_store`): no other ZarrTier can then
    create anything there before the opening ends, so what a failed opening removes is what it
    created itself, never another tier's store."""
    if not isinstance(store, (str, os.PathLike)) or "://" in os.fspath(store):
        return None
    local = Path(store)
    if not local.exists():
        return local, False
    if local.is_dir() and not any(local.iterdir()):
        return local, True
    return None


def _remove_new_store(local: Path, existed: bool) -> None:
    """Undo a failed opening in a directory that was missing (remove it) or empty (empty it).

    Called only by the opening that found it so (:func:`_fresh_directory`) and holds the
    store's lock: everything there was created by that opening."""
    if not existed:
        shutil.rmtree(local, ignore_errors=True)
        return
    for entry in local.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


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
        Whether an existing store written for another spec or compression (or another zarr
        group or array) may be **erased** and reused. A location that is not empty and holds no
        zarr store (other files) is never erased: it raises :class:`StoreMismatchError`. Without it, such a store raises
        :class:`StoreMismatchError`; a store written with the same spec and compression is
        reopened with its checkpoints.
    budget
        Bytes the held checkpoints may take on the store (after compression), e.g. ``"20 GiB"``
        (not a percentage);
        ``None`` for no limit. A put that would exceed it raises :class:`TierFullError` and leaves
        the tier as it was.
    index_interval
        Seconds between writes of the step index into the store's metadata while checkpoints
        come and go (it is always written by :meth:`flush` and :meth:`close`). ``0`` writes it
        after every put and delete (about 1 ms each on a local disk). A process that dies
        without ``close`` loses, on reopen, at most the checkpoints of the last
        ``index_interval`` seconds; it never gets a wrong one back. ``None``: a **scratch** store
        that no one reopens (the Checkpointer's own, removed on close): the index is never
        written, rows are reused at once, and a reopen finds no checkpoints.
    direct
        On a local directory, move checkpoints with direct I/O (``O_DIRECT``): straight to the
        disk, not through the page cache, so a long sweep streaming gigabytes neither fills the
        page cache nor pays for its copies and writeback on the cores that compute
        (:mod:`amcheck.storage._direct`). ``None`` (default): wherever the file system supports
        it (probed once; tmpfs does not); ``True``: required (an error where unsupported);
        ``False``: through the page cache, which is faster only while everything written fits
        in free memory and is read back soon. :attr:`direct` tells what the tier does.
    name
        Tier name in statistics and messages.

    Raises
    ------
    StoreLockedError
        The local store is open in a ZarrTier of another process (its lock file
        ``<store>.lock`` is held).
    StoreMismatchError
        The store holds checkpoints of another spec or compression, or other data.
    InvalidArgumentError, ArgumentTypeError
        A bad argument, or another open ZarrTier of this process on the same store; the message
        names it.

    Notes
    -----
    Calls are coroutines: run them on one event loop at a time (the transfer service's). Coding
    runs in the transfer service's codec threads (:func:`~amcheck.storage.codec_executor`), file
    I/O in the loop's default executor (its I/O threads): each compressed level of 256 KiB or
    more is one job, so the levels of a large state are coded in parallel. Each checkpoint of a
    field is one shard (one file or object), keys ``<field>/c.<row>.0``. On a local directory
    shard files are written and read by the tier itself, with direct I/O (``direct``) or with
    ``pwritev``/``preadv`` from and into the caller's arrays; on other stores through the store's
    ``set``/``get``. Up to :data:`MAX_ROWS` checkpoints can be held at once.

    A store serves one open tier at a time. Within the process a second tier on it raises
    :class:`InvalidArgumentError`; across processes a local directory store (a path, a
    ``file://`` URL or a ``LocalStore``) is locked: before it creates or reads anything the
    tier takes an exclusive, non-blocking ``flock`` on ``<store>.lock``, a file next to the
    store directory (its parent directory is created if missing, as the store would be), and
    holds it until :meth:`close`, which removes the file. A second opener raises
    :class:`StoreLockedError` at once. The kernel releases the lock of a process that dies
    (``SIGKILL`` included): the next opener takes it over. Other stores (``MemoryStore``,
    fsspec URLs) take no lock; where the lock file cannot be created (a parent that is not
    writable) or the file system has no ``flock`` (some network file systems: ``ENOLCK``,
    ``EOPNOTSUPP``), the tier opens without it (:attr:`locked` is ``False``). A failed opening
    removes only what it created: a directory it found missing or empty, and only with the lock
    held.
    """

    is_persistent: bool = True

    def __init__(
        self,
        store: Any,
        spec: StateSpec,
        compression: CompressionLike = None,
        *,
        overwrite: bool = False,
        budget: ByteSize | None = None,
        index_interval: float | None = 1.0,
        direct: bool | None = None,
        name: str = "disk",
    ) -> None:
        import_zarr()  # first, under its lock: see import_zarr
        if not isinstance(spec, StateSpec):
            raise ArgumentTypeError(f"spec must be a StateSpec, got {type(spec).__name__}")
        overwrite = check_bool("overwrite", overwrite)
        if index_interval is not None and (
            isinstance(index_interval, bool) or not isinstance(index_interval, numbers.Real)
        ):
            raise ArgumentTypeError(
                f"index_interval must be a number of seconds or None, got {index_interval!r}"
            )
        check_direct(direct)  # before the store is touched; _open probes the directory
        if index_interval is not None and check_finite_float(
                "index_interval", index_interval) < 0:
            raise InvalidArgumentError(
                f"index_interval must be a finite number of seconds >= 0, got {index_interval!r}"
            )
        for key in spec:
            if not _NAME.match(key) or key.startswith("__"):
                raise InvalidArgumentError(
                    f"spec field name {key!r} cannot name a zarr array; use letters, digits, "
                    "'_', '.' and '-' (not starting with '.', '-' or '__')"
                )
            # each field is a directory beside the group's zarr.json: neither that name nor
            # one longer than a file name may be (they failed later as EEXIST / ENAMETOOLONG)
            if key == "zarr.json" or len(key) > _NAME_MAX:
                raise InvalidArgumentError(
                    f"spec field name {key[:40]!r}{'...' if len(key) > 40 else ''} cannot name "
                    f"a zarr array: it must not be 'zarr.json' and must have at most {_NAME_MAX} "
                    f"characters, got {len(key)}"
                )
        self.spec = spec
        self.name = check_name("name", name)
        self.index_interval = None if index_interval is None else float(index_interval)
        #: Whether a reopen finds the checkpoints (not for a scratch store: ``index_interval=None``).
        self.is_persistent = index_interval is not None
        self.compression: Compression = parse_compression(compression)
        self._layouts = {key: Layout.of(key, f.shape) for key, f in spec.items()}
        for key, fld in spec.items():
            _check_dtype(key, np.dtype(fld.dtype))
            # Before the store is touched.
            self.compression.check_field(key, fld.dtype, self._layouts[key].chunk)
        self._budget = None if budget is None else parse_bytes(budget, "budget", on_disk=True)
        if self._budget == 0:
            raise InvalidArgumentError("budget must be > 0 bytes (or None for no limit), got 0")
        store_key = _store_key(store)
        other = _OPEN_STORES.claim(store_key, self)  # checked and claimed at once
        if other is not None:
            try:
                held_by = repr(other)
            except AttributeError:  # another thread is still opening it
                held_by = "being opened"
            raise InvalidArgumentError(
                f"store {store!r} is used by another open ZarrTier of this process ({held_by}); "
                "two tiers on one store overwrite each other's checkpoints: close the other "
                "first, or give this one its own directory or store"
            )
        try:
            self._store, self._owns_store, self.path = _open_store(store)
            if getattr(self._store, "read_only", False):
                raise InvalidArgumentError(
                    f"store {self.path} is read-only: a zarr tier writes checkpoints into it; "
                    "give a writable store (read_only=False) or a directory")
            what = f"zarr tier {name!r}: store {self.path}"
            self._lock, made = _lock_store(self._store, what)  # before anything is created or read
            # Without the lock (not a local store, or no flock there) a failed opening removes
            # nothing: another process may have created what is there meanwhile.
            fresh = _fresh_directory(store) if self._lock is not None else None
            self._fields: dict[str, FieldArray] = {}
            self._io: ShardIO  # set by _open, with the fields
            self._index = StepIndex(
                self._store, self._header(), self.index_interval,
                f"zarr tier {self.name!r} at {self.path}",
            )
            self._closed = False
            try:
                with quiet_numcodecs():
                    run_sync(self._open(overwrite, direct))
            except BaseException:
                if fresh is not None:
                    _remove_new_store(*fresh)
                if self._lock is not None:
                    self._lock.release()
                    _remove_empty(made)
                raise
        except BaseException:
            _OPEN_STORES.release(self)
            raise
        #: Whether checkpoints move with direct I/O (``O_DIRECT``), see the ``direct`` parameter.
        self.direct: bool = self._io.local is not None and self._io.local.direct is not None

    @property
    def locked(self) -> bool:
        """Whether the tier holds its local store's inter-process lock (``<store>.lock``, see
        :mod:`amcheck.storage._lock`): ``False`` on other stores, where the file system has no
        ``flock``, and after :meth:`close`."""
        return self._lock is not None and self._lock.held

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

    async def _open(self, overwrite: bool, direct: bool | None) -> None:
        import zarr.api.asynchronous as za

        try:
            empty = await self._store.is_empty("")
            reopened = False
            problem: str | None
            if not empty:
                try:
                    group = await za.open_group(store=self._store, mode="r+", zarr_format=3)
                except Exception as exc:
                    if not (overwrite and type(exc).__name__ in _FOREIGN):
                        raise
                    if type(exc).__name__ == "GroupNotFoundError":
                        # Not a zarr store at all (no zarr.json): files of someone's, maybe a
                        # working directory. overwrite erases old stores, never such files.
                        raise StoreMismatchError(
                            f"zarr tier {self.name!r} at {self.path}: the location is not empty "
                            "and holds no zarr store; overwrite=True erases only zarr stores, "
                            "so give a new or empty directory"
                        ) from exc
                    found, problem = None, str(exc)  # another zarr node is there: erase it
                else:
                    found = dict(group.attrs).get("amcheck")
                    problem = self._index.mismatch(found)
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
                # "w" clears the store first, which for a local one is a rmtree and a mkdir of
                # its directory: an empty directory the caller gave lost its mode, group and
                # ACLs, and an empty mount point or a symlink to an empty directory failed.
                # An empty store is created in place; only one being overwritten is cleared.
                group = await za.open_group(
                    store=self._store, mode="w-" if empty else "w", zarr_format=3,
                    attributes=self._index.attrs(),
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
                        chunk_key_encoding=KEY_ENCODING,  # type: ignore[arg-type]
                        fill_value=0,
                        config={"write_empty_chunks": True},
                        attributes={"levels": layout.levels},
                        **self.compression.codecs_for(self.spec[key].dtype),
                    )
            self._fields = {key: self._field(key, arr) for key, arr in arrays.items()}
            self._io = ShardIO(self._store, self._local_shards(direct), self._fields)
            if reopened and isinstance(found, dict):
                await self._index.load(found, self._io.row_present, self._io.crc_count)
        except (StoreMismatchError, InvalidArgumentError, ArgumentTypeError):
            raise
        except Exception as exc:
            # Before the OSError test: zarr's GroupNotFoundError is also a FileNotFoundError.
            if type(exc).__name__ == "GroupNotFoundError":
                raise StoreMismatchError(
                    f"zarr tier {self.name!r} at {self.path}: the location is not empty and "
                    "holds no zarr store (other files), which amcheck never erases; give a new "
                    "or empty directory"
                ) from exc
            if type(exc).__name__ in _FOREIGN:
                raise StoreMismatchError(
                    f"zarr tier {self.name!r} at {self.path}: the store holds something other "
                    f"than an amcheck checkpoint group ({exc}); pass overwrite=True to erase it"
                ) from exc
            if isinstance(exc, OSError):
                raise TransferError(
                    f"zarr tier {self.name!r}: could not open the store at {self.path}: {exc}"
                ) from exc
            raise

    def _check_round_trip(self, key: str, codec: ChunkCodec) -> None:
        """Code a chunk of zeros and decode it back: a filter that changes the dtype or the size
        (``numcodecs.Delta("f8")`` on float32, ``AsType``, ``PackBits``, ...) would otherwise
        write checkpoints that no read can restore, found only in the reverse sweep."""
        chunk = np.zeros(codec.shape, codec.dtype)
        out = np.empty_like(chunk)
        try:
            codec.decode_into(np.concatenate(codec.encode(chunk)), out)
            ok = bool(np.array_equal(out, chunk))  # not `out == 0`: never true for datetimes
        except Exception as exc:  # noqa: BLE001 - any failure means the chain does not round-trip
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = "zeros did not come back as zeros"
        if not ok:
            raise InvalidArgumentError(
                f"compression {self.compression.text!r} cannot store field {key!r} "
                f"({codec.dtype}, chunk {codec.shape}): a chunk coded with it does not decode "
                f"back to the same dtype and shape ({why}); use codecs that keep both"
            )

    def _field(self, key: str, array: Any) -> FieldArray:
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
        if self.compression.custom and codec.sync:
            self._check_round_trip(key, codec)
        index = tuple(sharding.index_codecs)
        index_ok = (
            len(index) == 2
            and isinstance(index[0], BytesCodec)
            and getattr(index[0].endian, "value", index[0].endian) in ("little", None)
            and isinstance(index[1], Crc32cCodec)
            and getattr(sharding.index_location, "value", sharding.index_location) == "end"
        )
        return FieldArray(
            layout, metadata, codec, create_codec_pipeline(metadata), shard_spec,
            codec.sync and index_ok, self.compression.peak_tol,
        )

    @property
    def local_path(self) -> str | None:
        """The directory of a local store (see :attr:`Tier.local_path`); ``None`` for others."""
        from zarr.storage import LocalStore

        return str(self._store.root) if isinstance(self._store, LocalStore) else None

    def _local_shards(self, direct: bool | None) -> LocalShards | None:
        """File I/O of our own when the store is a writable local directory (``O_DIRECT`` if
        ``direct`` allows and the file system supports it)."""
        from zarr.storage import LocalStore

        store = self._store
        root = Path(store.root) if type(store) is LocalStore and not store.read_only else None
        files = direct_files(direct, root, str(self.path))
        return LocalShards(root, files) if root is not None else None

    # -- helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SweepStateError(f"zarr tier {self.name!r} at {self.path} is closed")

    def _not_found(self, step: int) -> CheckpointNotFoundError:
        return not_held(f"zarr tier {self.name!r} at {self.path}", step, self._index)

    def _io_error(self, what: str, step: int, exc: BaseException) -> TransferError:
        error = TransferError(
            f"zarr tier {self.name!r}: {what} of step {step} at {self.path} failed: "
            f"{type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return error

    async def _drop_row(self, row: int, *, indexed: bool) -> None:
        """Free a row: delete its chunks from the store, or keep its files for reuse.

        On a local directory the files stay until the row is written again (in place) or the
        tier is closed: creating and unlinking files is what costs most there (0.4 ms and 2.7 ms
        each on the machine of ``benchmarks/disk_vs_ram.py``, against 0.1 ms to rewrite one).
        A row a saved index may still refer to (``indexed``) is reused only after the next
        index save (a put that needs it saves first), so a reopened store never maps a step to
        another step's data.
        """
        try:
            if self._io.local is None:
                await self._io.delete(self._io.row_keys(row))
        finally:
            self._index.release(row, indexed=indexed)

    async def trim(self) -> None:
        """Delete the files that deleted checkpoints left for reuse (see :meth:`_drop_row`)."""
        self._check_open()
        try:
            await self._remove_free_files()
        except OSError as exc:
            raise TransferError(
                f"zarr tier {self.name!r}: could not remove the files of deleted checkpoints "
                f"in {self.path}: {exc}") from exc

    async def _remove_free_files(self) -> None:
        """Delete the kept files of rows no checkpoint holds (on close, and :meth:`trim`)."""
        if self._io.local is None:
            return
        rows = self._index.unused_rows()
        await self._io.delete([k for row in rows for k in self._io.row_keys(row)])

    async def _drop_row_quietly(self, row: int) -> None:
        try:
            await self._drop_row(row, indexed=False)
        except Exception:  # noqa: BLE001, S110 - the original error is what the caller needs
            pass

    async def flush(self) -> None:
        """Write the step index into the store now, so a reopen finds every checkpoint held
        (nothing for a scratch store, ``index_interval=None``, which no one reopens).

        Chunk files are not fsync'ed (as zarr's own stores do not): the checkpoints survive the
        process, not a crash of the machine.
        """
        self._check_open()
        if not self._index.dirty:
            return
        try:
            await self._index.save()
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
        held = self._index.held_without(step)
        if (
            self._budget is not None
            and self.compression.lossless
            and not self.compression.compressors
            and held + self.spec.nbytes > self._budget
        ):
            raise self._full(step, held, self.spec.nbytes)
        for _ in range(2):  # a save that coalesced with one just made may free nothing
            if not self._index.must_save_for_row():
                break
            try:
                await self._index.save()
            except Exception as exc:
                raise self._io_error("write", step, exc) from exc
        row = self._index.take_row()
        try:
            nbytes, crcs = await self._io.put(state, row)
        except BaseException as exc:
            await self._drop_row_quietly(row)
            if isinstance(exc, Exception):
                raise self._io_error("write", step, exc) from exc
            raise
        held = self._index.held_without(step)  # may have changed while writing
        if self._budget is not None and held + nbytes > self._budget:
            await self._drop_row_quietly(row)
            raise self._full(step, held, nbytes)
        old = self._index.record(step, row, nbytes, crcs)
        try:
            if old is not None:
                await self._drop_row(old[0], indexed=True)
        except Exception as exc:
            raise self._io_error("write", step, exc) from exc
        await self._save_index_after("write", step)

    def _full(self, step: int, held: int, nbytes: int) -> TierFullError:
        assert self._budget is not None
        return TierFullError(
            f"zarr tier {self.name!r} at {self.path}: step {step} needs {nbytes} bytes "
            f"({format_bytes(nbytes)}), but {held} bytes of the {self._budget}-byte "
            f"({format_bytes(self._budget)}) budget are held by {len(self._index)} checkpoint(s) "
            f"(checksums and shard indexes included: it holds {self.max_checkpoints()} "
            "uncompressed); delete some or raise the budget"
        )

    async def get(self, step: int, out: State) -> None:
        self._check_open()
        step = check_int("step", step, minimum=0)  # True would find step 1
        if step not in self._index:
            raise self._not_found(step)
        self.spec.check(out, "out", writable=True)
        row = self._index[step][0]
        try:
            await self._io.get(out, row, self._index.crcs(step))
        except Exception as exc:
            raise self._io_error("read", step, exc) from exc

    async def delete(self, step: int) -> None:
        self._check_open()
        step = check_int("step", step, minimum=0)
        entry = self._index.remove(step)
        if entry is None:
            raise self._not_found(step)
        try:
            await self._drop_row(entry[0], indexed=True)
        except Exception as exc:
            raise self._io_error("delete", step, exc) from exc
        await self._save_index_after("delete", step)

    async def _save_index_after(self, what: str, step: int) -> None:
        """The index save a put or delete may trigger (see ``index_interval``): its failure is
        the index's, not the checkpoint's, which the message says."""
        try:
            await self._index.changed()
        except Exception as exc:
            raise TransferError(
                f"zarr tier {self.name!r}: the {what} of step {step} at {self.path} succeeded, "
                f"but saving the tier's index afterwards failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def close(self) -> None:
        """Write the index (see :meth:`flush`; not for a scratch store) and release the store;
        calling it again does nothing.

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
            _OPEN_STORES.release(self)
            if self._owns_store:
                self._store.close()
            if self._lock is not None:
                self._lock.release()  # last: the store is closed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __contains__(self, step: object) -> bool:
        return step in self._index

    @property
    def steps(self) -> frozenset[int]:
        return frozenset(self._index)

    @property
    def nbytes(self) -> int:
        return self._index.nbytes

    @property
    def capacity(self) -> int | None:
        return self._budget

    def max_checkpoints(self) -> int | None:
        """The most checkpoints the budget surely holds, or ``None`` without one.

        Each level of a field counts its uncompressed bytes and crc32c, each shard its index.
        With ZFP's fixed rate a float field's level counts its coded size instead
        (:func:`~amcheck.storage._codecs.zfp_rate_nbytes`: less than raw, except for chunks of
        partial 4^d blocks). With a compressor (blosc, zstd) a level also counts 1/64 of its
        bytes and 64 bytes more:
        on incompressible data these codecs add a header and a few bytes per block (measured: a
        level of 32 KiB took 10 and 16 bytes more), and compressed checkpoints usually take far
        less, so the count is then a lower bound.
        """
        if self._budget is None:
            return None
        grows = bool(self.compression.compressors)
        per = 0
        for name, layout in self._layouts.items():
            if not layout.empty:
                coded = self._level_nbytes(name)
                level = coded + 4 + (coded // 64 + 64 if grows else 0)
                per += layout.levels * level + index_nbytes(layout.levels)
        return self._budget // max(per, 1)

    def data_nbytes(self) -> int:
        """The state's bytes, except that with ZFP's fixed rate each float field counts its
        coded size (:func:`~amcheck.storage._codecs.zfp_rate_nbytes`): at ``"zfp:rate=8"`` a
        float32 field about a quarter of its bytes. Checksums and shard indexes (tens of bytes)
        are not counted; :meth:`max_checkpoints` counts them."""
        return sum(layout.levels * self._level_nbytes(name)
                   for name, layout in self._layouts.items() if not layout.empty)

    def _level_nbytes(self, name: str) -> int:
        """Bytes of one level of field ``name`` as coded: raw, or a fixed ZFP rate's size
        (above raw for chunks of partial 4^d blocks)."""
        layout, dtype = self._layouts[name], self.spec[name].dtype
        rate = self.compression.zfp_rate
        if rate is not None and self.compression.lossy_applies(dtype):
            return zfp_rate_nbytes(layout.chunk, rate)
        return math.prod(layout.chunk) * dtype.itemsize

    def stored_nbytes(self, step: int) -> int:
        """Bytes checkpoint x_step takes on the store (after compression, checksums included)."""
        if step not in self._index:
            raise self._not_found(step)
        return self._index[step][1]

    def __repr__(self) -> str:
        return (
            f"ZarrTier({self.path!r}, compression={self.compression.text!r}, "
            f"checkpoints={len(self._index)}, nbytes={format_bytes(self._index.nbytes)})"
        )


def _check_dtype(key: str, dtype: np.dtype[Any]) -> None:
    """Refuse, before anything is written, a field the zarr tier cannot store and read back:
    a byte order other than the machine's (read back as native, it failed a whole sweep later)
    or a dtype zarr v3 has no data type for (float128, structured, void, object)."""
    if not dtype.isnative:
        raise InvalidArgumentError(
            f"field {key!r} has the non-native byte order of dtype {dtype.str!r}, which the "
            f"zarr tier does not store; convert it first, e.g. x.astype({dtype.newbyteorder('=').str!r})"
        )
    extended = dtype.itemsize > {"f": 8, "c": 16}.get(dtype.kind, dtype.itemsize)
    if dtype.kind in "VO" or extended:
        raise InvalidArgumentError(
            f"field {key!r} has dtype {dtype.str!r}, which the zarr tier cannot store (no "
            "structured, void, object or extended-precision fields); use a plain numeric, "
            "bool, datetime or fixed-size bytes dtype"
        )
