"""The asynchronous disk path: gradients through real disk tiers, overlap, back-pressure, errors.

Every test here runs the Checkpointer against a real tier (ZarrTier on a local directory or a
zarr store, RawTier on a file) and the toy problem of ``toy_problem.py``, whose gradient through
StoreAll in RAM is the reference, compared bit for bit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from amcheck.storage import RamTier, RawTier, ZarrTier
from toy_problem import Adjoint, Forward, initial_state
from zarr.storage import LocalStore

import amcheck
from amcheck import BudgetError, Checkpointer, InvalidArgumentError, StateSpec, TransferError
from amcheck._strategy import slot_size
from amcheck.schedules import simulate

N = 23
SPEC = StateSpec.from_arrays(initial_state())
SLOT = slot_size(SPEC)
RAM = 10 * SLOT  # 5 RAM slots + 3 buffers + 2 staging slots for async_multistage


def transfer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("amcheck")]


def gradient(
    disk: Any, n_steps: int | None = N, *, fwd: Forward | None = None, **kwargs: Any
) -> tuple[dict[str, np.ndarray], Adjoint, amcheck.Stats, Checkpointer]:
    fwd = fwd if fwd is not None else Forward()
    adj = Adjoint()
    kwargs.setdefault("ram", RAM)
    with Checkpointer(fwd, adj, initial_state(), n_steps, disk=disk, **kwargs) as ckp:
        x_n = ckp.forward()
        adj.start(x_n)
        ckp.reverse()
        return adj.grad, adj, ckp.stats, ckp


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    grad, _, _, ckp = gradient(None, strategy="store_all", ram="1 MiB")
    assert ckp.strategy == "store_all"
    return grad


def assert_same(grad: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> None:
    for key in ("u", "v"):
        assert np.array_equal(grad[key], reference[key]), key


class CountingRaw(RawTier):
    """A RawTier that counts reads per step and the most checkpoints it held at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, SPEC)
        self.gets: dict[int, int] = {}
        self.puts: dict[int, int] = {}
        self.peak = 0

    async def put(self, step: int, state: Any) -> None:
        await super().put(step, state)
        self.puts[step] = self.puts.get(step, 0) + 1
        self.peak = max(self.peak, len(self.steps))

    async def get(self, step: int, out: Any) -> None:
        self.gets[step] = self.gets.get(step, 0) + 1
        await super().get(step, out)


# -- gradients -----------------------------------------------------------------------------------

INTERVALS = [1, 2, 7, N - 1, N, N + 5]


@pytest.mark.parametrize("k", INTERVALS)
@pytest.mark.parametrize("tier", ["zarr", "raw"])
def test_gradient_bitwise_equal_to_store_all(
    tmp_path: Path, k: int, tier: str, reference: dict[str, np.ndarray]
) -> None:
    disk: ZarrTier | CountingRaw
    disk = ZarrTier(tmp_path / "z", SPEC) if tier == "zarr" else CountingRaw(tmp_path / "r.bin")
    fwd = Forward()
    grad, adj, stats, ckp = gradient(disk, fwd=fwd, strategy="async_multistage", interval=k)
    assert_same(grad, reference)
    assert adj.seen == list(range(N - 1, -1, -1))
    # Counts: the simulated ones for this fixed k; one disk checkpoint per segment but the last.
    sim = simulate(ckp.schedule)
    assert stats.forward_steps == sim.forward_steps == fwd.steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads
    assert stats.writes["disk"] == (N - 1) // k
    assert stats.bytes_written["disk"] == stats.bytes_read["disk"] == stats.writes["disk"] * SPEC.nbytes
    assert stats.peak_ram_bytes <= stats.ram_pool_bytes <= RAM
    assert stats.interval == k
    if stats.writes["disk"]:
        rate = stats.bytes_written["disk"] / stats.write_seconds["disk"]
        assert stats.write_throughput["disk"] == rate > 0
        assert stats.read_throughput["disk"] == stats.bytes_read["disk"] / stats.read_seconds["disk"]
        assert stats.hidden_fraction is not None and 0.0 <= stats.hidden_fraction <= 1.0
    else:
        assert stats.write_throughput["disk"] is None and stats.hidden_fraction is None
    assert disk.steps == frozenset()  # every disk checkpoint was freed after its read
    if isinstance(disk, CountingRaw):
        # The reverse sweep reads each disk checkpoint exactly once.
        assert disk.gets == disk.puts == {t: 1 for t in range(0, N - 1 - (N - 1) % k, k)}
    asyncio_close(disk)


def asyncio_close(tier: Any) -> None:
    import asyncio

    asyncio.run(tier.close())


@pytest.mark.parametrize("stop", [1, 6, 7, 22])
def test_unknown_length(tmp_path: Path, stop: int) -> None:
    """n unknown, ending inside a segment, on its boundary, at n < k; gradient as with n known."""
    expected, _, _, _ = gradient(None, stop, strategy="store_all", ram="1 MiB")
    disk = CountingRaw(tmp_path / "r.bin")
    fwd = Forward(stop_at=stop)
    grad, _, stats, ckp = gradient(disk, None, fwd=fwd, strategy="async_multistage", interval=7)
    assert ckp.n_steps == stats.n_steps == stop
    assert_same(grad, expected)
    sim = simulate(ckp.schedule, stop)
    assert stats.forward_steps == sim.forward_steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads
    # Every segment start went to disk; all but the last one's are read back, once.
    assert disk.puts == {t: 1 for t in range(0, stop, 7)}
    assert disk.gets == {t: 1 for t in range(0, (stop - 1) // 7 * 7, 7)}
    assert disk.steps == frozenset()


def test_disk_path_is_created_and_removed(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    """disk="dir": amcheck makes a ZarrTier there (compression applied) and removes it on close."""
    fresh = tmp_path / "new" / "ckpt"
    grad, _, stats, ckp = gradient(fresh, strategy="async_multistage", interval=4, compression="zstd")
    assert_same(grad, reference)
    assert stats.writes["disk"] == (N - 1) // 4
    assert isinstance(ckp.disk, ZarrTier) and ckp.disk.compression.text.startswith("zstd")
    assert not (tmp_path / "new").exists()  # amcheck made both levels, and removed both
    (tmp_path / "mine").mkdir()
    gradient(tmp_path / "mine" / "a" / "b", strategy="async_multistage", interval=4)
    assert list((tmp_path / "mine").iterdir()) == []  # made a/b, removed a/b; "mine" stays
    # An existing directory gets an amcheck-* subdirectory, removed on close; the directory stays.
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "keep.txt").write_text("mine")
    fwd = Forward()
    with Checkpointer(fwd, Adjoint(), initial_state(), N, ram=RAM, disk=tmp_path / "scratch",
                      interval=4) as ckp:
        ckp.forward()
        made = [p.name for p in (tmp_path / "scratch").iterdir()]
        assert len(made) == 2 and [m for m in made if m.startswith("amcheck-")]
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["keep.txt"]


def test_a_path_from_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"~/..." is under the home directory, for the Checkpointer and both tiers, as in a shell
    (it was a folder named "~" in the working directory)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk="~/ckpt",
                      interval=4) as ckp:
        ckp.forward()
        assert Path(ckp.disk.path).parents[1] == tmp_path / "home" / "ckpt"  # type: ignore[union-attr]
        ckp.reverse()
    tiers = [ZarrTier("~/zarr", SPEC), RawTier("~/raw.bin", SPEC, records=2)]
    try:
        assert [Path(t.path) for t in tiers] == [tmp_path / "home" / "zarr",
                                                 tmp_path / "home" / "raw.bin"]
    finally:
        for tier in tiers:
            asyncio.run(tier.close())
    assert not (tmp_path / "~").exists()


def test_a_folder_deleted_under_the_run_fails_the_sweep_not_close(tmp_path: Path) -> None:
    """The amcheck-* folder removed mid-run: the reverse sweep fails naming the step and path;
    close() then succeeds (the index it would write belongs to files about to go) and leaves
    nothing behind."""
    import shutil

    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tmp_path,
                       interval=4)
    ckp.forward()
    (folder,) = tmp_path.iterdir()
    shutil.rmtree(folder)
    with pytest.raises(TransferError, match=rf"read of step \d+ at {re.escape(str(folder))}"):
        ckp.reverse()
    ckp.close()
    assert ckp.closed and list(tmp_path.iterdir()) == []


