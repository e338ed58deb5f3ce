"""The transfer service: one asyncio event loop on a background thread that moves checkpoints.

The compute thread calls :meth:`TransferService.submit_put` / :meth:`~TransferService.submit_get`
and goes back to computing; the transfer runs as a task on the service's loop (thread
``amcheck-transfer``) and its CPU-heavy or blocking parts (codecs, file writes: zarr's and
aiofiles' ``run_in_executor`` / ``to_thread`` calls) run in two bounded thread pools:

- ``workers`` threads (``amcheck-codec_N``) run codecs, the CPU work: each busy one takes a core
  from the computation, so on a small machine they must be few. A tier sends a job there with
  ``loop.run_in_executor(codec_executor(), ...)``.
- ``io_threads`` threads (``amcheck-io_N``), the loop's default executor, run blocking file I/O.
  They mostly wait for the disk (direct I/O costs little CPU), and small checkpoints need
  several writes at once to keep the disk busy: with 1 MB checkpoints in one file each, four
  I/O threads wrote 1.3-1.4 GB/s here where two wrote 1.0-1.1 GB/s (see docs/benchmark-history.md).

Submitting does not wake the loop from the caller's thread: the caller puts the transfer into a
queue and goes on, and a small thread (``amcheck-transfer-submit``) hands it to the loop. Woken
directly (``call_soon_threadsafe`` writes to the loop's socket, which lets go of the GIL), the
loop thread took the GIL at once to start the transfer, and the caller waited for it before it
could go back into its nogil kernel. Measured on the long-sequences forward sweep (n = 10^4,
k = 50, one kernel thread; 2026-11-29), a disk save cost the compute thread 55-100 µs woken
directly against 46-63 µs through the queue on a quiet machine (the sweep's time unchanged:
median ratio 1.000 over 9 rounds), and 0.83-0.95 ms against 45-79 µs with a busy loop on the
other core (forward sweep 0.986, forward and reverse 0.966, medians of 5 rounds).

Back-pressure: at most ``max_in_flight`` transfers are submitted and not finished at any time; a
further submit blocks the caller until one finishes. So the staging buffers the caller hands over
(they must stay untouched until the transfer's future is done) are bounded, and so is memory.
The time a caller spent blocked is recorded on the future (:attr:`TransferFuture.waited`) and
summed in :attr:`TransferService.stall_seconds`, for the engine's timeline.

Errors: a failed transfer's future gets a :class:`amcheck.TransferError` naming the kind, the
step, the tier and its path, with the original exception chained. If nobody looked at that future
(``result()`` or ``exception()``), the next submit, :meth:`~TransferService.wait_all` or
:meth:`~TransferService.close` raises it, so no error is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import Any, Protocol, Self, TypeVar

from amcheck.storage._cpus import check_cpus, confine
from amcheck.storage._tier import Tier

from amcheck._errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    SweepStateError,
    TransferError,
)
from amcheck._state import State
from amcheck._validate import check_bool, check_finite_float, check_int, check_name

__all__ = ["EventHook", "TransferFuture", "TransferService", "codec_executor"]

_T = TypeVar("_T")

#: The codec pool of the transfer service running the current transfer (set in its tasks).
_CODECS: ContextVar[concurrent.futures.Executor | None] = ContextVar(
    "amcheck_codec_executor", default=None
)


def codec_executor() -> concurrent.futures.Executor | None:
    """The executor for a codec (CPU) job of the transfer running now.

    Inside a :class:`TransferService` transfer: its pool of ``workers`` codec threads. Elsewhere
    (a tier's coroutine run by ``asyncio.run``): ``None``, the loop's default executor.
    """
    return _CODECS.get()


class EventHook(Protocol):
    """Called on the loop thread when a transfer has succeeded (a failed one is not an event:
    its error reaches the caller through its future).

    ``kind`` is ``"write"``, ``"read"`` or ``"delete"``; ``start`` and ``end`` are
    :func:`time.perf_counter` readings on the loop; ``nbytes`` is the state's size in bytes
    (uncompressed). An exception raised by the hook fails the transfer.
    """

    def __call__(
        self, kind: str, step: int, tier: Tier, start: float, end: float, nbytes: int
    ) -> None: ...


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` or what caused it is a full file system (ENOSPC, or a quota: EDQUOT)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class TransferFuture(concurrent.futures.Future[None]):
    """A :class:`concurrent.futures.Future` for one transfer, with its timing.

    Attributes
    ----------
    kind
        ``"write"``, ``"read"`` or ``"delete"``.
    step
        The checkpoint's step.
    tier
        The tier it goes to or comes from.
    nbytes
        The state's size in bytes (uncompressed).
    waited
        Seconds the submitting thread was blocked by back-pressure before the transfer started.
    start, end
        :func:`time.perf_counter` when the transfer started and ended on the loop (``None``
        until then).
    """

    def __init__(self, kind: str, step: int, tier: Tier, nbytes: int) -> None:
        super().__init__()
        self.kind = kind
        self.step = step
        self.tier = tier
        self.nbytes = nbytes
        self.waited = 0.0
        self.start: float | None = None
        self.end: float | None = None
        self.observed = False
        # Under the service's lock: the loop took it (it runs, and releases its slot), or the
        # submitter withdrew it after an interrupt (the loop must skip it).
        self._taken = False
        self._withdrawn = False

    def result(self, timeout: float | None = None) -> None:
        self.observed = True
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.observed = True
        return super().exception(timeout)

    def __repr__(self) -> str:
        return f"<TransferFuture {self.kind} step={self.step} tier={self.tier.name!r} {self._state}>"


_Submitted = tuple["TransferFuture", Callable[[], Coroutine[Any, Any, None]]]


def _where(tier: Tier) -> str:
    path = getattr(tier, "path", None)
    return f"tier {tier.name!r} at {path}" if path else f"tier {tier.name!r} (in memory)"


#: Seconds :meth:`TransferService._stop_threads` waits for a thread whose start was interrupted
#: to begin running (a created thread begins within microseconds; one never created, never).
_START_WAIT = 1.0


class TransferService:
    """Runs tier transfers on a background event loop, with bounded work in flight.

    Parameters
    ----------
    max_in_flight
        Transfers submitted and not yet finished, at most. Each holds one staging state of the
        caller's, so this bounds the staging memory: ``max_in_flight * state.nbytes``. A further
        submit blocks (back-pressure). 2 to 4 keeps a disk busy; more only adds memory.
        Default 4.
    workers
        Threads that run codecs (CPU work) off the loop. On 2 cores, 1 or 2: each worker running
        a codec takes a core from the computation. Default 2.
    io_threads
        Threads that run blocking file I/O off the loop (the loop's default executor). They
        mostly wait for the disk; more of them keep it busier with small checkpoints.
        Default 4.
    on_event
        Optional :class:`EventHook` called on the loop thread when a transfer ends.
    name
        Name of the loop thread.
    cpus
        CPU ids its threads (the loop, the submit thread, the codec and I/O pools) are confined
        to, e.g. those that take the disk's interrupts (see :mod:`amcheck.storage._cpus`);
        ``None`` (default): wherever the scheduler puts them. Linux only.

    Notes
    -----
    Use it as a context manager, or call :meth:`close`. Never call its methods from a transfer
    or a hook (the loop thread): that would deadlock, and raises :class:`SweepStateError`.

    Examples
    --------
    >>> with TransferService(max_in_flight=2) as service:          # doctest: +SKIP
    ...     future = service.submit_put(tier, 100, staging_state)
    ...     ...  # compute on; staging_state stays untouched until future.done()
    ...     service.wait_all()
    """

    def __init__(
        self,
        max_in_flight: int = 4,
        workers: int = 2,
        io_threads: int = 4,
        *,
        on_event: EventHook | None = None,
        name: str = "amcheck-transfer",
        cpus: Iterable[int] | None = None,
    ) -> None:
        self.max_in_flight = check_int("max_in_flight", max_in_flight, minimum=1)
        self.workers = check_int("workers", workers, minimum=1)
        self.io_threads = check_int("io_threads", io_threads, minimum=1)
        check_name("name", name)
        if on_event is not None and not callable(on_event):
            raise ArgumentTypeError(f"on_event must be callable or None, got {on_event!r}")
        self._on_event = on_event
        #: The CPUs the service's threads are confined to; ``None``: not confined.
        self.cpus = None if cpus is None else check_cpus("cpus", cpus)
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._closing = threading.Lock()
        self._lock = threading.Lock()
        self._pending: set[TransferFuture] = set()
        self._failed: list[TransferFuture] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False  # no new transfers
        self._stopped = False  # close() has stopped every thread
        self.stall_seconds = 0.0
        self.stalls = 0
        self.completed = 0
        self.peak_in_flight = 0
        self._codecs = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="amcheck-codec", initializer=confine,
            initargs=(self.cpus,)
        )
        self._io = concurrent.futures.ThreadPoolExecutor(
            self.io_threads, thread_name_prefix="amcheck-io", initializer=confine,
            initargs=(self.cpus,)
        )
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(self._io)
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(started,), name=name, daemon=True
        )
        self._inbox: queue.SimpleQueue[_Submitted | None] = queue.SimpleQueue()
        self._submitter = threading.Thread(target=self._hand_over, name=f"{name}-submit",
                                           daemon=True)
        # Each thread sets its event as it begins to run. A Ctrl-C inside Thread.start() can land
        # after the thread was created but before is_alive() says so: _stop_threads then waits
        # for the event of every thread whose start was attempted, instead of leaving it behind.
        self._running = {"loop": threading.Event(), "submit": threading.Event()}
        self._launched: set[str] = set()
        try:
            self._launched.add("loop")
            self._thread.start()
            started.wait()
            self._launched.add("submit")
            self._submitter.start()
            if self.cpus is not None:  # the pools' threads confine themselves as they start
                for thread in (self._thread, self._submitter):
                    assert thread.native_id is not None
                    try:
                        os.sched_setaffinity(thread.native_id, self.cpus)
                    except OSError as error:  # the process's own CPUs changed since the check
                        raise InvalidArgumentError(
                            f"cpus={sorted(self.cpus)}: cannot confine the transfer threads "
                            f"there ({error}); this process may use CPUs "
                            f"{sorted(os.sched_getaffinity(0))}") from error
        except BaseException:  # a Ctrl-C while the threads start, or a CPU gone: none is left
            self._stop_threads()
            raise

    def _stop_threads(self) -> None:
        """Stop the submit thread, the loop thread and the pools (their work is done)."""
        if "submit" in self._launched:
            self._inbox.put(None)  # every transfer submitted before reaches the loop first
            if self._submitter.is_alive() or self._running["submit"].wait(_START_WAIT):
                self._submitter.join()
        if "loop" in self._launched:
            self._loop.call_soon_threadsafe(self._loop.stop)  # also if it has yet to run
            if self._thread.is_alive() or self._running["loop"].wait(_START_WAIT):
                self._thread.join()
        if not self._thread.is_alive():
            self._loop.close()
        self._codecs.shutdown(wait=True)
        self._io.shutdown(wait=True)

    # -- the loop thread -------------------------------------------------------------------------

    def _run_loop(self, started: threading.Event) -> None:
        self._running["loop"].set()
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(started.set)
        while True:
            try:
                self._loop.run_forever()
                return
            except BaseException:  # noqa: BLE001
                # asyncio re-raises a KeyboardInterrupt or SystemExit from a task out of the
                # loop, after making it that task's exception, which then reaches its
                # transfer's future: the loop goes on, or that future and every later one would
                # never finish (a caller waiting on them would hang).
                if self._loop.is_closed():
                    return

    def _hand_over(self) -> None:
        """The submit thread: hands each submitted transfer to the loop, until ``None``."""
        self._running["submit"].set()
        while (item := self._inbox.get()) is not None:
            self._loop.call_soon_threadsafe(self._start, *item)

    @property
    def thread(self) -> threading.Thread:
        """The loop thread."""
        return self._thread

    @property
    def in_flight(self) -> int:
        """Transfers submitted and not finished."""
        with self._lock:
            return len(self._pending)

    # -- submitting ----------------------------------------------------------------------------

    def _check_caller(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise SweepStateError(
                f"TransferService.{what} was called from the transfer loop thread (from a tier "
                "or an on_event hook); it would wait for itself. Await the tier directly there."
            )
        if self._closed:
            raise SweepStateError(f"TransferService.{what} after close()")

    def _raise_unobserved(self) -> None:
        with self._lock:
            failed = [f for f in self._failed if not f.observed]
            self._failed.clear()
        if failed:
            error = failed[0].exception()
            assert error is not None
            for future in failed:
                future.observed = True
            for other in failed[1:]:  # raised once, with the first: none is lost
                error.add_note(f"also failed, and nobody looked at its future: {other.exception()}")
            raise error

    def _submit(
        self,
        kind: str,
        tier: Tier,
        step: int,
        nbytes: int,
        make: Callable[[], Coroutine[Any, Any, None]],
    ) -> TransferFuture:
        self._check_caller({"write": "submit_put", "read": "submit_get"}.get(kind, "submit_delete"))
        self._raise_unobserved()
        future = TransferFuture(kind, step, tier, nbytes)
        t0 = time.perf_counter()
        if not self._slots.acquire(blocking=False):
            self._slots.acquire()
            future.waited = time.perf_counter() - t0
            with self._lock:
                self.stall_seconds += future.waited
                self.stalls += 1
        queued = False
        try:
            with self._lock:
                if self._closed:
                    raise SweepStateError(f"TransferService.submit ({kind}) after close()")
                self._pending.add(future)
                self.peak_in_flight = max(self.peak_in_flight, len(self._pending))
            self._inbox.put((future, make))  # no system call: the caller keeps the GIL, see above
            queued = True
        finally:
            # Refused, or a Ctrl-C before or right after the put: the entry is withdrawn, unless
            # the loop took it already (then it runs and frees its slot itself). A withdrawn one
            # leaves _pending, so that close() does not wait for a future that will never run.
            if not queued:
                with self._lock:
                    withdrawn = future._withdrawn = not future._taken
                    if withdrawn:
                        self._pending.discard(future)
                if withdrawn:
                    self._slots.release()
        return future

    def _start(self, future: TransferFuture, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with self._lock:
            if future._withdrawn:  # the submitter was interrupted and took back its slot
                return
            future._taken = True
        task = self._loop.create_task(self._run(future, make))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, future: TransferFuture, make: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        error: BaseException | None = None
        _CODECS.set(self._codecs)  # this task's own context: its jobs find the codec pool
        future.set_running_or_notify_cancel()
        future.start = time.perf_counter()
        try:
            await make()
        except asyncio.CancelledError:
            error = concurrent.futures.CancelledError(
                f"{future.kind} of step {future.step} ({_where(future.tier)}) was cancelled "
                "by TransferService.close()"
            )
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the future
            error = exc
        future.end = time.perf_counter()
        if error is None and self._on_event is not None:
            try:
                self._on_event(
                    future.kind, future.step, future.tier, future.start, future.end, future.nbytes
                )
            except BaseException as exc:  # noqa: BLE001
                error = exc
        if error is not None and not isinstance(
            error, (TransferError, concurrent.futures.CancelledError)
        ):
            wrapped = TransferError(
                f"{future.kind} of step {future.step} to {_where(future.tier)} failed: "
                f"{type(error).__name__}: {error}"
                if future.kind == "write"
                else f"{future.kind} of step {future.step} from {_where(future.tier)} failed: "
                f"{type(error).__name__}: {error}"
            )
            wrapped.__cause__ = error
            error = wrapped
        if error is not None and _disk_full(error):
            error.add_note(
                "the file system is full: bound what the disk tier holds (Checkpointer("
                "disk_budget=...) or the tier's own budget), or make room")
        with self._lock:
            self._pending.discard(future)
            self.completed += 1
            if error is not None and not isinstance(error, concurrent.futures.CancelledError):
                self._failed.append(future)
        self._slots.release()
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def submit_put(self, tier: Tier, step: int, state: State) -> TransferFuture:
        """Write ``state`` to ``tier`` as checkpoint x_step in the background.

        ``state``'s arrays must stay untouched until the returned future is done (the write
        reads them without a copy). Blocks while ``max_in_flight`` transfers are in flight.

        Parameters
        ----------
        tier
            The tier to write to (its spec is ``state``'s).
        step
            The checkpoint's step t.
        state
            x_t: a mapping name -> array of the tier's spec.

        Returns
        -------
        TransferFuture
            Done when the checkpoint is written; its ``result()`` raises what the write raised.

        Raises
        ------
        TransferError
            An earlier transfer failed and nobody looked at its future.
        SweepStateError
            Called after :meth:`close` or from the loop thread.
        """
        nbytes = _checked_tier(tier).spec.nbytes
        return self._submit("write", tier, step, nbytes, lambda: tier.put(step, state))

    def submit_get(self, tier: Tier, step: int, out: State) -> TransferFuture:
        """Read checkpoint x_step of ``tier`` into ``out`` in the background (a prefetch).

        ``out`` must not be read or written until the returned future is done. Blocking and
        errors as in :meth:`submit_put`.

        Parameters
        ----------
        tier
            The tier holding checkpoint x_step.
        step
            The checkpoint's step t.
        out
            Arrays of the tier's spec that receive x_t.
        """
        nbytes = _checked_tier(tier).spec.nbytes
        return self._submit("read", tier, step, nbytes, lambda: tier.get(step, out))

    def submit_delete(self, tier: Tier, step: int) -> TransferFuture:
        """Drop checkpoint x_step of ``tier`` in the background (``tier``, ``step`` as in
        :meth:`submit_get`; blocking and errors as in :meth:`submit_put`)."""
        _checked_tier(tier)
        return self._submit("delete", tier, step, 0, lambda: tier.delete(step))

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run a coroutine on the loop and wait for its result (e.g. ``tier.close()``).

        Not counted against ``max_in_flight``. Raises what the coroutine raises.
        """
        if not asyncio.iscoroutine(coro):
            raise ArgumentTypeError(
                f"coro must be a coroutine (e.g. tier.close()), got {coro!r} of type "
                f"{type(coro).__name__}"
            )
        try:
            timeout = _checked_timeout(timeout)
            self._check_caller("run")
        except (SweepStateError, ArgumentTypeError, InvalidArgumentError):
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(self._tracked(coro), self._loop).result(timeout)

    async def _tracked(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """``coro`` as one of the service's tasks: if the caller stops waiting (Ctrl-C), close()
        cancels it instead of leaving it pending on a closed loop."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await self._with_codecs(coro)
        finally:
            self._tasks.discard(task)

    async def _with_codecs(self, coro: Coroutine[Any, Any, _T]) -> _T:
        _CODECS.set(self._codecs)
        return await coro

    # -- waiting and closing -------------------------------------------------------------------

    def wait_all(self, timeout: float | None = None) -> None:
        """Wait until every submitted transfer has finished.

        Parameters
        ----------
        timeout
            Seconds to wait at most, or ``None`` (default) to wait as long as it takes.

        Raises
        ------
        TransferError
            A transfer failed and nobody looked at its future (the first such error; the others
            are added to it as notes).
        TimeoutError
            Transfers were still in flight after ``timeout`` seconds.
        ArgumentTypeError, InvalidArgumentError
            ``timeout`` is neither ``None`` nor a finite number of seconds >= 0.
        """
        timeout = _checked_timeout(timeout)
        self._check_caller("wait_all")
        with self._lock:
            pending: list[concurrent.futures.Future[None]] = list(self._pending)
        _, not_done_set = concurrent.futures.wait(pending, timeout)
        not_done = [f for f in pending if f in not_done_set and isinstance(f, TransferFuture)]
        if not_done:
            raise TimeoutError(
                f"{len(not_done)} transfer(s) still in flight after {timeout} s: "
                + ", ".join(f"{f.kind} of step {f.step}" for f in not_done[:5])
            )
        self._raise_unobserved()

    drain = wait_all

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop the service: finish (default) or cancel the transfers in flight, stop the thread.

        Parameters
        ----------
        cancel
            Cancel transfers in flight instead of waiting for them; their futures raise
            :class:`concurrent.futures.CancelledError`.
        timeout
            Seconds to wait for transfers in flight before cancelling the rest.

        Raises
        ------
        TransferError
            A transfer failed and nobody looked at its future. The service is closed anyway.

        Calling it again finishes a close that was interrupted (Ctrl-C while it waited), cancelling
        what is still in flight, and otherwise does nothing.
        """
        cancel = check_bool("cancel", cancel)
        timeout = _checked_timeout(timeout)
        if threading.current_thread() is self._thread:
            raise SweepStateError("TransferService.close() was called from the transfer loop thread")
        # One close at a time: a second caller (another thread, a finalizer at exit) waits for
        # the first and then finds the service stopped. Unserialised, it would wait forever for
        # a shutdown coroutine on the loop the first had just stopped.
        with self._closing:
            self._close(cancel, timeout)

    def _close(self, cancel: bool, timeout: float | None) -> None:
        with self._lock:
            if self._stopped:
                return
            wait = not (self._closed or cancel)
            self._closed = True
            pending: list[concurrent.futures.Future[None]] = list(self._pending)
        if wait and pending:
            concurrent.futures.wait(pending, timeout)
        if self._submitter.is_alive():
            self._inbox.put(None)  # every transfer submitted before reaches the loop first
            self._submitter.join()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._stop_threads()
        self._stopped = True
        self._raise_unobserved()

    async def _shutdown(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # A task cancelled before its first step never ran _run: settle its future here.
        with self._lock:
            leftover = [f for f in self._pending if not f.done()]
            self._pending.clear()
        for future in leftover:
            self._slots.release()
            if future.set_running_or_notify_cancel():
                future.set_exception(
                    concurrent.futures.CancelledError(
                        f"{future.kind} of step {future.step} ({_where(future.tier)}) was "
                        "cancelled by TransferService.close() before it started"
                    )
                )
        await self._loop.shutdown_asyncgens()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.close(cancel=exc_type is not None)

    def __repr__(self) -> str:
        return (
            f"TransferService(max_in_flight={self.max_in_flight}, workers={self.workers}, "
            f"io_threads={self.io_threads}, "
            f"in_flight={self.in_flight}, completed={self.completed}, "
            f"stall_seconds={self.stall_seconds:.3f})"
        )



def _checked_tier(tier: object) -> Tier:
    if not isinstance(tier, Tier):
        raise ArgumentTypeError(
            f"tier must be an amcheck.storage.Tier, got {tier!r} of type {type(tier).__name__}"
        )
    return tier


def _checked_timeout(timeout: object) -> float | None:
    """``None`` or a finite number of seconds >= 0."""
    if timeout is None:
        return None
    seconds = check_finite_float("timeout", timeout)
    if seconds < 0:
        raise InvalidArgumentError(f"timeout must be None or >= 0 seconds, got {seconds}")
    return seconds
