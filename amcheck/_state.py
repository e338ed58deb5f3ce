"""States and their specification.

A **state** is a fixed set of named numpy arrays, x_t. A :class:`StateSpec` records each field's
shape and dtype; it is what tiers size their slots and records from.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from amcheck._errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["FieldSpec", "State", "StateSpec"]

State: TypeAlias = Mapping[str, np.ndarray]
"""A state x_t: field name -> C-contiguous numpy array of the spec's shape and dtype."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Shape and dtype of one field of a state."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        """Bytes one copy of this field takes."""
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: exact, and no numpy call


class StateSpec(Mapping[str, FieldSpec]):
    """The fields of a state: name -> (shape, dtype), in a fixed order.

    Parameters
    ----------
    fields
        Field name -> ``(shape, dtype)`` or :class:`FieldSpec`. Names are non-empty strings,
        dimensions integers >= 0, dtypes numeric (no Python objects).
    name
        The parameter's name in error messages.

    Examples
    --------
    >>> spec = StateSpec({"u": ((2, 64, 64), "float32")})
    >>> spec.nbytes
    32768
    """

    __slots__ = ("_fields",)

    def __init__(
        self, fields: Mapping[str, FieldSpec | tuple[Any, Any]], *, name: str = "fields"
    ) -> None:
        if not isinstance(fields, Mapping):
            raise ArgumentTypeError(
                f"{name} must be a mapping name -> (shape, dtype), got {type(fields).__name__}"
            )
        if not fields:
            raise InvalidArgumentError(f"{name} must name at least one array, got an empty mapping")
        parsed: dict[str, FieldSpec] = {}
        for key, item in fields.items():
            if not isinstance(key, str):
                raise ArgumentTypeError(f"{name}: field names must be non-empty strings, got {key!r}")
            if not key:
                raise InvalidArgumentError(f"{name}: field names must be non-empty strings, got ''")
            try:  # a FieldSpec is checked as its (shape, dtype): it may hold anything
                shape, dtype = (item.shape, item.dtype) if isinstance(item, FieldSpec) else item
                if dtype is None or any(isinstance(n, (bool, np.bool_)) for n in shape):
                    # np.dtype(None) is float64 and True is the integer 1: both are slips.
                    raise TypeError("a dtype of None, or a bool dimension")
                shape_t = tuple(operator.index(n) for n in shape)
                dtype_o = np.dtype(dtype)
            except (TypeError, ValueError) as exc:
                got = (f"an array of shape {item.shape} and dtype {item.dtype}; "
                       "StateSpec.from_arrays(state) takes arrays" if isinstance(item, np.ndarray)
                       else f"{item!r:.200}")
                raise ArgumentTypeError(
                    f"{name}: field {key!r} must be given as (shape, dtype) with integer "
                    f"dimensions and a numpy dtype (not None), got {got}"
                ) from exc
            if any(n < 0 for n in shape_t):
                raise InvalidArgumentError(
                    f"{name}: field {key!r} has a negative dimension: {shape_t}"
                )
            if dtype_o.hasobject:
                raise InvalidArgumentError(
                    f"{name}: field {key!r} has dtype {dtype_o}, which holds Python objects and "
                    "cannot be checkpointed; use numeric arrays"
                )
            parsed[key] = FieldSpec(shape_t, dtype_o)
        self._fields = parsed

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], name: str = "state") -> StateSpec:
        """Build the spec of example arrays (typically x_0); ``name`` is the parameter's name
        in error messages.

        Raises
        ------
        ArgumentTypeError
            ``arrays`` is not a mapping of numpy arrays.
        InvalidArgumentError
            ``arrays`` is empty, or an array holds Python objects.
        """
        if not isinstance(arrays, Mapping):
            raise ArgumentTypeError(
                f"{name} must be a mapping name -> numpy array, got {type(arrays).__name__}"
            )
        fields: dict[str, FieldSpec] = {}
        for key, array in arrays.items():
            if not isinstance(array, np.ndarray):
                raise ArgumentTypeError(
                    f"{name} field {key!r} must be a numpy array, got {type(array).__name__}"
                )
            fields[key] = FieldSpec(tuple(array.shape), array.dtype)
        return cls(fields, name=name)

    @property
    def nbytes(self) -> int:
        """Bytes one state takes (sum over fields, no padding)."""
        return sum(field.nbytes for field in self._fields.values())

    def check(self, state: Any, name: str = "state", *, writable: bool = False) -> None:
        """Check that ``state`` matches this spec: same names, shapes, dtypes, C-contiguous arrays
        (and, with ``writable``, arrays that can be written: a tier's ``get`` into ``out``).

        Raises
        ------
        ArgumentTypeError
            ``state`` is not a mapping, or a field is not a numpy array.
        InvalidArgumentError
            A field is missing or extra, has another shape or dtype, is not C-contiguous, or
            is read-only where ``writable`` asks.
        """
        if not isinstance(state, Mapping):
            raise ArgumentTypeError(
                f"{name} must be a mapping name -> numpy array, got {type(state).__name__}"
            )
        if set(state) != set(self._fields):
            raise InvalidArgumentError(
                f"{name} has fields {sorted(state)}, expected {sorted(self._fields)}"
            )
        for key, field in self._fields.items():
            array = state[key]
            if not isinstance(array, np.ndarray):
                raise ArgumentTypeError(
                    f"{name}[{key!r}] must be a numpy array, got {type(array).__name__}"
                )
            if array.shape != field.shape or array.dtype != field.dtype:
                raise InvalidArgumentError(
                    f"{name}[{key!r}] has shape {array.shape} and dtype {array.dtype}, "
                    f"expected shape {field.shape} and dtype {field.dtype}"
                )
            if not array.flags.c_contiguous:
                raise InvalidArgumentError(
                    f"{name}[{key!r}] is not C-contiguous; pass np.ascontiguousarray(array)"
                )
            if writable and not array.flags.writeable:
                raise InvalidArgumentError(
                    f"{name}[{key!r}] is read-only, and a read writes into it; pass a writable "
                    "array"
                )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description: ``{name: {"shape": [...], "dtype": "<f4"}}``."""
        return {
            key: {"shape": list(field.shape), "dtype": field.dtype.str}
            for key, field in self._fields.items()
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StateSpec:
        """Inverse of :meth:`to_json`.

        Raises
        ------
        ArgumentTypeError
            ``data`` is not a mapping of ``{name: {"shape": [...], "dtype": ...}}``.
        """
        if not isinstance(data, Mapping) or not all(
            isinstance(v, Mapping) and "shape" in v and "dtype" in v for v in data.values()
        ):
            raise ArgumentTypeError(
                'data must be a mapping {name: {"shape": [...], "dtype": "<f4"}} as to_json() '
                f"writes, got {data!r}"
            )
        try:
            fields = {key: (tuple(v["shape"]), v["dtype"]) for key, v in data.items()}
        except TypeError as exc:
            raise ArgumentTypeError(f"data: a field's shape is not a list of integers ({exc})"
                                    ) from None
        return cls(fields, name="data")

    def __getitem__(self, key: str) -> FieldSpec:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateSpec):
            return NotImplemented
        return list(self._fields.items()) == list(other._fields.items())

    def __hash__(self) -> int:
        return hash(tuple((k, f.shape, f.dtype.str) for k, f in self._fields.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: ({f.shape}, {f.dtype.name!r})" for k, f in self._fields.items())
        return f"StateSpec({{{inner}}})"