def test_two_checkpointers_given_one_new_path_keep_apart(
    tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    """Each gets its own amcheck-* subdirectory: closing the first (which made the path) leaves
    the second's checkpoints alone. The path, not empty when its maker closed, goes with the
    second (it stayed behind, empty, since the second had not made it)."""
    path = tmp_path / "new" / "ckpt"
    first = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=path, interval=4)
    adjoint = Adjoint()
    second = Checkpointer(Forward(), adjoint, initial_state(), N, ram=RAM, disk=path, interval=4)
    first.forward()
    adjoint.start(second.forward())
    first.close()
    second.reverse()
    assert_same(adjoint.grad, reference)
    assert path.is_dir()  # the second's folder is in it
    second.close()
    assert not (tmp_path / "new").exists()


def test_a_relative_disk_path_is_removed_where_it_was_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path is made absolute when the Checkpointer is built: a chdir before close() must not
    turn the removal on another directory (a user's file there survives); p/q/../r leaves no p."""
    (tmp_path / "run").mkdir()
    (tmp_path / "other" / "scratch" / "ckpt").mkdir(parents=True)
    precious = tmp_path / "other" / "scratch" / "ckpt" / "precious.txt"
    precious.write_text("not amcheck's")
    monkeypatch.chdir(tmp_path / "run")
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk="scratch/ckpt",
                       interval=4)
    ckp.forward()
    monkeypatch.chdir(tmp_path / "other")
    ckp.close()
    assert precious.read_text() == "not amcheck's"
    assert list((tmp_path / "run").iterdir()) == []
    with Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk="p/q/../r",
                      interval=4) as ckp:
        ckp.forward()
        assert (tmp_path / "other" / "p" / "r").is_dir()
    assert not (tmp_path / "other" / "p").exists()


