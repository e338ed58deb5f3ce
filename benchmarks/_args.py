"""argparse types shared by the benchmark scripts: a bad value is a usage error (status 2,
``<script>.py: error: …``), not a traceback from deep inside a run."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def int_at_least(smallest: int) -> Callable[[str], int]:
    """A type for an integer >= ``smallest``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < smallest:
            raise argparse.ArgumentTypeError(f"must be an integer >= {smallest}, got {value}")
        return value

    return parse


#: An integer >= 1.
positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def require(parser: argparse.ArgumentParser, module: str, why: str) -> None:
    """Stop with a usage error (status 2) unless ``module`` (of the ``bench`` extra) is
    installed: before any timing, not as a traceback halfway through the run."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        parser.error(f"{why} needs {module}, which is not installed: install the bench extra "
                     "(pip install -e '.[bench]')")


def grid_shape(ndims: tuple[int, ...] = (2, 3), smallest: int = 16
               ) -> Callable[[str], tuple[int, ...]]:
    """A type for ``N``x``M`` (or ``N``x``M``x``K``): a grid of one of ``ndims`` axes, each at
    least ``smallest`` points."""
    form = " or ".join("x".join("NMK"[:d]) for d in ndims)

    def parse(text: str) -> tuple[int, ...]:
        try:
            shape = tuple(int(v) for v in text.lower().split("x"))
        except ValueError:
            shape = ()
        if len(shape) not in ndims or min(shape) < smallest:
            raise argparse.ArgumentTypeError(
                f"must be {form} with every axis >= {smallest}, got {text!r}")
        return shape

    return parse


def int_list(allowed: tuple[int, ...] | None = None) -> Callable[[str], list[int]]:
    """A type for a comma-separated list of integers >= 1 (with ``allowed``, each one of those)."""

    def parse(text: str) -> list[int]:
        values = [positive_int(v) for v in text.split(",")]
        wrong = [v for v in values if allowed is not None and v not in allowed]
        if wrong:
            raise argparse.ArgumentTypeError(
                f"{wrong[0]} is not one of {', '.join(map(str, allowed or ()))}")
        return values

    return parse
