"""The transfer service: overlap with a nogil kernel, back-pressure, errors, clean shutdown."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from typing import Any

import numba
import numpy as np
import pytest
from amcheck.storage import RamTier, TransferService, ZarrTier, codec_executor
from zarr.storage import MemoryStore

from amcheck import InvalidArgumentError, StateSpec, SweepStateError, TierFullError, TransferError
from amcheck._state import State


@numba.njit(nogil=True, cache=False)
def _relax(a: np.ndarray, sweeps: int) -> None:  # a serial stencil that releases the GIL
    n = a.shape[0]
    for _ in range(sweeps):
        for i in range(1, n - 1):
            a[i] = 0.25 * a[i - 1] + 0.5 * a[i] + 0.25 * a[i + 1]


WAVE = StateSpec({"u": ((2, 512, 512), "float32")})


def wave_state(seed: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:512, 0:512].astype(np.float32) / 512
    r = np.hypot(x - 0.5, y - 0.5)
    u = np.stack([np.sin(40 * r - seed) * np.exp(-4 * r), np.sin(40 * r - seed - 0.1) * np.exp(-4 * r)])
    return {"u": np.ascontiguousarray(u, dtype=np.float32)}


class GatedRamTier(RamTier):
    """A real RAM tier whose puts wait until the test opens the gate."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = 0

    async def put(self, step: int, state: State) -> None:
        self.entered += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.001)
        await super().put(step, state)


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None}


def test_transfers_overlap_a_nogil_kernel_in_the_callers_thread() -> None:
    tier = ZarrTier(MemoryStore(), WAVE, "zfp:tol=1e-4")
    order = itertools.count()
    log: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def record(what: str) -> None:
        with lock:
            log.append((next(order), what, threading.get_ident()))

    def hook(kind: str, step: int, t: Any, start: float, end: float, nbytes: int) -> None:
        assert start <= end and nbytes == WAVE.nbytes and t is tier
        record(f"{kind}-{step}")

    work = np.linspace(0, 1, 200_000)
    _relax(work, 1)  # compile outside the measured sequence
    state = wave_state(0)
    main = threading.get_ident()
    with TransferService(max_in_flight=2, workers=1, on_event=hook) as service:
        record("submit")
        future = service.submit_put(tier, 7, state)
        calls = 0
        while not future.done() and calls < 100_000:
            _relax(work, 2)
            calls += 1
            record("kernel")
        future.result()
        codec_threads = [t.name for t in threading.enumerate()
                         if t.name.startswith("amcheck-codec")]
        out = {"u": np.zeros_like(state["u"])}
        service.submit_get(tier, 7, out).result()
        loop_ident = service.thread.ident
        assert service.thread.name == "amcheck-transfer" and service.thread.daemon
    assert len(codec_threads) == 1  # zfp ran in the bounded codec pool (workers=1)
    assert np.max(np.abs(out["u"] - state["u"])) <= 1e-4
    names = [what for _, what, _ in log]
    assert names[0] == "submit" and "write-7" in names and names[-1] == "read-7"
    write_at = names.index("write-7")
    assert calls >= 1 and names[1] == "kernel"  # the caller computed while the write ran ...
    assert write_at > 1  # ... and the write ended after the first kernel call had finished
    threads = {what: ident for _, what, ident in log}
    assert threads["submit"] == main and threads["kernel"] == main
    assert threads["write-7"] == loop_ident != main


def test_back_pressure_blocks_the_caller_and_bounds_in_flight() -> None:
    spec = StateSpec({"u": ((64,), "float64")})
    tier = GatedRamTier(10**6, spec)
    state = {"u": np.arange(64.0)}
    with TransferService(max_in_flight=2, workers=1) as service:
        first = [service.submit_put(tier, step, state) for step in (0, 1)]
        assert first[0].waited == 0.0 and service.stalls == 0
        box: dict[str, Any] = {}
        caller = threading.Thread(
            target=lambda: box.setdefault("f", service.submit_put(tier, 2, state))
        )
        caller.start()
        caller.join(0.3)
        assert caller.is_alive() and "f" not in box  # blocked by back-pressure
        assert service.in_flight == 2
        tier.gate.set()
        caller.join()
        service.wait_all()
        assert box["f"].waited > 0.0 and service.stalls == 1
        assert service.stall_seconds >= box["f"].waited
        assert service.peak_in_flight == 2 and service.completed == 3
        assert tier.steps == frozenset({0, 1, 2})


