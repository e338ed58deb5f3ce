"""The conformance test class every tier passes (subclassed in ``tests/test_tiers.py``).

A subclass provides :meth:`TierConformance.make_tier` (and, for lossy tiers, overrides
:meth:`TierConformance.assert_restored`). Every test here talks to the tier only through the
:class:`amcheck.storage.Tier` interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import Tier

from amcheck import (
    ArgumentTypeError,
    Checkpointer,
    CheckpointNotFoundError,
    InvalidArgumentError,
    StateSpec,
    SweepStateError,
    TierFullError,
)

SPEC = StateSpec(
    {
        "u": ((2, 24, 20), "float32"),  # two time levels of a 2-D field
        "v": ((24, 20), "float64"),
        "ids": ((7,), "int32"),
        "mask": ((3, 5), "bool"),
    }
)


def make_state(seed: int, spec: StateSpec = SPEC) -> dict[str, np.ndarray]:
    """A state with smooth float fields (compressible) and exact integer/bool fields."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, field in spec.items():
        if field.dtype.kind == "f":
            grids = np.meshgrid(*[np.linspace(0, 1, n) for n in field.shape], indexing="ij")
            phase = rng.uniform(0, 2 * np.pi)
            smooth = np.sin(6 * sum(grids) + phase) if grids else np.array(np.sin(phase))
            out[key] = np.ascontiguousarray(smooth, dtype=field.dtype)
        elif field.dtype.kind == "b":
            out[key] = rng.integers(0, 2, field.shape).astype(bool)
        else:
            out[key] = rng.integers(-1000, 1000, field.shape).astype(field.dtype)
    return out


def async_only_codec() -> Any:
    """A third-party bytes codec with only asynchronous calls (it inverts every byte): the zarr
    tier cannot call it itself, so zarr's own codec pipeline codes such shards."""
    from dataclasses import dataclass

    from zarr.abc.codec import BytesBytesCodec

    @dataclass(frozen=True)
    class AsyncOnlyInvert(BytesBytesCodec):  # type: ignore[misc]
        is_fixed_size = True

        async def _encode_single(self, chunk: Any, spec: Any) -> Any:
            return chunk.__class__.from_bytes(bytes(255 - b for b in chunk.to_bytes()))

        async def _decode_single(self, chunk: Any, spec: Any) -> Any:
            return chunk.__class__.from_bytes(bytes(255 - b for b in chunk.to_bytes()))

        def compute_encoded_size(self, input_byte_length: int, spec: Any) -> int:
            return input_byte_length

    return AsyncOnlyInvert()


def empty_like(spec: StateSpec) -> dict[str, np.ndarray]:
    return {key: np.full(f.shape, 7, dtype=f.dtype) for key, f in spec.items()}


