"""A Checkpointer used from several threads, closed while another thread sweeps, dropped while
ResourceWarning is an error, and built by several threads of a fresh process at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from amcheck.storage import RawTier, TransferService
from toy_problem import Adjoint, Forward, initial_state

from amcheck import Checkpointer, StateSpec, SweepStateError, TransferError
from amcheck._strategy import slot_size

TESTS = str(Path(__file__).parent)


def test_close_from_another_thread_never_hangs_nor_breaks_a_sweep(tmp_path: Path) -> None:
    """One thread loops forward()/reverse(), another calls close() at once: close() used to let
    a sweep start on a closing engine, and two threads then closed one transfer service, the
    second waiting forever for its stopped loop."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        for trial in range(25):
            ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram="1 MiB",
                               disk=tmp_path, strategy="async_multistage", interval=3)
            outcome: dict[str, object] = {}

            def sweep(ckp: Checkpointer = ckp, outcome: dict[str, object] = outcome) -> None:
                try:
                    for _ in range(20):
                        ckp.forward()
                        ckp.reverse()
                except SweepStateError:
                    outcome["sweeps"] = "refused"  # closing, or closed: the expected ends
                except BaseException as exc:  # noqa: BLE001 - reported below
                    outcome["sweeps"] = exc

            def close(ckp: Checkpointer = ckp, outcome: dict[str, object] = outcome) -> None:
                while True:  # until it lands between two sweeps, or after the last
                    try:
                        ckp.close()
                    except SweepStateError:  # a sweep runs: it cannot be stopped from here
                        time.sleep(1e-4)
                        continue
                    outcome["close"] = "closed"
                    return

            threads = [threading.Thread(target=sweep), threading.Thread(target=close)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert not any(t.is_alive() for t in threads), f"hang in trial {trial}"
            assert outcome.get("close") == "closed" and ckp.closed
            assert outcome.get("sweeps", "refused") == "refused", outcome
            assert list(tmp_path.iterdir()) == []
    finally:
        sys.setswitchinterval(old)


def test_transfer_service_closed_by_two_threads_at_once() -> None:
    for _ in range(20):
        service = TransferService()
        threads = [threading.Thread(target=service.close) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not any(t.is_alive() for t in threads)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args, "-c", code], check=False, capture_output=True,
                          text=True, timeout=120, cwd=TESTS)


def test_dropped_checkpointer_cleans_up_when_resource_warnings_are_errors(tmp_path: Path) -> None:
    """The finalizer warned first: with -W error::ResourceWarning the warning raised and the
    clean-up never ran (3 threads, 4 descriptors and the amcheck-* folder left per drop)."""
    code = f"""
import gc, threading
from toy_problem import Adjoint, Forward, initial_state
from amcheck import Checkpointer
for _ in range(3):
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram="1 MiB",
                       disk={str(tmp_path)!r}, strategy="async_multistage", interval=3)
    ckp.forward()
    del ckp
    gc.collect()
print(len(threading.enumerate()))
"""
    done = _run(code, "-W", "error::ResourceWarning")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    assert list(tmp_path.iterdir()) == []


