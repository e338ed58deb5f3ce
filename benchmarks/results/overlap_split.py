"""Ad hoc (session 22): where the overlapped forward sweep's extra time goes, by disk tier.

long_sequences.py's overlap setting (n = 10^4, k = 50, one numba thread, async multistage, no
pairs, compute_threads=1) with the disk tier a ZarrTier (direct I/O, the default), a RawTier, or
a RamTier standing in for the disk (no I/O: the same engine and transfer threads), each round
after a compute-only sweep (the same advances in place). Per run: the ratio to compute only,
the time inside the advances (from the timeline) over compute only, and the time outside them
(the engine between calls). 5 rounds, the first dropped from the medians.

    .venv/bin/python benchmarks/results/overlap_split.py
"""
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba
from amcheck.storage import RamTier, RawTier

import amcheck

n, k = 10000, 50
ls.compile_kernels(); numba.set_num_threads(1)
work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
spec = amcheck.StateSpec.from_arrays(ls.initial_state())
def tier(kind, r):
    if kind == "zarr": return work / f"z{r}"
    if kind == "raw": return RawTier(work / f"r{r}.bin", spec, budget="8 GiB")
    if kind == "ram": return RamTier(210 * ls.SLOT_NBYTES, spec, name="disk")
rows = {}
try:
    for r in range(5):
        for kind in ("zarr", "raw", "ram"):
            alone = ls.compute_only_forward(n, 1)
            adj = ls._Adjoint(ls.NX)
            kw = {"disk_budget": "8 GiB"} if kind == "zarr" else {}
            with amcheck.Checkpointer(ls.advance, adj, ls.initial_state(), n,
                                      ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=tier(kind, r), strategy="async_multistage",
                                      interval=k, compute_threads=1, **kw) as ckp:
                ls.settle()
                t0 = time.perf_counter(); ckp.forward(); t1 = time.perf_counter()
                ev = [e for e in ckp.timeline.events if t0 <= e.start < t1]
            comp = [e for e in ev if e.kind == "compute"]
            inside = sum(e.end - e.start for e in comp)
            if r: rows.setdefault(kind, []).append(((t1 - t0) / alone, inside / alone, (t1 - t0 - inside) * 1e3))
            print(kind, f"alone {alone:.3f} fwd {t1-t0:.3f} ratio {(t1-t0)/alone:.3f} inside/alone {inside/alone:.3f} outside {1e3*(t1-t0-inside):.1f} ms", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
for kind, v in rows.items():
    ratio, inside, outside = (statistics.median(c) for c in zip(*v))
    print(kind, f"medians: ratio {ratio:.3f} inside/alone {inside:.3f} outside {outside:.1f} ms")
