"""The zarr tier's step index: which row holds which step, the free rows, and their persistence.

Steps are not known in advance (unknown-length runs), so rows are allocated as checkpoints come:
the arrays are declared with :data:`~amcheck.storage._shard.MAX_ROWS` rows (zarr arrays are
sparse: a chunk never written takes no space and no metadata), a deleted checkpoint's row goes
to a free list, and an overwrite writes a fresh row before dropping the old one (so a failed or
over-budget write leaves the old checkpoint intact). The alternatives measured worse: one new
array per checkpoint costs about 3.5 ms of metadata per put (measured), and growing the
arrays with ``resize`` rewrites metadata and serialises concurrent writers.

The store's group attributes (``attrs["amcheck"]``) hold a header (the format, amcheck's
version, the state spec, the compression, the rows per array), compared on reopen, the
index: step -> (row, stored bytes), and each step's identity, ``crcs``: step -> the crc32c of
every stored level, field after field, as its put computed them. A read checks the stored
crc32c values against them, so a row's file holding another checkpoint (files swapped, a write
that never reached the disk and left the row's previous checkpoint) is an error, not a wrong
state. They sit beside the index, not in its entries, so an amcheck without them still reads
the index (and drops them when it saves); a step saved without them is read unchecked.
Writing the index costs about 1 ms on a local disk, so it is
written at most every ``interval`` seconds while checkpoints come and go, and always on
flush/close. Crash safety follows from one rule: **a row that a saved index may refer to is not
reused before the next save** (such rows wait in a "limbo" list; a row taken and dropped
between two saves is free at once). So a process that dies between saves loses, on reopen, the
checkpoints of the last ``interval`` seconds (and a checkpoint deleted since may come back), but
never maps a step to another step's data. A put that finds no free row while dropped rows wait
saves the index first and reuses one (:meth:`StepIndex.must_save_for_row`), so the rows on the
store, and their files, are never more than the checkpoints held at once plus those being
written: a disk budget bounds the disk's use, not only the bytes held.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from amcheck.storage._codecs import quiet_numcodecs
from amcheck.storage._shard import MAX_ROWS

from amcheck._errors import TierFullError

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["FORMAT", "StepIndex"]

#: Format tag written into the store's attributes.
FORMAT = "amcheck.zarr-tier/2"


class StepIndex(Mapping[int, tuple[int, int]]):
    """step -> (row, stored bytes) of a zarr tier, its free rows, and its saved copy; and
    each step's identity, the crc32c of its stored levels (:meth:`crcs`).

    Read it as a mapping; change it through :meth:`record`, :meth:`remove`, :meth:`take_row`
    and :meth:`release`, then call :meth:`changed` (which saves when ``interval`` has passed).
    Coroutines run on one event loop at a time, like the tier's.

    Parameters
    ----------
    store
        The zarr store whose root group holds the attributes.
    header
        What the store's ``attrs["amcheck"]`` must hold besides the index (see
        :meth:`mismatch`).
    interval
        Least seconds between saves from :meth:`changed`; ``None``: a scratch store, whose
        index is never saved (nothing will reopen it), so its rows are reused at once.
    where
        ``"zarr tier 'disk' at /path"``, for messages.
    """

    def __init__(
        self, store: Store, header: dict[str, Any], interval: float | None, where: str
    ) -> None:
        self.header = header
        self.interval = interval
        self.nbytes = 0  #: stored bytes of all held checkpoints
        self._store = store
        self._where = where
        self._entries: dict[int, tuple[int, int]] = {}
        self._crcs: dict[int, tuple[int, ...]] = {}  # step -> its identity, where known
        self._free_rows: list[int] = []  # rows no saved index refers to: reusable
        self._limbo_rows: list[int] = []  # rows the saved index names, dropped since it was saved
        #: Rows an index on the store may name: the last saved one's, and a save's in flight.
        self._saved_rows: frozenset[int] = frozenset()
        self._saving_rows: list[int] = []  # limbo rows a save in progress will free
        self._next_row = 0
        self._version = 0
        self._saved_version = 0
        self._saved_at = -math.inf
        self._group: tuple[asyncio.AbstractEventLoop, Any] | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    # -- the mapping -----------------------------------------------------------------------------

    def __getitem__(self, step: int) -> tuple[int, int]:
        return self._entries[step]

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, step: object) -> bool:
        return step in self._entries

    # -- changes ---------------------------------------------------------------------------------

    def held_without(self, step: int) -> int:
        """Stored bytes of every checkpoint held but x_step (what a new x_step would join)."""
        old = self._entries.get(step)
        return self.nbytes - (old[1] if old else 0)

    def record(
        self, step: int, row: int, nbytes: int, crcs: tuple[int, ...] | None = None
    ) -> tuple[int, int] | None:
        """Map ``step`` to ``row`` of ``nbytes`` whose stored levels have the crc32c values
        ``crcs`` (``None``: unknown); the entry it replaces, whose row is not freed."""
        held = self.held_without(step)
        old = self._entries.get(step)
        self._entries[step] = (row, nbytes)
        if crcs is None:
            self._crcs.pop(step, None)
        else:
            self._crcs[step] = crcs
        self.nbytes = held + nbytes
        return old

    def crcs(self, step: int) -> tuple[int, ...] | None:
        """The crc32c values recorded for held ``step`` (``None``: saved by an amcheck that
        recorded none, so its reads are not checked against them)."""
        return self._crcs.get(step)

    def remove(self, step: int) -> tuple[int, int] | None:
        """Forget ``step``; its entry (``None`` if not held), whose row is not freed."""
        entry = self._entries.pop(step, None)
        self._crcs.pop(step, None)
        if entry is not None:
            self.nbytes -= entry[1]
        return entry

    def take_row(self) -> int:
        """A row to write a new checkpoint into: a free one, else the next unused one.

        Raises
        ------
        TierFullError
            All :data:`~amcheck.storage._shard.MAX_ROWS` rows are in use.
        """
        if self._free_rows:
            return self._free_rows.pop()
        if self._next_row >= MAX_ROWS:
            raise TierFullError(
                f"{self._where} holds {len(self._entries)} checkpoints, the most it can hold "
                f"at once ({MAX_ROWS})"
            )
        self._next_row += 1
        return self._next_row - 1

    def release(self, row: int, *, indexed: bool) -> None:
        """Give ``row`` back; ``indexed``: it was held, so if the saved index names it, it waits
        for the next save (a row taken and dropped between two saves is free at once)."""
        (self._limbo_rows if indexed and row in self._saved_rows else self._free_rows).append(row)

    def must_save_for_row(self) -> bool:
        """Whether :meth:`take_row` would make a new row while dropped rows wait for a save:
        save first, so that the rows on the store stay as few as the checkpoints held at once
        (a disk budget bounds those; new rows each second it would not)."""
        return not self._free_rows and bool(self._limbo_rows or self._saving_rows)

    def unused_rows(self) -> list[int]:
        """Rows taken once that no checkpoint holds now (their files may still be there)."""
        return sorted(set(self._free_rows) | set(self._limbo_rows))

    # -- persistence -----------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether the index changed since it was last saved (never, for a scratch store:
        ``interval=None``)."""
        return self.interval is not None and self._saved_version < self._version

    def attrs(self) -> dict[str, Any]:
        """The group attributes: the header and the index."""
        header = dict(self.header)
        header["index"] = {str(step): [row, nb] for step, (row, nb) in self._entries.items()}
        header["crcs"] = {str(step): list(crcs) for step, crcs in self._crcs.items()}
        return {"amcheck": header}

    def mismatch(self, found: Any) -> str | None:
        """Why a store's ``attrs["amcheck"]`` does not fit this header; ``None`` if it does."""
        if not isinstance(found, dict):
            return "the store holds data that amcheck did not write"
        want = self.header
        if found.get("format") != want["format"]:
            return f"format {found.get('format')!r}, expected {want['format']!r}"
        if found.get("spec") != want["spec"]:
            return f"it was written for spec {found.get('spec')}, not {want['spec']}"
        if list(found["spec"]) != list(want["spec"]):
            # The checksums of a checkpoint are stored in field order: read in another order,
            # every intact checkpoint failed its checksum.
            return (
                f"it was written for the same fields in the order {list(found['spec'])}, not "
                f"{list(want['spec'])}; give the state's fields in the store's order"
            )
        if found.get("compression") != want["compression"]:
            return (
                f"it was written with compression {found.get('compression')!r}, "
                f"not {want['compression']!r}"
            )
        if found.get("max_rows") != want["max_rows"]:
            return f"it has {found.get('max_rows')} rows per array, expected {want['max_rows']}"
        return None

    async def load(
        self,
        found: dict[str, Any],
        row_present: Callable[[int], Awaitable[bool]],
        crc_count: int,
    ) -> None:
        """Take the index saved in ``found``; drop checkpoints all of whose chunks are gone.

        Those were deleted (or replaced) after the index was last saved. A checkpoint missing
        only some chunks stays listed, and reading it raises (the store was damaged).
        ``row_present(row)`` says whether any chunk of ``row`` is on the store (True for a
        state with nothing to store). A step's saved crc32c values are kept if they are
        ``crc_count`` 32-bit values; a step without them (an index saved before amcheck recorded
        them) is read without that check.
        """
        entries = {int(s): (int(r), int(nb)) for s, (r, nb) in dict(found.get("index", {})).items()}
        saved = found.get("crcs")
        crcs = saved if isinstance(saved, dict) else {}
        present = await asyncio.gather(*(row_present(row) for row, _ in entries.values()))
        for (step, entry), here in zip(entries.items(), present, strict=True):
            if here:
                self._entries[step] = entry
                ident = crcs.get(str(step))
                if isinstance(ident, list) and len(ident) == crc_count and all(
                    type(c) is int and 0 <= c < 2**32 for c in ident
                ):
                    self._crcs[step] = tuple(ident)
        used = {row for row, _ in entries.values()}
        held = {row for row, _ in self._entries.values()}
        self._next_row = max(used) + 1 if used else 0
        self._free_rows = sorted(set(range(self._next_row)) - held, reverse=True)
        self._saved_rows = frozenset(used)
        self.nbytes = sum(nb for _, nb in self._entries.values())
        if len(self._entries) != len(entries):
            await self.save()

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    async def save(self) -> None:
        """Write the index into the group attributes; concurrent calls coalesce (nothing for
        a scratch store)."""
        import zarr.api.asynchronous as za

        if self.interval is None:
            return
        self._version += 1
        async with self._loop_lock():
            if self._saved_version >= self._version:
                return
            version = self._version
            limbo, self._limbo_rows = self._limbo_rows, []
            self._saving_rows = limbo
            attrs = self.attrs()
            rows = frozenset(row for row, _ in self._entries.values())  # those attrs name
            # From now on the store may hold either index: a row either names goes to limbo
            # when dropped (until a save completes; a failed or cancelled one may have landed).
            self._saved_rows |= rows
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
            finally:
                self._saving_rows = []
            self._free_rows.extend(limbo)
            self._saved_rows = rows
            self._saved_version = version
            self._saved_at = time.monotonic()

    async def changed(self) -> None:
        """Note a change; save if ``interval`` seconds have passed since the last save."""
        self._version += 1
        if self.interval is not None and time.monotonic() - self._saved_at >= self.interval:
            await self.save()