def test_staging_buffers_stay_bounded() -> None:
    """The engine's pattern: a staging slot per write, released when its future is done."""
    spec = StateSpec({"u": ((2, 32, 32), "float32")})
    max_in_flight = 2
    staging = RamTier(10**7, spec, slots=max_in_flight + 1)
    disk = ZarrTier(MemoryStore(), spec, "blosc")
    held: list[tuple[Any, Any]] = []
    peak_slots = 0
    with TransferService(max_in_flight=max_in_flight, workers=2) as service:
        for step in range(30):
            for future, slot in [p for p in held if p[0].done()]:
                future.result()
                staging.release(slot)
                held.remove((future, slot))
            slot = staging.acquire()  # raises TierFullError if buffers were not bounded
            slot.state["u"][...] = step
            held.append((service.submit_put(disk, step, slot.state), slot))
            peak_slots = max(peak_slots, staging.n_slots - staging.n_free)
        service.wait_all()
    assert peak_slots <= max_in_flight + 1 and service.peak_in_flight <= max_in_flight
    assert disk.steps == frozenset(range(30))
    out = {"u": np.zeros((2, 32, 32), np.float32)}
    asyncio.run(disk.get(29, out))
    assert np.all(out["u"] == 29)


class BrokenStore(MemoryStore):
    """A memory store whose chunk writes fail like a full disk."""

    async def set(self, key: str, value: Any, byte_range: Any = None) -> None:
        if "/c." in key:  # a chunk (shard) key: <field>/c.<row>.0
            raise OSError(28, "No space left on device")
        await super().set(key, value)


def test_a_failing_store_reaches_the_caller_on_the_future() -> None:
    tier = ZarrTier(BrokenStore(), WAVE, name="nvme")
    events: list[tuple[str, int]] = []  # a failed transfer is no event (EventHook's contract)
    with TransferService(on_event=lambda kind, step, *rest: events.append((kind, step))
                         ) as service:
        future = service.submit_put(tier, 42, wave_state(0))
        error = future.exception(timeout=30)
        assert isinstance(error, TransferError)
        message = str(error)
        assert "step 42" in message and "'nvme'" in message and "memory://" in message
        assert "No space left on device" in message
        cause = error.__cause__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__
        assert isinstance(cause, OSError) and cause.errno == 28
        service.submit_put(tier, 43, wave_state(1)).exception()  # looked at: not raised again
        service.wait_all()
    assert events == []


def test_an_unobserved_failure_is_raised_by_the_next_submit() -> None:
    tier = ZarrTier(BrokenStore(), WAVE)
    good = RamTier(10**8, WAVE)
    with pytest.raises(TransferError, match="step 8"), TransferService() as service:
        service.submit_put(tier, 5, wave_state(0))  # nobody looks at this future
        while service.in_flight:
            threading.Event().wait(0.005)
        with pytest.raises(TransferError, match="write of step 5"):
            service.submit_put(good, 6, wave_state(1))
        assert 6 not in good  # the failing submit did not start a transfer
        service.submit_put(good, 6, wave_state(1)).result()  # raised once, then cleared
        service.submit_put(tier, 8, wave_state(0))  # raised by close() on leaving the block
    # ... or by wait_all / close when nothing else is submitted
    service = TransferService()
    service.submit_put(tier, 9, wave_state(0))
    with pytest.raises(TransferError, match="step 9"):
        service.close()


def test_a_submit_interrupted_before_the_loop_got_it_does_not_hang_close() -> None:
    """A Ctrl-C inside submit, after the future was counted pending and before the loop got
    it: close() waited forever for a future that would never run."""
    tier = RamTier(10**8, WAVE)
    service = TransferService(max_in_flight=1)
    inbox = service._inbox

    class Interrupting:
        def put(self, item: Any) -> None:
            raise KeyboardInterrupt

    service._inbox = Interrupting()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        service.submit_put(tier, 1, wave_state(0))
    service._inbox = inbox
    assert service.in_flight == 0
    service.submit_put(tier, 2, wave_state(1)).result(timeout=30)  # its slot came back too
    closing = threading.Thread(target=service.close)
    closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive()


