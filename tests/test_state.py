"""StateSpec and the RAM tier's slot pool."""

from __future__ import annotations

import numpy as np
import pytest
from amcheck.storage import ALIGNMENT, RamTier, slot_layout

import amcheck


def spec2() -> amcheck.StateSpec:
    return amcheck.StateSpec({"u": ((2, 8, 9), np.float32), "n": ((3,), np.int64)})


def test_spec_from_arrays_and_nbytes() -> None:
    x0 = {"u": np.zeros((2, 8, 9), np.float32), "n": np.zeros(3, np.int64)}
    spec = amcheck.StateSpec.from_arrays(x0)
    assert spec == spec2()
    assert spec.nbytes == 2 * 8 * 9 * 4 + 3 * 8
    assert amcheck.StateSpec.from_json(spec.to_json()) == spec
    spec.check(x0)


def test_spec_check_errors() -> None:
    spec = spec2()
    with pytest.raises(amcheck.InvalidArgumentError, match="expected"):
        spec.check({"u": np.zeros((2, 8, 9), np.float32)})
    with pytest.raises(amcheck.InvalidArgumentError, match="C-contiguous"):
        spec.check({"u": np.zeros((2, 9, 8), np.float32).transpose(0, 2, 1),
                    "n": np.zeros(3, np.int64)})
    with pytest.raises(amcheck.ArgumentTypeError, match="numpy array"):
        amcheck.StateSpec.from_arrays({"u": [1.0, 2.0]})


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"u": ((2.5, 3), "f4")}, amcheck.ArgumentTypeError, r"integer\s+dimensions.*got \(\(2.5"),
        ({"u": ((True, 3), "f4")}, amcheck.ArgumentTypeError, r"integer\s+dimensions"),
        ({"u": ((2,), None)}, amcheck.ArgumentTypeError, r"dtype \(not None\), got"),
        ({"u": ((2, -1), "f4")}, amcheck.InvalidArgumentError, r"negative dimension"),
        ({"u": ((2,), object)}, amcheck.InvalidArgumentError, r"field 'u' has dtype object"),
        (
            {"u": amcheck.FieldSpec((2,), np.dtype(object))},
            amcheck.InvalidArgumentError,
            r"field 'u' has dtype object",
        ),
        ({"": ((2,), "f4")}, amcheck.InvalidArgumentError, r"fields: field names must be non-empty"),
        # a FieldSpec holding anything raised a bare TypeError from the shape check
        ({"u": amcheck.FieldSpec("x", "y")}, amcheck.ArgumentTypeError,  # type: ignore[arg-type]
         r"field 'u' must be given as \(shape, dtype\).*got FieldSpec\(shape='x'"),
        # an array: its shape and dtype, not its values, and where arrays are taken
        ({"u": np.zeros(200)}, amcheck.ArgumentTypeError,
         (r"got an array of shape \(200,\) and dtype float64; StateSpec.from_arrays\(state\) "
         r"takes arrays$")),
    ],
)
def test_spec_rejects(fields: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        amcheck.StateSpec(fields)  # type: ignore[arg-type]


def test_spec_accepts_numpy_dimensions() -> None:
    spec = amcheck.StateSpec({"u": ((np.int64(2), np.int32(3)), "f4")})
    assert spec["u"].shape == (2, 3)
    assert all(type(n) is int for n in spec["u"].shape)


def test_large_fields_start_on_pages() -> None:
    """Fields of 64 KiB and more are page-aligned (direct I/O needs no bounce copy); small ones
    keep 64-byte alignment, and a state of small fields only takes no page per slot."""
    small = amcheck.StateSpec({"a": ((10,), "f8"), "b": ((3,), "f4")})
    assert slot_layout(small) == ({"a": 0, "b": 128}, 192)
    spec = amcheck.StateSpec({"n": ((3,), "i8"), "u": ((2, 100, 90), "f4"), "s": ((5,), "f8")})
    offsets, size = slot_layout(spec)
    assert offsets == {"n": 0, "u": 4096, "s": 4096 + 72000} and size == 4096 * 19
    tier = RamTier(3 * size, spec)
    for _ in range(tier.n_slots):
        state = tier.acquire().state
        assert state["u"].ctypes.data % 4096 == 0
        assert state["n"].ctypes.data % ALIGNMENT == state["s"].ctypes.data % ALIGNMENT == 0


def test_ram_tier_slots_are_aligned_and_disjoint() -> None:
    tier = RamTier(10 * 2**10, spec2())
    assert tier.n_slots == 10 * 2**10 // tier.slot_nbytes
    seen = []
    for _ in range(tier.n_slots):
        slot = tier.acquire()
        for array in slot.state.values():
            assert array.ctypes.data % ALIGNMENT == 0
            assert array.flags.c_contiguous
            array.fill(slot.index + 1)
        seen.append(slot)
    for slot in seen:
        assert all((a == slot.index + 1).all() for a in slot.state.values())
    with pytest.raises(amcheck.TierFullError):
        tier.acquire()


def test_ram_tier_budget_error_says_what_is_needed() -> None:
    with pytest.raises(amcheck.BudgetError, match="bytes"):
        RamTier(100, spec2())
    with pytest.raises(amcheck.BudgetError):
        RamTier(4 * 2**10, spec2(), slots=100)


async def test_ram_tier_zero_copy_bind() -> None:
    tier = RamTier("64 KiB", spec2(), slots=3)
    slot = tier.acquire()
    slot.state["u"][:] = 7.0
    tier.bind(5, slot)
    assert 5 in tier and tier.slot_of(5) is slot and tier.nbytes == tier.spec.nbytes
    out = {"u": np.empty((2, 8, 9), np.float32), "n": np.empty(3, np.int64)}
    await tier.get(5, out)
    assert (out["u"] == 7.0).all()
    await tier.delete(5)
    assert 5 not in tier and tier.n_free == 3
    with pytest.raises(amcheck.CheckpointNotFoundError):
        await tier.get(5, out)
