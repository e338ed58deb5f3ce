"""The RAM tier: a preallocated pool of state-sized slots.

The pool is one page-aligned block allocated (and touched) once, so the hot path never
allocates: on these machines memory that stays free for ~2 s goes back to the host and costs
10x more to touch again (see docs/storage.md). Each slot holds one state; each field inside a
slot starts on a 64-byte boundary and is C-contiguous, and a field of :data:`PAGE_FIELD` bytes or
more starts on a 4 KiB page boundary: the disk tiers' direct I/O then moves it straight between
the slot and the disk, with no bounce copy (:mod:`amcheck.storage._direct`).

Two ways in:

- the zero-copy API: :meth:`RamTier.acquire` a free slot, let an operator write into
  ``slot.state``, :meth:`RamTier.release` it when done. The engine uses only these two and keeps
  its own record of which slot holds which step; :meth:`RamTier.bind` (a slot becomes the
  checkpoint of a step, no copy) and :meth:`RamTier.slot_of` (its buffers, for reading) let
  other code keep that record in the tier (the pyrevolve adapter does);
- the :class:`~amcheck.storage.Tier` interface (``put``/``get`` copy in and out), which makes the
  RAM tier interchangeable with the disk tiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amcheck.storage._direct import aligned_empty
from amcheck.storage._tier import Tier, not_held

from amcheck._bytes import ByteSize, format_bytes, parse_bytes
from amcheck._errors import (
    ArgumentTypeError,
    BudgetError,
    InvalidArgumentError,
    SweepStateError,
    TierFullError,
)
from amcheck._state import State, StateSpec
from amcheck._validate import check_bool, check_int, check_name, check_optional_int

__all__ = ["ALIGNMENT", "PAGE", "PAGE_FIELD", "RamTier", "Slot", "slot_layout"]

#: Byte alignment of every slot and every field inside it (a cache line, and AVX-512 friendly).
ALIGNMENT = 64
#: Alignment of large fields (and then of slots): what ``O_DIRECT`` needs of memory addresses.
PAGE = 4096
#: Fields of at least this many bytes start on a :data:`PAGE` boundary (smaller ones would waste
#: up to 4 KiB each for nothing: they are written through the bounce buffer anyway).
PAGE_FIELD = 64 << 10


def _align(n: int, to: int = ALIGNMENT) -> int:
    return -(-n // to) * to


def slot_layout(spec: StateSpec) -> tuple[dict[str, int], int]:
    """Where each field of ``spec`` starts in a slot (bytes), and the slot's size.

    Fields follow each other in ``spec`` order, each on a 64-byte boundary, or on a 4 KiB page
    boundary when it has :data:`PAGE_FIELD` bytes or more; a slot holding such a field is a whole
    number of pages, so the next slot's fields are page-aligned too.

    Parameters
    ----------
    spec
        The state layout.

    Returns
    -------
    tuple[dict[str, int], int]
        Each field's byte offset in a slot, and the slot's size in bytes.
    """
    if not isinstance(spec, StateSpec):
        raise ArgumentTypeError(
            f"spec must be a StateSpec, got {spec!r} of type {type(spec).__name__}"
        )
    offsets: dict[str, int] = {}
    size = 0
    unit = ALIGNMENT
    for key, fspec in spec.items():
        if fspec.nbytes >= PAGE_FIELD:
            unit = PAGE
            size = _align(size, PAGE)
        offsets[key] = size
        size += _align(fspec.nbytes)
    return offsets, max(_align(size, unit), ALIGNMENT)


@dataclass(eq=False, slots=True)
class Slot:
    """One state-sized buffer of a :class:`RamTier`.

    Attributes
    ----------
    index
        Position in the pool, 0 … n_slots-1.
    state
        Field name -> C-contiguous, 64-byte aligned array view into the pool.
    step
        The step whose checkpoint this slot holds, or ``None`` when it is not a checkpoint.
    """

    index: int
    state: dict[str, np.ndarray]
    step: int | None = field(default=None)


class RamTier(Tier):
    """A pool of preallocated, 64-byte aligned state slots.

    Parameters
    ----------
    budget
        Bytes the pool may take: an ``int`` or a string such as ``"2 GiB"`` or ``"25%"``
        (see :func:`amcheck.parse_bytes`). Each slot takes ``slot_nbytes`` bytes, the state's size
        with each field rounded up to 64 bytes, and fields of 64 KiB or more starting on 4 KiB
        pages (then the slot is whole pages; :func:`~amcheck.storage.slot_layout`).
    spec
        The state layout.
    slots
        Number of slots to allocate; ``None`` means as many as the budget allows. Allocating only
        what a schedule needs keeps untouched memory with the host.
    touch
        Touch every page now (default), so that no sweep pays the page faults. ``False`` leaves
        the pages to the first write into each slot: for a pool sized to a budget that a run may
        use only in part (store-all with an unknown length).
    name
        Tier name in statistics and messages.

    Raises
    ------
    BudgetError
        The budget holds fewer slots than asked for (or none at all); the message says how many
        bytes are needed.
    """

    is_persistent = False

    def __init__(
        self,
        budget: ByteSize,
        spec: StateSpec,
        *,
        slots: int | None = None,
        touch: bool = True,
        name: str = "ram",
    ) -> None:
        if not isinstance(spec, StateSpec):
            raise ArgumentTypeError(
                f"spec must be a StateSpec, got {spec!r} of type {type(spec).__name__}"
            )
        self.spec = spec
        self.name = check_name("name", name)
        self._budget = parse_bytes(budget, "budget")
        offsets, self.slot_nbytes = slot_layout(spec)
        fit = self._budget // self.slot_nbytes
        wanted = check_optional_int("slots", slots, minimum=1)
        if wanted is None:
            wanted = fit
        if wanted < 1 or wanted > fit:
            need = max(wanted, 1) * self.slot_nbytes
            raise BudgetError(
                f"budget of {format_bytes(self._budget)} ({self._budget} bytes) holds {fit} "
                f"slot(s) of {format_bytes(self.slot_nbytes)}; {max(wanted, 1)} slot(s) need "
                f"{need} bytes ({format_bytes(need)}): raise the budget"
            )
        self.n_slots = wanted
        # One block, touched once here (np.zeros may map lazily; fill forces the pages in).
        self._block = self._new_block()
        if check_bool("touch", touch):
            self._block.fill(0)
        # Slots (a Slot and its views, about 600 bytes of Python objects) are made when first
        # handed out: a budget of GiBs holds millions of slots of a small state, of which a run
        # may use a few. Fresh slots go out in order; returned ones first, last in first out.
        self._offsets = offsets
        self._slots: dict[int, Slot] = {}
        self._returned: list[int] = []
        self._fresh = 0  # slots 0 … _fresh-1 have been handed out at least once
        self._acquired: set[int] = set()
        self._by_step: dict[int, Slot] = {}
        self._closed = False

    # -- zero-copy API -------------------------------------------------------------------------

    @property
    def n_free(self) -> int:
        """Number of slots neither acquired nor holding a checkpoint."""
        return len(self._returned) + self.n_slots - self._fresh

    def acquire(self) -> Slot:
        """Take a free slot for an operator to write into.

        Raises
        ------
        TierFullError
            Every slot is in use.
        """
        self._check_open()
        if not self._returned and self._fresh == self.n_slots:
            raise TierFullError(
                f"RAM tier {self.name!r}: all {self.n_slots} slots are in use "
                f"({len(self._by_step)} checkpoints, {len(self._acquired)} working buffers)"
            )
        if self._returned:
            slot = self._slots[self._returned.pop()]
        else:
            slot = self._slots[self._fresh] = self._make_slot(self._fresh)
            self._fresh += 1
        self._acquired.add(slot.index)
        return slot

    def _make_slot(self, i: int) -> Slot:
        base = i * self.slot_nbytes
        views: dict[str, np.ndarray] = {}
        for key, fspec in self.spec.items():
            lo = base + self._offsets[key]
            views[key] = self._block[lo : lo + fspec.nbytes].view(fspec.dtype).reshape(fspec.shape)
        return Slot(i, views)

    def _check_own(self, slot: object) -> None:
        """``slot`` must be one of this tier's slots (not another RamTier's with the same index)."""
        if not isinstance(slot, Slot) or self._slots.get(slot.index) is not slot:
            raise InvalidArgumentError(
                f"slot must be a Slot acquired from RAM tier {self.name!r}, got {slot!r}"
            )

    def renew(self) -> None:
        """Take a fresh, untouched block for the slots and drop the old one, whose memory goes
        back once no view of it is left: a pool built with ``touch=False`` (store-all of an
        unknown length) gives back what a long run touched.

        Raises
        ------
        InvalidArgumentError
            A slot is in use (acquired, or holding a checkpoint).
        """
        self._check_open()
        if self._acquired or self._by_step:
            raise InvalidArgumentError(
                f"RAM tier {self.name!r} cannot renew its block while {len(self._acquired)} "
                f"working slot(s) and {len(self._by_step)} checkpoint(s) are in use: release "
                "the slots and delete the checkpoints first"
            )
        self._slots.clear()
        self._returned = []
        self._fresh = 0
        self._block = self._new_block()

    def _new_block(self) -> np.ndarray:
        """An untouched block for the slots; :class:`BudgetError` where it cannot be had."""
        try:
            return aligned_empty(self.n_slots * self.slot_nbytes, PAGE)
        except (ValueError, MemoryError) as exc:  # numpy's size limit, or no such memory
            raise BudgetError(
                f"could not allocate {self.n_slots} slot(s) of {format_bytes(self.slot_nbytes)} "
                f"({format_bytes(self.n_slots * self.slot_nbytes)}): {exc}; give a budget the "
                "machine has, or slots= for the slots you need"
            ) from exc

    def is_acquired(self, slot: Slot) -> bool:
        """Whether ``slot`` is an acquired working slot (not released, not a checkpoint)."""
        self._check_own(slot)
        return slot.index in self._acquired and slot.step is None

    def release(self, slot: Slot) -> None:
        """Return an acquired slot (not a checkpoint) to the free list."""
        self._check_own(slot)
        if slot.index not in self._acquired or slot.step is not None:
            raise InvalidArgumentError(
                f"slot {slot.index} is not an acquired working slot of RAM tier {self.name!r}"
            )
        self._acquired.discard(slot.index)
        self._returned.append(slot.index)

    def release_all(self) -> None:
        """Return every working slot to the free list; checkpoints stay. Also those that a
        Ctrl-C inside :meth:`acquire` or :meth:`release` left neither acquired nor free (it
        can land between their two bookkeeping steps): the reset after an error calls it. Does
        nothing on a closed tier."""
        if self._closed:
            return
        bound = {slot.index for slot in self._by_step.values()}
        self._acquired.clear()
        self._returned = [index for index in range(self._fresh) if index not in bound]

    def bind(self, step: int, slot: Slot) -> None:
        """Make the acquired ``slot`` the checkpoint x_step, without a copy.

        Replaces (and frees the slot of) a checkpoint already held at ``step``.
        """
        step = check_int("step", step, minimum=0)
        self._check_own(slot)
        if slot.index not in self._acquired:
            raise InvalidArgumentError(
                f"slot {slot.index} is not an acquired working slot of RAM tier {self.name!r}"
            )
        old = self._by_step.pop(step, None)
        if old is not None:
            old.step = None
            self._returned.append(old.index)
        self._acquired.discard(slot.index)
        slot.step = step
        self._by_step[step] = slot

    def unbind(self, step: int) -> Slot:
        """Turn checkpoint x_step back into an acquired working slot and return it (no copy)."""
        slot = self.slot_of(step)
        del self._by_step[step]
        slot.step = None
        self._acquired.add(slot.index)
        return slot

    def slot_of(self, step: int) -> Slot:
        """The slot holding checkpoint x_step; its arrays are read-only by contract.

        Raises
        ------
        CheckpointNotFoundError
            No checkpoint is held at ``step``.
        """
        self._check_open()
        try:
            return self._by_step[step]
        except KeyError:
            raise not_held(f"RAM tier {self.name!r}", step, self._by_step) from None

    def discard(self, step: int) -> None:
        """Drop checkpoint x_step and free its slot (the synchronous form of :meth:`delete`)."""
        slot = self.slot_of(step)
        del self._by_step[step]
        slot.step = None
        self._returned.append(slot.index)

    # -- Tier interface ------------------------------------------------------------------------

    async def put(self, step: int, state: State) -> None:
        self._check_open()
        step = check_int("step", step, minimum=0)
        self.spec.check(state)
        if step in self._by_step:
            slot = self._by_step[step]
        else:
            slot = self.acquire()
            self.bind(step, slot)
        for key, array in state.items():
            np.copyto(slot.state[key], array)

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self, step: int, out: State) -> None:
        slot = self.slot_of(check_int("step", step, minimum=0))  # True would find step 1
        self.spec.check(out, "out", writable=True)
        for key, array in slot.state.items():
            np.copyto(out[key], array)

    async def delete(self, step: int) -> None:
        self.discard(check_int("step", step, minimum=0))

    async def close(self) -> None:
        """Forget every checkpoint and drop the pool: its memory goes back as soon as no view
        into it is left (arrays a caller still holds, such as a Checkpointer's x_n, keep it)."""
        self.close_now()

    def close_now(self) -> None:
        """:meth:`close` for synchronous callers (it awaits nothing)."""
        self._closed = True
        self._by_step.clear()
        self._acquired.clear()
        self._returned = []
        self._fresh = self.n_slots
        self._slots = {}
        self._block = np.empty(0, np.uint8)

    def __contains__(self, step: object) -> bool:
        return step in self._by_step

    @property
    def steps(self) -> frozenset[int]:
        return frozenset(self._by_step)

    @property
    def nbytes(self) -> int:
        return len(self._by_step) * self.spec.nbytes

    @property
    def capacity(self) -> int:
        return self.n_slots * self.spec.nbytes

    @property
    def allocated_bytes(self) -> int:
        """Bytes the pool holds, padding included (what counts against the budget)."""
        return self.n_slots * self.slot_nbytes

    def _check_open(self) -> None:
        if self._closed:
            raise SweepStateError(f"RAM tier {self.name!r} is closed")

    def __repr__(self) -> str:
        return (
            f"RamTier(slots={self.n_slots}, slot={format_bytes(self.slot_nbytes)}, "
            f"checkpoints={len(self._by_step)}, free={self.n_free})"
        )
