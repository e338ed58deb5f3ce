"""A Checkpointer used from several threads, closed while another thread sweeps, dropped while
ResourceWarning is an error, and built by several threads of a fresh process at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from amcheck.storage import TransferService
from toy_problem import Adjoint, Forward, initial_state

from amcheck import Checkpointer, SweepStateError

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
