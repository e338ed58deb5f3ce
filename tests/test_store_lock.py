"""One open ZarrTier per local store across processes, and the folders of killed runs.

Two processes that each opened ``ZarrTier(same_path, spec)`` both saw an empty store, took the
same rows and overwrote each other's checkpoints (a wrong gradient, no error); a second opener
with ``overwrite=True`` erased a store another process was using; a failed opening removed a
store another process had just created. And ``Checkpointer(..., disk=dir)`` killed mid-run left
its ``amcheck-*`` folder forever, unmentioned. The inter-process cases run in child processes
(:func:`_child`), which report on stdout and wait on stdin.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zarr
from amcheck.storage import ZarrTier
from amcheck.storage import _lock as lock_module
from amcheck.storage import _zarr as zarr_module
from amcheck.storage._lock import lock_path
from amcheck.storage._sync import run_sync
from toy_problem import Adjoint, Forward, initial_state
from zarr.storage import LocalStore, MemoryStore

from amcheck import (
    Checkpointer,
    InvalidArgumentError,
    StateSpec,
    StoreLockedError,
    StoreMismatchError,
)
from amcheck._strategy import slot_size

SPEC = StateSpec.from_arrays(initial_state())
OTHER = StateSpec({"w": ((5,), "float64")})
RAM = 10 * slot_size(SPEC)
TESTS = str(Path(__file__).parent)

#: Run first in every child: a tier or Checkpointer at argv[1], a state, the helpers.
_PRELUDE = f"""
import os, sys, time
sys.path.insert(0, {TESTS!r})
import numpy as np
from amcheck import Checkpointer, StateSpec, StoreLockedError
from amcheck.storage import ZarrTier
from amcheck.storage._sync import run_sync
from toy_problem import Adjoint, Forward, initial_state
SPEC = StateSpec.from_arrays(initial_state())
STATE = initial_state()
path = sys.argv[1]
def say(text):
    print(text, flush=True)
"""

#: A child's part after _PRELUDE: open the tier or report the lock; hold it until told.
_OPEN_OR_LOCKED = """
try:
    tier = ZarrTier(path, SPEC)
except StoreLockedError:
    say("locked")
else:
    say("opened")
    sys.stdin.readline()
    run_sync(tier.close())
"""

#: A child that opens a tier, writes a checkpoint, says "ready" and closes when told to,
#: after reading its checkpoint back (it says "intact" if it is what it wrote).
_HOLD_TIER = _PRELUDE + """
tier = ZarrTier(path, SPEC, index_interval=0)
run_sync(tier.put(1, STATE))
say("ready")
sys.stdin.readline()
out = {k: np.empty_like(a) for k, a in STATE.items()}
run_sync(tier.get(1, out))
say("intact" if all(np.array_equal(out[k], STATE[k]) for k in STATE) else "damaged")
run_sync(tier.close())
"""

#: A child whose Checkpointer puts checkpoints in an amcheck-* folder of the directory argv[1],
#: says the folder's name and "ready", and closes when told to.
_HOLD_CHECKPOINTER = _PRELUDE + f"""
ckp = Checkpointer(Forward(), Adjoint(), STATE, 23, ram={RAM}, disk=path, interval=4)
ckp.forward()
from pathlib import Path
where = Path(ckp.disk.path)
say(next(p.name for p in (where, *where.parents) if p.name.startswith("amcheck-")))
say("ready")
sys.stdin.readline()
ckp.close()
"""


class _Child:
    """A child process running ``code`` with argument ``path``."""

    def __init__(self, code: str, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def line(self) -> str:
        """The next line the child says (fails the test, with its stderr, if it ended)."""
        assert self.process.stdout is not None
        text = self.process.stdout.readline()
        if not text:
            self.process.wait(timeout=60)
            assert self.process.stderr is not None
            pytest.fail(f"child ended ({self.process.returncode}): {self.process.stderr.read()}")
        return text.strip()

    def tell(self) -> None:
        """Let the child go on (close and end)."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it ended without waiting
            self.process.stdin.write("go\n")
            self.process.stdin.flush()

    def finish(self) -> str:
        """Let the child close, wait for its end, and return what it said meanwhile."""
        self.tell()
        out, err = self.process.communicate(timeout=120)
        assert self.process.returncode == 0, err
        return out.strip()

    def kill(self) -> None:
        """SIGKILL: no close, no finalizer, no atexit."""
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=60)
        assert self.process.returncode == -signal.SIGKILL