@pytest.mark.parametrize("taken_first", [False, True])
def test_a_submit_interrupted_right_after_the_put_frees_its_slot_once(taken_first: bool) -> None:
    """A Ctrl-C right after the put (where CPython checks for signals): the entry was queued,
    submit undid it too, and the loop, running it anyway, released its slot a second time
    ("Semaphore released too many times", an asyncio task error; seen once in 45 interrupted
    demos). Now the loop skips a withdrawn entry, or, if it took the entry first, submit leaves
    the slot to it."""
    tier = RamTier(10**8, WAVE)
    service = TransferService(max_in_flight=1)
    inbox = service._inbox
    took = threading.Event()
    start = service._start
    started: list[Any] = []

    def noting(future: Any, make: Any) -> None:
        started.append(future)
        start(future, make)
        took.set()

    service._start = noting  # type: ignore[method-assign]

    class PutThenInterrupt:
        def put(self, item: Any) -> None:
            inbox.put(item)
            if taken_first:
                assert took.wait(30)
            raise KeyboardInterrupt

        def get(self) -> Any:  # the submit thread's
            return inbox.get()

    service._inbox = PutThenInterrupt()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        service.submit_put(tier, 1, wave_state(0))
    service._inbox = inbox
    service.submit_put(tier, 2, wave_state(1)).result(timeout=30)  # its slot came back
    service.close()  # no task error, nothing pending
    assert service._slots._value == 1  # type: ignore[attr-defined]  # released exactly once
    assert (1 in tier) == taken_first and 2 in tier
    # what the loop ran finished (a second release raised inside it, before its result was set)
    ran = [f for f in started if not f._withdrawn]
    assert len(ran) == 1 + taken_first and all(f.done() and not f.exception() for f in ran)


def test_a_missing_checkpoint_read_names_the_step() -> None:
    tier = RamTier(10**8, WAVE)
    with TransferService() as service:
        future = service.submit_get(tier, 3, {"u": np.zeros((2, 512, 512), np.float32)})
        with pytest.raises(TransferError, match="read of step 3 from tier 'ram'") as info:
            future.result()
        assert isinstance(info.value.__cause__, KeyError)


def test_calls_from_the_loop_thread_are_refused() -> None:
    tier = RamTier(10**7, StateSpec({"u": ((4,), "f8")}))
    seen: list[BaseException] = []
    with TransferService() as service:

        def hook(*args: Any) -> None:
            try:
                service.submit_delete(tier, 0)
            except SweepStateError as exc:
                seen.append(exc)

        service._on_event = hook  # install after construction so the hook can see `service`
        service.submit_put(tier, 0, {"u": np.ones(4)}).result()
    assert len(seen) == 1 and "loop thread" in str(seen[0])


def test_the_caller_never_wakes_the_loop_itself() -> None:
    """Waking the loop lets go of the GIL, and the loop thread took it at once: submitting only
    queues the transfer; the submit thread wakes the loop."""
    spec = StateSpec({"u": ((64,), "float32")})
    tier = RamTier(10 * 4096, spec, name="disk")
    with TransferService(max_in_flight=2) as service:
        wakers: list[str] = []
        wake = service._loop.call_soon_threadsafe

        def recording(*args: Any, **kwargs: Any) -> Any:
            wakers.append(threading.current_thread().name)
            return wake(*args, **kwargs)

        service._loop.call_soon_threadsafe = recording  # type: ignore[method-assign]
        futures = [service.submit_put(tier, step, {"u": np.full(64, step, np.float32)})
                   for step in range(5)]
        concurrent.futures.wait(futures)
        assert wakers == ["amcheck-transfer-submit"] * 5
        del service._loop.call_soon_threadsafe  # the loop's own method again, for close()
    assert tier.steps == frozenset(range(5))


