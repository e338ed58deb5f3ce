"""Ad hoc (session 23): does work on the other CPU slow the compute-only sweep?

The compute-only sweep of long_sequences.py (n = 10^4, advances of 50 steps in place, one numba
thread) confined to CPU 0, while a process confined to CPU 1 does nothing, runs a pure-Python
loop (ALU), copies 4 MiB (within L2) or 64 MiB (through memory) without pause, or sleeps 1 ms at
a time (wake-ups); 5 rounds interleaved, medians (min-max) and the ratio to none.

    .venv/bin/python benchmarks/results/neighbour_load.py
"""
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
def spin(kind, stop):
    os.sched_setaffinity(0, {1})
    import numpy as np
    a = np.ones(1 << 20, np.float32)  # 4 MiB
    b = np.empty_like(a)
    big = np.ones(16 << 20, np.float32)  # 64 MiB
    bb = np.empty_like(big)
    while not stop.is_set():
        if kind == "alu":
            x = 0
            for i in range(100000): x += i * i
        elif kind == "l2copy":
            np.copyto(b, a)
        elif kind == "memcopy":
            np.copyto(bb, big)
        elif kind == "sleep1ms":
            time.sleep(0.001)
if __name__ == "__main__":
    os.sched_setaffinity(0, {0})
    import long_sequences as ls
    import numba
    ls.compile_kernels(); numba.set_num_threads(1)
    res = {}
    for r in range(5):
        for kind in ("none", "alu", "l2copy", "memcopy", "sleep1ms"):
            stop = mp.Event(); p = None
            if kind != "none":
                p = mp.Process(target=spin, args=(kind, stop)); p.start(); time.sleep(0.3)
            t = ls.compute_only_forward(10000, 1)
            if p: stop.set(); p.join()
            res.setdefault(kind, []).append(t)
    base = statistics.median(res["none"])
    for kind, v in res.items():
        print(f"{kind:9s} {statistics.median(v):.3f} x{statistics.median(v)/base:.3f} ({min(v):.3f}-{max(v):.3f})")
