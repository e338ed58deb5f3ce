"""check_operator: the operator contract checked on a few steps, every way the engine calls it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from toy_problem import Forward, initial_state

import amcheck
from amcheck import OperatorError, check_operator

State = Mapping[str, np.ndarray]


def smooth(u: np.ndarray) -> np.ndarray:
    return 0.5 * (u + np.roll(u, 1))


def good(src: State, dst: Any, t0: int, t1: int) -> None:
    u = src["u"].copy()
    for _ in range(t0, t1):
        u = smooth(u)
    dst["u"][...] = u
    dst["n"][...] = src["n"] + (t1 - t0)


def x0() -> dict[str, np.ndarray]:
    return {"u": np.linspace(-1.0, 1.0, 16) ** 3, "n": np.zeros((), np.int64)}


def test_correct_operators_pass() -> None:
    check_operator(good, x0())
    check_operator(Forward(), initial_state(), steps=5)  # the test suite's toy problem
    state = x0()
    before = {k: v.copy() for k, v in state.items()}
    check_operator(good, state, steps=1)
    assert all(np.array_equal(state[k], before[k]) for k in state)  # not modified


def forgets_a_field(src: State, dst: Any, t0: int, t1: int) -> None:
    u = src["u"].copy()
    for _ in range(t0, t1):
        u = smooth(u)
    dst["u"][...] = u  # dst["n"] never written: right in place, garbage out of place


def forgets_the_edge(src: State, dst: Any, t0: int, t1: int) -> None:
    u = src["u"]
    for _ in range(t0, t1):
        dst["u"][1:] = 0.5 * (u[1:] + u[:-1])  # dst["u"][0] left as it was
        u = dst["u"]
    dst["n"][...] = src["n"] + (t1 - t0)


def aliasing(src: State, dst: Any, t0: int, t1: int) -> None:
    u, out = src["u"], dst["u"]
    for _ in range(t0, t1):
        for i in range(len(u) - 1, -1, -1):  # reads u[i - 1] after overwriting it when in place
            out[i] = 0.5 * (u[i] + u[i - 1])
        u = out
    dst["n"][...] = src["n"] + (t1 - t0)


def split_dependent(src: State, dst: Any, t0: int, t1: int) -> None:
    u = src["u"].copy()
    for _ in range(t0, t1):
        u = smooth(u)
    dst["u"][...] = u + (t1 - t0 > 1) * 1e-12  # a multi-step call rounds differently
    dst["n"][...] = src["n"] + (t1 - t0)


def writes_src(src: State, dst: Any, t0: int, t1: int) -> None:
    src["u"][0] = 0.0
    good(src, dst, t0, t1)


def wrong_in_place_branch(src: State, dst: Any, t0: int, t1: int) -> None:
    if dst is src:  # the engine passes one mapping for both when it runs in place
        dst["u"][...] = smooth(src["u"])  # one step only, whatever t1 - t0
        dst["n"][...] = src["n"] + (t1 - t0)
        return
    good(src, dst, t0, t1)


def returns_a_bool(src: State, dst: Any, t0: int, t1: int) -> bool:
    good(src, dst, t0, t1)
    return True


def ends_early(src: State, dst: Any, t0: int, t1: int) -> int:
    good(src, dst, t0, t1)
    return t0 + 1


_calls = [0]


def counts_its_calls(src: State, dst: Any, t0: int, t1: int) -> None:
    """Writes every element, but not the same values twice (a hidden call counter)."""
    _calls[0] += 1
    good(src, dst, t0, t1)
    dst["u"][...] += 1e-6 * _calls[0]


def returns_a_new_state(src: State, dst: Any, t0: int, t1: int) -> dict[str, np.ndarray]:
    """Functional style: the new state comes back instead of being written into dst."""
    return {"u": smooth(src["u"]), "n": src["n"] + (t1 - t0)}


def returns_t0(src: State, dst: Any, t0: int, t1: int) -> int:
    """Returns where it started: no step at which a sequence can end."""
    good(src, dst, t0, t1)
    return t0


def reads_dst(src: State, dst: Any, t0: int, t1: int) -> None:
    """Deterministic, but adds to what dst held (another state, or garbage)."""
    before = dst["n"].copy()
    good(src, dst, t0, t1)
    dst["n"][...] += before


@pytest.mark.parametrize(("operator", "match"), [
    (reads_dst, r"gives dst\['n'\] values that depend on what dst held before"),
    (counts_its_calls, (r"two identical calls .* wrote different values into \d+ bytes of "
                        r"dst\['u'\]: an advance must depend on src, t0 and t1 only")),
    (forgets_a_field, r"leaves 1 element of dst\['n'\] as they were"),
    (forgets_the_edge, r"leaves 1 element of dst\['u'\] as they were"),
    (aliasing, r"in place \(dst is src\) differs .* field 'u'"),
    (split_dependent, r"3 calls advance\(x_t, x_t\+1, t, t\+1\) differ .* field 'u'"),
    (writes_src, r"raised ValueError in advance\(src, dst, 0, 3\) \(out of place\)"),
    (ends_early, r"returned 1, ending the sequence within the 3 steps"),
    # it was told to "pass fewer steps"
    (returns_t0, r"returned 0; a step at which the sequence ended must satisfy 0 < step <= 3"),
    (wrong_in_place_branch, r"in place \(dst is src\) differs .* field 'u'"),
    (returns_a_bool, r"returned True of type bool; it must return None, or the step"),
    (returns_a_new_state, (r"returned a dict with keys \['u', 'n'\]; it must return None, .*; "
                           r"a new state is not returned but written into dst's arrays")),
])
def test_broken_operators_are_named(operator: Any, match: str) -> None:
    with pytest.raises(OperatorError, match=match):
        check_operator(operator, x0())


def test_bad_arguments() -> None:
    with pytest.raises(amcheck.ArgumentTypeError, match="forward must be"):
        check_operator(42, x0())
    with pytest.raises(amcheck.InvalidArgumentError, match="steps"):
        check_operator(good, x0(), steps=0)
    with pytest.raises(amcheck.AmcheckError, match="initial_state"):
        check_operator(good, {"u": "text"})