def test_close_leaves_no_thread_and_is_idempotent() -> None:
    before = _threads()
    spec = StateSpec({"u": ((128, 128), "float32")})
    tier = ZarrTier(MemoryStore(), spec, "zstd")
    service = TransferService(max_in_flight=3, workers=2)
    for step in range(6):
        service.submit_put(tier, step, {"u": np.full((128, 128), step, np.float32)})
    service.close()
    service.close()
    assert _threads() == before
    assert tier.steps == frozenset(range(6))  # close drained the writes
    with pytest.raises(SweepStateError, match="after close"):
        service.submit_put(tier, 9, {"u": np.zeros((128, 128), np.float32)})


def test_a_close_interrupted_while_it_waits_is_finished_by_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while close() waits for a transfer: a second close() stops every thread."""
    before = _threads()
    spec = StateSpec({"u": ((8,), "float64")})
    tier = GatedRamTier(10 * 4096, spec, name="disk")
    service = TransferService(max_in_flight=2)
    future = service.submit_put(tier, 1, {"u": np.ones(8)})

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(concurrent.futures, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt):
            service.close()
    assert _threads() != before  # the loop and its pools still run
    with pytest.raises(SweepStateError, match="after close"):
        service.submit_put(tier, 2, {"u": np.ones(8)})
    service.close()  # cancels the stuck put and stops everything
    assert _threads() == before
    assert future.cancelled() or isinstance(future.exception(), concurrent.futures.CancelledError)
    service.close()  # and then does nothing


def test_close_with_cancel_stops_stuck_transfers() -> None:
    before = _threads()
    spec = StateSpec({"u": ((8,), "float64")})
    tier = GatedRamTier(10**6, spec)
    service = TransferService(max_in_flight=2)
    futures = [service.submit_put(tier, s, {"u": np.zeros(8)}) for s in (0, 1)]
    service.close(cancel=True)
    for future in futures:
        with pytest.raises(concurrent.futures.CancelledError):
            future.result()
    assert _threads() == before and tier.steps == frozenset()
    # a timeout turns into a cancel as well
    service = TransferService(max_in_flight=1)
    stuck = service.submit_put(tier, 2, {"u": np.zeros(8)})
    service.close(timeout=0.05)
    assert isinstance(stuck.exception(), concurrent.futures.CancelledError)
    assert _threads() == before


def test_wait_all_timeout_and_context_manager_cancel_on_error() -> None:
    spec = StateSpec({"u": ((8,), "float64")})
    tier = GatedRamTier(10**6, spec)
    with pytest.raises(RuntimeError, match="boom"), TransferService() as service:
        future = service.submit_put(tier, 0, {"u": np.zeros(8)})
        with pytest.raises(TimeoutError, match="write of step 0"):
            service.wait_all(timeout=0.05)
        raise RuntimeError("boom")
    assert isinstance(future.exception(), concurrent.futures.CancelledError)


def test_run_executes_a_coroutine_on_the_loop() -> None:
    spec = StateSpec({"u": ((8,), "float64")})
    tier = RamTier(10**6, spec)
    with TransferService() as service:
        service.submit_put(tier, 1, {"u": np.ones(8)}).result()
        service.run(tier.delete(1))
        assert tier.steps == frozenset()
        with pytest.raises(TierFullError):
            small = RamTier(RamTier(10**6, spec, slots=1).slot_nbytes, spec)
            service.run(small.put(0, {"u": np.ones(8)}))
            service.run(small.put(1, {"u": np.ones(8)}))


class ThreadRecordingTier(RamTier):
    """A real RAM tier whose put also runs a job in the codec pool and one in the I/O threads."""

    seen: list[tuple[str, str]]

    async def put(self, step: int, state: State) -> None:
        loop = asyncio.get_running_loop()
        name = lambda: threading.current_thread().name
        codec = await loop.run_in_executor(codec_executor(), name)
        io = await loop.run_in_executor(None, name)
        self.seen.append((codec, io))
        await super().put(step, state)


def test_codec_jobs_and_io_jobs_run_in_their_own_pools() -> None:
    spec = StateSpec({"u": ((8,), "float64")})
    tier = ThreadRecordingTier(10**6, spec)
    tier.seen = []
    with TransferService(max_in_flight=4, workers=1, io_threads=3) as service:
        for step in range(12):
            service.submit_put(tier, step, {"u": np.ones(8)})
        service.wait_all()
        service.run(tier.put(12, {"u": np.ones(8)}))  # run() too
    codec = {c for c, _ in tier.seen}
    io = {i for _, i in tier.seen}
    assert len(tier.seen) == 13
    assert all(n.startswith("amcheck-codec") for n in codec) and len(codec) == 1
    assert all(n.startswith("amcheck-io") for n in io) and 1 <= len(io) <= 3
    assert codec_executor() is None  # outside a transfer: the loop's default executor


@pytest.mark.parametrize(("kwargs", "name"), [({"max_in_flight": 0}, "max_in_flight"),
                                               ({"workers": 0}, "workers"),
                                               ({"io_threads": 0}, "io_threads")])
def test_rejects_bad_arguments(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        TransferService(**kwargs)


class HalfBrokenStore(MemoryStore):
    """One field's shard write fails at once while the other field's is still being written."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_done = threading.Event()

    async def set(self, key: str, value: Any, byte_range: Any = None) -> None:
        if key.startswith("v/c."):
            raise OSError(28, "No space left on device")
        if key.startswith("u/c."):
            await asyncio.sleep(0.2)
            self.slow_done.set()
        await super().set(key, value)


