"""Ad hoc (session 20): the automatic interval before and after the knee rule, source tree
against source tree, alternated process by process (each tree's amcheck on PYTHONPATH, this
tree's benchmarks/ for the load).

long_sequences.py's load and budget (4 MiB states, 10 states of RAM, a ZarrTier in a temporary
directory, 8 GiB disk budget, one numba thread), async multistage with ``interval=None``: n
known with pairs of steps (``known``) and step by step (``steps``, a reverse operator that does
not declare ``reverse_from_next``), and n unknown to amcheck with pairs (``unknown``: the
forward operator ends the sequence at n). Each process runs one untimed sweep, then ROUNDS timed ones of each
case. Prints every sweep, then each tree's median (min-max) and the change against the first
tree, and checks that every gradient is bitwise equal.

    python benchmarks/results/knee_ab.py N ROUNDS PROCS TREE1 TREE2 ...

A tree whose amcheck.storage/amcheck.kernels must not come from an editable install elsewhere
needs symlinks amcheck/storage -> ../storage and amcheck/kernels -> ../kernels.
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
CASES = ("known", "steps", "unknown")

CHILD = r"""
import hashlib, json, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numba
import numpy as np
import _wave
import long_sequences as ls
import amcheck
n, rounds = int(sys.argv[2]), int(sys.argv[3])
ls.compile_kernels()
numba.set_num_threads(1)

def unknown(src, dst, t0, t1):
    _wave.advance(src, dst, t0, min(t1, n))
    return n if n <= t1 else None

work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
CASES = {"known": (ls.advance, n, _wave.PairedAdjoint), "steps": (ls.advance, n, _wave.Adjoint),
         "unknown": (unknown, None, _wave.PairedAdjoint)}
out = {case: [] for case in CASES}
try:
    for r in range(rounds + 1):
        for case, (advance, length, adjoint) in CASES.items():
            adj = adjoint(ls.NX)
            with amcheck.Checkpointer(advance, adj, ls.initial_state(), length,
                                      ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work,
                                      disk_budget="8 GiB") as ckp:
                ls.settle()
                start = time.perf_counter()
                ckp.forward()
                ckp.reverse()
                wall = time.perf_counter() - start
                s = ckp.stats
            if r:  # the first round warms the process up
                digest = hashlib.sha256(np.ascontiguousarray(adj.grad).tobytes()).hexdigest()
                out[case].append({"wall": wall, "recompute": s.recompute_factor,
                                  "k": s.interval, "stall": s.stall_seconds, "grad": digest})
finally:
    shutil.rmtree(work, ignore_errors=True)
print(json.dumps(out))
"""


def main() -> None:
    n, rounds, procs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    trees = sys.argv[4:]
    sys.path.insert(0, str(BENCH))
    from _machine import describe

    print(f"{describe()}; n = {n}, {rounds} rounds in each of {procs} processes a tree")
    res: dict[str, dict[str, list[dict[str, float | str]]]] = {
        t: {case: [] for case in CASES} for t in trees}
    for p in range(procs):
        for tree in (trees if p % 2 == 0 else trees[::-1]):
            env = dict(os.environ, PYTHONPATH=tree)
            done = subprocess.run([sys.executable, "-c", CHILD, str(BENCH), str(n), str(rounds)],
                                  check=False, cwd=tree, env=env, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr)
                raise SystemExit(1)
            runs = json.loads(done.stdout.strip().splitlines()[-1])
            for case, values in runs.items():
                res[tree][case].extend(values)
                for v in values:
                    print(f"  process {p + 1} {os.path.basename(tree):10s} {case:7s} "
                          f"{v['wall']:.2f} s, recompute {v['recompute']:.3f}, k {v['k']}, "
                          f"stall {v['stall']:.3f} s", flush=True)
    same = {case: len({v["grad"] for t in trees for v in res[t][case]}) == 1 for case in CASES}
    print(f"\ngradients bitwise equal across trees and rounds: {same}")
    print("median (min-max) wall seconds; recompute factor; the k the sweeps ended at")
    for case in CASES:
        base = statistics.median(float(v["wall"]) for v in res[trees[0]][case])
        for tree in trees:
            runs = res[tree][case]
            walls = [float(v["wall"]) for v in runs]
            med = statistics.median(walls)
            change = "" if tree == trees[0] else f"  [{base / med:.3f}x faster than the first]"
            print(f"  {case:7s} {os.path.basename(tree):10s} {med:.2f} s ({min(walls):.2f}-"
                  f"{max(walls):.2f}), recompute {statistics.median(float(v['recompute']) for v in runs):.3f}, "
                  f"k {sorted({v['k'] for v in runs})}{change}")


if __name__ == "__main__":
    main()
