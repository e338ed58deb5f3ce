"""Ad hoc (session 22): the engine's time between two advances of the forward sweep, and what
it is spent on (overlap setting: n = 10^4, k = 50, one numba thread, ZarrTier). Per sweep: the
median and sum of the gaps between consecutive "compute" events of the timeline, and the time
inside some engine methods (wrapped with timers, which add a little), 3 sweeps.

    .venv/bin/python benchmarks/results/forward_gaps.py
"""
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba
import numpy as np
from amcheck.storage import _transfer

import amcheck
from amcheck import _disk, _engine

n, k = 10000, 50
ls.compile_kernels(); numba.set_num_threads(1)
work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
acc = {}
def wrap(cls, name):
    f = getattr(cls, name)
    def w(*a, **kw):
        s = time.perf_counter()
        try: return f(*a, **kw)
        finally:
            v = acc.setdefault(f"{cls.__name__}.{name}", [0.0, 0]); v[0] += time.perf_counter() - s; v[1] += 1
    setattr(cls, name, w)
for cls, name in ((_engine.Engine, "_poll"), (_engine.Engine, "_do_save"), (_disk.DiskPath, "put"), (_transfer.TransferService, "_submit"), (_engine.Engine, "_push_steps"), (_engine.Engine, "_take"), (_engine.Engine, "_make_room")):
    wrap(cls, name)
orig_adv = ls.advance
inner = [0.0]
try:
    for r in range(3):
        acc.clear()
        adj = ls._Adjoint(ls.NX)
        with amcheck.Checkpointer(ls.advance, adj, ls.initial_state(), n,
                                  ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work / f"z{r}", strategy="async_multistage",
                                  interval=k, compute_threads=1, disk_budget="8 GiB") as ckp:
            ls.settle()
            t0 = time.perf_counter(); ckp.forward(); t1 = time.perf_counter()
            ev = [e for e in ckp.timeline.events if t0 <= e.start < t1]
        comp = sorted((e.start, e.end) for e in ev if e.kind == "compute")
        gaps = np.array([b[0] - a[1] for a, b in itertools.pairwise(comp)]) * 1e6
        print(f"gaps median {np.median(gaps):.0f} us, sum {gaps.sum()/1e3:.1f} ms;", ", ".join(f"{k} {1e3*v[0]:.1f} ms/{v[1]} ({1e6*v[0]/v[1]:.0f} us)" for k, v in acc.items()), flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
