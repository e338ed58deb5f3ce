"""Memory the RAM pool commits: all of it at construction (default), none for the pages a
growing store-all has not reached, and none once the Checkpointer is closed and x_n dropped."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
from amcheck.storage import RamTier
from toy_problem import Adjoint, Forward, initial_state

from amcheck import Checkpointer, StateSpec

MiB = 2**20

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_pool_pages_are_committed_at_construction_unless_told_not_to() -> None:
    spec = StateSpec({"u": ((4 * MiB // 4,), "float32")})  # 4 MiB states, 64 of them
    before = rss()
    touched = RamTier("256 MiB", spec)
    grown = rss() - before
    assert grown >= 240 * MiB
    lazy_before = rss()
    lazy = RamTier("256 MiB", spec, touch=False)
    assert rss() - lazy_before < 16 * MiB  # nothing committed yet
    slot = lazy.acquire()
    slot.state["u"][...] = 1.0  # the first write commits that slot's pages only
    assert rss() - lazy_before < 24 * MiB
    del touched, lazy, slot


def test_growing_store_all_commits_only_what_the_run_reaches() -> None:
    x0 = initial_state()
    before = rss()
    with Checkpointer(Forward(stop_at=5), Adjoint(), x0, None, ram="512 MiB") as ckp:
        assert ckp.strategy == "store_all"
        assert ckp.ram_pool_bytes > 500 * MiB
        assert rss() - before < 64 * MiB
        ckp.forward()
        assert rss() - before < 64 * MiB


def test_close_gives_the_pool_back_once_x_n_is_dropped() -> None:
    x0 = {"u": np.ones(8 * MiB // 4, np.float32)}  # 8 MiB states, 64 of them: 512 MiB

    def advance(src: dict[str, np.ndarray], dst: dict[str, np.ndarray], t0: int, t1: int) -> None:
        np.multiply(src["u"], 1.0, out=dst["u"])

    class Reverse:
        def reverse(self, state: dict[str, np.ndarray], t: int) -> None:
            pass

    gc.collect()
    before = rss()
    ckp = Checkpointer(advance, Reverse(), x0, 60, ram="520 MiB", strategy="store_all")
    x_n = ckp.forward()
    ckp.reverse()
    assert rss() - before > 480 * MiB
    ckp.close()
    assert float(x_n["u"][0]) == 1.0  # x_n's views keep their memory ...
    del x_n
    gc.collect()
    assert rss() - before < 48 * MiB  # ... and the rest went back at close()
    del ckp


def test_a_close_that_fails_still_gives_the_pool_back() -> None:
    """A disk delete failing at close() raised before the pool was dropped, and the closed
    Checkpointer then never dropped it."""
    import asyncio

    from amcheck.storage import ZarrTier
    from zarr.storage import MemoryStore

    from amcheck import TransferError

    x0 = initial_state()
    tier = ZarrTier(MemoryStore(), StateSpec.from_arrays(x0))
    ckp = Checkpointer(Forward(), Adjoint(), x0, 40, ram="1 MiB", disk=tier, strategy="two_level",
                       interval=5)
    ckp.forward()
    assert tier.steps

    async def broken(step: int) -> None:
        raise OSError(5, "EIO on delete")

    tier.delete = broken  # type: ignore[method-assign]
    with pytest.raises(TransferError, match="EIO on delete"):
        ckp.close()
    assert ckp.closed and ckp._pool._block.nbytes == 0
    del tier.delete
    asyncio.run(tier.close())


def test_a_growing_store_all_gives_back_what_a_run_that_overflowed_touched() -> None:
    """The pages an unknown-length run reached stayed committed after its BudgetError until
    close(); the reset takes a fresh block, and the next run is right."""
    from amcheck import BudgetError

    x0 = {"u": np.ones(4 * MiB // 4, np.float32)}  # 4 MiB states, 64 of them: 256 MiB

    def advance(src: dict[str, np.ndarray], dst: dict[str, np.ndarray], t0: int,
                t1: int) -> int | None:
        np.multiply(src["u"], 1.0, out=dst["u"])
        return None if stop is None or t1 < stop else stop

    stop: int | None = None  # never ends: overflows ram
    before = rss()
    with Checkpointer(advance, lambda state, t: None, x0, None, ram="256 MiB") as ckp:
        with pytest.raises(BudgetError):
            ckp.forward()
        assert rss() - before < 48 * MiB  # 240 MiB were touched
        stop = 3
        assert np.array_equal(ckp.forward()["u"], x0["u"])
        ckp.reverse()