@pytest.fixture
def children() -> Iterator[list[_Child]]:
    """Children to start; any still running at the end of the test is killed."""
    started: list[_Child] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
        child.process.communicate(timeout=60)


def _start(children: list[_Child], code: str, path: Path) -> _Child:
    child = _Child(code, path)
    children.append(child)
    return child


def test_a_store_open_in_another_process_is_locked(tmp_path: Path, children: list[Any]) -> None:
    """Both processes saw an empty store and took the same rows: each overwrote the other's
    checkpoints, and the gradient came out wrong without an error."""
    path = tmp_path / "run1"
    child = _start(children, _HOLD_TIER, path)
    assert child.line() == "ready"
    for store in (path, str(path), LocalStore(path), f"file://{path}"):
        start = time.monotonic()
        holder = rf"open in another ZarrTier \(pid {child.process.pid} on"
        with pytest.raises(StoreLockedError, match=holder) as info:
            ZarrTier(store, SPEC)
        assert time.monotonic() - start < 2.0  # no waiting for the holder
        assert str(path) in str(info.value) and str(lock_path(path)) in str(info.value)
    with pytest.raises(StoreLockedError, match="give this one a directory of its own"):
        Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=RAM, disk=LocalStore(path),
                     interval=4)
    assert isinstance(StoreLockedError("x"), InvalidArgumentError)
    # The lock file is next to the store: plain zarr readers see only the arrays.
    group = zarr.open_group(path, mode="r")
    assert sorted(group.array_keys()) == ["u", "v"] and sorted(group.group_keys()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1", "run1.lock"]
    assert child.finish() == "intact"
    assert not lock_path(path).exists()  # close() removed it
    again = ZarrTier(path, SPEC)  # free once the holder closed: its checkpoint is there
    assert again.locked and again.steps == frozenset({1})
    run_sync(again.close())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1"]


def test_a_killed_holder_leaves_a_lock_the_next_opener_takes(
    tmp_path: Path, children: list[Any]
) -> None:
    path = tmp_path / "run1"
    child = _start(children, _HOLD_TIER, path)
    assert child.line() == "ready"
    child.kill()
    assert lock_path(path).exists()  # the file stays; the kernel dropped the flock
    with pytest.raises(StoreMismatchError, match="overwrite=True"):
        ZarrTier(path, OTHER)  # takes the lock, fails, releases it, leaves the store
    assert not lock_path(path).exists()
    tier = ZarrTier(path, SPEC)
    assert tier.steps == frozenset({1})
    run_sync(tier.close())


def test_of_openers_at_the_same_instant_one_wins(tmp_path: Path, children: list[Any]) -> None:
    """Opened at the same instant, both tiers went on (or failed with a TransferError about a
    ``zarr.<hex>.partial`` file, or a bare KeyError): exactly one opens, the others are refused."""
    path, go = tmp_path / "run1", tmp_path / "go"
    racers = [_start(children, _PRELUDE + f"""
say("waiting")
while not os.path.exists({str(go)!r}):
    time.sleep(0.001)
""" + _OPEN_OR_LOCKED, path) for _ in range(3)]
    assert [racer.line() for racer in racers] == ["waiting"] * 3
    go.touch()
    outcomes = sorted(racer.line() for racer in racers)
    assert outcomes == ["locked", "locked", "opened"]
    for racer in racers:
        racer.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "run1"]


def test_a_failed_or_erasing_opening_leaves_another_process_store(
    tmp_path: Path, children: list[Any]
) -> None:
    """A second opener with another spec failed, or with overwrite=True erased the store that
    another process was writing; its failed-open clean-up could remove that store."""
    path = tmp_path / "run1"
    child = _start(children, _HOLD_TIER, path)
    assert child.line() == "ready"
    for overwrite in (False, True):
        with pytest.raises(StoreLockedError, match="open in another ZarrTier"):
            ZarrTier(path, OTHER, overwrite=overwrite)
    assert child.finish() == "intact"