def test_zarr_store_and_auto_strategy(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    store = LocalStore(tmp_path / "store")
    grad, _, stats, ckp = gradient(store, interval=5)
    assert ckp.strategy == "async_multistage"
    assert_same(grad, reference)
    assert stats.writes["disk"] == (N - 1) // 5


def test_automatic_interval_follows_write_time(tmp_path: Path) -> None:
    """Slow writes, fast steps: the interval grows from slots + 1 towards write/step time."""

    class SlowRaw(CountingRaw):
        async def put(self, step: int, state: Any) -> None:
            import asyncio

            await asyncio.sleep(0.05)  # 50 ms a write
            await super().put(step, state)

    class Slow(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            time.sleep(0.0002 * (t1 - t0))  # >= 0.2 ms a step
            return super().advance(src, dst, t0, t1)

    n = 400
    expected, _, _, _ = gradient(None, n, strategy="store_all", ram="1 MiB")
    disk = SlowRaw(tmp_path / "r.bin")
    grad, _, stats, ckp = gradient(disk, n, fwd=Slow(), strategy="async_multistage")
    assert_same(grad, expected)
    first = ckp.interval
    assert first == ckp.slots + 1  # the initial interval, before any measurement
    starts = ckp.schedule.segment_starts  # type: ignore[attr-defined]
    gaps = np.diff(starts)
    # ceil(1.25 * 50 ms / step time): far above slots + 1 unless a step took > 1.5 ms.
    assert stats.interval is not None and stats.interval > first
    assert gaps[0] == first and gaps.max() > first
    assert disk.gets == {t: 1 for t in starts[:-1]}


def test_automatic_interval_stays_at_the_knee_the_disk_nearly_keeps_up_with(
        tmp_path: Path) -> None:
    """Writes of 1.5 (slots + 1) steps' time: the margin calls for k about twice the knee
    slots + 1, but two writes in flight keep up with segments at the knee, whose stalls cost
    nothing next to the recomputation a longer k adds. The sweep stays there."""

    class Steady(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            time.sleep(0.001 * (t1 - t0))  # >= 1 ms a step
            return super().advance(src, dst, t0, t1)

    knee = 6  # slots + 1

    class Overlapping(CountingRaw):
        async def put(self, step: int, state: Any) -> None:
            import asyncio

            await asyncio.sleep(0.0015 * knee)  # two at a time: 4.5 ms a segment of 6 ms
            await super().put(step, state)

    n = 240
    expected, _, _, _ = gradient(None, n, strategy="store_all", ram="1 MiB")
    ram = (knee - 1 + 3) * SLOT  # async multistage: the slots and 3 more buffers
    grad, _, stats, ckp = gradient(Overlapping(tmp_path / "r.bin"), n, fwd=Steady(), ram=ram,
                                   strategy="async_multistage")
    assert_same(grad, expected)
    assert ckp.slots + 1 == knee == ckp.schedule.knee  # type: ignore[attr-defined]
    assert set(np.diff(ckp.schedule.segment_starts)) == {knee}  # type: ignore[attr-defined]
    assert stats.interval == knee
    # what the times alone call for: ceil(1.25 · 9 ms / >= 1 ms), unless a step took > 1.9 ms
    from amcheck._interval import required_interval

    assert required_interval(0.0015 * knee, stats.compute_seconds / stats.forward_steps,
                             margin=1.25) > knee


# -- overlap and back-pressure --------------------------------------------------------------------


class HandshakeRaw(RawTier):
    """A tier whose write of x_t returns only once the advance that follows has started.

    With a synchronous engine this would time out; with the asynchronous path the write of x_t
    and the advance from x_t run at the same time, which the timeline must show.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, SPEC)
        self.started: dict[int, threading.Event] = {}
        self.waiting: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def event(self, table: dict[int, threading.Event], step: int) -> threading.Event:
        with self.lock:
            return table.setdefault(step, threading.Event())

    async def put(self, step: int, state: Any) -> None:
        import asyncio

        self.event(self.waiting, step).set()
        ok = await asyncio.to_thread(self.event(self.started, step).wait, 10.0)
        if not ok:
            raise TimeoutError(f"no advance from x_{step} started while it was written")
        await super().put(step, state)


def test_writes_overlap_compute_on_the_transfer_thread(tmp_path: Path) -> None:
    disk = HandshakeRaw(tmp_path / "r.bin")

    class Shaking(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            if t0 % 5 == 0 and t0 < 20:  # x_20 starts the last segment: it stays in RAM
                disk.event(disk.started, t0).set()
                # The write of x_t0 is under way while this advance runs.
                assert disk.event(disk.waiting, t0).wait(10.0)
            return super().advance(src, dst, t0, t1)

    with Checkpointer(Shaking(), Adjoint(), initial_state(), N, ram=RAM, disk=disk,
                      strategy="async_multistage", interval=5) as ckp:
        ckp.forward()
        events = ckp.timeline.events
        stats = ckp.stats
        ckp.timeline.clear()  # a record: clearing it does not rewrite what was measured
        assert ckp.stats.hidden_fraction == stats.hidden_fraction
    writes = [e for e in events if e.kind == "write"]
    computes = {e.step: e for e in events if e.kind == "compute"}
    # Events are recorded as writes end; with two in flight they may end in either order.
    assert sorted(w.step for w in writes) == [0, 5, 10, 15]
    main = threading.current_thread().name
    assert {w.thread for w in writes} == {"amcheck-transfer"}
    assert {c.thread for c in computes.values()} == {main}
    for write in writes:
        advance = computes[write.step]
        assert advance.start < write.end and write.start < advance.end  # they overlapped
    assert stats.hidden_fraction is not None and stats.hidden_fraction > 0.0


def test_automatic_interval_measures_its_first_writes_alone(tmp_path: Path) -> None:
    """The first estimate of k comes from writes that each had the disk to itself."""
    from amcheck._checkpointer import _AutoInterval

    class Slow(CountingRaw):
        async def put(self, step: int, state: Any) -> None:
            import asyncio

            await asyncio.sleep(0.01)  # far slower than a segment of the toy problem
            await super().put(step, state)

    n = 60
    want, _, _, _ = gradient(None, n, strategy="store_all", ram="1 MiB")
    grad, _, stats, ckp = gradient(Slow(tmp_path / "r.bin"), n, strategy="async_multistage")
    assert_same(grad, want)
    writes = sorted((e for e in ckp.timeline.events if e.kind == "write"), key=lambda e: e.start)
    probe = writes[:_AutoInterval.PROBE_WRITES]
    assert len(probe) == _AutoInterval.PROBE_WRITES
    for before, after in itertools.pairwise(probe):
        assert after.start >= before.end  # one at a time
    assert stats.waits >= _AutoInterval.PROBE_WRITES - 1  # the computation waited for them
    assert stats.interval is not None and stats.interval > probe[1].step - probe[0].step
    # write time / step time asks for k in the hundreds: a known n caps it
    assert stats.interval == n


def test_simulate_counts_a_sweep_with_an_automatic_interval(tmp_path: Path) -> None:
    """simulate(ckp.schedule) between forward() and reverse() counts the sweep as it ran, with
    the intervals the controller chose, and leaves the reverse sweep to come alone."""

    class Slow(CountingRaw):
        async def put(self, step: int, state: Any) -> None:
            import asyncio

            await asyncio.sleep(0.01)
            await super().put(step, state)

    n = 60
    want, _, _, _ = gradient(None, n, strategy="store_all", ram="1 MiB")
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), n, ram=RAM, disk=Slow(tmp_path / "r.bin"),
                      strategy="async_multistage") as ckp:
        adj.start(ckp.forward())
        starts = ckp.schedule.segment_starts  # type: ignore[attr-defined]
        assert len(set(np.diff((*starts, n)))) > 1  # the interval changed during the sweep
        sim = simulate(ckp.schedule, n)
        ckp.reverse()
        stats = ckp.stats
    assert_same(adj.grad, want)
    assert stats.forward_steps == sim.forward_steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads


def test_back_pressure_bounds_staging_buffers(tmp_path: Path) -> None:
    """A disk slower than compute: never more than max_in_flight writes; waits are recorded."""

    class Gate(CountingRaw):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self.active = 0
            self.most = 0
            self.guard = threading.Lock()

        async def put(self, step: int, state: Any) -> None:
            import asyncio

            with self.guard:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                await asyncio.sleep(0.02)
                await super().put(step, state)
            finally:
                with self.guard:
                    self.active -= 1

    disk = Gate(tmp_path / "r.bin")
    for max_in_flight in (1, 3):
        disk.most = 0
        ram = (7 + max_in_flight) * SLOT
        _, _, stats, ckp = gradient(disk, 60, strategy="async_multistage", interval=2, ram=ram,
                                    max_in_flight=max_in_flight)
        assert disk.most == max_in_flight  # the disk is the bottleneck: the queue fills, no more
        assert stats.waits > 0 and stats.stall_seconds > 0
        waits = [e for e in ckp.timeline.events if e.kind == "wait"]
        assert len(waits) == stats.waits
        assert {e.thread for e in waits} == {threading.current_thread().name}
        assert stats.peak_ram_bytes <= stats.ram_pool_bytes <= ram


# -- errors ---------------------------------------------------------------------------------------


class FailingStore(LocalStore):
    """A real zarr LocalStore whose chunk writes or reads fail from the Nth one on."""

    def __init__(self, root: Path, *, fail_set: int | None = None,
                 fail_get: int | None = None) -> None:
        super().__init__(root)
        self.fail_set, self.fail_get = fail_set, fail_get
        self.sets = self.gets = 0

    async def set(self, key: str, value: Any) -> None:
        if "/c." in key:
            self.sets += 1
            if self.fail_set is not None and self.sets >= self.fail_set:
                raise OSError(28, "No space left on device (injected)")
        await super().set(key, value)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        if "/c." in key:
            self.gets += 1
            if self.fail_get is not None and self.gets >= self.fail_get:
                raise OSError(5, "Input/output error (injected)")
        return await super().get(key, prototype, byte_range)


CHUNKS = 2  # per checkpoint: one shard per field (u and v), all levels inside


def test_write_failure_reaches_the_caller(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    store = FailingStore(tmp_path / "store", fail_set=2 * CHUNKS + 1)  # the third write fails
    disk = ZarrTier(store, SPEC)
    adj = Adjoint()
    ckp = Checkpointer(Forward(), adj, initial_state(), N, ram=RAM, disk=disk,
                       strategy="async_multistage", interval=4)
    with ckp:
        with pytest.raises(TransferError) as info:
            ckp.forward()
        message = str(info.value)
        found = re.search(r"write of step (\d+)", message)
        assert found and int(found.group(1)) in (4, 8, 12, 16, 20), message
        assert "'disk'" in message and str(tmp_path / "store") in message
        assert "No space left on device (injected)" in message
        assert transfer_threads() == []  # the reset stopped the transfer threads
        assert disk.steps == frozenset()  # what was written is gone
        # The Checkpointer is usable again once the disk is.
        store.fail_set = None
        adj.start(ckp.forward())
        ckp.reverse()
    assert_same(adj.grad, reference)
    assert transfer_threads() == []


def test_read_failure_reaches_the_caller(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "store", fail_get=CHUNKS + 1)  # the second read fails
    disk = ZarrTier(store, SPEC)
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=disk,
                       strategy="async_multistage", interval=4)
    with ckp:
        ckp.forward()
        with pytest.raises(TransferError, match=r"read of step (0|4|8|12|16) ") as info:
            ckp.reverse()
        message = str(info.value)
        assert "'disk'" in message and str(tmp_path / "store") in message
        assert "Input/output error (injected)" in message
        assert transfer_threads() == []
        assert disk.steps == frozenset()
        with pytest.raises(amcheck.SweepStateError, match=r"reverse\(\) needs a forward sweep"):
            ckp.reverse()
    assert transfer_threads() == []


def test_failure_in_a_write_nobody_waits_for_surfaces_before_forward_returns(
    tmp_path: Path,
) -> None:
    """The last write fails while the final segment computes: forward() still raises."""
    store = FailingStore(tmp_path / "store", fail_set=4 * CHUNKS + 1)  # the fifth write: x_16
    disk = ZarrTier(store, SPEC)
    with Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=disk,
                      strategy="async_multistage", interval=4) as ckp, pytest.raises(
        TransferError, match=r"write of step (12|16) "
    ):
        ckp.forward()
    assert transfer_threads() == []


def test_deletes_run_in_the_background(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    """A disk checkpoint's delete does not hold up the reverse sweep.

    The schedule frees x_s on disk right after loading it, before it reverses steps s+k-1 … s;
    here the delete of x_s waits until reverse step s has run. Were deletes run on the compute
    thread, the first one would wait for the compute thread, time out and fail the sweep.
    """
    reversed_steps: set[int] = set()
    progress = threading.Condition()

    def reversed_(step: int) -> bool:
        with progress:
            return progress.wait_for(lambda: step in reversed_steps, timeout=10.0)

    class WaitingDeletes(CountingRaw):
        async def delete(self, step: int) -> None:
            import asyncio

            if not await asyncio.to_thread(reversed_, step):
                raise TimeoutError(f"reverse step {step} did not run while x_{step} was deleted")
            await super().delete(step)

    class Stepping(Adjoint):
        def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
            super().reverse(state, t)
            with progress:
                reversed_steps.add(t)
                progress.notify_all()

    disk = WaitingDeletes(tmp_path / "r.bin")
    adj = Stepping()
    with Checkpointer(Forward(), adj, initial_state(), N, ram=RAM, disk=disk,
                      strategy="async_multistage", interval=4) as ckp:
        adj.start(ckp.forward())
        ckp.reverse()
        assert ckp.stats.reads["disk"] == 5  # x_0, x_4 … x_16, each deleted after its read
    assert_same(adj.grad, reference)
    assert disk.steps == frozenset()


def test_delete_failure_reaches_the_caller(tmp_path: Path) -> None:
    class FailingDeletes(CountingRaw):
        async def delete(self, step: int) -> None:
            raise OSError(5, "Input/output error (injected)")

    disk = FailingDeletes(tmp_path / "r.bin")
    with Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=disk,
                      strategy="async_multistage", interval=4) as ckp:
        ckp.forward()
        with pytest.raises(TransferError, match=r"delete of step 16 ") as info:
            ckp.reverse()  # x_16 is the first disk checkpoint the reverse sweep is done with
        message = str(info.value)
        assert str(tmp_path / "r.bin") in message
        assert "Input/output error (injected)" in message
        # Cleaning up fails too (every delete does): the first error is the one raised, the
        # clean-up's is a note, and the Checkpointer is closed.
        assert any("could not clean up" in note for note in info.value.__notes__)
        assert transfer_threads() == []
        with pytest.raises(amcheck.SweepStateError):
            ckp.forward()
    assert transfer_threads() == []


def test_a_failed_delete_is_retried_by_the_reset(
    tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    """The first delete fails once: the error reaches the caller, the reset deletes that
    checkpoint and the rest, and the Checkpointer is usable again."""

    class OnceFailing(CountingRaw):
        failed = False

        async def delete(self, step: int) -> None:
            if not self.failed:
                self.failed = True
                raise OSError(5, "Input/output error (injected)")
            await super().delete(step)

    disk = OnceFailing(tmp_path / "r.bin")
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), N, ram=RAM, disk=disk,
                      strategy="async_multistage", interval=4) as ckp:
        ckp.forward()
        with pytest.raises(TransferError, match=r"delete of step 16 ") as info:
            ckp.reverse()
        assert not getattr(info.value, "__notes__", [])  # the reset went through
        assert disk.steps == frozenset()  # x_16 too: the reset deleted it
        adj.start(ckp.forward())
        ckp.reverse()
    assert_same(adj.grad, reference)
    assert disk.steps == frozenset()


def test_every_finished_delete_is_reaped(tmp_path: Path) -> None:
    """A delete that ends between two looks at it is still reaped, and every failed delete is
    remembered for the reset's retry, not only the first one raised."""
    from amcheck._disk import DiskPath
    from amcheck._stats import StatsRecorder
    from amcheck._timeline import Timeline

    class Finishing:
        """A delete's future that is done from its ``looks``-th look on."""

        def __init__(self, step: int, looks: int, error: BaseException | None) -> None:
            self.step, self._looks, self._error = step, looks, error

        def done(self) -> bool:
            self._looks -= 1
            return self._looks <= 0

        def exception(self) -> BaseException | None:
            return self._error

    dp = DiskPath(CountingRaw(tmp_path / "r.bin"), max_in_flight=2, timeline=Timeline(),
                  stats=StatsRecorder())
    ends_now = Finishing(4, 2, TransferError("delete of step 4 failed"))  # done at the 2nd look
    fails = Finishing(8, 1, TransferError("delete of step 8 failed"))
    running = Finishing(12, 10, None)
    dp._deletes = [ends_now, fails, running]  # type: ignore[list-item]
    with pytest.raises(TransferError, match="step 8"):
        dp.poll()
    assert dp.undeleted == {8}
    assert dp._deletes == [ends_now, running]  # not lost: reaped at the next look
    with pytest.raises(TransferError, match="step 4"):
        dp.poll()
    assert dp.undeleted == {4, 8}
    both = [Finishing(16, 1, TransferError("a")), Finishing(20, 1, TransferError("b"))]
    dp._deletes = both  # type: ignore[assignment]
    with pytest.raises(TransferError, match="a"):
        dp.poll()
    assert dp.undeleted == {4, 8, 16, 20} and dp._deletes == []
    assert not dp.running  # no transfer service was started


def test_the_interval_controller_gets_each_writes_share_of_the_disk(tmp_path: Path) -> None:
    """Writes in flight share the disk: each counts from its start, or from the end of the
    write before it when that came later, to its end (the throughput the interval must fit)."""
    from amcheck.storage import TransferFuture

    from amcheck._disk import DiskPath, _Transfer
    from amcheck._stats import StatsRecorder
    from amcheck._timeline import Timeline

    tier = CountingRaw(tmp_path / "r.bin")
    dp = DiskPath(tier, max_in_flight=3, timeline=Timeline(), stats=StatsRecorder())
    slot = RamTier(2 * tier.spec.nbytes, tier.spec).acquire()  # reaping only unpins it
    seen: list[float] = []
    dp.write_observer = seen.append
    # (start, end): alone; three in flight together; one after a gap; one that ended first
    for step, (start, end) in enumerate([(10.0, 14.0), (20.0, 24.0), (21.0, 26.0),
                                         (22.0, 29.0), (40.0, 43.0), (41.0, 42.0)]):
        future = TransferFuture("write", step, tier, 8)
        future.start, future.end = start, end
        future.set_result(None)
        dp._reap(_Transfer(future, "write", step, slot))
    assert seen == [4.0, 4.0, 2.0, 3.0, 3.0, 0.0]
    assert dp._stats.write_seconds["disk"] == 4 + 4 + 5 + 7 + 3 + 1  # the writes' own times


class FailingRead(CountingRaw):
    def __init__(self, path: Path, step: int) -> None:
        super().__init__(path)
        self.fail_step = step

    async def get(self, step: int, out: Any) -> None:
        if step == self.fail_step:
            raise OSError(5, "Input/output error")
        await super().get(step, out)


def test_a_failed_prefetch_is_raised_at_the_next_step(tmp_path: Path) -> None:
    """Not a segment later, when the segment it was read for is loaded: the prefetch of x_20
    starts with the reverse sweep of the last segment (30-39) and fails; the error came after
    the 10 reverse steps of that segment."""
    class WaitingAdjoint(Adjoint):  # the first reverse step lets the prefetch fail first
        def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
            disk_path = ckp._engine.disk_path
            assert disk_path is not None
            (read,) = disk_path._reads.values()
            ended = threading.Event()  # after the engine's own done callback, which runs first
            read.future.add_done_callback(lambda _: ended.set())
            assert ended.wait(10.0)
            super().reverse(state, t)

    adjoint = WaitingAdjoint()
    with Checkpointer(Forward(), adjoint, initial_state(), 40, ram=RAM,
                      disk=FailingRead(tmp_path / "r.bin", 20), interval=10) as ckp:
        adjoint.start(ckp.forward())
        with pytest.raises(TransferError, match="step 20"):
            ckp.reverse()
    assert adjoint.seen == [39]


def test_a_callers_tier_serves_one_open_checkpointer(tmp_path: Path) -> None:
    """Two at once would overwrite and delete each other's checkpoints (A reversed on B's
    states with no error); a tier that holds checkpoints already is refused too."""
    tier = RawTier(tmp_path / "r.bin", SPEC)
    first = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier, interval=4)
    with pytest.raises(InvalidArgumentError, match="already used by another open Checkpointer"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier, interval=4)
    first.close()
    with Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier,
                      interval=4) as second:  # free again once the first is closed
        second.forward()
    asyncio.run(tier.put(8, initial_state()))
    with pytest.raises(InvalidArgumentError, match=r"already holds checkpoints \(steps \[8\]\)"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier, interval=4)


def test_a_schedule_of_an_unknown_length_serves_one_open_checkpointer(tmp_path: Path) -> None:
    """It follows the forward sweep it plans: a.forward(), b.forward(), a.reverse() failed with
    a message about the schedule's consumed actions, not about the sharing."""
    from amcheck.schedules import AsyncMultistage

    schedule = AsyncMultistage(None, 2, 3)
    first = Checkpointer(Forward(stop_at=9), Adjoint(), initial_state(), None, ram=RAM,
                         disk=tmp_path, strategy=schedule)
    with pytest.raises(InvalidArgumentError, match=r"strategy AsyncMultistage\(n_steps=None, .*\) "
                       r"is already used by another open Checkpointer; .* give each its own"):
        Checkpointer(Forward(stop_at=20), Adjoint(), initial_state(), None, ram=RAM,
                     disk=tmp_path, strategy=schedule)
    first.close()
    for _ in range(2):  # free again once the first is closed
        with Checkpointer(Forward(stop_at=20), Adjoint(), initial_state(), None, ram=RAM,
                          disk=tmp_path, strategy=schedule) as again:
            again.forward()
            again.reverse()
    known = amcheck.schedules.AsyncMultistage(N, 2, 3)  # plans from n alone: shared freely
    with (Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tmp_path,
                       strategy=known) as a,
          Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tmp_path,
                       strategy=known) as b):
        a.forward()
        b.forward()
        a.reverse()
        b.reverse()