class TierConformance:
    """Behaviour every :class:`~amcheck.storage.Tier` shares."""

    def make_tier(self, spec: StateSpec, tmp_path: Path, *, capacity: int | None = None) -> Tier:
        """A fresh, empty tier for ``spec``; ``capacity``: room for that many states of
        :func:`make_state` (about; the test puts at most ``capacity`` and then one more)."""
        raise NotImplementedError

    def assert_restored(self, expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
        """Lossless tiers: bitwise equal."""
        for key, want in expected.items():
            assert got[key].dtype == want.dtype
            np.testing.assert_array_equal(got[key], want, strict=True)

    @pytest.fixture
    async def tier(self, tmp_path: Path) -> AsyncIterator[Tier]:
        tier = self.make_tier(SPEC, tmp_path)
        yield tier
        await tier.close()

    async def test_round_trip(self, tier: Tier) -> None:
        states = {step: make_state(step) for step in (0, 5, 17)}
        for step, state in states.items():
            await tier.put(step, state)
        assert tier.steps == frozenset(states)
        for step in (17, 0, 5):
            out = empty_like(SPEC)
            ids = {k: id(v) for k, v in out.items()}
            await tier.get(step, out)
            assert {k: id(v) for k, v in out.items()} == ids
            self.assert_restored(states[step], out)

    async def test_put_copies_the_state(self, tier: Tier) -> None:
        state = make_state(1)
        kept = {k: v.copy() for k, v in state.items()}
        await tier.put(3, state)
        for array in state.values():
            array[...] = 0
        out = empty_like(SPEC)
        await tier.get(3, out)
        self.assert_restored(kept, out)

    async def test_all_zero_state(self, tier: Tier) -> None:
        zeros = {k: np.zeros(f.shape, f.dtype) for k, f in SPEC.items()}
        await tier.put(0, zeros)
        out = empty_like(SPEC)
        await tier.get(0, out)
        self.assert_restored(zeros, out)

    async def test_overwrite(self, tier: Tier) -> None:
        await tier.put(4, make_state(1))
        nbytes_one = tier.nbytes
        await tier.put(4, make_state(2))
        assert tier.steps == frozenset({4})
        assert tier.nbytes == pytest.approx(nbytes_one, rel=0.2)
        out = empty_like(SPEC)
        await tier.get(4, out)
        self.assert_restored(make_state(2), out)

    async def test_delete(self, tier: Tier) -> None:
        await tier.put(1, make_state(1))
        await tier.put(2, make_state(2))
        await tier.delete(1)
        assert 1 not in tier and 2 in tier
        assert tier.steps == frozenset({2})
        with pytest.raises(CheckpointNotFoundError, match="step 1"):
            await tier.get(1, empty_like(SPEC))
        with pytest.raises(CheckpointNotFoundError):
            await tier.delete(1)
        out = empty_like(SPEC)
        await tier.get(2, out)
        self.assert_restored(make_state(2), out)
        await tier.delete(2)
        assert tier.nbytes == 0 and tier.steps == frozenset()

    async def test_missing_step_is_a_key_error(self, tier: Tier) -> None:
        with pytest.raises(KeyError, match="step 9"):
            await tier.get(9, empty_like(SPEC))
        assert 9 not in tier
        assert "9" not in tier
        await tier.put(0, make_state(0))
        for call in (lambda: tier.get("0", empty_like(SPEC)), lambda: tier.delete("0")):  # type: ignore[arg-type]
            # not "no checkpoint at step 0; it holds steps [0]"
            with pytest.raises(ArgumentTypeError, match="step must be an integer, got '0'"):
                await call()
        assert 0 in tier
        await tier.put(1, make_state(1))
        for call in (lambda: tier.get(True, empty_like(SPEC)), lambda: tier.delete(True)):
            # True == 1 found step 1's checkpoint (and deleted it)
            with pytest.raises(ArgumentTypeError, match="step must be an integer, got True"):
                await call()
        assert 1 in tier

    async def test_nbytes_counts_held_checkpoints(self, tier: Tier) -> None:
        assert tier.nbytes == 0
        await tier.put(0, make_state(0))
        one = tier.nbytes
        assert one > 0
        await tier.put(1, make_state(1))
        assert tier.nbytes == pytest.approx(2 * one, rel=0.2)

    async def test_rejects_a_state_of_another_spec(self, tier: Tier) -> None:
        bad = make_state(0)
        bad["v"] = bad["v"].astype(np.float32)
        with pytest.raises(InvalidArgumentError, match="v"):
            await tier.put(0, bad)
        assert 0 not in tier
        await tier.put(0, make_state(0))
        wrong_out = empty_like(SPEC)
        del wrong_out["ids"]
        with pytest.raises(InvalidArgumentError, match="ids"):
            await tier.get(0, wrong_out)
        frozen = empty_like(SPEC)
        frozen["v"].setflags(write=False)  # the RamTier raised numpy's ValueError
        with pytest.raises(InvalidArgumentError, match=r"out\['v'\] is read-only"):
            await tier.get(0, frozen)
        assert (frozen["u"] == 7).all()  # nothing written before the refusal

    async def test_rejects_a_negative_step(self, tier: Tier) -> None:
        with pytest.raises(InvalidArgumentError, match="step"):
            await tier.put(-1, make_state(0))

    async def test_capacity(self, tmp_path: Path) -> None:
        tier = self.make_tier(SPEC, tmp_path, capacity=3)
        try:
            assert tier.capacity is not None
            state = make_state(0)
            for step in range(3):
                await tier.put(step, state)
            held = tier.nbytes
            assert held <= tier.capacity
            with pytest.raises(TierFullError):
                await tier.put(3, state)
            assert tier.steps == frozenset({0, 1, 2}) and tier.nbytes == held
            await tier.put(1, state)  # replacing a held checkpoint needs no new room
            assert tier.steps == frozenset({0, 1, 2})
            await tier.delete(0)
            await tier.put(3, state)
            assert tier.steps == frozenset({1, 2, 3})
            out = empty_like(SPEC)
            await tier.get(3, out)
            self.assert_restored(state, out)
        finally:
            await tier.close()

    async def test_close(self, tmp_path: Path) -> None:
        tier = self.make_tier(SPEC, tmp_path)
        await tier.put(0, make_state(0))
        assert not tier.closed
        await tier.close()
        await tier.close()  # harmless
        assert tier.closed
        # refused when the Checkpointer is built (a closed RawTier or RamTier was taken, and
        # the first write failed mid-sweep)
        with pytest.raises(InvalidArgumentError, match="is closed; pass an open tier"):
            Checkpointer(lambda src, dst, t0, t1: None, lambda state, t: None, make_state(0), 8,
                         ram="4 MiB", disk=tier)
        with pytest.raises(SweepStateError):
            await tier.put(1, make_state(1))
        with pytest.raises(SweepStateError):
            await tier.get(0, empty_like(SPEC))
