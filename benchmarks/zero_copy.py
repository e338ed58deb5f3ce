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
import statistics
import time
from collections.abc import Callable
from typing import Any

import _wave  # the shared benchmark load, beside this script
import numba
import numpy as np
from _args import positive_int, require  # the benchmarks' shared argparse types
from _machine import describe  # which host: CPU model and caches
from _wave import Adjoint, advance, compile_kernels, slot_nbytes, state_nbytes, wave_steps

import amcheck
from amcheck.schedules import Advance, End, Free, Load, Reverse, Revolve, Save, simulate

NX = 1448  # 2 x 1448^2 float32 = 16.0 MiB
STATE_NBYTES = state_nbytes(NX)
SLOT_NBYTES = slot_nbytes(NX)  # one state in amcheck's pool (page-aligned)


def initial_state() -> dict[str, np.ndarray]:
    return _wave.initial_state(NX)


# -- 1. amcheck ----------------------------------------------------------------------------------


def run_amcheck(n: int, slots: int) -> dict[str, Any]:
    adj = Adjoint(NX)
    schedule = Revolve(n, slots)
    ram = simulate(schedule).peak_buffers * SLOT_NBYTES
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
        "states_held": ckp.ram_pool_bytes // SLOT_NBYTES,
        "grad": adj.grad,
    }


# -- 2. the same schedule with deep copies -------------------------------------------------------


def run_deep_copy(n: int, slots: int) -> dict[str, Any]:
    """Revolve(n, slots) executed on one live state, copying at every Save and Load."""
    adj = Adjoint(NX)
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
                wave_steps(live, final, action.t0, action.t1)
            else:
                wave_steps(live, live, action.t0, action.t1)
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
            adj.reverse({"u": live}, action.t)
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
    return {**_wave.run_pyrevolve(NX, n, checkpoints), "states_held": checkpoints + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=positive_int, default=2000, help="time steps (default 2000)")
    parser.add_argument("--slots", type=positive_int, default=20, help="Revolve RAM slots (default 20)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs per variant (median)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    require(parser, "pyrevolve", "the comparison with pyrevolve's Revolver")
    print(describe(), flush=True)

    variants: dict[str, Callable[[], dict[str, Any]]] = {
        "amcheck zero-copy": lambda: run_amcheck(args.n, args.slots),
        "same schedule, deep copies": lambda: run_deep_copy(args.n, args.slots),
        "pyrevolve Revolver": lambda: run_pyrevolve(args.n, args.slots + 1),
    }
    # One numba thread for every variant (the kernels are parallel loops), compiled outside the
    # timings; amcheck hands pinned checkpoints over read-only, a signature of its own.
    numba.set_num_threads(1)
    compile_kernels()

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
        f"{args.repeats} run(s) each; {describe()}, numba {numba.__version__}, numpy {np.__version__}"
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
