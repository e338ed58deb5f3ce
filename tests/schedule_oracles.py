"""Independent oracles shared by the schedule tests (plain loops, no amcheck code)."""

from __future__ import annotations

from math import comb


def gw(n: int, s: int) -> int:
    """Griewank–Walther minimum t·n − C(s+t, t−1), t smallest with C(s+t, s) >= n (a plain loop)."""
    t = 0
    while comb(s + t, s) < n:
        t += 1
    return t * n - comb(s + t, t - 1) if t >= 1 else 0
