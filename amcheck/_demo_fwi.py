"""The inversion of ``amcheck demo``: L-BFGS-B (scipy) on the squared slowness below the water.

Each function evaluation is one checkpointed FWI gradient per shot (an :class:`Evaluator`); the
variables are scaled so that the optimiser's first step is a sensible model update (see
:class:`Objective`), and bounds on the velocity keep every trial model stable for the survey's
time step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from amcheck._demo_report import Totals, plural

__all__ = ["FIRST_STEP", "VMAX", "VMIN", "Evaluator", "Objective", "invert"]


class Evaluator(Protocol):
    """Misfit, gradient (dJ/dm on the model grid) and statistics of a velocity model."""

    evaluations: int

    def __call__(self, vp: np.ndarray, label: str) -> tuple[float, np.ndarray, Totals]: ...


# Velocity bounds of the inversion (km/s): slightly below water, above the salt. The time step
# is derived from the upper bound, so every model L-BFGS-B may try is stable.
VMIN, VMAX = 1.4, 4.8
# The first L-BFGS-B step has unit norm in its variables; they are m scaled so that this step
# changes m by at most this fraction of its median (see Objective). Measured: with 0.05 the
# first iteration lowered the misfit by 0.5% (default size) and 1.6% (small); with 0.3, by half.
FIRST_STEP = 0.25


class Objective:
    """The L-BFGS-B objective: misfit and gradient in scaled squared slowness below the water.

    Variables are ``x = m[free] / scale`` with ``scale`` chosen from the first gradient g so that
    L-BFGS-B's first step, which has unit norm in x, changes m by at most ``FIRST_STEP`` times
    its median: ``scale = FIRST_STEP * median(m) * ||g|| / max|g|``. Misfits are divided by the
    first one, so the tolerances are relative.
    """

    def __init__(self, gradients: Evaluator, first: tuple[float, np.ndarray], m0: np.ndarray,
                 free: np.ndarray) -> None:
        self.gradients = gradients
        self.m0 = m0
        self.free = free
        f0, g0 = first
        gf = g0[free]
        norm, peak = float(np.linalg.norm(gf)), float(np.max(np.abs(gf)))
        self.scale = FIRST_STEP * float(np.median(m0[free])) * (norm / peak if peak > 0 else 1.0)
        self.f_ref = f0 if f0 > 0 else 1.0
        self.cache: dict[bytes, tuple[float, np.ndarray]] = {self._key(self.x0): first}
        self.history: list[float] = []
        self.seconds: list[float] = []
        self.totals = Totals()

    @property
    def x0(self) -> np.ndarray:
        x: np.ndarray = self.m0[self.free] / self.scale
        return x

    def m_of(self, x: np.ndarray) -> np.ndarray:
        m = self.m0.copy()
        m[self.free] = x * self.scale
        return m

    @staticmethod
    def _key(x: np.ndarray) -> bytes:
        return np.ascontiguousarray(x, dtype=np.float64).tobytes()

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        key = self._key(x)
        if key in self.cache:
            f, g = self.cache[key]
        else:
            vp = 1.0 / np.sqrt(self.m_of(x))
            label = f"eval {self.gradients.evaluations + 1}"
            f, g, totals = self.gradients(vp, label)
            self.cache = {key: (f, g)}
            self.totals.merge(totals)
        return f / self.f_ref, g[self.free] * (self.scale / self.f_ref)


def invert(objective: Objective, iterations: int, echo: Callable[[str], None]
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """L-BFGS-B with bounds on m; returns the final velocity and the history."""
    from scipy.optimize import minimize

    start = objective.cache[objective._key(objective.x0)][0]
    history = [start]
    evaluations = [objective.gradients.evaluations]
    seconds = [0.0]
    echo(f"FWI: L-BFGS-B, {iterations} iteration{'s' if iterations != 1 else ''}, "
         f"velocity bounds {VMIN}-{VMAX} km/s below the water layer")
    echo(f"  iteration 0  misfit {start:.6e}")
    if iterations == 0:
        vp = 1.0 / np.sqrt(objective.m0)
        return vp, {"misfit": history, "evaluations": evaluations, "seconds": seconds,
                    "iterations": 0, "message": "no iterations requested"}
    t0 = time.perf_counter()

    def callback(intermediate_result: Any) -> None:
        f = float(intermediate_result.fun) * objective.f_ref
        history.append(f)
        evaluations.append(objective.gradients.evaluations)
        seconds.append(time.perf_counter() - t0)
        k = len(history) - 1
        echo(f"  iteration {k}  misfit {f:.6e}  ({100 * f / start:5.1f}% of the start)  "
             f"{plural(evaluations[-1] - evaluations[-2], 'gradient')}, "
             f"{seconds[-1] - seconds[-2]:.1f} s")

    x0 = objective.x0
    lower = (1.0 / VMAX**2) / objective.scale
    upper = (1.0 / VMIN**2) / objective.scale
    result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=callback,
                      bounds=[(lower, upper)] * x0.size,
                      options={"maxiter": iterations, "maxfun": 3 * iterations + 2})
    vp = 1.0 / np.sqrt(objective.m_of(np.asarray(result.x)))
    return vp, {"misfit": history, "evaluations": evaluations, "seconds": seconds,
                "iterations": int(result.nit), "message": str(result.message)}

