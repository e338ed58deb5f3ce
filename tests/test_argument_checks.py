"""Bad arguments to the smaller public pieces (timeline, RAM tier, spec JSON, transfer service,
byte sizes, the pyrevolve adapter, the demo's --out) raise a clear AmcheckError naming the
parameter, instead of a raw TypeError/AttributeError from deep inside, or passing silently."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RamTier, RawTier, TransferService, ZarrTier
from toy_problem import Adjoint, Forward, initial_state

from amcheck import (
    AmcheckError,
    ArgumentTypeError,
    BudgetError,
    Checkpointer,
    CheckpointNotFoundError,
    InvalidArgumentError,
    StateSpec,
    Timeline,
    TransferError,
)
from amcheck._bytes import format_bytes, parse_bytes
from amcheck.compat.pyrevolve import Revolver
from amcheck.schedules import Revolve

SPEC = StateSpec({"u": ((4,), "float32")})


def _raises(call: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, AmcheckError)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("compute", "a", 1.0), {}, ArgumentTypeError, "start must be a real number"),
        (("compute", 2.0, 1.0), {}, InvalidArgumentError, "end must be >= start"),
        (("compute", float("nan"), 1.0), {}, InvalidArgumentError, "start must be a finite"),
        (("compute", 1.0, 2.0), {"step": "x"}, ArgumentTypeError, "step must be an integer"),
        (("compute", 1.0, 2.0), {"nbytes": -1}, InvalidArgumentError, "nbytes must be"),
        (("compute", 1.0, 2.0), {"tier": 3}, ArgumentTypeError, "tier must be a non-empty str"),
        (("swim", 1.0, 2.0), {}, InvalidArgumentError, "kind must be one of"),
    ],
)
def test_timeline_record_checks_its_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    timeline = Timeline()
    _raises(lambda: timeline.record(*args, **kwargs), error, match)
    assert timeline.events == []  # nothing half-recorded: the events stay readable


def test_timeline_flags_and_plot_arguments(tmp_path: Path) -> None:
    _raises(lambda: Timeline(enabled="no"), ArgumentTypeError, "enabled must be True or False")  # type: ignore[arg-type]
    timeline = Timeline()
    _raises(lambda: timeline.plot(None), ArgumentTypeError, "path must be a str")  # type: ignore[arg-type]
    _raises(lambda: timeline.plot(tmp_path / "t.png", title=5), ArgumentTypeError, "title")  # type: ignore[arg-type]
    _raises(lambda: timeline.plot(""), InvalidArgumentError, "path must name an image file, got ''")
    _raises(lambda: timeline.plot("~/no-such-folder-amcheck/t.png"), InvalidArgumentError,
            r"the folder '/.*/no-such-folder-amcheck' does not exist")  # ~ is the home folder
    with pytest.raises(InvalidArgumentError, match="kind must be one of"), timeline.span("nap"):  # type: ignore[arg-type]
        pass


def test_ram_tier_checks_spec_name_and_slot_ownership() -> None:
    _raises(lambda: RamTier("1 MiB", {"u": ((4,), "f4")}), ArgumentTypeError, "spec must be a StateSpec")  # type: ignore[arg-type]
    _raises(lambda: RamTier("1 MiB", SPEC, name=5), ArgumentTypeError, "name must be")  # type: ignore[arg-type]
    mine, other = RamTier("1 MiB", SPEC), RamTier("1 MiB", SPEC)
    theirs = other.acquire()
    _raises(lambda: mine.bind(1, None), InvalidArgumentError, "slot must be a Slot")  # type: ignore[arg-type]
    # The same index in another tier must not free (or bind) this tier's slot.
    _raises(lambda: mine.release(theirs), InvalidArgumentError, "slot must be a Slot")
    slot = mine.acquire()
    assert slot.index == theirs.index
    mine.bind(1, slot)
    assert list(mine.steps) == [1]
    assert mine.unbind(1) is slot and list(mine.steps) == []  # a working slot again, no copy
    _raises(lambda: mine.unbind(1), CheckpointNotFoundError, "1")


@pytest.mark.parametrize(
    ("data", "match"),
    [({"u": {"shape": [4]}}, "data must be a mapping"), ([1], "data must be a mapping"),
     ({"u": {"shape": 4, "dtype": "f4"}}, "shape is not a list")],
)
def test_spec_from_json_rejects_malformed_data(data: object, match: str) -> None:
    _raises(lambda: StateSpec.from_json(data), ArgumentTypeError, match)  # type: ignore[arg-type]


def test_transfer_service_checks_its_arguments() -> None:
    _raises(lambda: TransferService(name=5), ArgumentTypeError, "name must be")  # type: ignore[arg-type]
    with TransferService() as service:
        _raises(lambda: service.submit_put(None, 1, {}), ArgumentTypeError, "tier must be")  # type: ignore[arg-type]
        _raises(lambda: service.run(5), ArgumentTypeError, "coro must be a coroutine")  # type: ignore[arg-type]
        _raises(lambda: service.wait_all(timeout="a"), ArgumentTypeError, "timeout")  # type: ignore[arg-type]
        _raises(lambda: service.wait_all(timeout=-1), InvalidArgumentError, "timeout must be")
        _raises(lambda: service.close(cancel="yes"), ArgumentTypeError, "cancel")  # type: ignore[arg-type]


def test_byte_sizes() -> None:
    _raises(lambda: parse_bytes("-1 GiB", "ram"), InvalidArgumentError, "ram must be >= 0 bytes")
    _raises(lambda: parse_bytes("150%", "ram"), InvalidArgumentError, "percentage of physical")
    _raises(lambda: parse_bytes("-5%", "ram"), InvalidArgumentError,
            r"ram must be a percentage of physical memory in \(0, 100\], got '-5%'")
    _raises(lambda: parse_bytes("1.5", "ram"), InvalidArgumentError, "whole number of bytes")
    _raises(lambda: parse_bytes("2.5 B", "ram"), InvalidArgumentError, "whole number of bytes")
    # an overflow is "too large", not a fraction (1e400 parses as inf)
    _raises(lambda: parse_bytes("1e400 B", "ram"), InvalidArgumentError, "too large to be a byte")
    _raises(lambda: parse_bytes("1e400", "ram"), InvalidArgumentError, "too large to be a byte")
    assert parse_bytes("1.5 kB") == 1500 and parse_bytes("2.0") == 2 and parse_bytes("1.5K") == 1536
    # every decimal form float() reads: ".5" was accepted and "1." refused
    assert parse_bytes(".5 KiB") == 512 and parse_bytes("1.") == 1 and parse_bytes("1. GiB") == 2**30
    assert parse_bytes("1.e3") == 1000 and parse_bytes("2.E1 kB") == 20_000
    assert parse_bytes("+5") == 5 and parse_bytes(" +1.5 KiB ") == 1536
    for flag in ("no", None, 0):  # "no" refused percentages as True did, None and 0 allowed them
        _raises(lambda: parse_bytes("10%", "ram", on_disk=flag), ArgumentTypeError,  # noqa: B023
                "on_disk must be True or False")
    for bad in (".", ". GiB", "1..5", "e3", "1.5.", "1 .5", "++5", "+ 5", "+-5"):
        _raises(lambda: parse_bytes(bad, "ram"), InvalidArgumentError, "could not be parsed")  # noqa: B023
    # a fraction of a unit rounds to whole bytes; a size below one byte was silently 0
    assert parse_bytes("1e-3 KiB") == 1 and parse_bytes("1.7e-3 KiB") == 2
    assert parse_bytes("0.3 GiB") == 322122547 and parse_bytes("0 GiB") == 0
    _raises(lambda: parse_bytes("0.0001 KiB", "ram"), InvalidArgumentError,
            r"ram='0.0001 KiB' is less than one byte \(0.1024 bytes\)")
    _raises(lambda: parse_bytes("3 PB", "ram"), InvalidArgumentError, "TiB or K, M, G, T")
    _raises(lambda: format_bytes(None), ArgumentTypeError, "nbytes must be a real number")  # type: ignore[arg-type]
    _raises(lambda: format_bytes(float("nan")), InvalidArgumentError, "finite")
    assert format_bytes(np.int64(3 * 2**30)) == "3.0 GiB"


def test_checkpointer_rejects_a_closed_tier_and_a_wrong_progress(tmp_path: Path) -> None:
    x0 = initial_state()
    tier = ZarrTier(tmp_path / "t.zarr", StateSpec.from_arrays(x0))
    asyncio.run(tier.close())
    _raises(lambda: Checkpointer(Forward(), Adjoint(), x0, 8, ram="1 MiB", disk=tier),
            InvalidArgumentError, "is closed")
    with Checkpointer(Forward(), Adjoint(), x0, 8, ram="1 MiB") as ckp:
        _raises(lambda: ckp.forward(progress=lambda: None), ArgumentTypeError,
                "progress must accept the number of steps completed, 1 positional argument;")
        ckp.forward()
        _raises(lambda: ckp.reverse(progress=lambda a, b: None), ArgumentTypeError,
                "progress must accept the number of steps completed, 1 positional argument;")


def test_checkpointer_checks_a_schedule_instances_capacity() -> None:
    class NoCapacity(Revolve):
        @property
        def capacity(self) -> Any:
            return None

    _raises(lambda: Checkpointer(Forward(), Adjoint(), initial_state(), 8, ram="1 MiB",
                                 strategy=NoCapacity(8, 2)), ArgumentTypeError, "capacity must be")


class _Ops:
    """Operators and a checkpoint for the pyrevolve adapter whose get_data the test chooses."""

    def __init__(self, data: Callable[[int], Any]) -> None:
        self.data = data

    def get_data(self, t: int) -> Any:
        return self.data(t)

    get_data_location = get_data

    def apply(self, t_start: int, t_end: int) -> None:
        pass


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (lambda t: None, ArgumentTypeError, "must return a list of numpy arrays"),
        (lambda t: [], InvalidArgumentError, "returned no arrays"),
        (lambda t: [np.zeros(4 if t == 0 else 5)], InvalidArgumentError, "must keep its layout"),
    ],
)
def test_pyrevolve_adapter_checks_get_data(
    data: Callable[[int], Any], error: type[Exception], match: str
) -> None:
    ops = _Ops(data)

    def run() -> None:
        revolver = Revolver(ops, ops, ops, 3, 6)
        revolver.apply_forward()

    _raises(run, error, match)


def test_pyrevolve_adapter_caps_checkpoints_at_the_steps() -> None:
    ops = _Ops(lambda t: [np.zeros(4)])
    revolver = Revolver(ops, ops, ops, 10**12, 10)
    assert revolver.n_checkpoints == 10**12 and revolver._pool.n_slots == 10  # as pyrevolve
    assert Revolver(ops, ops, ops, 3, 6, compression_params={"scheme": None}).n_checkpoints == 3
    _raises(lambda: Revolver(ops, ops, ops, 3, 6, timeline=None), ArgumentTypeError, "timeline")  # type: ignore[arg-type]


def test_demo_leaves_no_empty_out_folder_when_it_fails(tmp_path: Path) -> None:
    from amcheck.cli import main

    out = tmp_path / "never"
    (tmp_path / "a-file").write_text("")
    assert main(["demo", "--small", "--out", str(out), "--disk", str(tmp_path / "a-file"),
                 "--no-progress"]) == 2
    assert not out.exists()


def test_raw_tier_refuses_an_existing_file_and_a_file_in_use(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    _raises(lambda: RawTier(precious, SPEC, records=2), InvalidArgumentError, "overwrite=True")
    assert precious.read_text() == "mine"  # neither emptied nor removed
    for blank in ("", "  ", "\n"):  # an unset variable, or one that holds only blanks
        _raises(lambda blank=blank: RawTier(blank, SPEC, records=2), InvalidArgumentError,
                f"path must name a file or a directory, got {re.escape(repr(blank))}")
    _raises(lambda: Timeline().plot(" "), InvalidArgumentError,
            "path must name an image file, got ' '")
    first = RawTier(tmp_path, SPEC, records=2)
    try:
        _raises(lambda: RawTier(tmp_path, SPEC, records=2, overwrite=True), InvalidArgumentError,
                "used by another open RawTier")
        state = {"u": np.full(4, 7.0, np.float32)}
        asyncio.run(first.put(1, state))
        out = {"u": np.zeros(4, np.float32)}
        asyncio.run(first.get(1, out))
        assert np.array_equal(out["u"], state["u"])  # the refused opener changed nothing
    finally:
        asyncio.run(first.close())
    again = RawTier(tmp_path, SPEC, records=2)  # closed: the file is gone, the path free
    asyncio.run(again.close())
    stale = tmp_path / "stale.raw"
    stale.write_bytes(b"x" * 10)
    replaced = RawTier(stale, SPEC, records=2, overwrite=True)
    asyncio.run(replaced.close())
    assert not stale.exists()


@pytest.mark.parametrize("make", [lambda nc: nc.Delta("f8"), lambda nc: nc.PackBits(),
                                  lambda nc: nc.FixedScaleOffset(0, 10, "f4", "u1")])
def test_zarr_tier_refuses_codecs_that_do_not_decode_what_they_code(
    tmp_path: Path, make: Callable[[Any], Any]
) -> None:
    numcodecs = pytest.importorskip("numcodecs")
    spec = StateSpec({"u": ((8,), "float32")})
    _raises(lambda: ZarrTier(tmp_path / "s.zarr", spec, make(numcodecs)), InvalidArgumentError,
            "does not decode back to the same dtype and shape")
    ok = ZarrTier(tmp_path / "ok.zarr", spec, numcodecs.Delta("f4"))  # keeps dtype and size
    asyncio.run(ok.close())


def test_checkpointer_refuses_a_store_with_checkpoints_and_explains_a_mismatch(
    tmp_path: Path,
) -> None:
    from zarr.storage import MemoryStore

    from amcheck import StoreMismatchError

    x0 = initial_state()
    store = MemoryStore()
    tier = ZarrTier(store, StateSpec.from_arrays(x0))
    asyncio.run(tier.put(3, x0))
    asyncio.run(tier.close())
    _raises(lambda: Checkpointer(Forward(), Adjoint(), x0, 20, ram="1 MiB", disk=store,
                                 strategy="async_multistage", interval=5),
            InvalidArgumentError, r"already holds checkpoints \(steps \[3\]\)")
    again = ZarrTier(store, StateSpec.from_arrays(x0))  # the refusal left them alone
    assert again.steps == {3}
    asyncio.run(again.close())
    _raises(lambda: Checkpointer(Forward(), Adjoint(), x0, 20, ram="1 MiB", disk=store,
                                 compression="zstd"), StoreMismatchError,
            r"Checkpointer needs an empty store.*overwrite=True")
    _raises(lambda: ZarrTier(MemoryStore(), StateSpec.from_arrays(x0), budget=0),
            InvalidArgumentError, "budget must be > 0")
    for tier in (lambda: ZarrTier(MemoryStore(), StateSpec.from_arrays(x0), budget="10%"),
                 lambda: RawTier(tmp_path / "raw", StateSpec.from_arrays(x0), budget="10%")):
        _raises(tier, InvalidArgumentError, "budget='10%': a percentage is a share of memory")


def test_raw_tier_close_that_cannot_remove_its_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """close() unlinked before closing its descriptor: an unlink error escaped as a bare OSError
    and left the descriptor (and its lock) open for good."""
    from amcheck.storage import _raw

    tier = RawTier(tmp_path, SPEC, records=2)

    def refuse(path: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_raw.os, "unlink", refuse)
    _raises(lambda: asyncio.run(tier.close()), TransferError, "removing its file")
    monkeypatch.undo()
    again = RawTier(tmp_path, SPEC, records=2, overwrite=True)  # the lock went with the fd
    asyncio.run(again.close())


def test_zarr_tier_at_the_root_is_an_amcheck_error() -> None:
    from amcheck import StoreMismatchError

    _raises(lambda: ZarrTier("/", SPEC), StoreMismatchError, "holds no zarr store")


@pytest.mark.parametrize("version", [1, 2])
def test_percentages_of_memory_respect_the_cgroup_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """A batch job's or a container's memory limit, set on this process's cgroup or an
    ancestor's, bounds what "25%" means: the machine's memory would get the job killed."""
    from amcheck import _bytes

    proc = tmp_path / "cgroup"
    if version == 2:
        proc.write_text("0::/slurm/job_7/step_0\n")
        base, name = tmp_path, "memory.max"
    else:
        proc.write_text("9:cpu,cpuacct:/slurm/job_7/step_0\n4:memory:/slurm/job_7/step_0\n")
        base, name = tmp_path / "memory", "memory.limit_in_bytes"
    for path, text in (("", "max" if version == 2 else str(2**63 - 4096)),
                       ("slurm", "max" if version == 2 else str(2**63 - 4096)),
                       ("slurm/job_7", str(2**30)),
                       ("slurm/job_7/step_0", str(3 * 2**30))):
        (base / path).mkdir(parents=True, exist_ok=True)
        (base / path / name).write_text(text + "\n")
    assert _bytes.cgroup_memory_limit(str(tmp_path), str(proc)) == 2**30  # the job's, lowest
    assert _bytes.cgroup_memory_limit(str(tmp_path), str(tmp_path / "none")) is None
    monkeypatch.setattr(_bytes, "cgroup_memory_limit", lambda: 2**30)
    assert _bytes.parse_bytes("25%", "ram") == 2**28


def test_numpy_bools_are_bools_and_huge_numbers_are_refused(tmp_path: Path) -> None:
    """numpy.bool_ passed as a flag elsewhere but was refused by ZarrTier's overwrite, the
    tiers' direct and a reverse_from_next declaration; integers beyond float's or a file's
    range raised OverflowError, and a RawTier of such a size left its file behind."""
    from zarr.storage import MemoryStore

    from amcheck._interval import IntervalController
    from amcheck._operators import declares_reverse_from_next

    spec = StateSpec({"u": ((8,), "float32")})
    asyncio.run(ZarrTier(MemoryStore(), spec, overwrite=np.True_).close())
    asyncio.run(ZarrTier(tmp_path / "z", spec, direct=np.False_).close())
    asyncio.run(RawTier(tmp_path / "r.bin", spec, records=2, direct=np.False_).close())

    class Declared:
        reverse_from_next = np.True_

        def reverse(self, state: Any, t: int) -> None:
            pass

    assert declares_reverse_from_next(Declared()) is True
    _raises(lambda: IntervalController(5, margin=10**400), InvalidArgumentError,
            r"margin must be a finite number, got an integer too large for a float \(401 digits\)")
    _raises(lambda: IntervalController(5, window=2**70), InvalidArgumentError,
            "window must be at most")
    for kwargs in ({"records": 2**70}, {"budget": 2**70}):
        _raises(lambda kwargs=kwargs: RawTier(tmp_path / "big.bin", spec, **kwargs), BudgetError,
                "exceed the largest file a file system can hold")
        assert not (tmp_path / "big.bin").exists()
    _raises(lambda: RamTier(2**70, spec), BudgetError, "could not allocate")
