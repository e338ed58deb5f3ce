"""Numba finite-difference acoustic wave kernels and FWI (installed as ``amcheck.kernels``)."""

from __future__ import annotations

__all__: list[str] = []
