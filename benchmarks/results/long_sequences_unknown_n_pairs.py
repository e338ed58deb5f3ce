"""Ad hoc (session 15): pairs of steps with an unknown length (``n_steps=None``).

long_sequences.py's load and budget (4 MiB states, 10 states of RAM, a disk tier in a temporary
directory, 8 GiB disk budget), async multistage with the automatic interval, on one numba
thread. The forward operator ends the sequence at n; the reverse operator declares
``reverse_from_next`` (pairs inside each segment) or not. Interleaved rounds; the gradients
must be bitwise equal.

    .venv/bin/python benchmarks/results/long_sequences_unknown_n_pairs.py N ROUNDS
"""
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _wave
import long_sequences as ls
import numba
import numpy as np
from _machine import describe

import amcheck

n, rounds = int(sys.argv[1]), int(sys.argv[2])
ls.compile_kernels()
numba.set_num_threads(1)
print(f"{describe()}; n = {n} (unknown to amcheck), {rounds} rounds")


def advance(src, dst, t0, t1):
    _wave.advance(src, dst, t0, min(t1, n))
    return n if n <= t1 else None


work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
res: dict[str, list[float]] = {}
grads = {}
try:
    for r in range(rounds):
        for name, adjoint in (("pairs", _wave.PairedAdjoint), ("step by step", _wave.Adjoint)):
            adj = adjoint(ls.NX)
            with amcheck.Checkpointer(advance, adj, ls.initial_state(), None,
                                      ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work,
                                      disk_budget="8 GiB") as ckp:
                ls.settle()
                start = time.perf_counter()
                ckp.forward()
                ckp.reverse()
                wall = time.perf_counter() - start
                stats = ckp.stats
            res.setdefault(name, []).append(wall)
            grads[name] = adj.grad
            print(f"  round {r + 1} {name:12s} {wall:.2f} s (recompute {stats.recompute_factor:.3f},"
                  f" interval ended at {stats.interval}, stall {stats.stall_seconds:.2f} s)",
                  flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
assert np.array_equal(grads["pairs"], grads["step by step"]), "the gradients differ"
for name, walls in res.items():
    print(f"{name:12s} median {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f})")
ratios = [b / a for a, b in zip(res["pairs"], res["step by step"], strict=True)]
print(f"step by step / pairs, round by round: median {statistics.median(ratios):.3f} "
      f"({min(ratios):.3f}-{max(ratios):.3f}); gradients bitwise equal")
