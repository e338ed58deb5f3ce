"""A small nonlinear time-stepping problem with a hand-written adjoint, for the engine tests.

State x_t = (u_t, v_t): ``u`` float64 of shape (3, 4), ``v`` float32 of shape (4,). One step,
with a = tanh(u_t) and c_t = 0.1·sin(t):

    u_{t+1} = u_t + dt·(a·v_t + c_t)
    v_{t+1} = float32(v_t + dt·(−v_t³ + Σ_rows a))

Loss J = ½‖u_n‖² + Σ v_n. The reverse operator carries the adjoint (λu, λv) from t+1 to t; after
the reverse sweep ``grad`` holds dJ/dx_0 (the float32 rounding of v is treated as the identity).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DT = 0.05


def initial_state(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "u": rng.uniform(-1.0, 1.0, (3, 4)),
        "v": rng.uniform(-0.5, 0.5, 4).astype(np.float32),
    }


def step(u: np.ndarray, v: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.tanh(u)
    v64 = v.astype(np.float64)
    u_new = u + DT * (a * v64[None, :] + 0.1 * np.sin(t))
    v_new = (v64 + DT * (-(v64**3) + a.sum(axis=0))).astype(np.float32)
    return u_new, v_new


def trajectory(x0: Mapping[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """x_0 … x_n by a plain loop: the reference every checkpointed run is compared with."""
    states = [{"u": x0["u"].copy(), "v": x0["v"].copy()}]
    u, v = states[0]["u"], states[0]["v"]
    for t in range(n):
        u, v = step(u, v, t)
        states.append({"u": u, "v": v})
    return states


class Forward:
    """The forward operator; counts calls and in-place calls; can fail or stop on request."""

    def __init__(self, *, fail_at: int | None = None, stop_at: int | None = None) -> None:
        self.calls = 0
        self.in_place = 0
        self.steps = 0
        self.fail_at = fail_at  # raise when asked to run this step
        self.stop_at = stop_at  # end an unknown-length sequence at x_stop_at

    def advance(
        self, src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray], t0: int, t1: int
    ) -> int | None:
        self.calls += 1
        self.in_place += src is dst
        u, v = src["u"], src["v"]
        end = t1 if self.stop_at is None else min(t1, self.stop_at)
        for t in range(t0, end):
            if t == self.fail_at:
                raise RuntimeError(f"boom at step {t}")
            u, v = step(u, v, t)
            self.steps += 1
        dst["u"][...] = u
        dst["v"][...] = v
        if self.stop_at is not None and self.stop_at <= t1:
            return self.stop_at
        return None


class Adjoint:
    """The reverse operator: carries (λu, λv) back; records the steps and states it saw."""

    def __init__(self, x_n: Mapping[str, np.ndarray] | None = None, *, fail_at: int | None = None):
        self.seen: list[int] = []
        self.states: dict[int, dict[str, np.ndarray]] = {}
        self.fail_at = fail_at
        self.lu = np.zeros((3, 4))
        self.lv = np.zeros(4)
        if x_n is not None:
            self.start(x_n)

    def start(self, x_n: Mapping[str, np.ndarray]) -> None:
        """Seed the adjoint with dJ/dx_n."""
        self.lu = np.array(x_n["u"], dtype=np.float64)
        self.lv = np.ones(4)
        self.seen = []

    def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
        if t == self.fail_at:
            raise ValueError(f"adjoint failed at {t}")
        self.seen.append(t)
        self.states[t] = {k: np.array(a) for k, a in state.items()}
        u, v64 = state["u"], state["v"].astype(np.float64)
        a = np.tanh(u)
        da = 1.0 - a * a
        lu, lv = self.lu, self.lv
        self.lu = lu * (1.0 + DT * da * v64[None, :]) + DT * da * lv[None, :]
        self.lv = (lu * DT * a).sum(axis=0) + lv * (1.0 - 3.0 * DT * v64 * v64)

    @property
    def grad(self) -> dict[str, np.ndarray]:
        return {"u": self.lu.copy(), "v": self.lv.copy()}


def loss(x0: Mapping[str, np.ndarray], n: int) -> float:
    x_n = trajectory(x0, n)[-1]
    return 0.5 * float(np.sum(x_n["u"] ** 2)) + float(np.sum(x_n["v"].astype(np.float64)))
