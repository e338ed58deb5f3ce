"""argparse types shared by the benchmark scripts: a bad value is a usage error (status 2,
``<script>.py: error: …``), not a traceback from deep inside a run."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


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


def grid_shape(ndims: tuple[int, ...] = (2, 3), smallest: int = 16):  # type: ignore[no-untyped-def]
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


def int_at_least(smallest: int):  # type: ignore[no-untyped-def]
    """A type for an integer >= ``smallest``."""

    def parse(text: str) -> int:
        value = positive_int(text) if smallest >= 1 else int(text)
        if value < smallest:
            raise argparse.ArgumentTypeError(f"must be an integer >= {smallest}, got {value}")
        return value

    return parse


def int_list(allowed: tuple[int, ...] | None = None, smallest: int = 1):  # type: ignore[no-untyped-def]
    """A type for a comma-separated list of integers (each in ``allowed``, or >= ``smallest``)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list like 4,8") from None
        for value in values:
            if (value not in allowed) if allowed is not None else value < smallest:
                raise argparse.ArgumentTypeError(
                    f"{value} is not one of {', '.join(map(str, allowed))}" if allowed is not None
                    else f"must be integers >= {smallest}, got {value}")
        return values

    return parse
