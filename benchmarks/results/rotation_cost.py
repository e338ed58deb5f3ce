"""Ad hoc (session 22): what zero-copy's slot rotation costs the load's advances, no I/O.

n = 10^4 steps in advances of k = 50 on one numba thread, each advance writing into the next of
R state buffers (R = 1: in place, the compute-only sweep), 5 rounds interleaved; medians.

    .venv/bin/python benchmarks/results/rotation_cost.py
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba

ls.compile_kernels(); numba.set_num_threads(1)
n, k = 10000, 50
def run(R):
    bufs = [ls.initial_state() for _ in range(R)]
    s = time.perf_counter()
    for i, t0 in enumerate(range(0, n, k)):
        src = bufs[i % R]
        dst = bufs[(i + 1) % R] if R > 1 else src
        ls.advance(src, dst, t0, min(t0 + k, n))
    return time.perf_counter() - s
res = {R: [] for R in (1, 2, 3, 4, 6)}
for _ in range(5):
    for R, values in res.items():
        values.append(run(R))
for R, v in res.items():
    print(R, f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f}) x{statistics.median(v)/statistics.median(res[1]):.3f}")