def test_a_failed_opening_removes_nothing_another_opener_created(
    tmp_path: Path, children: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two openers at the same instant: the first found the directory missing, the second then
    created its store there, the first failed (another spec) and removed the directory, the
    second's store with it. With the lock taken first, the second opener is refused instead."""
    path = tmp_path / "new" / "run1"
    outcome: list[str] = []
    fresh = zarr_module._fresh_directory

    def fresh_then_a_rival(store: Any) -> Any:
        found = fresh(store)
        if not outcome:  # the rival opens now, between our look and our opening
            rival = _start(children, _PRELUDE + _OPEN_OR_LOCKED, path)
            outcome.append(rival.line())
        return found

    monkeypatch.setattr(zarr_module, "_fresh_directory", fresh_then_a_rival)
    try:
        tier = ZarrTier(path, OTHER)
    except StoreMismatchError:
        assert outcome == ["opened"]  # before the lock: is the rival's store still there?
        assert path.exists(), "a failed opening removed a store another process created"
        raise
    assert outcome == ["locked"]
    run_sync(tier.close())
    again = ZarrTier(path, OTHER)  # the store is this opener's, intact
    assert again.steps == frozenset()
    run_sync(again.close())


def test_no_lock_on_other_stores_or_without_flock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory = ZarrTier(MemoryStore(), SPEC)
    assert not in_memory.locked
    run_sync(in_memory.close())

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    tier = ZarrTier(tmp_path / "run1", SPEC)  # opens without the lock, no error
    assert not tier.locked and not lock_path(tmp_path / "run1").exists()
    run_sync(tier.close())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scan for stale folders: a live one would look so
        Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=RAM, disk=tmp_path / "d",
                     interval=4).close()


def test_a_failed_opening_releases_the_lock_and_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Any, overwrite: bool, direct: bool | None) -> None:
        assert lock_path(tmp_path / "a" / "b" / "run1").exists()
        raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(ZarrTier, "_open", broken)
    with pytest.raises(OSError, match="disk on fire"):
        ZarrTier(tmp_path / "a" / "b" / "run1", SPEC)
    assert list(tmp_path.iterdir()) == []  # no lock file, no parents made for it


def _age(folder: Path, seconds: float = 3600.0) -> None:
    then = time.time() - seconds
    os.utime(folder, (then, then))


def test_a_killed_run_folder_is_named_in_a_warning(tmp_path: Path, children: list[Any]) -> None:
    """A Checkpointer killed mid-run left its amcheck-* folder; later runs made new folders
    next to it and never mentioned it."""
    runs = tmp_path / "runs"
    killed = _start(children, _HOLD_CHECKPOINTER, runs)
    dead = killed.line()
    assert killed.line() == "ready"
    live = _start(children, _HOLD_CHECKPOINTER, runs)
    alive = live.line()
    assert live.line() == "ready"
    killed.kill()
    assert (runs / dead).is_dir() and dead.startswith("amcheck-")
    # Not amcheck's: another name, or other contents.
    (runs / "amcheck-results").mkdir()
    (runs / "amcheck-abcd1234").mkdir()
    (runs / "amcheck-abcd1234" / "notes.txt").write_text("mine")

    def checkpointer() -> Checkpointer:
        return Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=RAM, disk=runs,
                            interval=4)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # just made: it may be a run that has not locked it yet
        checkpointer().close()
    for name in (dead, alive, "amcheck-results", "amcheck-abcd1234"):
        _age(runs / name)
    left = r"1 folder\(s\) in .*runs.* left by Checkpointers"
    with pytest.warns(UserWarning, match=left) as record:
        ckp = checkpointer()
    (message,) = [str(w.message) for w in record]
    assert record[0].filename == __file__  # points at the Checkpointer(...) call
    assert f"{dead} (" in message and "delete them" in message
    assert alive not in message and "amcheck-results" not in message
    assert "amcheck-abcd1234" not in message
    ckp.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # named once a process, not by every Checkpointer
        checkpointer().close()
    assert (runs / dead).is_dir()  # named, never deleted
    assert live.finish() == ""
    assert sorted(p.name for p in runs.iterdir()) == sorted([dead, "amcheck-abcd1234",
                                                             "amcheck-results"])


def test_a_closed_run_leaves_no_lock_file(tmp_path: Path) -> None:
    """The tier's lock is inside the run's folder; close() removes the folder, then the lock."""
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), 23, ram=RAM, disk=tmp_path,
                       interval=4)
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints.zarr",
                                                       "checkpoints.zarr.lock"]
    tier: Any = ckp.disk
    assert tier.locked
    ckp.close()
    assert list(tmp_path.iterdir()) == []
    assert not tier.locked