def test_a_tier_that_does_not_hash_is_accepted(tmp_path: Path) -> None:
    """The one-open-Checkpointer check keyed a dict by the tier: a tier with __eq__ (a
    dataclass, say) raised a bare TypeError."""

    class Comparable(RawTier):
        def __eq__(self, other: object) -> bool:
            return other is self

    tier = Comparable(tmp_path / "r.bin", SPEC)
    with Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier,
                      interval=4) as ckp:
        ckp.forward()
        with pytest.raises(InvalidArgumentError, match="already used by another open"):
            Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier,
                         interval=4)


def test_close_from_inside_an_operator_is_refused(tmp_path: Path) -> None:
    tier = RawTier(tmp_path / "r.bin", SPEC)
    box: list[Checkpointer] = []

    class Closing(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            if t0 >= 8:
                box[0].close()
            return super().advance(src, dst, t0, t1)

    with Checkpointer(Closing(), Adjoint(), initial_state(), N, ram=RAM, disk=tier,
                      interval=4) as ckp:
        box.append(ckp)
        with pytest.raises(amcheck.OperatorError) as info:
            ckp.forward()
        assert "close() was called while a sweep or close() is running" in str(info.value.__cause__)
        assert not ckp.closed and tier.steps == frozenset()  # reset: nothing left on the tier
    assert ckp.closed


def test_a_checkpointer_dropped_unclosed_is_cleaned_up(tmp_path: Path) -> None:
    """Its threads stopped and its directory removed when it is garbage-collected, with a
    ResourceWarning (threads and directories stayed for the rest of the process, and after)."""
    import gc

    before = {t.ident for t in threading.enumerate()}

    def forgetful() -> None:
        ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tmp_path,
                           interval=4)
        ckp.forward()
        assert any(t.name.startswith("amcheck") for t in threading.enumerate())

    line = forgetful.__code__.co_firstlineno + 1  # the Checkpointer(...) call
    made = rf"Checkpointer \(made at {re.escape(__file__)}:{line}\)"
    with pytest.warns(ResourceWarning, match=rf"{made} was not closed"):  # noqa: PT031
        forgetful()  # collected on return (or by the collector)
        gc.collect()
    assert {t.ident for t in threading.enumerate()} <= before
    assert list(tmp_path.iterdir()) == []


