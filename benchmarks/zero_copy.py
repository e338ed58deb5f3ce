"""Zero-copy checkpointing vs deep copies vs pyrevolve, on a memory-bound numba stencil.

One run compares, side by side and on the same operator (a 2-D acoustic wave equation, 5-point
Laplacian, leapfrog in time, state ``u`` of shape (2, 1448, 1448) float32 = 16 MiB, numba
``nogil`` kernels on one thread):

1. **amcheck**: ``Checkpointer`` with ``Revolve(n, 20)``; operators read one pool slot and write
   the next (no state copies).
2. **deep copy**: the very same ``Revolve(n, 20)`` actions, executed the classic way: one live
   state advanced in place, ``Save`` copies it into a slot, ``Load`` copies a slot back.
3. **pyrevolve**: pyrevolve's classic ``Revolver`` (C++ Revolve) with the same memory: 21
   checkpoints + the live state = 22 states, as amcheck's 20 slots + current state + x_n.

Every variant computes the same gradient (checked bitwise). Reports wall time (median of
``--repeats`` runs, interleaved so that machine noise hits all variants alike), forward steps,
copies, and the ratios to amcheck.

    .venv/bin/python benchmarks/zero_copy.py            # n = 2000, 3 repeats
    .venv/bin/python benchmarks/zero_copy.py --n 500 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numba
import numpy as np

import amcheck
from amcheck.schedules import Advance, End, Free, Load, Reverse, Revolve, Save, simulate

NX = 1448  # 2 x 1448^2 float32 = 16.0 MiB
C2 = np.float32(0.2)  # (c dt / h)^2, stable for the 2-D leapfrog (< 0.5)


@numba.njit(nogil=True, cache=True)
def _wave_step(src: np.ndarray, dst: np.ndarray, t: int) -> None:  # pragma: no cover - numba
    """x_{t+1} from x_t: u[t%2] is u_t, u[(t+1)%2] is u_{t-1}; writes dst (may be src)."""
    cur, old = t % 2, (t + 1) % 2
    ny, nx = src.shape[1], src.shape[2]
    a = src[cur]
    b = src[old]
    out = dst[old]
    keep = dst[cur]
    copy_cur = src.ctypes.data != dst.ctypes.data
    for i in range(1, ny - 1):
        for j in range(1, nx - 1):
            lap = a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1] - np.float32(4.0) * a[i, j]
            out[i, j] = np.float32(2.0) * a[i, j] - b[i, j] + C2 * lap
        if copy_cur:
            for j in range(nx):
                keep[i, j] = a[i, j]
    if copy_cur:  # boundary rows of the current level, and the zero boundary of the new one
        for j in range(nx):
            keep[0, j] = a[0, j]
            keep[ny - 1, j] = a[ny - 1, j]
            out[0, j] = np.float32(0.0)
            out[ny - 1, j] = np.float32(0.0)
        for i in range(ny):
            out[i, 0] = np.float32(0.0)
            out[i, nx - 1] = np.float32(0.0)


@numba.njit(nogil=True, cache=True)
def _adjoint_step(
    lam: np.ndarray, grad: np.ndarray, u: np.ndarray, t: int
) -> None:  # pragma: no cover - numba
    """One reverse step: leapfrog the adjoint in place, inject and image with u_t = u[t%2]."""
    cur, old = t % 2, (t + 1) % 2
    ny, nx = lam.shape[1], lam.shape[2]
    a = lam[cur]
    b = lam[old]
    ut = u[cur]
    for i in range(1, ny - 1):
        for j in range(1, nx - 1):
            lap = a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1] - np.float32(4.0) * a[i, j]
            b[i, j] = np.float32(2.0) * a[i, j] - b[i, j] + C2 * lap + np.float32(1e-3) * ut[i, j]
            grad[i, j] += a[i, j] * ut[i, j]


def initial_state() -> dict[str, np.ndarray]:
    u = np.zeros((2, NX, NX), dtype=np.float32)
    y, x = np.mgrid[0:NX, 0:NX].astype(np.float32) / NX
    bump = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.002).astype(np.float32)
    u[0] = bump
    u[1] = bump
    return {"u": u}


class Adjoint:
    """The reverse operator: owns the adjoint wavefield and the gradient."""

    def __init__(self) -> None:
        self.lam = np.zeros((2, NX, NX), dtype=np.float32)
        self.grad = np.zeros((NX, NX), dtype=np.float32)

    def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
        _adjoint_step(self.lam, self.grad, state["u"], t)


def advance(src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray], t0: int, t1: int) -> None:
    _wave_step(src["u"], dst["u"], t0)
    for t in range(t0 + 1, t1):
        _wave_step(dst["u"], dst["u"], t)


# -- 1. amcheck ----------------------------------------------------------------------------------


def run_amcheck(n: int, slots: int) -> dict[str, Any]:
    adj = Adjoint()
    schedule = Revolve(n, slots)
    ram = simulate(schedule).peak_buffers * (2 * NX * NX * 4)
    with amcheck.Checkpointer(
        advance, adj, initial_state(), n, ram=ram, strategy=schedule, timeline=False
    ) as ckp:
        start = time.perf_counter()
        ckp.forward()
        ckp.reverse()
        wall = time.perf_counter() - start
        stats = ckp.stats
    return {
        "wall": wall,
        "forward_steps": stats.forward_steps,
        "copies": stats.copies,
        "states_held": ckp.ram_pool_bytes // (2 * NX * NX * 4),
        "grad": adj.grad,
    }


# -- 2. the same schedule with deep copies -------------------------------------------------------


def run_deep_copy(n: int, slots: int) -> dict[str, Any]:
    """Revolve(n, slots) executed on one live state, copying at every Save and Load."""
    adj = Adjoint()
    live = initial_state()["u"]
    store = np.zeros((slots, 2, NX, NX), dtype=np.float32)  # preallocated, like NumpyStorage
    where: dict[int, int] = {}
    free = list(range(slots))
    copies = steps = 0
    final = np.zeros_like(live)
    start = time.perf_counter()
    for action in Revolve(n, slots):
        if isinstance(action, Advance):
            if action.final:  # x_n into its own buffer; the live state stays x_{n-1}
                _wave_step(live, final, action.t0)
            else:
                for t in range(action.t0, action.t1):
                    _wave_step(live, live, t)
            steps += action.t1 - action.t0
        elif isinstance(action, Save):
            where[action.t] = slot = free.pop()
            np.copyto(store[slot], live)
            copies += 1
        elif isinstance(action, Load):
            np.copyto(live, store[where[action.t]])
            copies += 1
        elif isinstance(action, Free):
            free.append(where.pop(action.t))
        elif isinstance(action, Reverse):
            _adjoint_step(adj.lam, adj.grad, live, action.t)
        elif isinstance(action, End):
            break
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "forward_steps": steps,
        "copies": copies,
        "states_held": slots + 2,
        "grad": adj.grad,
    }


# -- 3. pyrevolve --------------------------------------------------------------------------------


def run_pyrevolve(n: int, checkpoints: int) -> dict[str, Any]:
    import pyrevolve

    adj = Adjoint()
    live = initial_state()["u"]
    counts = {"forward_steps": 0, "copies": 0}

    class Checkpoint(pyrevolve.Checkpoint):  # type: ignore[misc]
        @property
        def dtype(self) -> Any:
            return np.float32

        @property
        def size(self) -> int:
            return int(live.size)

        def get_data(self, timestep: int) -> list[np.ndarray]:
            counts["copies"] += 1
            return [live]

        def get_data_location(self, timestep: int) -> list[np.ndarray]:
            counts["copies"] += 1
            return [live]

    class Fwd:
        def apply(self, t_start: int, t_end: int) -> None:
            for t in range(t_start, t_end):
                _wave_step(live, live, t)
            counts["forward_steps"] += t_end - t_start

    class Rev:
        def apply(self, t_start: int, t_end: int) -> None:
            # pyrevolve ran fwd.apply(t, t+1) just before: level t%2 still holds u_t.
            _adjoint_step(adj.lam, adj.grad, live, t_start)

    wrp = pyrevolve.Revolver(Checkpoint(), Fwd(), Rev(), checkpoints, n)
    start = time.perf_counter()
    wrp.apply_forward()
    wrp.apply_reverse()
    wall = time.perf_counter() - start
    return {**counts, "wall": wall, "states_held": checkpoints + 1, "grad": adj.grad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="time steps (default 2000)")
    parser.add_argument("--slots", type=int, default=20, help="Revolve RAM slots (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    variants: dict[str, Callable[[], dict[str, Any]]] = {
        "amcheck zero-copy": lambda: run_amcheck(args.n, args.slots),
        "same schedule, deep copies": lambda: run_deep_copy(args.n, args.slots),
        "pyrevolve Revolver": lambda: run_pyrevolve(args.n, args.slots + 1),
    }
    # Compile the kernels outside the timings.
    # amcheck hands pinned checkpoints over read-only: numba compiles a variant for those too.
    tiny = np.zeros((2, 8, 8), dtype=np.float32)
    frozen = tiny.copy()
    frozen.flags.writeable = False
    _wave_step(tiny, tiny, 0)
    _wave_step(tiny, tiny.copy(), 0)
    _wave_step(frozen, tiny, 0)
    _adjoint_step(tiny.copy(), np.zeros((8, 8), np.float32), tiny, 0)
    _adjoint_step(tiny.copy(), np.zeros((8, 8), np.float32), frozen, 0)

    walls: dict[str, list[float]] = {name: [] for name in variants}
    last: dict[str, dict[str, Any]] = {}
    for repeat in range(args.repeats):
        for name, fn in variants.items():  # interleaved: noise hits every variant alike
            result = fn()
            walls[name].append(result["wall"])
            last[name] = result
            print(f"run {repeat + 1}/{args.repeats} {name}: {result['wall']:.2f} s", flush=True)
    reference = last["amcheck zero-copy"]["grad"]
    for name, result in last.items():
        if not np.array_equal(result["grad"], reference):
            raise SystemExit(f"{name} computed another gradient than amcheck")

    base = statistics.median(walls["amcheck zero-copy"])
    state_mib = 2 * NX * NX * 4 / 2**20
    print(
        f"\nn={args.n}, Revolve slots={args.slots}, state {state_mib:.1f} MiB float32, "
        f"{args.repeats} run(s) each; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, numba {numba.__version__}, numpy {np.__version__}"
    )
    print(
        f"{'variant':30s} {'median s':>9s} {'min-max s':>13s} {'ratio':>6s} "
        f"{'fwd steps':>9s} {'copies':>7s} {'states':>6s}"
    )
    rows = []
    for name, times in walls.items():
        med = statistics.median(times)
        res = last[name]
        print(
            f"{name:30s} {med:9.2f} {min(times):6.2f}-{max(times):6.2f} {med / base:6.2f} "
            f"{res['forward_steps']:9d} {res['copies']:7d} {res['states_held']:6d}"
        )
        rows.append(
            {
                "variant": name,
                "median_s": med,
                "runs_s": times,
                "ratio_to_amcheck": med / base,
                "forward_steps": res["forward_steps"],
                "copies": res["copies"],
                "states_held": res["states_held"],
            }
        )
    print("gradients: bitwise equal across the three variants")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "slots": args.slots, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
