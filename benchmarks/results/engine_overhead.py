"""Ad hoc (session 17): what amcheck's engine costs between two operator calls, and why.

long_sequences.py's async multistage sweep spends about 1 s of its 9-10 s at n = 10^4 outside
the kernels. This script measures that time per operator call, with amcheck's Revolve in RAM
over pairs of steps (n steps, 10 states of RAM; no transfer thread, so no other thread takes
the GIL), in four settings, interleaved round by round:

a. the real load: the (2, 724, 724) float32 state, 4 MiB;
b. the same engine and schedule on a (2, 16, 16) state: the kernels touch 2 KiB, so the
   interpreter's code and objects stay in the core's caches between two calls;
c. the small state, each kernel call followed by a numba loop over 12 MiB (timed with the
   kernel, so not counted as engine time): the real load's memory traffic without its size;
d. a bare Python loop calling the reverse kernel on the real state, timed the same way.

"Engine time" is the sweep's wall time minus the time inside the kernel calls, divided by the
number of kernel calls; it includes the operators' own Python wrappers.

    .venv/bin/python benchmarks/results/engine_overhead.py N ROUNDS

With ``--json`` (session 19, for engine_overhead_ab.py) it runs variants a and b only, for the
amcheck of the working directory, and prints one JSON line ``{"a": [...], "b": [...]}``.
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _wave
import numba
import numpy as np
from _machine import describe

import amcheck

n, rounds = int(sys.argv[1]), int(sys.argv[2])
as_json = sys.argv[3:] == ["--json"]
_wave.compile_kernels()
numba.set_num_threads(1)
clock = time.perf_counter
if not as_json:
    print(f"{describe()}; n = {n}, {rounds} rounds, Revolve in RAM over pairs, 10 states")

polluter = np.ones(12 * 2**20 // 4, np.float32)


@numba.njit(nogil=True)
def stream(a: np.ndarray) -> None:  # pragma: no cover - numba
    for i in range(a.size):
        a[i] = a[i] * np.float32(1.0000001)


stream(polluter)


def sweep(nx: int, pollute: bool) -> float:
    """Engine microseconds per operator call of one forward and reverse sweep."""
    inside = [0.0, 0]
    adj = _wave.PairedAdjoint(nx)

    def advance(src, dst, t0, t1):
        start = clock()
        _wave.wave_steps(src["u"], dst["u"], t0, t1)
        if pollute:
            stream(polluter)
        inside[0] += clock() - start
        inside[1] += 1

    class Reverse:
        reverse_from_next = True

        def reverse(self, state, t):
            start = clock()
            _wave.adjoint_step(adj.lam, adj.grad, state["u"], t)
            if pollute:
                stream(polluter)
            inside[0] += clock() - start
            inside[1] += 1

    with amcheck.Checkpointer(advance, Reverse(), _wave.initial_state(nx), n,
                              ram=10 * _wave.slot_nbytes(nx), strategy="revolve") as ckp:
        start = clock()
        ckp.forward()
        ckp.reverse()
        wall = clock() - start
    return 1e6 * (wall - inside[0]) / inside[1]


def bare_loop(nx: int = 724) -> float:
    x = _wave.initial_state(nx)["u"]
    lam, grad = np.zeros_like(x), np.zeros(x.shape[1:], np.float32)
    inside = 0.0
    begin = clock()
    for t in range(n):
        start = clock()
        _wave.adjoint_step(lam, grad, x, t)
        inside += clock() - start
    return 1e6 * (clock() - begin - inside) / n


variants = {
    "a. real load, 4 MiB state": lambda: sweep(724, False),
    "b. 2 KiB state": lambda: sweep(16, False),
    "c. 2 KiB state + 12 MiB streamed a call": lambda: sweep(16, True),
    "d. bare loop, reverse kernel, 4 MiB": bare_loop,
}
if as_json:
    assert amcheck.__file__.startswith(os.getcwd()), amcheck.__file__  # the tree's amcheck
    variants = {name[0]: fn for name, fn in variants.items() if name[0] in "ab"}
for fn in variants.values():
    fn()  # warm up
results: dict[str, list[float]] = {name: [] for name in variants}
for r in range(rounds):
    for name, fn in variants.items():
        results[name].append(fn())
    if not as_json:
        print(f"  round {r + 1}: " + ", ".join(f"{v[-1]:.1f}" for v in results.values()),
              flush=True)
if as_json:
    print(json.dumps(results))
    sys.exit()
print("\nengine time per operator call, microseconds: median (min-max)")
for name, values in results.items():
    print(f"  {name:42s} {statistics.median(values):6.1f} ({min(values):.1f}-{max(values):.1f})")
