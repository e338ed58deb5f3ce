"""Ad hoc (session 22): the reverse sweep's operator calls made in batches (``Engine.run_reverse``
plans up to CALL_BATCH calls, then makes them), against one call per action, on the
long-sequences load, for two source trees alternated process by process (the order flipping).

Each process: one untimed sweep, then ROUNDS sweeps of async multistage with pairs and the
automatic interval, n = N, 10 states of RAM, the disk tier in a temporary directory under /tmp
(direct I/O), one numba thread. Per sweep: forward and reverse wall, and the reverse sweep's
"engine" time (its wall minus the time inside the operator calls and the waits, from the
timeline). Prints each tree's medians and the reverse-wall ratio of each process pair.

    python benchmarks/results/planned_calls_ab.py N ROUNDS PROCS TREE_BEFORE TREE_AFTER

A tree needs symlinks amcheck/storage -> ../storage and amcheck/kernels -> ../kernels (its own
amcheck on PYTHONPATH).
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, sys, tempfile, time
sys.path.insert(0, "benchmarks")
import _wave, long_sequences as ls, numba, amcheck
assert amcheck.__file__.startswith(sys.argv[3]), amcheck.__file__
numba.set_num_threads(1)
_wave.compile_kernels()
n, rounds = int(sys.argv[1]), int(sys.argv[2])
out = []
for r in range(rounds + 1):
    adj = _wave.PairedAdjoint(ls.NX)
    with (tempfile.TemporaryDirectory(dir="/tmp") as workdir,
          amcheck.Checkpointer(_wave.advance, adj, ls.initial_state(), n,
                               ram=ls.RAM_STATES * ls.SLOT_NBYTES, strategy="async_multistage",
                               disk=workdir, disk_budget="8 GiB") as ckp):
        ls.settle()
        t0 = time.perf_counter(); ckp.forward(); t1 = time.perf_counter()
        ckp.reverse(); t2 = time.perf_counter()
        inside = sum(e.end - e.start for e in ckp.timeline.events
                     if e.kind in ("compute", "reverse", "wait") and t1 <= e.start < t2
                     and e.thread == "MainThread")
        k = ckp.stats.interval
    if r:
        out.append({"forward": t1 - t0, "reverse": t2 - t1, "engine": t2 - t1 - inside, "k": k})
print(json.dumps(out))
'''

n, rounds, procs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
trees = sys.argv[4:6]
res: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
ratios = []
for p in range(procs):
    order = trees if p % 2 == 0 else trees[::-1]
    for t in order:
        env = dict(os.environ, PYTHONPATH=t)
        done = subprocess.run([sys.executable, "-c", CHILD, str(n), str(rounds), t], cwd=t,
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr)
        res[t].extend(json.loads(done.stdout.strip().splitlines()[-1]))
    a, b = (statistics.median(r["reverse"] for r in res[t][-rounds:]) for t in trees)
    ratios.append(a / b)
    print(f"process pair {p + 1}: reverse " + ", ".join(
        f"{os.path.basename(t)} " + " ".join(f"{r['reverse']:.2f}" for r in res[t][-rounds:])
        for t in trees) + f"; before/after {a / b:.3f}", flush=True)
for t in trees:
    rows = res[t]
    print(f"{os.path.basename(t):10s} " + ", ".join(
        f"{key} {statistics.median(r[key] for r in rows):.3f} s "
        f"({min(r[key] for r in rows):.2f}-{max(r[key] for r in rows):.2f})"
        for key in ("forward", "reverse", "engine")) + f"; k {sorted({r['k'] for r in rows})}")
print(f"reverse wall before/after, process pair by pair: median {statistics.median(ratios):.3f} "
      f"({min(ratios):.3f}-{max(ratios):.3f})")
