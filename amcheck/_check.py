"""``check_operator``: test a forward operator against the contract the engine relies on.

The engine calls ``advance(src, dst, t0, t1)`` in two ways (see :mod:`amcheck._operators`): in
place (``dst is src``) and out of place (``src`` a read-only checkpoint, ``dst`` a buffer holding
whatever it held before), with any split of a range of steps into calls. A checkpointed gradient
is bitwise the store-all one only if every way gives the same states; an operator that is right
in one way and wrong in another passes a store-all test and fails later, silently, under some
schedule. The standard schedules rarely run an advance in place, so a user's own tests seldom
see that path: this check runs every way on a few steps and compares the states byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from amcheck._engine import _readonly, assignment_hint, returned_step
from amcheck._errors import OperatorError
from amcheck._operators import as_forward
from amcheck._state import StateSpec
from amcheck._validate import check_int

__all__ = ["check_operator"]

#: Bytes the destination buffers are filled with before an out-of-place advance (two runs with
#: different garbage must agree: an advance must write all of dst).
_GARBAGE = (0xFF, 0x5A)


def check_operator(forward: object, initial_state: Mapping[str, np.ndarray], steps: int = 3
                   ) -> None:
    """Check that a forward operator gives the same states every way the engine may call it.

    Runs steps ``0 … steps-1`` from ``initial_state`` and compares, byte for byte:

    1. **out of place**, twice: ``advance(src, dst, 0, steps)`` with ``src`` read-only and
       ``dst`` filled with two different garbage patterns first: the results must agree (an
       advance must write every element of every field of ``dst``);
    2. **in place**: ``advance(x, x, 0, steps)`` must give the same state;
    3. **one step at a time**: ``advance(x_t, x_{t+1}, t, t + 1)`` for t = 0 … steps-1 must
       give the same state (recomputation splits ranges differently from the forward sweep).

    Parameters
    ----------
    forward
        The forward operator, as for :class:`~amcheck.Checkpointer`.
    initial_state
        x_0, as for :class:`~amcheck.Checkpointer` (not modified).
    steps
        Steps to run, ``>= 1`` (default 3); they must not end an unknown-length sequence.

    Raises
    ------
    OperatorError
        A check failed (the message names it, the field and how many bytes differ), the
        operator raised (chained), or it ended the sequence within ``steps``.
    ArgumentTypeError, InvalidArgumentError
        ``forward`` is not an operator, ``initial_state`` not a valid state, ``steps < 1``.

    Examples
    --------
    >>> import numpy as np, amcheck
    >>> def advance(src, dst, t0, t1):
    ...     u = src["u"].copy()
    ...     for _ in range(t0, t1):
    ...         u = 0.5 * (u + np.roll(u, 1))
    ...     dst["u"][...] = u
    >>> amcheck.check_operator(advance, {"u": np.arange(8.0)})
    """
    advance = as_forward(forward)
    spec = StateSpec.from_arrays(initial_state, "initial_state")
    spec.check(initial_state, "initial_state")
    steps = check_int("steps", steps, minimum=1)
    x0 = {name: np.array(initial_state[name], copy=True) for name in spec}

    def run(src: Mapping[str, np.ndarray], dst: dict[str, np.ndarray], t0: int, t1: int,
            way: str) -> None:
        out = MappingProxyType(dst)
        # In place the engine passes one mapping as both (operators test ``dst is src``).
        src_view = out if dst is src else _readonly(src)
        call = f"advance(src, dst, {t0}, {t1}) ({way})"
        try:
            result = advance(src_view, out, t0, t1)
        except Exception as exc:
            raise OperatorError(
                f"check_operator: the forward operator raised {type(exc).__name__} in {call}: "
                f"{exc}{assignment_hint(exc)}"
            ) from exc
        step = returned_step(result, f"check_operator: {call}")
        if step is not None and not t0 < step <= t1:
            raise OperatorError(
                f"check_operator: {call} returned {result!r}; a step at which the sequence "
                f"ended must satisfy {t0} < step <= {t1} (return None to run all the steps)"
            )
        if step is not None and step != t1:
            raise OperatorError(
                f"check_operator: {call} returned {result!r}, ending the sequence within the "
                f"{steps} steps checked: pass fewer steps"
            )

    def garbage(byte: int) -> dict[str, np.ndarray]:
        state = {name: np.empty(f.shape, f.dtype) for name, f in spec.items()}
        for array in state.values():
            array.reshape(-1).view(np.uint8)[...] = byte  # fresh, so contiguous: a view
        return state

    reference = garbage(_GARBAGE[0])
    run(x0, reference, 0, steps, "out of place")
    again = garbage(_GARBAGE[1])
    run(x0, again, 0, steps, "out of place")
    for name in spec:
        first, second = _bytes(reference[name]), _bytes(again[name])
        differ = first != second
        if not differ.any():
            continue
        # Elements still holding each buffer's own garbage, every byte of them, were never
        # written (a computed value matches garbage in a byte or two by chance, not in all);
        # others differ because the result depends on what dst held, or on something else.
        itemsize = max(np.dtype(spec[name].dtype).itemsize, 1)
        kept = int(np.count_nonzero(((first == _GARBAGE[0]) & (second == _GARBAGE[1]))
                                    .reshape(-1, itemsize).all(axis=1)))
        if kept:
            elements = "element" if kept == 1 else "elements"
            raise OperatorError(
                f"check_operator: an out-of-place advance(src, dst, 0, {steps}) leaves {kept} "
                f"{elements} of dst[{name!r}] as they were (two runs into buffers of different "
                "garbage disagree): write every element of every field of dst"
            )
        repeat = garbage(_GARBAGE[0])  # into the first one's garbage: tells why they differ
        run(x0, repeat, 0, steps, "out of place")
        if np.array_equal(first, _bytes(repeat[name])):
            raise OperatorError(
                f"check_operator: an out-of-place advance(src, dst, 0, {steps}) gives "
                f"dst[{name!r}] values that depend on what dst held before (two runs into "
                "buffers of different garbage disagree in "
                f"{int(np.count_nonzero(differ))} bytes): read src, never dst (dst holds "
                "another state, or garbage, unless dst is src)"
            )
        raise OperatorError(
            f"check_operator: two identical calls advance(src, dst, 0, {steps}) wrote "
            f"different values into {int(np.count_nonzero(differ))} bytes of dst[{name!r}]: "
            "an advance must depend on src, t0 and t1 only (no call counter, unseeded random "
            "numbers or state kept between calls), or recomputation gives other states"
        )
    _unchanged(x0, initial_state)

    in_place = {name: array.copy() for name, array in x0.items()}
    run(in_place, in_place, 0, steps, "in place")
    _same(reference, in_place, lambda name, n: (
        f"advance(x, x, 0, {steps}) in place (dst is src) differs from the out-of-place result "
        f"in {n} bytes of field {name!r}: the operator must read all of src before it "
        "overwrites it, or update in an order that is safe when dst is src"))

    a, b = {name: array.copy() for name, array in x0.items()}, garbage(_GARBAGE[0])
    for t in range(steps):
        run(a, b, t, t + 1, "one step at a time")
        a, b = b, a
    _same(reference, a, lambda name, n: (
        f"{steps} calls advance(x_t, x_t+1, t, t+1) differ from one call advance(src, dst, 0, "
        f"{steps}) in {n} bytes of field {name!r}: the steps of an advance must not depend on "
        "how the range is split into calls"))


def _same(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray],
          message: Callable[[str, int], str]) -> None:
    for name, want in expected.items():
        differ = int(np.count_nonzero(_bytes(want) != _bytes(actual[name])))
        if differ:
            raise OperatorError(f"check_operator: {message(name, differ)}")


def _bytes(array: np.ndarray) -> np.ndarray:
    """The bytes of ``array`` (any shape, 0-d included), flat."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _unchanged(x0: Mapping[str, np.ndarray], initial: Mapping[str, np.ndarray]) -> None:
    _same(initial, x0, lambda name, n: (
        f"{n} bytes of field {name!r} changed during an out-of-place advance, in the read-only "
        "src or in the initial_state arrays themselves (through a reference the operator "
        "keeps): an operator must write into dst only"))
