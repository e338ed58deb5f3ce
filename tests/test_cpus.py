"""The transfer threads' CPUs: the disk's interrupt CPUs found from sysfs and procfs (a fake
tree for each layout), their validation, and the threads confined to them."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RamTier, RawTier, TransferService, ZarrTier, _cpus, codec_executor
from amcheck.storage._cpus import check_cpus, interrupt_cpus, io_cpus
from toy_problem import Adjoint, Forward, initial_state
from zarr.storage import MemoryStore

from amcheck import ArgumentTypeError, Checkpointer, InvalidArgumentError, StateSpec

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                reason="CPU affinity is Linux only")

USABLE = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def fake_machine(root: Path, disk_of: Path, irqs: dict[int, tuple[list[int], str]], *,
                 partition: bool = False, msi: bool = True) -> tuple[Path, Path]:
    """sysfs and procfs trees in which the disk holding ``disk_of`` is a virtio-style PCI
    device with ``irqs``: number -> (count on each of 2 CPUs, effective affinity list)."""
    sysfs, procfs = root / "sys", root / "proc"
    pci = sysfs / "devices" / "pci0000:00" / "0000:00:02.0"
    disk = pci / "virtio1" / "block" / "vda"
    node = disk / "vda1" if partition else disk
    node.mkdir(parents=True)
    if partition:
        (node / "partition").write_text("1\n")
    (disk / "device").symlink_to(pci / "virtio1")
    if msi:
        (pci / "msi_irqs").mkdir()
    dev = disk_of.stat().st_dev
    (sysfs / "dev" / "block").mkdir(parents=True)
    (sysfs / "dev" / "block" / f"{os.major(dev)}:{os.minor(dev)}").symlink_to(node)
    lines = ["           CPU0       CPU1       \n",
             " 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n"]
    for irq, (counts, affinity) in irqs.items():
        if msi:
            (pci / "msi_irqs" / str(irq)).write_text("msix\n")
        lines.append(f" {irq}: {counts[0]:10d} {counts[1]:10d}  PCI-MSIX  virtio1-req.{irq}\n")
        (procfs / "irq" / str(irq)).mkdir(parents=True)
        (procfs / "irq" / str(irq) / "effective_affinity_list").write_text(affinity + "\n")
    lines.append("LOC:   12938446   15551485   Local timer interrupts\n")
    (procfs / "interrupts").write_text("".join(lines))
    return sysfs, procfs


def test_one_request_queue_gives_its_cpu(tmp_path: Path) -> None:
    # the configuration interrupt (once, on CPU 0) is not the disk's busy one
    sysfs, procfs = fake_machine(tmp_path, tmp_path, {35: ([1, 0], "0"), 36: ([0, 5000], "1")})
    assert interrupt_cpus(tmp_path, sysfs=sysfs, procfs=procfs) == {1}
    # a directory the tier has yet to create: its nearest existing parent's disk
    assert interrupt_cpus(tmp_path / "a" / "b", sysfs=sysfs, procfs=procfs) == {1}


def test_a_partition_leads_to_its_disk(tmp_path: Path) -> None:
    sysfs, procfs = fake_machine(tmp_path, tmp_path, {36: ([10, 0], "0")}, partition=True)
    assert interrupt_cpus(tmp_path, sysfs=sysfs, procfs=procfs) == {0}


def test_a_queue_per_cpu_gives_every_cpu(tmp_path: Path) -> None:
    sysfs, procfs = fake_machine(tmp_path, tmp_path, {40: ([900, 0], "0"), 41: ([0, 700], "1"),
                                                     42: ([5, 0], "0-1")})
    assert interrupt_cpus(tmp_path, sysfs=sysfs, procfs=procfs) == {0, 1}


@pytest.mark.parametrize("case", ["no msi_irqs", "never fired", "no sysfs", "no procfs"])
def test_unknown_interrupts_give_none(tmp_path: Path, case: str) -> None:
    sysfs, procfs = fake_machine(tmp_path, tmp_path, {36: ([0, 0] if case == "never fired"
                                                           else [3, 9], "1")},
                                 msi=case != "no msi_irqs")
    if case == "no sysfs":
        sysfs = tmp_path / "nowhere"
    if case == "no procfs":
        procfs = tmp_path / "nowhere"
    assert interrupt_cpus(tmp_path, sysfs=sysfs, procfs=procfs) is None


def test_io_cpus_takes_a_proper_subset_of_the_usable_cpus(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    found: dict[str, frozenset[int] | None] = {}
    monkeypatch.setattr(_cpus, "interrupt_cpus", lambda path: found["cpus"])
    monkeypatch.setattr(_cpus, "usable_cpus", lambda: frozenset({0, 1, 2, 3}))
    for cpus, expected in [({1}, {1}), ({2, 3, 7}, {2, 3}), ({0, 1, 2, 3}, None), ({7}, None),
                           (None, None)]:
        found["cpus"] = None if cpus is None else frozenset(cpus)
        assert io_cpus(tmp_path) == expected, cpus
    assert io_cpus(None) is None
    monkeypatch.setattr(_cpus, "usable_cpus", lambda: None)  # a platform without affinity
    found["cpus"] = frozenset({1})
    assert io_cpus(tmp_path) is None


def test_parse_cpu_list() -> None:
    assert _cpus._parse_cpu_list("0-2,5\n") == {0, 1, 2, 5}
    assert _cpus._parse_cpu_list("3") == {3}


def test_check_cpus() -> None:
    cpu = min(USABLE)
    assert check_cpus("cpus", [cpu, cpu]) == {cpu}
    numpy_ids = check_cpus("cpus", np.array([cpu]))  # numpy integers are ids too
    assert numpy_ids == {cpu} and all(type(c) is int for c in numpy_ids)
    with pytest.raises(ArgumentTypeError, match=r"cpus must be a non-empty collection .* got '0'"):
        check_cpus("cpus", "0")
    with pytest.raises(ArgumentTypeError, match=r"got 3 of type int"):
        check_cpus("cpus", 3)
    with pytest.raises(ArgumentTypeError, match=r"it holds True of type bool"):
        check_cpus("cpus", [True])
    with pytest.raises(InvalidArgumentError, match=r"CPU ids this process may use, \[.*\], got \[\]"):
        check_cpus("cpus", [])
    with pytest.raises(InvalidArgumentError, match=r"got \[100000\]"):
        check_cpus("cpus", [100000])


def test_check_cpus_without_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_setaffinity")
    with pytest.raises(InvalidArgumentError, match=r"io_cpus=\[0\]: this platform cannot confine"):
        check_cpus("io_cpus", [0])


SPEC = StateSpec({"u": ((64,), "float32")})


def test_the_transfer_service_confines_every_thread_it_runs() -> None:
    cpu = min(USABLE)
    state = {"u": np.arange(64, dtype=np.float32)}

    async def affinities() -> list[set[int]]:
        loop = asyncio.get_running_loop()
        io = await loop.run_in_executor(None, os.sched_getaffinity, 0)
        codec = await asyncio.wrap_future(codec_executor().submit(os.sched_getaffinity, 0))
        return [os.sched_getaffinity(0), io, codec]

    tier = RamTier(4 * SPEC.nbytes, SPEC)
    with TransferService(max_in_flight=2, cpus=[cpu]) as service:
        assert service.cpus == {cpu}
        service.submit_put(tier, 3, state).result()
        assert service.run(affinities()) == [{cpu}] * 3
        submitter = next(t for t in threading.enumerate() if t.name == "amcheck-transfer-submit")
        assert submitter.native_id is not None
        assert os.sched_getaffinity(submitter.native_id) == {cpu}
    assert os.sched_getaffinity(0) == USABLE  # the caller's thread is left alone
    with TransferService(max_in_flight=2, cpus=[cpu]) as service:
        # a pool thread started by another thread than the loop confines itself too
        assert service._codecs.submit(os.sched_getaffinity, 0).result() == {cpu}
    with TransferService(max_in_flight=2) as service:
        assert service.cpus is None
        assert service.run(affinities()) == [set(USABLE)] * 3
    with pytest.raises(InvalidArgumentError, match=r"cpus must be .* got \[-1\]"):
        TransferService(cpus=[-1])


def test_cpus_gone_since_the_check_stop_the_service_cleanly(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    cpu = min(USABLE)
    before = {t.ident for t in threading.enumerate()}

    def refused(pid: int, cpus: Any) -> None:  # as if the process's CPUs changed meanwhile
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refused)
    with pytest.raises(InvalidArgumentError, match=rf"cpus=\[{cpu}\]: cannot confine the "
                                                   r"transfer threads there \(\[Errno 22\]"):
        TransferService(cpus=[cpu])
    assert {t.ident for t in threading.enumerate()} == before  # no thread left running


class Watching(Forward):
    """Records the CPUs of the transfer threads during the forward sweep."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[frozenset[int]] = set()

    def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
        for thread in threading.enumerate():
            if thread.name.startswith("amcheck-transfer") and thread.native_id is not None:
                self.seen.add(frozenset(os.sched_getaffinity(thread.native_id)))
        return super().advance(src, dst, t0, t1)