def test_a_second_ctrl_c_during_the_reset_is_raised_once_the_writes_ended(
    tmp_path: Path,
) -> None:
    """The reset waits for a write still running (it reads a slot about to go back to the
    pool). A second Ctrl-C meanwhile was swallowed, and the write's checkpoint landed after the
    reset had deleted the tier's checkpoints: it stayed on the caller's tier."""
    import signal

    class SlowWrite(CountingRaw):
        async def put(self, step: int, state: Any) -> None:
            if step == 4:
                await asyncio.to_thread(time.sleep, 0.6)
            await super().put(step, state)

    class Interrupting(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            if t0 >= 4:  # x_4 is being written
                signal.setitimer(signal.ITIMER_REAL, 0.2)  # the second press, during the reset
                raise KeyboardInterrupt("first")
            return super().advance(src, dst, t0, t1)

    def second(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("second")

    previous = signal.signal(signal.SIGALRM, second)
    tier = SlowWrite(tmp_path / "r.bin")
    try:
        with Checkpointer(Interrupting(), Adjoint(), initial_state(), N, ram=RAM, disk=tier,
                          strategy="async_multistage", interval=4, max_in_flight=1) as ckp:
            with pytest.raises(KeyboardInterrupt, match="second"):
                ckp.forward()
            assert tier.puts.get(4) == 1 and tier.steps == frozenset()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not [t for t in threading.enumerate() if t.name.startswith("amcheck")]


def test_close_interrupted_is_finished_by_the_next_close(tmp_path: Path) -> None:
    """close() marked itself closed before deleting, so after a Ctrl-C a second close() did
    nothing and the checkpoints not yet deleted stayed on the caller's tier."""
    import signal

    class SlowDeletes(CountingRaw):
        async def delete(self, step: int) -> None:
            await asyncio.sleep(0.1)
            await super().delete(step)

    def press(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("ctrl-c")

    tier = SlowDeletes(tmp_path / "r.bin")
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier,
                       strategy="async_multistage", interval=4)
    ckp.forward()
    assert len(tier.steps) >= 3
    previous = signal.signal(signal.SIGALRM, press)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.15)
        with pytest.raises(KeyboardInterrupt):
            ckp.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not ckp.closed and tier.steps
    ckp.close()
    assert ckp.closed and tier.steps == frozenset()
    assert not [t for t in threading.enumerate() if t.name.startswith("amcheck")]


def test_an_unclosed_checkpointer_its_operator_refers_to_is_collected(tmp_path: Path) -> None:
    """The finalizer held the engine, and with it the operators: a model object owning its
    Checkpointer and passing its own method as the operator was never collected."""
    import gc
    import weakref

    class Model:
        def __init__(self) -> None:
            self.forward = Forward()
            self.ckp = Checkpointer(self.advance, Adjoint(), initial_state(), N, ram=RAM,
                                    disk=tmp_path, interval=4)

        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            return self.forward.advance(src, dst, t0, t1)

    model = Model()
    model.ckp.forward()
    gone = weakref.ref(model.ckp)
    del model
    with pytest.warns(ResourceWarning, match=r"Checkpointer \(made at .*\) was not closed"):
        gc.collect()
    assert gone() is None
    assert not [t for t in threading.enumerate() if t.name.startswith("amcheck")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_exiting_leaves_its_parents_checkpoints(tmp_path: Path) -> None:
    """At its exit a forked child ran the parent's finalizer: it removed the parent's tier
    directory under a running sweep (the parent's forward() then failed)."""
    import subprocess

    script = (
        f"import os, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from toy_problem import Adjoint, Forward, initial_state\n"
        "import amcheck\n"
        "adjoint = Adjoint()\n"
        "ckp = amcheck.Checkpointer(Forward(), adjoint, initial_state(), 23, ram=10 * 1024,\n"
        f"                           disk={str(tmp_path)!r}, interval=4)\n"
        "if os.fork() == 0:\n"
        "    sys.exit(0)  # a normal exit: atexit handlers run\n"
        "os.wait()\n"
        "adjoint.start(ckp.forward())\n"
        "ckp.reverse()\n"
        "ckp.close()\n"
        "print('parent ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "parent ok" in done.stdout, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_checkpointer_open_at_exit_leaves_no_directory(tmp_path: Path) -> None:
    """At exit (after Python stopped its thread pools) the directory amcheck made goes, without
    a traceback; it stayed on disk before."""
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, {tests!r})\n"
        "from toy_problem import Adjoint, Forward, initial_state\n"
        "import amcheck\n"
        "ckp = amcheck.Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=10 * 1024,\n"
        "                           disk={disk!r}, interval=4)\n"
        "ckp.forward()\n"
    ).format(tests=str(Path(__file__).parent), disk=str(tmp_path / "made" / "here"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


# -- budgets ------------------------------------------------------------------------------------


def test_disk_budget_thins_an_unknown_length_run(tmp_path: Path) -> None:
    stop = 61
    expected, _, _, _ = gradient(None, stop, strategy="store_all", ram="1 MiB")
    disk = CountingRaw(tmp_path / "r.bin")
    budget = 4 * SPEC.nbytes  # 4 disk checkpoints
    fwd = Forward(stop_at=stop)
    grad, _, stats, ckp = gradient(disk, None, fwd=fwd, interval=3, disk_budget=budget)
    assert ckp.strategy == "async_multistage"
    assert_same(grad, expected)
    assert disk.peak <= 4
    schedule: Any = ckp.schedule
    assert schedule.thinning_rounds >= 2 and stats.interval == 3 * 2**schedule.thinning_rounds
    sim = simulate(schedule, stop)
    assert stats.forward_steps == sim.forward_steps and dict(stats.writes) == sim.writes
    kept = schedule.segment_starts
    assert {t for t, c in disk.gets.items() if c} == set(kept[:-1])
    assert all(c == 1 for c in disk.gets.values())
    assert disk.steps == frozenset()


@pytest.mark.parametrize("slots", [32, 64])
def test_thinned_segments_longer_than_the_slots_fit_the_pool(tmp_path: Path, slots: int) -> None:
    """Thinning doubles the interval until segments outgrow the RAM slots; the pool, sized
    before the sweep, holds what their reversal needs (it was one buffer short)."""
    stop = 1000
    expected, _, _, _ = gradient(None, stop, strategy="store_all", ram="1 MiB")
    grad, _, _, ckp = gradient(tmp_path / "d", None, fwd=Forward(stop_at=stop), ram=slots * SLOT,
                               interval=3, disk_budget=16 * SPEC.nbytes)
    schedule: Any = ckp.schedule
    assert schedule.thinning_rounds >= 4 and schedule.interval > ckp.slots
    assert_same(grad, expected)


def test_disk_use_stays_within_the_budget_over_repeated_sweeps(tmp_path: Path) -> None:
    """An optimiser's loop of thinning sweeps: the tier's files stay within disk_budget (they
    grew by a few checkpoints a sweep)."""
    budget = 6
    with Checkpointer(Forward(stop_at=200), Adjoint(), initial_state(), None, ram=8 * SLOT,
                      disk=tmp_path, interval=2, disk_budget=budget * SPEC.nbytes) as ckp:
        tier: Any = ckp.disk
        for _ in range(8):
            ckp.forward()
            ckp.reverse()
            rows = [p for p in (Path(tier.path) / "u").iterdir() if p.name.startswith("c.")]
            assert len(rows) <= budget, len(rows)


def test_disk_budget_with_known_length_raises_the_interval(tmp_path: Path) -> None:
    disk = CountingRaw(tmp_path / "r.bin")
    with pytest.warns(UserWarning, match=rf"interval=2 was raised to {-(-N // 3)}: the disk "
                      "budget holds 3 checkpoints"):
        _, _, stats, ckp = gradient(disk, interval=2, disk_budget=3 * SPEC.nbytes)
    assert ckp.interval == stats.interval == -(-N // 3)  # ceil(n / disk_slots)
    assert disk.peak <= 3


@pytest.mark.parametrize("held", [1, 3])
def test_a_tiers_own_budget_bounds_the_disk_checkpoints(tmp_path: Path, held: int,
                                                        reference: dict[str, np.ndarray]) -> None:
    """ZarrTier(budget=...) without disk_budget: the plan keeps within what the tier holds
    (checksums and shard indexes included), instead of failing with TierFullError midway."""
    import asyncio

    async def stored(tier: ZarrTier) -> int:  # the bytes one checkpoint takes on the store
        await tier.put(0, initial_state())
        nbytes = tier.nbytes
        await tier.close()
        return nbytes

    per = asyncio.run(stored(ZarrTier(tmp_path / "probe.zarr", SPEC)))
    budget = held * per + per - 1

    async def fill(tier: ZarrTier) -> None:  # exactly that many fit
        for step in range(held):
            await tier.put(step, initial_state())
        with pytest.raises(amcheck.TierFullError, match=rf"needs {per} bytes .* but {held * per} "
                           rf"bytes of the {budget}-byte .* it holds {held} uncompressed"):
            await tier.put(held, initial_state())
        await tier.close()

    full = ZarrTier(tmp_path / "full.zarr", SPEC, budget=budget)
    assert per > SPEC.nbytes and full.max_checkpoints() == held
    asyncio.run(fill(full))
    tier = ZarrTier(tmp_path / "c.zarr", SPEC, budget=budget)
    with pytest.warns(UserWarning, match=f"interval=2 was raised to {-(-N // held)}: the disk "
                      f"budget holds {held} checkpoint"):
        grad, _, stats, ckp = gradient(tier, interval=2)
    assert_same(grad, reference)
    assert ckp.interval == -(-N // held) and stats.writes["disk"] <= held
    with pytest.raises(BudgetError, match=r"holds no checkpoint"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM,
                     disk=ZarrTier(tmp_path / "tiny.zarr", SPEC, budget=per - 1))


@pytest.mark.parametrize("compression", ["zstd", "blosc"])
def test_a_compressed_tier_holds_what_it_promises(tmp_path: Path, compression: str) -> None:
    """On incompressible data blosc and zstd store a few bytes more than the raw state: the
    count max_checkpoints() promises must still fit."""
    import asyncio

    spec = StateSpec({"u": ((2, 4096), "float32")})
    rng = np.random.default_rng(3)

    async def stored(tier: ZarrTier) -> int:  # the bytes one uncompressed checkpoint takes
        await tier.put(0, {"u": np.zeros((2, 4096), np.float32)})
        nbytes = tier.nbytes
        await tier.close()
        return nbytes

    per = asyncio.run(stored(ZarrTier(tmp_path / "plain.zarr", spec)))
    tier = ZarrTier(tmp_path / "c.zarr", spec, compression=compression, budget=3 * per + 8)
    promised = tier.max_checkpoints()
    assert promised == 2  # 3 uncompressed ones would fit, 3 of these might not

    async def fill() -> None:
        for step in range(3):
            state = {"u": np.frombuffer(rng.bytes(2 * 4096 * 4), np.float32).reshape(2, 4096)}
            if step < promised:
                await tier.put(step, state)
            else:  # and indeed the third does not
                with pytest.raises(amcheck.TierFullError):
                    await tier.put(step, state)
        await tier.close()

    asyncio.run(fill())


@pytest.mark.parametrize(("shape", "rate", "more_than_raw"),
                         [((2, 5, 5), 32.0, False), ((2, 64, 64), 8.0, True), ((3,), 9.0, False)])
def test_a_fixed_rate_zfp_tier_holds_what_it_promises(
    shape: tuple[int, ...], rate: float, more_than_raw: bool
) -> None:
    """ZFP's fixed rate gives each checkpoint a known size, which max_checkpoints() counts: below
    the raw size at rate 8 (about 4x as many), above it for a 5 x 5 chunk at rate 32 (partial
    blocks are padded) and for a tiny chunk (the stream's header), where counting raw bytes
    promised 3x what fits. Every promised
    checkpoint fits."""
    import asyncio

    from zarr.storage import MemoryStore

    spec = StateSpec({"u": (shape, "float32")})
    tier = ZarrTier(MemoryStore(), spec, f"zfp:rate={rate}", budget="256 KiB")
    promised = tier.max_checkpoints()
    x = {"u": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}

    async def fill() -> int:
        for step in range(promised):
            await tier.put(step, x)
        used = tier.nbytes
        await tier.close()
        return used

    used = asyncio.run(fill())
    assert used <= 256 * 1024
    raw_count = 256 * 1024 // spec.nbytes
    assert (promised > raw_count) == more_than_raw
    assert (used / promised * raw_count > 256 * 1024) != more_than_raw  # raw counting overflowed


@pytest.mark.parametrize(("shape", "rate"), [((2, 64, 64), 8.0), ((2, 5, 5), 32.0)])
def test_disk_budget_counts_a_fixed_zfp_rate_at_its_coded_size(
    tmp_path: Path, shape: tuple[int, ...], rate: float
) -> None:
    """disk_budget with compression="zfp:rate=...": each checkpoint counts its fixed coded size.
    At rate 8 that is a quarter of the state, so 4 of them fit where counting raw bytes held 1
    (and raised the interval to n); a 5 x 5 field at rate 32 codes to 2.9x its bytes, where raw
    counting planned for 11 checkpoints and the disk held 2.9x the budget."""
    spec = StateSpec({"u": (shape, "float32")})
    x0 = {"u": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    held: list[int] = []
    ckp: Checkpointer | None = None

    def advance(src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray],
                t0: int, t1: int) -> None:
        np.multiply(src["u"], np.float32(0.5 ** (t1 - t0)), out=dst["u"])
        if ckp is not None:
            held.append(ckp.disk.nbytes)

    probe = ZarrTier(tmp_path / "probe.zarr", spec, f"zfp:rate={rate}")
    per = probe.data_nbytes()
    asyncio.run(probe.close())
    assert (per < spec.nbytes) == (rate == 8.0)
    n, budget = 40, 4 * per + per // 2
    with pytest.warns(UserWarning, match=r"interval=2 was raised to 10: the disk budget holds "
                      "4 checkpoints"):
        ckp = Checkpointer(advance, lambda state, t: None, x0, n, ram=12 * slot_size(spec),
                           disk=tmp_path / "d", strategy="async_multistage", interval=2,
                           compression=f"zfp:rate={rate}", disk_budget=budget)
    with ckp:
        ckp.forward()
        ckp.reverse()
        assert ckp.interval == 10 and ckp.stats.writes["disk"] == 3
    assert 0 < max(held) <= budget


def test_a_folder_that_cannot_be_removed_is_named(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """close() left an empty amcheck-* folder in a parent made read-only, and said nothing."""
    import shutil

    from amcheck import _checkpointer

    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tmp_path,
                       interval=4)
    ckp.forward()
    (folder,) = tmp_path.iterdir()
    rmtree = shutil.rmtree

    def refused(path: Any, ignore_errors: bool = False, **kwargs: Any) -> None:
        if Path(path) == folder:  # as os.rmdir in a read-only parent
            if not ignore_errors:
                raise PermissionError(13, "Permission denied", str(path))
            return
        rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(_checkpointer.shutil, "rmtree", refused)
    with pytest.warns(UserWarning, match=rf"the folder amcheck made for its disk tier, "
                      rf"'{re.escape(str(folder))}', could not be removed \(PermissionError: "):
        ckp.close()
    assert ckp.closed and folder.exists()


def test_budget_errors_name_the_bytes(tmp_path: Path) -> None:
    disk = CountingRaw(tmp_path / "r.bin")
    # 4 buffers: 1 slot, the current state, the prefetched start, x_n; while the forward sweep
    # writes to disk, 1 (the current state) + 2 staging.
    need = (r"needs at least 4 state buffers of 192 bytes \(with a single RAM checkpoint slot: 4 "
            r"at the schedule's peak, and while the forward sweep writes to disk it holds 1 plus "
            r"2 staging buffer\(s\) .*; the larger counts\), i.e. ram >= 768 bytes")
    with pytest.raises(BudgetError, match=need):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=3 * SLOT, disk=disk,
                     strategy="async_multistage")
    with pytest.raises(BudgetError, match=r"disk_budget=100 bytes .* at least 112 bytes"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=disk, disk_budget=100)
    with pytest.raises(InvalidArgumentError, match=r"disk_budget='1 GiB' needs a disk"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk_budget="1 GiB")
    with pytest.raises(InvalidArgumentError, match=r"disk_budget='50%': a percentage is a share "
                       r"of memory, not of a disk; give .* such as '8 GiB'"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=tmp_path / "d",
                     disk_budget="50%")
    assert not (tmp_path / "d").exists()  # refused before anything was made for the disk
    with pytest.raises(amcheck.ArgumentTypeError, match=r"max_in_flight must be an integer"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=disk, max_in_flight=1.5)
    with pytest.raises(InvalidArgumentError, match=r"compute_threads must be None \(auto\), 'all'"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=disk, compute_threads=0)
    for bad in (True, 1.5, np.array([1])):
        with pytest.raises(amcheck.ArgumentTypeError, match=r"compute_threads must be None"):
            Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=disk, compute_threads=bad)
    with pytest.raises(InvalidArgumentError, match=r"compute_threads must be None .*got 'ALL'"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=disk, compute_threads="ALL")
    from amcheck._cores import check_compute_threads

    assert check_compute_threads(np.int64(2)) == 2 and type(check_compute_threads(np.int64(2))) is int
    with pytest.raises(InvalidArgumentError, match=r"exists and is not a directory"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=disk.path)
    asyncio_close(disk)


# -- progress, cores ---------------------------------------------------------------------------


def test_progress_counts_first_sweep_and_reverse_steps(tmp_path: Path) -> None:
    done: list[int] = []
    back: list[int] = []
    fwd = Forward()
    with Checkpointer(fwd, Adjoint(), initial_state(), N, ram=RAM, disk=CountingRaw(tmp_path / "r"),
                      interval=4) as ckp:
        ckp.forward(done.append)
        ckp.reverse(progress=back.append)
        stats = ckp.stats
    # One call per advance, no recompute: 5 segments of 4, then the last segment's first descent
    # (x_20 → x_21 → x_22, its start and x_21 kept) and x_23.
    assert sum(done) == N and done == [4] * ((N - 1) // 4) + [1, 1, 1]
    assert back == [1] * N
    assert stats.forward_steps > N  # recomputation happened, and was not reported as progress
    with pytest.raises(amcheck.ArgumentTypeError, match=r"progress must be a callable"):
        Checkpointer(fwd, Adjoint(), initial_state(), N).forward(progress=3)  # type: ignore[arg-type]
    with pytest.raises(amcheck.ArgumentTypeError, match=r"forward\(initial_state=...\)"):
        Checkpointer(fwd, Adjoint(), initial_state(), N).forward(initial_state())  # type: ignore[arg-type]


def test_an_error_in_progress_resets_the_sweep_and_passes_through(
    tmp_path: Path, reference: dict[str, np.ndarray]
) -> None:
    """Not an operator's error: raised as is, after the reset any failed sweep gets (disk
    checkpoints deleted, no transfer left); the next forward() and reverse() run normally."""

    class Stop(Exception):
        pass

    def stop_at(limit: int) -> Any:
        seen: list[int] = []

        def progress(steps: int) -> None:
            seen.append(steps)
            if sum(seen) >= limit:
                raise Stop

        return progress

    disk = CountingRaw(tmp_path / "r")
    adjoint = Adjoint()
    with Checkpointer(Forward(), adjoint, initial_state(), N, ram=RAM, disk=disk,
                      interval=4) as ckp:
        with pytest.raises(Stop):
            ckp.forward(stop_at(12))
        assert disk.steps == frozenset()
        adjoint.start(ckp.forward())
        with pytest.raises(Stop):
            ckp.reverse(stop_at(5))
        with pytest.raises(amcheck.SweepStateError, match="forward"):
            ckp.reverse()
        adjoint.start(ckp.forward())
        ckp.reverse()
        assert disk.steps == frozenset()
    assert_same(adjoint.grad, reference)


def test_compute_threads_during_disk_sweeps(tmp_path: Path) -> None:
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs numba with at least 2 threads")
    seen: list[int] = []

    class Recording(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            seen.append(numba.get_num_threads())
            return super().advance(src, dst, t0, t1)

    before = numba.get_num_threads()
    for setting, expected in ((1, 1), ("all", before)):
        seen.clear()
        with Checkpointer(Recording(), Adjoint(), initial_state(), N, ram=RAM,
                          disk=CountingRaw(tmp_path / f"r{setting}"), interval=4,
                          compute_threads=setting) as ckp:
            ckp.forward()
            ckp.reverse()
        assert set(seen) == {expected}
        assert numba.get_num_threads() == before  # restored


# -- the FWI gradient ---------------------------------------------------------------------------


def test_fwi_gradient_through_async_multistage_and_zarr(tmp_path: Path) -> None:
    from amcheck import kernels

    nx, ny = 24, 26
    x = np.arange(nx)[:, None]
    vp = np.full((nx, ny), 1.5) + 0.02 * x
    true = kernels.Model(vp + 0.2 * (np.abs(x - 12) < 4), (10.0, 10.0), nbl=6, space_order=4)
    model = true.with_vp(vp)
    geometry = kernels.Geometry(true, [[20.0, 125.0]], [[215.0, y] for y in (25.0, 125.0, 225.0)],
                                t0=0.0, tn=250.0, f0=0.015)
    d_obs = kernels.forward_modeling(true, geometry)
    j_all, g_all = kernels.fwi_gradient(model, geometry, d_obs, ram="1 GiB", strategy="store_all")
    fwd = kernels.AcousticForward(model, geometry)
    state_nbytes = fwd.spec.nbytes
    ram = 12 * slot_size(fwd.spec)
    j_ms, g_ms = kernels.fwi_gradient(model, geometry, d_obs, ram=ram, disk=tmp_path / "ck",
                                      strategy="async_multistage")
    assert geometry.n_steps > 3 * 8 and state_nbytes > 0
    assert j_ms == j_all
    assert np.array_equal(g_ms, g_all)
    assert not (tmp_path / "ck").exists()


def test_os_pathlike_is_accepted(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    grad, _, _, _ = gradient(os.fspath(tmp_path / "d"), interval=6)
    assert_same(grad, reference)


def test_an_error_gives_back_the_disk_room_of_the_deleted_checkpoints(tmp_path: Path) -> None:
    """A ZarrTier keeps the files of deleted checkpoints for reuse; after an error (a full
    disk, say) they stayed until close(), so the disk stayed full for a retry."""
    with Checkpointer(Forward(fail_at=17), Adjoint(), initial_state(), N, ram=RAM,
                      disk=tmp_path, interval=3) as ckp:
        tier: Any = ckp.disk
        with pytest.raises(amcheck.OperatorError):
            ckp.forward()
        assert tier.steps == frozenset()
        files = [p for p in Path(tier.path).rglob("c.*") if p.is_file()]
        assert files == []


def test_the_automatic_interval_starts_where_the_last_sweep_of_the_workload_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inversion's next gradient (a new Checkpointer, or the same one again) starts at the
    interval the last one measured, not at slots + 1 with its probe writes waiting; a sweep
    that thinned its disk checkpoints (a doubled interval) is not remembered."""
    from amcheck._remember import INTERVALS

    class SlowRaw(CountingRaw):
        async def put(self, step: int, state: Any) -> None:
            await asyncio.sleep(0.02)
            await super().put(step, state)

    class Slow(Forward):
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            time.sleep(0.0002 * (t1 - t0))
            return super().advance(src, dst, t0, t1)

    n = 300
    expected, _, _, _ = gradient(None, n, strategy="store_all", ram="1 MiB")
    _, _, first, ckp = gradient(SlowRaw(tmp_path / "a.bin"), n, fwd=Slow(),
                                strategy="async_multistage")
    assert ckp.schedule.segment_starts[1] == ckp.slots + 1  # type: ignore[attr-defined]
    ended = first.interval
    assert ended is not None and ended > ckp.slots + 1
    # the same operators writing to another file system (here: said to be one) measure afresh
    import amcheck._checkpointer as module

    real = module.storage_of
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(module, "storage_of", lambda tier: "other" if str(getattr(
        tier, "path", "")).startswith(str(elsewhere)) else real(tier))
    _, _, _, ckp = gradient(SlowRaw(elsewhere / "c.bin"), n, fwd=Slow(),
                            strategy="async_multistage")
    assert ckp.schedule.segment_starts[1] == ckp.slots + 1  # type: ignore[attr-defined]
    # and did not replace what the first file system remembers
    grad, _, _, ckp = gradient(SlowRaw(tmp_path / "b.bin"), n, fwd=Slow(),
                               strategy="async_multistage")
    assert ckp.schedule.segment_starts[1] == ended  # type: ignore[attr-defined]
    assert_same(grad, expected)
    # a sweep whose full disk tier doubled its interval leaves nothing to start from
    INTERVALS.clear()
    with Checkpointer(Forward(stop_at=200), Adjoint(), initial_state(), None, ram=8 * SLOT,
                      disk=tmp_path / "c", interval=None, disk_budget=4 * SPEC.nbytes) as thin:
        thin.forward()
        assert thin.schedule.thinning_rounds > 0  # type: ignore[attr-defined]
    assert INTERVALS.items() == []


def test_a_full_disk_says_how_to_bound_the_disk_tier(tmp_path: Path) -> None:
    import errno

    class Full(RawTier):
        async def put(self, step: int, state: Any) -> None:
            if step >= 8:
                raise OSError(errno.ENOSPC, "No space left on device")
            await super().put(step, state)

    with (Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM,
                       disk=Full(tmp_path / "r.bin", SPEC), interval=4) as ckp,
          pytest.raises(TransferError, match="step 8") as caught):
        ckp.forward()
    assert any("disk_budget" in note for note in caught.value.__notes__)


@pytest.mark.parametrize(("answers", "match"), [
    ({"capacity": "64"}, "the disk tier Odd's capacity must be an integer, got '64' of type str"),
    ({"data_nbytes": lambda self: "32"},
     "the disk tier Odd's data_nbytes\\(\\) must be an integer, got '32'"),
    ({"max_checkpoints": lambda self: 2.5},
     "the disk tier Odd's max_checkpoints\\(\\) must be an integer, got 2.5"),
    ({"spec": None}, "has no StateSpec as its spec \\(got None\\): a Tier sets self.spec"),
])  # fmt: skip
def test_what_a_tier_of_the_callers_says_of_itself_is_checked(
    tmp_path: Path, answers: dict[str, Any], match: str
) -> None:
    # a Tier subclass of the user's: its answers had given raw TypeErrors and AttributeErrors
    odd = type("Odd", (RawTier,), {
        key: property(lambda self, value=value: value) if not callable(value) else value
        for key, value in answers.items() if key != "spec"})
    tier = odd(tmp_path / "r.bin", SPEC)
    if "spec" in answers:
        tier.spec = answers["spec"]
    with pytest.raises(amcheck.ArgumentTypeError, match=match):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=RAM, disk=tier)
    asyncio.run(tier.close())


def test_a_remembered_interval_that_a_sweep_cannot_measure_is_forgotten(tmp_path: Path) -> None:
    """One slow sweep left k as long as the sequence; the next sweeps made one or two writes,
    too few to measure, so k stayed there (and was remembered again) for every later gradient.
    A sweep that cannot measure forgets it, and the one after measures from slots + 1."""
    from amcheck._remember import INTERVALS

    class Sometimes(CountingRaw):
        slow = False

        async def put(self, step: int, state: Any) -> None:
            if self.slow:  # 1000 steps of 0.3 ms: k is the whole sequence even if a busy
                await asyncio.sleep(0.3)  # machine makes a step 5x slower (0.1 s gave 177)
            await super().put(step, state)

    class Steady(Forward):  # 0.3 ms a step: a write delayed a few ms by a busy machine
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:  # is ~20 steps
            time.sleep(0.0003 * (t1 - t0))
            return super().advance(src, dst, t0, t1)

    n = 200
    tier = Sometimes(tmp_path / "r.bin")
    ends, remembered = [], []
    with Checkpointer(Steady(), Adjoint(), initial_state(), n, ram=8 * SLOT, disk=tier,
                      strategy="async_multistage") as ckp:
        for sweep in range(4):
            tier.slow = sweep == 0
            ckp.forward()
            ends.append(ckp.stats.interval)
            remembered.append([k for _, k in INTERVALS.items()])
            ckp.reverse()
    assert ends[0] == n and remembered[0] == [n]  # the slow sweep: one segment
    assert ends[1] == n and remembered[1] == []  # no write to measure: forgotten
    assert ends[2] < n and remembered[2] == [ends[2]]  # measured from slots + 1 again


class _SlowRam(RamTier):
    """A RAM tier standing in for a disk whose deletes (or reads, with ``slow_reads``) take
    50 ms; it counts the most checkpoints it held at once."""

    def __init__(self, slots: int, *, slow_reads: bool = False) -> None:
        super().__init__(slots * slot_size(SPEC), SPEC, slots=slots, name="disk")
        self.peak = 0
        self.slow_reads = slow_reads

    async def put(self, step: int, state: Any) -> None:
        await super().put(step, state)
        self.peak = max(self.peak, len(self.steps))

    async def delete(self, step: int) -> None:
        await asyncio.sleep(0.0 if self.slow_reads else 0.05)
        await super().delete(step)

    async def get(self, step: int, out: Any) -> None:
        await asyncio.sleep(0.05 if self.slow_reads else 0.0)
        await super().get(step, out)


def test_a_write_waits_for_the_deletes_that_make_its_room() -> None:
    """Found by mutation testing: a disk write that did not wait for the deletes in flight (a
    thinning round's) took the tier to 6 checkpoints against a budget of 4, and a tier that
    holds 4 failed the sweep with TierFullError."""
    disk = _SlowRam(4)
    with Checkpointer(Forward(stop_at=61), Adjoint(), initial_state(), None, ram=8 * 256,
                      disk=disk, interval=3, disk_budget=4 * SPEC.nbytes) as ckp:
        ckp.forward()
        ckp.reverse()
        assert ckp.schedule.thinning_rounds >= 1
    assert disk.peak <= 4


def test_a_prefetch_freed_unread_ends_its_read_before_the_delete() -> None:
    """A valid schedule may prefetch x_1 and free it without loading it (simulate allows it);
    the read must end before the delete, or the read fails with CheckpointNotFoundError."""
    from amcheck.schedules import Advance, End, Free, Load, Prefetch, Reverse, Save, Schedule

    class Changed(Schedule):
        n_steps = 3
        capacity: ClassVar = {"ram": 1, "disk": 1}

        def forward(self) -> Any:
            yield from [Save(0, "ram"), Advance(0, 1), Advance(1, 2), Advance(2, 3, final=True)]

        def reverse(self, n_steps: int) -> Any:
            yield from [Reverse(2), Load(0, "ram"), Advance(0, 1), Save(1, "disk"),
                        Prefetch(1, "disk"), Free(1, "disk"), Reverse(1), Load(0, "ram"),
                        Reverse(0), Free(0, "ram"), End()]

    simulate(Changed())
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), 3, ram="1 MiB",
                      disk=_SlowRam(8, slow_reads=True),
                      strategy=Changed()) as ckp:
        adj.start(ckp.forward())
        ckp.reverse()
    assert adj.seen == [2, 1, 0]


def test_a_prefetch_done_before_its_load_is_no_wait() -> None:
    """Found by mutation testing: counting a transfer that had already ended as a wait went
    unnoticed (stats.waits 8 instead of 3 here, and "wait" events of 40 µs in the timeline).
    Each segment's reverse steps take 100 ms here, and a read from this RAM tier microseconds,
    so every prefetch has ended when its Load comes."""

    class SlowAdjoint(Adjoint):
        def reverse(self, state: Any, t: int) -> None:
            time.sleep(0.02)
            super().reverse(state, t)

    adj = SlowAdjoint()
    with Checkpointer(Forward(), adj, initial_state(), 30, ram=8 * SLOT, interval=5,
                      disk=RamTier(1 << 20, SPEC, name="disk"),
                      strategy="async_multistage") as ckp:
        adj.start(ckp.forward())
        forward_waits = ckp.stats.waits
        ckp.reverse()
        assert ckp.stats.reads["disk"] >= 4
        assert ckp.stats.waits == forward_waits
        reverse_start = min(e.start for e in ckp.timeline.events if e.kind == "reverse")
        assert not [e for e in ckp.timeline.events if e.kind == "wait" and e.start > reverse_start]