def test_a_failed_put_settles_only_after_all_its_writes_stopped() -> None:
    """Otherwise the slow write lands after the row was freed for the next checkpoint."""
    spec = StateSpec({"u": ((256, 512), "float32"), "v": ((4,), "float32")})
    store = HalfBrokenStore()
    tier = ZarrTier(store, spec)
    state = {"u": np.ones((256, 512), np.float32), "v": np.zeros(4, np.float32)}
    with TransferService() as service:
        error = service.submit_put(tier, 1, state).exception(timeout=30)
        assert isinstance(error, TransferError) and "No space left" in str(error)
        assert store.slow_done.is_set()


class ExitingTier(RamTier):
    """A put whose sub-task raises SystemExit (as a library calling sys.exit() would)."""

    async def put(self, step: int, state: State) -> None:
        async def job() -> None:
            raise SystemExit("exit from a sub-task")

        await asyncio.gather(job())


def test_a_system_exit_in_a_sub_task_fails_the_transfer_and_the_loop_goes_on() -> None:
    tier = ExitingTier(10**8, WAVE)
    good = RamTier(10**8, WAVE)
    before = _threads()
    service = TransferService()
    error = service.submit_put(tier, 3, wave_state(0)).exception(timeout=30)
    assert isinstance(error, TransferError) and "step 3" in str(error)
    assert isinstance(error.__cause__, SystemExit)
    service.submit_put(good, 4, wave_state(1)).result(timeout=30)  # the loop still runs
    assert 4 in good
    service.close()
    assert _threads() <= before


class SlowBrokenStore(BrokenStore):
    async def set(self, key: str, value: Any, byte_range: Any = None) -> None:
        await asyncio.sleep(0.1)  # both writes are submitted before either fails
        await super().set(key, value, byte_range)


def test_every_unobserved_failure_is_reported() -> None:
    tier = ZarrTier(SlowBrokenStore(), WAVE)
    service = TransferService()
    service.submit_put(tier, 5, wave_state(0))  # nobody looks at these two futures
    service.submit_put(tier, 6, wave_state(1))
    while service.in_flight:
        threading.Event().wait(0.005)
    with pytest.raises(TransferError, match="write of step 5") as info:
        service.wait_all()
    assert any("step 6" in note for note in info.value.__notes__)
    service.wait_all()  # raised once
    service.close()


def test_an_interrupt_while_the_threads_start_leaves_none_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C early in a disk sweep could land while the service started its threads: the
    loop thread then ran for the rest of the process (the service was never returned)."""
    import types

    import amcheck.storage._transfer as transfer

    interrupts = [KeyboardInterrupt()]  # one Ctrl-C: the clean-up's own waits go through

    class Interrupted(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            done = super().wait(timeout)
            if interrupts:  # the first wait, the constructor's, for the loop thread to start
                raise interrupts.pop()
            return done

    fake = types.SimpleNamespace(**{k: getattr(threading, k) for k in dir(threading)
                                    if not k.startswith("__")})
    fake.Event = Interrupted
    monkeypatch.setattr(transfer, "threading", fake)
    before = _threads()
    with pytest.raises(KeyboardInterrupt):
        TransferService()
    assert _threads() <= before
    assert not interrupts
