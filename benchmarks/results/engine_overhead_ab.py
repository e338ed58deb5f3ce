"""Ad hoc (session 19): engine_overhead.py's variants a (4 MiB state) and b (2 KiB) for several
source trees, alternated process by process (each tree's amcheck on PYTHONPATH, from its root;
``engine_overhead.py N ROUNDS --json`` runs the sweeps). Prints the median (min-max) of each tree's
microseconds per operator call and the change against the first tree.

    python benchmarks/results/engine_overhead_ab.py N ROUNDS_PER_PROC PROCS TREE1 TREE2 ...

A tree whose amcheck.storage/amcheck.kernels must not come from an editable install elsewhere
needs symlinks amcheck/storage -> ../storage and amcheck/kernels -> ../kernels.
"""
import json
import os
import statistics
import subprocess
import sys

n, per, procs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
trees = sys.argv[4:]
py = sys.executable
script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine_overhead.py")
res = {t: {"a": [], "b": []} for t in trees}
for r in range(procs):
    order = trees if r % 2 == 0 else trees[::-1]
    for t in order:
        env = dict(os.environ, PYTHONPATH=t)
        out = subprocess.run([py, script, str(n), str(per), "--json"],
                             check=False, cwd=t, env=env, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr)
            raise SystemExit(1)
        d = json.loads(out.stdout.strip().splitlines()[-1])
        for k, v in d.items():
            res[t][k].extend(v)
    print(f"proc round {r + 1}: " + "; ".join(
        f"{os.path.basename(t)} " + " ".join(f"{k}={statistics.median(v[-per:]):.2f}"
                                             for k, v in res[t].items() if v)
        for t in trees), flush=True)
print("\nmedian (min-max), us per operator call")
base = res[trees[0]]
for t in trees:
    line = f"{os.path.basename(t):14s}"
    for k in ("a", "b"):
        v = res[t][k]
        line += f"  {k}: {statistics.median(v):6.2f} ({min(v):.2f}-{max(v):.2f}) n={len(v)}"
        if t != trees[0]:
            line += f" [{100 * (statistics.median(v) / statistics.median(base[k]) - 1):+.1f}%]"
    print(line)
print(json.dumps(res))
