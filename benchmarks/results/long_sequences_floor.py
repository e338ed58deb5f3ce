"""Ad hoc (session 15): what bounds async multistage against pyrevolve on long_sequences.py's load.

1. **Kernel costs** on one thread (medians of 9 calls of 200 advances, a read-only source, the
   destination rotating over 9 buffers as the engine's slots do): an in-place step, a copying
   out-of-place step (it writes both time levels), an out-of-place advance of 2 steps (the
   fused pair) and a reverse step.
2. **Replays beside reverse steps**: 200 replays (one out-of-place step and 9 in place) on a
   second thread while the main thread runs 2000 reverse steps, against the two in sequence
   (what a reverse sweep would gain from running its recomputation on the core left to I/O).
3. **Both on two threads**: pyrevolve and async multistage with pairs (automatic k and k = 14,
   ``compute_threads=None``) at n, numba on 2 threads for both, interleaved rounds.

The floor printed at the end is what a perfect engine would take at k = 14 with pairs on one
thread: n in-place forward steps, n reverse steps, and the recomputed steps (recompute factor
1.857 - 1) each at half the fused pair's cost.

    .venv/bin/python benchmarks/results/long_sequences_floor.py N ROUNDS
"""
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _wave
import long_sequences as ls
import numba
import numpy as np
from _machine import describe

n, rounds = int(sys.argv[1]), int(sys.argv[2])
ls.compile_kernels()
numba.set_num_threads(1)
print(f"{describe()}; n = {n}, {rounds} rounds")
x = ls.initial_state()["u"]
_wave.wave_steps(x, x, 0, 300)  # a filled wavefield
pool = [x.copy() for _ in range(10)]
frozen = pool[0].copy()
frozen.flags.writeable = False
lam = np.zeros_like(x)
grad = np.zeros(x.shape[1:], np.float32)
R = 200


def median_seconds(fn, repeats=9):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_place():
    for i in range(R):
        _wave.wave_steps(pool[1 + i % 9], pool[1 + i % 9], 300, 301)


def copying_step():
    for i in range(R):
        _wave.wave_steps(frozen, pool[1 + i % 9], 300, 301)


def pair():
    for i in range(R):
        _wave.wave_steps(frozen, pool[1 + i % 9], 300, 302)


def reverse_steps(count=R):
    for i in range(count):
        _wave.adjoint_step(lam, grad, pool[1 + i % 9], i)


costs = {name: median_seconds(fn) / R for name, fn in (
    ("in-place step", in_place), ("copying out-of-place step", copying_step),
    ("fused pair (2 steps)", pair), ("reverse step", reverse_steps))}
print("\n1. kernel costs, one thread, per call")
for name, seconds in costs.items():
    print(f"  {name:28s} {1e3 * seconds:.3f} ms")


def replays():
    for i in range(R):
        _wave.wave_steps(frozen, pool[1 + i % 9], 300, 301)
        _wave.wave_steps(pool[1 + i % 9], pool[1 + i % 9], 301, 310)


print("\n2. 200 replays (1 + 9 steps) beside 2000 reverse steps, one thread each")
alone_replays = median_seconds(replays, 5)
alone_reverse = median_seconds(lambda: reverse_steps(10 * R), 5)
together = []
for _ in range(5):
    worker = threading.Thread(target=replays)
    start = time.perf_counter()
    worker.start()
    reverse_steps(10 * R)
    worker.join()
    together.append(time.perf_counter() - start)
print(f"  in sequence {alone_replays + alone_reverse:.3f} s (replays {alone_replays:.3f}, "
      f"reverse {alone_reverse:.3f}); side by side {statistics.median(together):.3f} s "
      f"({min(together):.3f}-{max(together):.3f})")

floor = n * (costs["in-place step"] + costs["reverse step"]
             + (1.857 - 1) * costs["fused pair (2 steps)"] / 2)
print(f"\nfloor at k = 14 with pairs, one thread: {floor:.2f} s")

print(f"\n3. n = {n} on numba's 2 threads, pyrevolve against async multistage with pairs")
numba.set_num_threads(2)
work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
res: dict[str, list[float]] = {}
try:
    ls.run_amcheck(300, workdir=work, pairs=True)
    ls.run_pyrevolve(300, ls.RAM_STATES)
    for r in range(rounds):
        out = ls.run_pyrevolve(n, ls.RAM_STATES)
        res.setdefault("pyrevolve", []).append(out["wall"])
        print(f"  round {r + 1} pyrevolve {out['wall']:.2f} s", flush=True)
        for k in (None, 14):
            out = ls.run_amcheck(n, workdir=work, interval=k, pairs=True)
            name = f"k={'auto' if k is None else k}, pairs"
            res.setdefault(name, []).append(out["wall"])
            print(f"  round {r + 1} {name} {out['wall']:.2f} s (forward {out['forward_wall']:.2f},"
                  f" ended at k = {out['interval']}, stall {out['stall']:.2f} s, threads "
                  f"{out['compute_threads']})", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
for name, walls in res.items():
    print(f"  {name:14s} median {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f})")
for name in ("k=auto, pairs", "k=14, pairs"):
    ratios = [a / b for a, b in zip(res["pyrevolve"], res[name], strict=True)]
    print(f"  pyrevolve / {name}, round by round: median {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f})")
