"""Move one checkpoint's shards between the caller's arrays and a zarr store (:class:`ShardIO`).

A put or get of the zarr tier touches one shard per field (:mod:`amcheck.storage._shard`). How
that work is cut into jobs decides how well it uses two cores, so it lives here:

- a **large** field (coded levels of :data:`~amcheck.storage._shard.BIG_CHUNK` = 256 KiB or
  more, plain ones of :data:`~amcheck.storage._shard.BIG_PLAIN_CHUNK` = 4 MiB or more)
  gets one pool job per level: uncompressed on a local directory through the page cache, each
  job writes or reads its level at its known offset in the shard file (with direct I/O, one job
  moves the whole file); otherwise the levels are coded (or decoded) in parallel jobs and the
  shard moves in one write (or read);
- the **small** fields of a transfer share one pool job, which codes and, on a local directory,
  writes them (or reads and decodes them): one thread hop instead of one per field;
- a field whose codecs have no synchronous calls (a third-party zarr codec) goes through zarr's
  own asynchronous codec pipeline, whole shard at once.

Every path records, at a put, the crc32c of each stored level (the checkpoint's identity,
returned by :meth:`ShardIO.put`), and checks, at a get, each level's stored crc32c against it.

On a local directory the bytes move through :class:`~amcheck.storage._local_io.LocalShards`
(``pwritev``/``preadv`` on the caller's memory); on any other store through its ``set``/``get``.
Codec jobs (coding, scaling, joining blobs) go to the transfer service's codec pool
(:func:`~amcheck.storage._transfer.codec_executor`), jobs that only move bytes to the loop's
default executor, the service's I/O threads; a small-field job that codes anything counts as a
codec job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from amcheck.storage._checksum import crc_value
from amcheck.storage._local_io import LocalShards
from amcheck.storage._shard import FieldArray, Part, missing, parse_index, shard_pieces
from amcheck.storage._transfer import codec_executor

from amcheck._state import State

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["ShardIO"]

_T = TypeVar("_T")


async def _settled(*aws: Awaitable[_T]) -> list[_T]:
    """``asyncio.gather`` that waits for every awaitable even when one fails, then raises the
    first failure.

    A plain ``gather`` raises at the first failure while its other jobs go on running on the
    I/O and codec threads: a failed put would free its row while another field's write still
    lands in it (on the next checkpoint's file, with a valid checksum), and a failed get would
    leave the caller's buffer being written after the error reached the caller. A
    ``KeyboardInterrupt`` or ``SystemExit`` from a job comes back as a ``RuntimeError``
    chained to it: raised in a task, asyncio would re-raise it out of the transfer loop.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
        if isinstance(result, BaseException):
            raise RuntimeError(  # noqa: TRY004 - not a type check of an argument
                f"{type(result).__name__} raised on an amcheck I/O thread: {result}"
            ) from result
    return results  # type: ignore[return-value]


def _as_bytes(buf: Any) -> np.ndarray:
    """A zarr buffer's bytes as a flat uint8 array (no copy)."""
    return np.asarray(buf.as_numpy_array()).view(np.uint8).reshape(-1)


def _jobs(
    parts: list[Part],
    big: Callable[[asyncio.AbstractEventLoop, Part], Coroutine[Any, Any, _T]],
    pipeline: Callable[[Part], Coroutine[Any, Any, _T]],
    small: Callable[[asyncio.AbstractEventLoop, list[Part]], Coroutine[Any, Any, _T]],
) -> list[Coroutine[Any, Any, _T]]:
    """The coroutines of one transfer of ``parts``.

    One per large field (:data:`~amcheck.storage._shard.BIG_CHUNK`), one per field that zarr's
    pipeline codes (its codec has no synchronous calls), and one for all small fields together.
    """
    loop = asyncio.get_running_loop()
    jobs = [big(loop, p) for p in parts if p.field.sync and p.big]
    jobs += [pipeline(p) for p in parts if not p.field.sync]
    rest = [p for p in parts if p.field.sync and not p.big]
    if rest:
        jobs.append(small(loop, rest))
    return jobs


def _plain_jobs(local: LocalShards, levels: int) -> list[range]:
    """The levels each pool job of a large plain field moves: one each, or all in one job with
    direct I/O (which moves whole files: the disk, not the copy, is then the bound)."""
    return [range(levels)] if local.direct is not None else [range(i, i + 1) for i in range(levels)]


def _pool_for(parts: list[Part], local: LocalShards | None) -> Executor | None:
    """The executor of a small-field job: the codec pool if it codes anything (or joins blobs
    for a store that is not a local directory), else the I/O threads (``None``)."""
    if local is None or not all(p.field.codec.plain for p in parts):
        return codec_executor()
    return None


class ShardIO:
    """Puts, gets and deletes the shards of one checkpoint row of a zarr tier's arrays.

    Coroutines: run them on the tier's event loop; the blocking work goes to its executor.

    Parameters
    ----------
    store
        The zarr store.
    local
        Direct file access when the store is a writable local directory, else ``None``.
    fields
        The tier's arrays by field name (every field with something to store).
    """

    def __init__(
        self, store: Store, local: LocalShards | None, fields: dict[str, FieldArray]
    ) -> None:
        self.store = store
        self.local = local
        self.fields = fields

    async def row_present(self, row: int) -> bool:
        """Whether any chunk of ``row`` is on the store (True when the state stores nothing)."""
        keys = self.row_keys(row)
        return not keys or any(await _settled(*(self.exists(k) for k in keys)))

    async def exists(self, key: str) -> bool:
        """Whether the shard of ``key`` is on the store."""
        if self.local is not None:
            return self.local.exists(key)
        return bool(await self.store.exists(key))

    @property
    def crc_count(self) -> int:
        """How many crc32c values identify a checkpoint: one per level of every field."""
        return sum(fld.layout.levels for fld in self.fields.values())

    def parts(self, state: State, row: int, expected: tuple[int, ...] | None = None) -> list[Part]:
        """The row's shards, one per field, with the state's memory; ``expected``: the
        checkpoint's crc32c values as :meth:`put` returned them (for a get to check)."""
        parts = []
        start = 0
        for key, fld in self.fields.items():
            levels = fld.layout.levels
            mine = None if expected is None else expected[start : start + levels]
            start += levels
            parts.append(Part(fld, fld.key(row), fld.layout.level_views(np.asarray(state[key])),
                              expected=mine))
        return parts

    def row_keys(self, row: int) -> list[str]:
        """The store keys of the row's shards, one per field."""
        return [f.key(row) for f in self.fields.values()]

    # -- pool jobs -------------------------------------------------------------------------------

    def _put_small(self, parts: list[Part]) -> list[int] | list[bytes]:
        """Pool job: code (and on a local directory write) the shards of small fields."""
        local = self.local
        if local is None:
            return [b"".join(p.data.cast("B") for p in part.encode()) for part in parts]
        return [
            local.write_plain(part, range(part.field.layout.levels)) if part.field.codec.plain
            else local.write(part.key, part.encode())
            for part in parts
        ]

    def _get_small(self, parts: list[Part], stored: list[np.ndarray] | None) -> None:
        """Pool job: read (local directory) and decode the shards of small fields."""
        for i, part in enumerate(parts):
            if stored is not None:
                part.decode(stored[i])
            elif part.field.codec.plain:
                assert self.local is not None
                self.local.read_plain(part, range(part.field.layout.levels))
            else:
                assert self.local is not None
                part.decode(self.local.read(part.key))

    # -- transfers (the loop) --------------------------------------------------------------------

    async def _set(self, key: str, blob: bytes) -> None:
        from zarr.core.buffer import default_buffer_prototype

        await self.store.set(key, default_buffer_prototype().buffer.from_bytes(blob))

    async def _fetch(self, key: str) -> np.ndarray:
        from zarr.core.buffer import default_buffer_prototype

        buf = await self.store.get(key, prototype=default_buffer_prototype())
        if buf is None:
            raise missing(key)
        return _as_bytes(buf)

    async def put(self, state: State, row: int) -> tuple[int, tuple[int, ...] | None]:
        """Write the row's shards; the bytes they take, and the checkpoint's identity: the
        crc32c of every stored level, field after field (``None`` if a field's codecs end in
        no crc32c), to give back to :meth:`get`."""
        parts = self.parts(state, row)
        jobs = _jobs(parts, self._put_big, self._put_pipeline, self._put_small_parts)
        nbytes = sum(await _settled(*jobs))
        crcs = [crc for part in parts for crc in part.crcs]
        identity = None if None in crcs else tuple(c for c in crcs if c is not None)
        return nbytes, identity

    async def _put_small_parts(self, loop: asyncio.AbstractEventLoop, parts: list[Part]) -> int:
        done = await loop.run_in_executor(_pool_for(parts, self.local), self._put_small, parts)
        if self.local is not None:
            return sum(done)  # type: ignore[arg-type]
        blobs: list[bytes] = done  # type: ignore[assignment]
        await _settled(*(self._set(p.key, b) for p, b in zip(parts, blobs, strict=True)))
        return sum(len(b) for b in blobs)

    async def _put_big(self, loop: asyncio.AbstractEventLoop, part: Part) -> int:
        """A large field: one pool job per level, then one write of the shard."""
        fld = part.field
        local = self.local
        if local is not None and fld.codec.plain:
            sizes = await _settled(*(
                loop.run_in_executor(None, local.write_plain, part, levels)
                for levels in _plain_jobs(local, fld.layout.levels)
            ))
            return sum(sizes)
        codecs = codec_executor()
        if fld.peak_tol is not None:
            await loop.run_in_executor(codecs, part.scale)
        coded = await _settled(*(
            loop.run_in_executor(codecs, fld.codec.encode, x, part.tolerance) for x in part.levels
        ))
        part.note_crcs(coded, range(fld.layout.levels))
        pieces = shard_pieces(list(coded))
        if local is not None:
            return await loop.run_in_executor(None, local.write, part.key, pieces)
        blob = await loop.run_in_executor(codecs, b"".join, [p.data.cast("B") for p in pieces])
        await self._set(part.key, blob)
        return len(blob)

    async def _put_pipeline(self, part: Part) -> int:
        """A codec without synchronous calls: zarr's own pipeline codes the whole shard."""
        spec = part.field.shard_spec
        shard = np.concatenate(part.levels)
        nd = spec.prototype.nd_buffer.from_ndarray_like(shard)
        (encoded,) = await part.field.pipeline.encode([(nd, spec)])
        if part.field.codec.crc:  # the crc32c ending each level: a few bytes from the index
            stored = _as_bytes(encoded)
            table = parse_index(stored, part.field.layout.levels, part.key)
            for level, (offset, size) in enumerate(table.tolist()):
                part.crcs[level] = crc_value(stored[offset + size - 4 : offset + size])
        await self.store.set(part.key, encoded)
        return len(encoded)

    async def get(self, out: State, row: int, expected: tuple[int, ...] | None = None) -> None:
        """Read the row's shards into ``out``; ``expected``: the identity :meth:`put` returned
        (every level's stored crc32c must be the recorded one), ``None`` to skip that check."""
        jobs = _jobs(self.parts(out, row, expected), self._get_big, self._get_pipeline,
                     self._get_small_parts)
        await _settled(*jobs)

    async def _get_small_parts(self, loop: asyncio.AbstractEventLoop, parts: list[Part]) -> None:
        stored = None
        if self.local is None:
            stored = list(await _settled(*(self._fetch(p.key) for p in parts)))
        await loop.run_in_executor(_pool_for(parts, self.local), self._get_small, parts, stored)

    async def _get_big(self, loop: asyncio.AbstractEventLoop, part: Part) -> None:
        """A large field: read the shard, then decode its levels in parallel pool jobs."""
        fld = part.field
        levels = range(fld.layout.levels)
        local = self.local
        if local is not None and fld.codec.plain:
            await _settled(*(
                loop.run_in_executor(None, local.read_plain, part, job)
                for job in _plain_jobs(local, fld.layout.levels)
            ))
            return
        if local is not None:
            stored = await loop.run_in_executor(None, local.read, part.key)
        else:
            stored = await self._fetch(part.key)
        table = parse_index(stored, fld.layout.levels, part.key)
        codecs = codec_executor()
        await _settled(*(
            loop.run_in_executor(codecs, part.decode_level, stored, table, i) for i in levels
        ))

    async def _get_pipeline(self, part: Part) -> None:
        from zarr.core.buffer import default_buffer_prototype

        buf = await self.store.get(part.key, prototype=default_buffer_prototype())
        if buf is None:
            raise missing(part.key)
        (decoded,) = await part.field.pipeline.decode([(buf, part.field.shard_spec)])
        if part.expected is not None:  # zarr checked each chunk's crc32c: now whose it is
            stored = _as_bytes(buf)
            part.check_stored_crcs(stored, parse_index(stored, part.field.layout.levels, part.key))
        shard = np.asarray(decoded.as_ndarray_like()).reshape(part.field.layout.shard)
        span = part.field.layout.chunk[0]
        for level, array in enumerate(part.levels):
            np.copyto(array, shard[level * span : (level + 1) * span], casting="no")

    async def delete(self, keys: list[str]) -> None:
        """Remove the shards of ``keys`` from the store (files: those already gone are skipped)."""
        local = self.local
        if local is not None:
            await asyncio.get_running_loop().run_in_executor(None, local.unlink, keys)
        else:
            await _settled(*(self.store.delete(k) for k in keys))

