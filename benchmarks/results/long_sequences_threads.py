"""Ad hoc (session 12): the whole sweep of benchmarks/long_sequences.py's load on numba's 2
threads with compute_threads=None (measured), 1 (a core left to I/O, the default before) and
"all"; async multistage, k = 50, interleaved rounds, medians. With ``busy`` a pure-Python busy
loop runs in another process throughout (a shared machine). Output: long_sequences_threads.log.

    .venv/bin/python benchmarks/results/long_sequences_threads.py N ROUNDS [busy]
"""
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba

ls.compile_kernels()
numba.set_num_threads(2)
work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
n, rounds = int(sys.argv[1]), int(sys.argv[2])
busy = sys.argv[3:] == ["busy"]
print(f"n = {n}, {rounds} rounds, numba 2 threads" + (", a busy loop beside" if busy else ""))
loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
res: dict[str, list[dict]] = {}
try:
    for r in range(rounds):
        for name, ct in (("measured", None), ("1", 1), ("all", "all")):
            out = ls.run_amcheck(n, workdir=work, interval=50, strategy="async_multistage",
                                 compute_threads=ct)
            res.setdefault(name, []).append(out)
            print(f"round {r + 1} {name:8s} wall {out['wall']:.2f} s forward "
                  f"{out['forward_wall']:.2f} s threads {out['compute_threads']}", flush=True)
finally:  # never leave the busy loop spinning, nor the checkpoints' folder
    if loop is not None:
        loop.kill()
    shutil.rmtree(work, ignore_errors=True)
for name, v in res.items():
    walls = [x["wall"] for x in v]
    print(f"{name:8s} median wall {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}), "
          f"forward {statistics.median(x['forward_wall'] for x in v):.2f} s")
for name in ("1", "all"):
    print(f"{name} / measured round by round: {ls.ratio_text(ls.paired(res[name], res['measured']))}")
