"""Variants a and b of benchmarks/results/engine_overhead.py (same sweep), for the amcheck on
PYTHONPATH; run from that tree's root. Prints one JSON line: {"a": [...], "b": [...]}."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
import _wave
import numba

import amcheck

n, rounds = int(sys.argv[1]), int(sys.argv[2])
which = sys.argv[3] if len(sys.argv) > 3 else "ab"
_wave.compile_kernels()
numba.set_num_threads(1)
clock = time.perf_counter


def sweep(nx):
    inside = [0.0, 0]
    adj = _wave.PairedAdjoint(nx)

    def advance(src, dst, t0, t1):
        start = clock()
        _wave.wave_steps(src["u"], dst["u"], t0, t1)
        inside[0] += clock() - start
        inside[1] += 1

    class Reverse:
        reverse_from_next = True

        def reverse(self, state, t):
            start = clock()
            _wave.adjoint_step(adj.lam, adj.grad, state["u"], t)
            inside[0] += clock() - start
            inside[1] += 1

    with amcheck.Checkpointer(advance, Reverse(), _wave.initial_state(nx), n,
                              ram=10 * _wave.slot_nbytes(nx), strategy="revolve") as ckp:
        start = clock()
        ckp.forward()
        ckp.reverse()
        wall = clock() - start
    return 1e6 * (wall - inside[0]) / inside[1]


variants = {"a": lambda: sweep(724), "b": lambda: sweep(16)}
variants = {k: v for k, v in variants.items() if k in which}
for fn in variants.values():
    fn()
out = {k: [] for k in variants}
for _ in range(rounds):
    for k, fn in variants.items():
        out[k].append(fn())
assert amcheck.__file__.startswith(os.getcwd()), amcheck.__file__
print(json.dumps(out))