def test_first_use_from_several_threads_of_a_fresh_process(tmp_path: Path) -> None:
    """zarr's circular imports: a first import from several threads failed (ImportError of a
    partially initialized module, _DeadlockError) and could break zarr for the process."""
    code = f"""
import threading
from toy_problem import Adjoint, Forward, initial_state
from amcheck import Checkpointer
errors = []
barrier = threading.Barrier(4)
def build(compression):
    barrier.wait()
    try:
        with Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram="1 MiB",
                          disk={str(tmp_path)!r}, strategy="async_multistage", interval=3,
                          compression=compression) as ckp:
            ckp.forward()
            ckp.reverse()
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=build, args=(c,)) for c in (None, "zstd", None, "zfp:tol=1e-6")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""
    for _ in range(3):
        done = _run(code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]", done.stdout


def test_an_idle_checkpointer_holds_no_threads(tmp_path: Path) -> None:
    """After reverse() the transfer threads stopped (50 open, idle Checkpointers held 169)."""
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram="1 MiB", disk=tmp_path,
                       strategy="async_multistage", interval=3)
    with ckp:
        ckp.forward()
        assert any(t.name.startswith("amcheck") for t in threading.enumerate())
        ckp.reverse()
        assert not any(t.name.startswith("amcheck") for t in threading.enumerate())
        ckp.forward()  # and the next sweep starts them again
        ckp.reverse()


@pytest.mark.parametrize(("which", "after_start"), [("amcheck-transfer", True),
                                                     ("amcheck-transfer-submit", True),
                                                     ("amcheck-transfer-submit", False)])
def test_an_interrupt_while_the_service_starts_leaves_no_thread(
    monkeypatch: pytest.MonkeyPatch, which: str, after_start: bool
) -> None:
    """A Ctrl-C inside Thread.start() (it left submit threads alive forever, and closed the
    loop under a loop thread that was starting)."""
    start = threading.Thread.start

    def interrupted(self: threading.Thread) -> None:
        if self.name == which:
            if after_start:
                start(self)
            raise KeyboardInterrupt
        start(self)

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        TransferService()
    monkeypatch.undo()
    time.sleep(0.05)
    assert not any(t.name.startswith("amcheck") for t in threading.enumerate())


def test_close_from_two_threads_at_once(tmp_path: Path) -> None:
    """close() is idempotent: the second of two concurrent calls used to raise SweepStateError."""
    for _ in range(20):
        ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram="1 MiB", disk=tmp_path,
                           strategy="async_multistage", interval=3)
        ckp.forward()
        errors: list[BaseException] = []

        def close(ckp: Checkpointer = ckp, errors: list[BaseException] = errors) -> None:
            try:
                ckp.close()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=close) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == [] and ckp.closed


@pytest.mark.parametrize("which", ["the disk directory", "the folder"])
def test_an_interrupt_inside_a_mkdir_of_the_disk_tier_leaves_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    from amcheck._folders import PREFIX

    real_mkdir = Path.mkdir

    def interrupted(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if (self.name.startswith(PREFIX)) == (which == "the folder"):
            raise KeyboardInterrupt  # Ctrl-C after the directory exists, before mkdir returns

    monkeypatch.setattr(Path, "mkdir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Checkpointer(Forward(), Adjoint(), initial_state(), 30, ram="1 MiB",
                     disk=tmp_path / "new" / "ck", interval=3)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


class _SlowRaw(RawTier):
    """A caller's tier whose put and delete of one step take a while."""

    slow = -1

    async def put(self, step: int, state: Any) -> None:
        if step == self.slow:
            await asyncio.sleep(0.2)
        await super().put(step, state)

    async def delete(self, step: int) -> None:
        if step == self.slow:
            await asyncio.sleep(0.2)
        await super().delete(step)


@pytest.mark.parametrize("kind", ["write", "delete"])
def test_an_interrupt_between_a_submit_and_its_bookkeeping_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Ctrl-C after the service took a transfer and before the disk path recorded it: the
    clean-up did not wait for it, so a write landed after the deletes (and stayed on the
    caller's tier past close()) and a delete still running made the clean-up's own delete of
    the step fail (and the Checkpointer close itself)."""
    from amcheck._disk import DiskPath

    spec = StateSpec.from_arrays(initial_state())
    tier = _SlowRaw(tmp_path / "r.bin", spec)
    tier.slow = 8 if kind == "write" else 16  # 16: the first the reverse sweep deletes
    real = DiskPath._note_submit

    def interrupted(self: DiskPath, future: Any) -> None:
        real(self, future)
        if future.kind == kind and future.step == tier.slow:
            raise KeyboardInterrupt

    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=10 * slot_size(spec),
                       disk=tier, strategy="async_multistage", interval=4)
    monkeypatch.setattr(DiskPath, "_note_submit", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        ckp.forward()
        ckp.reverse()
    assert not getattr(caught.value, "__notes__", None)  # the reset went through
    assert not ckp.closed and tier.steps == frozenset()
    monkeypatch.undo()
    ckp.close()
    assert tier.steps == frozenset()
    Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=10 * slot_size(spec), disk=tier,
                 interval=4).close()  # the tier is free and empty again


def test_close_tries_every_delete_when_one_fails(tmp_path: Path) -> None:
    spec = StateSpec.from_arrays(initial_state())

    tried: list[int] = []

    class OneFailingDelete(RawTier):
        async def delete(self, step: int) -> None:
            tried.append(step)
            if step == 4:
                raise OSError(5, "injected")
            await super().delete(step)

    tier = OneFailingDelete(tmp_path / "r.bin", spec)
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=10 * slot_size(spec),
                       disk=tier, strategy="async_multistage", interval=4)
    ckp.forward()
    held = sorted(tier.steps)
    with pytest.raises(TransferError, match="x_4"):
        ckp.close()
    assert tried == held and tier.steps == frozenset({4})


def test_an_interrupt_while_the_slots_go_back_leaves_the_checkpointer_usable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from amcheck.storage import RamTier

    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram="1 MiB",
                       strategy="revolve")
    ckp.forward()
    real = RamTier.release_all
    calls = []

    def interrupted(self: RamTier) -> None:
        real(self)
        calls.append(self)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as the slots went back

    monkeypatch.setattr(RamTier, "release_all", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        ckp.forward()  # a new sweep first clears the last one's buffers
    assert not getattr(caught.value, "__notes__", None)
    monkeypatch.undo()
    adj = Adjoint()
    adj.start(ckp.forward())
    ckp.reverse()
    assert not ckp.closed
    ckp.close()


def test_a_disk_directory_removed_by_another_checkpointer_meanwhile_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Checkpointers of two threads given one new directory: the first one's close removes
    it, empty, just after the second made sure it exists and before it makes its folder there
    (the second failed: "the directory for the disk tier could not be created")."""
    root = tmp_path / "shared"
    real_mkdir = Path.mkdir
    raced_once: list[Path] = []

    def raced(self: Path, *args: Any, **kwargs: Any) -> None:
        real_mkdir(self, *args, **kwargs)
        if self == root and not raced_once:
            raced_once.append(self)
            self.rmdir()  # the other Checkpointer's close, between the two mkdirs

    monkeypatch.setattr(Path, "mkdir", raced)
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 30, ram="1 MiB", disk=root,
                       interval=3)
    monkeypatch.undo()
    adj = Adjoint()
    adj.start(ckp.forward())
    ckp.reverse()
    ckp.close()


