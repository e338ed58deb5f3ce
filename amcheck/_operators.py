"""The operator protocol: how amcheck calls the user's forward and reverse code.

A **forward operator** computes x_t1 from x_t0; a **reverse operator** runs reverse step t (the
adjoint of F_t) given x_t. Both work on buffers amcheck owns, so that a checkpoint costs no copy:
the operator reads one buffer and writes the next (the zero-cost checkpointing of Kukreja et al.,
2018, https://doi.org/10.1007/978-3-319-93701-4_31).

Either protocol is met by an object with the method (``advance`` / ``reverse``) or by a plain
callable with the same parameters. :func:`as_forward` and :func:`as_reverse` turn what the user
passed into a bound callable after checking that its signature accepts the call amcheck makes,
so a wrong signature fails when the :class:`~amcheck.Checkpointer` is built, not mid-sweep.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

from amcheck._errors import ArgumentTypeError
from amcheck._state import State

__all__ = [
    "AdvanceFn",
    "ForwardOperator",
    "ReverseFn",
    "ReverseOperator",
    "as_forward",
    "as_reverse",
    "as_reverse_pair",
    "check_signature",
    "code_name",
    "declares_reverse_from_next",
]

AdvanceFn: TypeAlias = Callable[[State, State, int, int], "int | None"]
"""``advance(src, dst, t0, t1) -> None | int``: the forward operator in callable form."""

ReverseFn: TypeAlias = Callable[[State, int], object]
"""``reverse(state, t)``: the reverse operator in callable form (its return value is ignored)."""


@runtime_checkable
class ForwardOperator(Protocol):
    """Computes x_t1 from x_t0 by running steps ``t0 … t1-1``.

    ``advance(src, dst, t0, t1)`` reads ``src`` (x_t0) and writes every field of ``dst`` (x_t1),
    with ``t0 < t1``. ``dst`` may be the very same mapping as ``src``: the step then runs in place
    (amcheck does this whenever x_t0 is not a checkpoint it must keep), so an operator must give
    the right answer in both cases. Otherwise ``src`` is read-only: its arrays have
    ``flags.writeable == False`` and writing into them raises ``ValueError``.

    Return ``None`` when x_t1 was reached. Only when the length of the sequence is unknown
    (``n_steps=None``) may the operator end it: it returns the step ``t`` (``t0 < t <= t1``) at
    which the sequence ended, with x_t in ``dst``. With a known ``n_steps`` returning anything but
    ``None`` or ``t1`` is an error.

    The operator keeps no reference to ``src``, ``dst`` or their arrays after it returns: the
    buffers are reused for other states.
    """

    def advance(self, src: State, dst: State, t0: int, t1: int) -> int | None:
        """Compute x_t1 (into ``dst``) from x_t0 (in ``src``)."""


@runtime_checkable
class ReverseOperator(Protocol):
    """Runs reverse step t, the adjoint of F_t, given the forward state x_t.

    ``reverse(state, t)`` is called for t = n-1, n-2, …, 0, in that order, exactly once each per
    reverse sweep. ``state`` is x_t and read-only. The adjoint state (and the gradient being
    accumulated) belongs to the operator, not to amcheck.

    **Optional: ``reverse_from_next = True``.** An operator (or its class) may declare that
    reverse step t reads nothing but what x_t and x_{t+1} hold alike, so that ``state`` may be
    x_{t+1} instead. A second-order time stepping whose state holds u_t and u_{t-1} (u_t in level
    ``t % 2``) and whose reverse step reads only u_t qualifies: x_{t+1} still holds u_t, in the
    same level. With a known ``n_steps >= 3`` and a strategy given by name, the Checkpointer then
    plans over pairs of steps (:class:`amcheck.schedules.Paired`): one state serves two reverse
    steps, so store-all keeps about half the states, and the other strategies restore half as
    often and recompute less. With ``n_steps=None`` the disk strategies pair the steps inside
    each segment and store-all keeps only the states pairs need (see the API guide). A false
    declaration gives wrong adjoints: test it once by comparing a reverse sweep's result with
    pairs and without (``Checkpointer(..., pairs=False)``); they must agree bit for bit.

    **Optional, with ``reverse_from_next``: ``reverse_pair(state, t)``.** Reverse steps t and
    t - 1 in one call, given x_t (t >= 1), with the result of ``reverse(state, t)`` followed by
    ``reverse(state, t - 1)``: x_t holds what step t - 1 reads, by the declaration above. An
    operator that can run the two in one pass over memory (for a stencil, two adjoint time
    steps fused, each row of the second computed while the first's rows are in cache) saves
    most of a step's memory traffic. When the plan runs over pairs of steps, the engine calls it
    wherever it runs reverse step t from x_t, and then skips reverse step t - 1; otherwise
    (``pairs=False``, a step without a partner) it calls ``reverse``. Make it bitwise equal to
    the two calls, and test it as the declaration: with and without the method.
    """

    def reverse(self, state: State, t: int) -> None:
        """Move the adjoint from t+1 to t, using x_t."""


def _describe(fn: Callable[..., Any]) -> str:
    try:
        return f"{getattr(fn, '__qualname__', type(fn).__name__)}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def check_signature(fn: Callable[..., Any], n_args: int, what: str, expected: str,
                    keywords: tuple[str, ...] = ()) -> None:
    """Raise ArgumentTypeError unless ``fn`` accepts ``n_args`` positional arguments and the
    ``keywords`` arguments by name."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # Builtins and some compiled callables have no signature: trust the call.
    try:
        signature.bind(*range(n_args), **dict.fromkeys(keywords, 0))
    except TypeError as exc:
        # bind()'s words are from the caller's side ("too many positional arguments" means the
        # function takes too few): say it from the function's
        reason = ("it takes fewer" if "too many" in str(exc)
                  else f"it needs more: {exc}" if "missing" in str(exc) else str(exc))
        takes = (f"the keyword arguments {' and '.join(keywords)}" if keywords else
                 f"{n_args} positional argument{'s' if n_args != 1 else ''}")
        raise ArgumentTypeError(
            f"{what} must accept {expected}, {takes}; its signature is {_describe(fn)}: {reason}"
        ) from None


def _operator_callable(
    operator: object, role: str, method_name: str, expected: str, n_args: int
) -> Any:
    """The operator's ``method_name`` method if it has one, else the operator itself if callable.

    Either must accept ``n_args`` positional arguments (``expected`` names them in messages).
    """
    if isinstance(operator, type) and inspect.isfunction(
        inspect.getattr_static(operator, method_name, None)
    ):  # a plain method looked up on the class: self would be missing
        raise ArgumentTypeError(
            f"{role} is the class {operator.__name__}, whose {method_name} needs an instance: "
            f"pass {operator.__name__}(...), not {operator.__name__}"
        )
    method = getattr(operator, method_name, None)
    if callable(method):
        what = f"{role}.{method_name} of {type(operator).__name__}"
        check_signature(method, n_args, what, expected)
        return method
    if callable(operator):
        check_signature(operator, n_args, role, expected)
        return operator
    pyrevolve = (" (a pyrevolve operator, with apply(t_start, t_end)? amcheck.compat.pyrevolve"
                 ".Revolver runs those unchanged: see docs/migrating.md)"
                 if callable(getattr(operator, "apply", None)) else "")
    raise ArgumentTypeError(
        f"{role} must be an object with a method {method_name}{expected} or a callable "
        f"{method_name}{expected}, got {operator!r:.200} of type {type(operator).__name__}"
        f"{pyrevolve}"
    )


def code_name(fn: Callable[..., Any]) -> tuple[str, str]:
    """``(module, qualified name)`` of an operator callable's code (of a bound method: its
    class's method; of a callable object: its class; of a ``functools.partial``: of the function
    it wraps), which names it without keeping it alive."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__func__", fn)
    if not hasattr(code, "__qualname__"):
        code = type(code)
    return str(getattr(code, "__module__", "")), str(code.__qualname__)


def _declared(reverse: object, name: str) -> tuple[object, Any]:
    """``(holder, value)`` of the first of the reverse operator and, for a bound method, its
    object that has the attribute ``name`` (not ``None``), or ``(None, None)``."""
    owner = getattr(reverse, "__self__", None)  # a bound method: its object declares
    for holder in (reverse, owner):
        value = getattr(holder, name, None)
        if value is not None:
            return holder, value
    return None, None


def declares_reverse_from_next(reverse: object) -> bool:
    """Whether the reverse operator (an object, or its bound method) declares
    ``reverse_from_next = True`` (see :class:`ReverseOperator`).

    Raises
    ------
    ArgumentTypeError
        It has the attribute, but not a ``bool``.
    """
    _, value = _declared(reverse, "reverse_from_next")
    if value is not None:
        if not isinstance(value, (bool, np.bool_)):
            raise ArgumentTypeError(
                f"reverse_from_next of the reverse operator must be True or False, got "
                f"{value!r} of type {type(value).__name__}"
            )
        return bool(value)
    return False


def as_reverse_pair(reverse: object) -> ReverseFn | None:
    """The reverse operator's optional ``reverse_pair(state, t)`` (see :class:`ReverseOperator`),
    bound, or ``None``; it is looked up on the object whose ``reverse`` method was given too.

    Raises
    ------
    ArgumentTypeError
        It is there but not callable, or its signature cannot take the two arguments.
    """
    holder, method = _declared(reverse, "reverse_pair")
    if method is None:
        return None
    if not callable(method):
        raise ArgumentTypeError(
            f"reverse_pair of the reverse operator must be a method reverse_pair(state, t), "
            f"got {method!r} of type {type(method).__name__}")
    check_signature(method, 2, f"reverse_pair of {type(holder).__name__}", "(state, t)")
    fn: ReverseFn = method
    return fn


def as_forward(forward: object) -> AdvanceFn:
    """Return the callable ``advance(src, dst, t0, t1)`` of a forward operator.

    Parameters
    ----------
    forward
        An object with an ``advance(src, dst, t0, t1)`` method (preferred when both exist), or a
        callable with that signature.

    Raises
    ------
    ArgumentTypeError
        ``forward`` is neither, or its signature cannot take the four arguments.
    """
    fn: AdvanceFn = _operator_callable(forward, "forward", "advance", "(src, dst, t0, t1)", 4)
    return fn


def as_reverse(reverse: object) -> ReverseFn:
    """Return the callable ``reverse(state, t)`` of a reverse operator.

    Parameters
    ----------
    reverse
        An object with a ``reverse(state, t)`` method (preferred when both exist), or a callable
        with that signature.

    Raises
    ------
    ArgumentTypeError
        ``reverse`` is neither, or its signature cannot take the two arguments.
    """
    fn: ReverseFn = _operator_callable(reverse, "reverse", "reverse", "(state, t)", 2)
    return fn
