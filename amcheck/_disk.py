"""The engine's asynchronous disk path: staged writes, prefetched reads, back-pressure and waits.

What it does
------------
The engine (:mod:`amcheck._engine`) hands every disk action of a schedule to one
:class:`DiskPath`, which owns one :class:`~amcheck.storage.TransferService` (an asyncio loop on
the thread ``amcheck-transfer``, codecs in its ``amcheck-codec`` threads and blocking file I/O in
its ``amcheck-io`` threads) and keeps
the books of what is in flight:

- ``Save(t, "disk")`` → :meth:`DiskPath.put`: the buffer that holds x_t is submitted as it is
  (no copy) and stays *staged* (pinned, read-only) until its write is done; compute goes on at
  once. The advance that follows writes into another slot, so the slot pool needs
  ``max_in_flight`` staging slots on top of what the schedule's forward sweep simulates (the
  reverse sweep, which writes nothing, reuses them). At most
  ``max_in_flight`` writes are in flight: one more waits for the oldest (back-pressure).
- ``Prefetch(t, "disk")`` → :meth:`DiskPath.prefetch`: a read into a free slot starts now.
- ``Load(t, "disk")`` → :meth:`DiskPath.take_prefetched` (wait for the prefetch if it has not
  finished) or :meth:`DiskPath.read_now`.
- ``Free(t, "disk")`` → :meth:`DiskPath.delete`, after the write of x_t (if still in flight) ends.

Every time the compute thread blocks on a transfer it records a ``"wait"`` event on the timeline
and adds to ``stats.stall_seconds``; the transfers themselves appear as ``"write"`` and ``"read"``
events on the transfer thread (the service's ``on_event`` hook). Finished transfers are *reaped*
(their future looked at, their slot unpinned, their bytes and seconds counted) by :meth:`poll`,
which the engine calls before every action, so a failed write reaches the caller as a
:class:`~amcheck.TransferError` (naming step, tier and path) at the next action at the latest.

This is the asynchronous multistage scheme of Kukreja, Hückelheim & Gorman (2018),
"Backpropagation for long sequences: beyond memory constraints with constant overheads",
arXiv:1812.05952, and Schanen et al. (2016), doi:10.1016/j.procs.2016.05.444.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from amcheck._errors import AmcheckError, TransferError
from amcheck._stats import StatsRecorder
from amcheck._timeline import Timeline, clock
from amcheck.storage import Slot, Tier, TransferFuture, TransferService

__all__ = ["DiskPath"]

_DISK: Final = "disk"


@dataclass(slots=True)
class _Transfer:
    """One write or read in flight, and the RAM slot it holds until it is reaped."""

    future: TransferFuture
    kind: str  # "write" or "read"
    step: int
    slot: Slot


def _where(tier: Tier) -> str:
    path = getattr(tier, "path", None)
    return f"tier {tier.name!r} at {path}" if path else f"tier {tier.name!r} (in memory)"


class DiskPath:
    """Transfers between the engine's RAM slots and one disk tier, in the background.

    Parameters
    ----------
    tier
        The disk tier.
    max_in_flight
        Writes in flight at most (each holds one staging slot). A read may come on top.
    timeline, stats
        Where waits, transfers and their bytes and seconds are recorded.
    workers
        Codec threads of the transfer service (its I/O threads keep their default).
    cpus
        CPUs the transfer service's threads are confined to, or ``None``.
    """

    def __init__(
        self,
        tier: Tier,
        *,
        max_in_flight: int,
        timeline: Timeline,
        stats: StatsRecorder,
        workers: int = 2,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.tier = tier
        self.cpus = cpus
        self.max_in_flight = max_in_flight
        self.workers = workers
        self._timeline = timeline
        self._stats = stats
        self._service: TransferService | None = None
        self._writes: list[_Transfer] = []  # in submission order
        self._reads: dict[int, _Transfer] = {}  # step -> prefetch not loaded yet
        self._deletes: list[TransferFuture] = []  # deletes not reaped yet
        #: Steps whose delete failed or was abandoned: the tier may still hold them.
        self.undeleted: set[int] = set()
        self._holding: dict[int, _Transfer] = {}  # slot index -> the transfer that pins it
        # Transfers ended (bumped on the I/O threads as each future is done) and that count at
        # the last full look of poll(): poll() looks at the futures only when they differ.
        self._ended = 0
        self._ended_lock = threading.Lock()
        self._looked = -1
        #: Called on the compute thread with each finished write's share of the disk's time:
        #: from its start, or from the end of the write that ended before it when that came
        #: later, to its end. Writes in flight share the disk, so a write's own duration
        #: overstates what it costs the disk's throughput (the interval controller asks whether
        #: the disk keeps up); a write alone on the disk counts its whole duration.
        self.write_observer: Callable[[float], None] | None = None
        self._last_write_end = 0.0  # perf_counter() end of the last write reaped

    # -- state ---------------------------------------------------------------------------------

    @property
    def service(self) -> TransferService:
        """The transfer service, started on first use."""
        if self._service is None:
            self._service = TransferService(
                max_in_flight=self.max_in_flight + 1,
                workers=self.workers,
                on_event=self._on_event,
                cpus=self.cpus,
            )
        return self._service

    @property
    def running(self) -> bool:
        """Whether the transfer service (and its threads) is running."""
        return self._service is not None

    def holds(self, slot: Slot) -> bool:
        """Whether ``slot`` is pinned by a transfer: a write's source or a prefetch's target."""
        return slot.index in self._holding

    def prefetched(self, step: int) -> bool:
        """Whether a read of x_step was started and not yet loaded."""
        return step in self._reads

    # -- the loop thread -----------------------------------------------------------------------

    def _on_event(
        self, kind: str, step: int, tier: Tier, start: float, end: float, nbytes: int
    ) -> None:
        if kind in ("write", "read"):
            self._timeline._append(kind, start, end, step=step, tier=_DISK, nbytes=nbytes)  # type: ignore[arg-type]

    # -- waiting and reaping (the compute thread) ------------------------------------------------

    def _wait(self, future: TransferFuture, step: int) -> None:
        """Block until ``future`` is done; a ``"wait"`` event if it was not done already."""
        if future.done():
            return
        start = clock()
        concurrent_wait(future)
        end = clock()
        self._timeline._append("wait", start, end, step=step, tier=_DISK)
        self._stats.stall_seconds += end - start
        self._stats.waits += 1

    def _ended_one(self, _: object) -> None:
        with self._ended_lock:  # several I/O threads may end transfers at once
            self._ended += 1

    def _note_submit(self, future: TransferFuture) -> None:
        """Count a stall inside the service's own back-pressure as a wait; have the future
        count its end for :meth:`poll`."""
        future.add_done_callback(self._ended_one)
        if future.waited > 0.0:
            end = clock()
            self._timeline._append("wait", end - future.waited, end, step=future.step, tier=_DISK)
            self._stats.stall_seconds += future.waited
            self._stats.waits += 1

    def _reap(self, transfer: _Transfer) -> Slot:
        """Account for a finished transfer and unpin its slot; raise its error, if any."""
        if self._holding.get(transfer.slot.index) is transfer:
            del self._holding[transfer.slot.index]
        future = transfer.future
        error = future.exception()
        if error is not None:
            if isinstance(error, AmcheckError):
                raise error
            raise TransferError(  # pragma: no cover - the service wraps every failure
                f"{transfer.kind} of checkpoint x_{transfer.step} ({_where(self.tier)}) "
                f"failed: {type(error).__name__}: {error}"
            ) from error
        seconds = (future.end or 0.0) - (future.start or 0.0)
        if transfer.kind == "write":
            self._stats.bytes_written[_DISK] += future.nbytes
            self._stats.write_seconds[_DISK] += seconds
            end = future.end or 0.0
            if self.write_observer is not None:
                busy_from = max(future.start or 0.0, self._last_write_end)
                self.write_observer(max(0.0, end - busy_from))
            self._last_write_end = max(self._last_write_end, end)
        else:
            self._stats.bytes_read[_DISK] += future.nbytes
            self._stats.read_seconds[_DISK] += seconds
        return transfer.slot

    def poll(self) -> list[Slot]:
        """Reap every finished write and delete; return the slots the writes unpinned.

        Called before every action, so it first asks whether any transfer ended since its last
        full look (a counter the futures' done callbacks bump), and looks at the futures only
        then: most actions of a sweep find nothing new.

        Raises
        ------
        TransferError
            A write, a delete or a prefetch failed (the first one found): a failed prefetch is
            raised now, not when its segment is loaded, a segment of work later.
        """
        ended = self._ended  # read before looking: a transfer ending meanwhile is seen next time
        if ended == self._looked:
            return []
        for transfer in list(self._reads.values()):
            if transfer.future.done() and transfer.future.exception() is not None:
                del self._reads[transfer.step]
                self._reap(transfer)  # raises (and the next poll looks again)
        if self._deletes:
            self._reap_deletes(wait=False)
        done = [w for w in self._writes if w.future.done()]
        if done:
            self._writes = [w for w in self._writes if w not in done]
        freed = [self._reap(w) for w in done]
        self._looked = ended
        return freed

    def wait_oldest_write(self) -> Slot | None:
        """Back-pressure: wait for the oldest write in flight and reap it; ``None`` if none."""
        if not self._writes:
            return None
        oldest = self._writes[0]
        self._wait(oldest.future, oldest.step)  # still listed if interrupted: abandon() waits
        self._writes.pop(0)
        return self._reap(oldest)

    def drain(self) -> list[Slot]:
        """Wait for every write and delete in flight (recording waits) and reap them all."""
        freed: list[Slot] = []
        while self._writes:
            slot = self.wait_oldest_write()
            assert slot is not None
            freed.append(slot)
        self.settle_deletes()
        return freed

    def settle_deletes(self) -> None:
        """Wait for every delete in flight (recording waits); raise the first one's error."""
        if self._deletes:
            self._reap_deletes(wait=True)

    def _reap_deletes(self, *, wait: bool) -> None:
        if wait:
            for future in self._deletes:
                self._wait(future, future.step)
        done: list[TransferFuture] = []
        running: list[TransferFuture] = []
        for future in self._deletes:  # one look at each: a delete may end between two looks
            (done if future.done() else running).append(future)
        self._deletes = running
        failed = [future for future in done if future.exception() is not None]
        self.undeleted.update(future.step for future in failed)  # every one, for the retry
        if failed:
            error = failed[0].exception()
            assert error is not None
            raise error  # the service's TransferError: names the step and the tier

    # -- actions -------------------------------------------------------------------------------

    def put(self, step: int, slot: Slot, state: Mapping[str, np.ndarray]) -> list[Slot]:
        """Start writing x_step from ``slot`` (read-only ``state`` views of it); pin the slot.

        Waits for the oldest write first when ``max_in_flight`` writes are in flight, and for
        every delete in flight (a delete frees disk budget, and may be of x_step itself).
        Returns the slots that waiting unpinned.
        """
        self.settle_deletes()
        freed = self.poll()
        while len(self._writes) >= self.max_in_flight:
            oldest = self.wait_oldest_write()
            assert oldest is not None
            freed.append(oldest)
        future = self.service.submit_put(self.tier, step, state)
        self._note_submit(future)
        transfer = _Transfer(future, "write", step, slot)
        self._writes.append(transfer)
        self._holding[slot.index] = transfer
        return freed

    def _settle_write(self, step: int) -> list[Slot]:
        """Wait for a write of x_step still in flight (before reading or deleting it)."""
        freed: list[Slot] = []
        for write in [w for w in self._writes if w.step == step]:
            self._wait(write.future, step)
            self._writes.remove(write)
            freed.append(self._reap(write))
        return freed

    def prefetch(self, step: int, slot: Slot, out: Mapping[str, np.ndarray]) -> list[Slot]:
        """Start reading x_step into ``slot`` (its writable ``out`` views); pin the slot.

        A write of x_step still in flight is waited for first; returns the slots it unpinned.
        """
        freed = self._settle_write(step)
        future = self.service.submit_get(self.tier, step, out)
        self._note_submit(future)
        transfer = _Transfer(future, "read", step, slot)
        self._reads[step] = transfer
        self._holding[slot.index] = transfer
        return freed

    def take_prefetched(self, step: int) -> Slot | None:
        """The slot a prefetch of x_step read into, after waiting for it; ``None`` if none."""
        transfer = self._reads.get(step)
        if transfer is None:
            return None
        self._wait(transfer.future, step)
        del self._reads[step]
        return self._reap(transfer)

    def read_now(self, step: int, slot: Slot, out: Mapping[str, np.ndarray]) -> list[Slot]:
        """Read x_step into ``slot`` and wait for it (a load nobody prefetched).

        Returns the slots unpinned by waiting for a write of x_step still in flight.
        """
        freed = self.prefetch(step, slot, out)
        taken = self.take_prefetched(step)
        assert taken is slot
        return freed

    def settle_reads(self) -> list[Slot]:
        """Wait for every prefetch nobody loaded and unpin its slot (at the end of a sweep)."""
        slots = [self.take_prefetched(step) for step in list(self._reads)]
        return [slot for slot in slots if slot is not None]

    def delete(self, step: int) -> list[Slot]:
        """Start dropping x_step from the tier, after its write or prefetch (if any) has ended.

        The delete runs in the background like a write (measured synchronous: 0.6-0.7 ms of the
        compute thread's time per disk checkpoint of the long-sequences benchmark); its error
        surfaces at the next :meth:`poll`, write or :meth:`drain`. Returns the slots the write or
        prefetch unpinned.
        """
        freed = self._settle_write(step)
        pending = self.take_prefetched(step)
        if pending is not None:
            freed.append(pending)
        future = self.service.submit_delete(self.tier, step)
        self._note_submit(future)
        self._deletes.append(future)
        return freed

    def run(self, coro: object, step: int | None, what: str) -> None:
        """Run one tier coroutine on the service's loop and wait; errors name step and tier."""
        service = self.service
        try:
            service.run(coro)  # type: ignore[arg-type]
        except AmcheckError:
            raise
        except Exception as exc:
            of = "" if step is None else f" of checkpoint x_{step}"
            raise TransferError(
                f"{what}{of} on {_where(self.tier)} ({type(self.tier).__name__}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # -- shutting down -------------------------------------------------------------------------

    def abandon(self) -> BaseException | None:
        """After an error or before a new sweep: let every transfer end, forget them all.

        Errors of the abandoned transfers are not raised (the first error is the one the caller
        already has). A ``KeyboardInterrupt`` while it waits does not stop the waiting (a write
        still running would read a slot given back to the pool, and land after the clean-up
        deleted the tier's checkpoints); it is returned, for the caller to raise when done.
        """
        transfers = [*self._writes, *self._reads.values()]
        deletes, self._deletes = self._deletes, []
        self.undeleted.update(future.step for future in deletes)
        self._writes = []
        self._reads = {}
        self._holding.clear()
        interrupt: BaseException | None = None
        for future in [*(t.future for t in transfers), *deletes]:
            while True:
                try:
                    concurrent_wait(future)
                    break
                except BaseException as exc:  # noqa: BLE001 - raised by the caller, later
                    interrupt = interrupt or exc
        return interrupt

    def clean_up(self, steps: set[int], *, trim: bool = False) -> BaseException | None:
        """After an error, before a new sweep, on close: :meth:`abandon` the transfers, delete
        ``steps`` (and those whose delete failed or was abandoned) from the tier, with ``trim``
        (after an error) give back the room the tier keeps for reuse (:meth:`Tier.trim`), and
        stop the service (it restarts with the next transfer). Each step leaves ``steps`` once
        deleted, so a clean-up interrupted (Ctrl-C) is finished by the next one. Returns the
        interrupt :meth:`abandon` deferred, for the caller to raise.
        """
        interrupt = self.abandon()
        try:
            # Every transfer submitted ends first, also one an interrupt (Ctrl-C) caught between
            # its submit and its bookkeeping, which abandon() does not know: a write landing
            # after the deletes would stay on the tier, a delete still running would fail ours.
            self.stop()
            # The tier held nothing of others when given (checked), so every step on it now is
            # one of ours, such an untracked write's too.
            steps |= self.undeleted | set(self.tier.steps)
            self.undeleted = set()
            failed: list[AmcheckError] = []
            for step in sorted(steps):
                try:
                    if step in self.tier:
                        self.run(self.tier.delete(step), step, "delete")
                except AmcheckError as exc:
                    failed.append(exc)  # stays in steps: the next clean-up tries it again
                    continue
                steps.discard(step)
            if failed:
                if len(failed) > 1:
                    failed[0].add_note(f"{len(failed) - 1} more deletes failed: checkpoints "
                                       f"{sorted(steps)} are still on {_where(self.tier)}")
                raise failed[0]
            if trim:
                self.run(self.tier.trim(), None, "trim")
        finally:
            self.stop()
        return interrupt

    def stop(self) -> None:
        """Stop the transfer service and its threads (it restarts on the next transfer)."""
        service = self._service
        if service is not None:
            with contextlib.suppress(AmcheckError):  # errors were reaped or abandoned
                service.close()
            self._service = None  # not before: an interrupted close is finished by the next stop


def concurrent_wait(future: TransferFuture) -> None:
    """Wait for ``future`` without raising its error and without marking it observed twice."""
    import concurrent.futures

    concurrent.futures.wait([future])