def test_checkpointer_io_cpus(tmp_path: Path) -> None:
    cpu = max(USABLE)
    disk = tmp_path / "z"
    auto = io_cpus(tmp_path)
    for setting, expected in [([cpu], (cpu,)), ("any", None),
                              (None, None if auto is None else tuple(sorted(auto)))]:
        forward = Watching()
        with Checkpointer(forward, Adjoint(), initial_state(), 40, ram="1 MiB",
                          disk=disk / str(setting), strategy="async_multistage", interval=4,
                          io_cpus=setting) as ckp:
            ckp.forward()
            ckp.reverse()
            assert ckp.stats.io_cpus == expected
        assert forward.seen == {frozenset(expected or USABLE)}, setting
    with Checkpointer(Forward(), Adjoint(), initial_state(), 40, ram="1 MiB",
                      strategy="revolve", io_cpus=[cpu]) as ckp:  # no disk: nothing to confine
        ckp.forward()
        assert ckp.stats.io_cpus is None


@pytest.mark.parametrize(("bad", "error", "message"), [
    ("all", InvalidArgumentError, (r"io_cpus must be None \(the disk's interrupt CPUs\), 'any' or "
                                  r"a collection of CPU ids, got 'all'")),
    ([], InvalidArgumentError, r"io_cpus must be a non-empty collection"),
    (1, ArgumentTypeError, r"io_cpus must be .* got 1 of type int"),
    ([0.5], ArgumentTypeError, r"it holds 0.5 of type float"),
])
def test_checkpointer_refuses_bad_io_cpus(tmp_path: Path, bad: Any, error: type,
                                          message: str) -> None:
    with pytest.raises(error, match=message):
        Checkpointer(Forward(), Adjoint(), initial_state(), 40, disk=tmp_path / "z",
                     strategy="async_multistage", io_cpus=bad)
    assert not (tmp_path / "z").exists()


async def test_tiers_local_path(tmp_path: Path) -> None:
    zarr_tier = ZarrTier(tmp_path / "z", SPEC)
    memory = ZarrTier(MemoryStore(), SPEC)
    raw = RawTier(tmp_path / "r.bin", SPEC)
    try:
        assert zarr_tier.local_path == str(tmp_path / "z")
        assert memory.local_path is None
        assert raw.local_path == str(tmp_path / "r.bin")
        assert RamTier(2 * SPEC.nbytes, SPEC).local_path is None
    finally:
        for tier in (zarr_tier, memory, raw):
            await tier.close()
