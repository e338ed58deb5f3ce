"""Shared pytest configuration: seeded randomness and hypothesis profiles."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, so failures reproduce."""
    return np.random.default_rng(20181119)


@pytest.fixture(autouse=True)
def _forget_thread_choices() -> None:
    """Every test starts with no remembered thread choice or interval (amcheck._remember)."""
    from amcheck._remember import forget

    forget()