def _built_at_once(build: Any, attempts: int = 40) -> set[tuple[int, int]]:
    """Run ``build(i)`` in two threads released together, ``attempts`` times, with the threads
    taking turns every microsecond (so that a check and a claim made apart interleave); returns
    the distinct (built, refused) counts of the attempts. ``build`` returns an object to close,
    or raises InvalidArgumentError."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        return {_build_two(build) for _ in range(attempts)}
    finally:
        sys.setswitchinterval(interval)


def _build_two(build: Any) -> tuple[int, int]:
    from amcheck import InvalidArgumentError

    gate = threading.Barrier(2)
    built: list[Any] = []
    refused: list[BaseException] = []

    def run(i: int) -> None:
        gate.wait()
        try:
            built.append(build(i))
        except InvalidArgumentError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for user in built:
        user.close()
    return len(built), len(refused)


def test_one_caller_tier_for_two_checkpointers_built_at_once(tmp_path: Path) -> None:
    """Both threads passed the check before either claimed the tier (and a Checkpointer under
    construction did not count as open): both were built, and one reversed the other's states
    without an error. Exactly one may have it."""
    tier = RawTier(tmp_path, StateSpec.from_arrays(initial_state()))
    try:
        outcomes = _built_at_once(lambda i: Checkpointer(
            Forward(), Adjoint(), initial_state(), 20, ram="1 MiB", disk=tier,
            strategy="async_multistage", interval=5))
    finally:
        asyncio.run(tier.close())
    assert outcomes == {(1, 1)}, outcomes


def test_one_store_for_two_zarr_tiers_opened_at_once() -> None:
    from amcheck.storage import ZarrTier
    from zarr.storage import MemoryStore

    store = MemoryStore()
    spec = StateSpec.from_arrays(initial_state())

    class Closing:  # a ZarrTier's close is a coroutine
        def __init__(self, tier: ZarrTier) -> None:
            self.tier = tier

        def close(self) -> None:
            asyncio.run(self.tier.close())

    assert _built_at_once(lambda i: Closing(ZarrTier(store, spec))) == {(1, 1)}



@pytest.mark.parametrize("where", ["_enter", "_check_reversible"])
def test_an_interrupt_right_after_the_claim_leaves_the_checkpointer_usable(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python delivers a Ctrl-C after a call returns, such as the claim lock's exit: one there
    left the Checkpointer claimed for good (every later call, close() too, said a sweep was
    running)."""
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram="1 MiB", strategy="revolve")
    real = getattr(Checkpointer, where)

    def interrupted(self: Checkpointer, *args: Any) -> None:
        real(self, *args)
        raise KeyboardInterrupt

    sweep = ckp.forward if where == "_enter" else ckp.reverse
    if sweep == ckp.reverse:
        ckp.forward()
    monkeypatch.setattr(Checkpointer, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep()
    monkeypatch.setattr(Checkpointer, where, real)
    ckp.forward()
    ckp.reverse()
    ckp.close()
    assert ckp.closed


@pytest.mark.parametrize("where", ["acquire", "release"])
def test_an_interrupt_inside_the_pool_loses_no_slot(where: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C between the two bookkeeping steps of the pool's acquire or release left a slot
    in neither list: the reset did not get it back, and every later forward() said the schedule
    needed more buffers than the pool holds."""
    from amcheck.storage import RamTier

    spec = StateSpec.from_arrays(initial_state())
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 12, ram=5 * slot_size(spec),
                       strategy="revolve")  # few slots: Revolve releases and takes them again
    real = getattr(RamTier, where)
    calls = [0]

    def interrupted(self: RamTier, *args: Any) -> Any:
        calls[0] += 1
        if calls[0] == (3 if where == "acquire" else 1):  # between its two steps: the slot is
            # in neither list
            if where == "acquire":
                self._returned.pop() if self._returned else None
            else:
                self._acquired.discard(args[0].index)
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(RamTier, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckp.forward()
        ckp.reverse()
    monkeypatch.setattr(RamTier, where, real)
    pool: Any = ckp._pool
    assert pool.n_free == pool.n_slots
    for _ in range(2):
        ckp.forward()
        ckp.reverse()
    ckp.close()
