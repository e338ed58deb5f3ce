"""Ad hoc (session 22): which pool slots the forward sweep's advances write into (overlap
setting: n = 10^4, k = 50, 7 slots, 3 writes in flight): the (src, dst) slot indices of the first
40 advances and how often each slot was a destination.

    .venv/bin/python benchmarks/results/forward_slots.py
"""
import collections
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba

import amcheck

n, k = 10000, 50
ls.compile_kernels(); numba.set_num_threads(1)
work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
seq = []
def adv(src, dst, t0, t1):
    seq.append((src["u"].ctypes.data, dst["u"].ctypes.data))
    return ls.advance(src, dst, t0, t1)
try:
    adj = ls._Adjoint(ls.NX)
    with amcheck.Checkpointer(adv, adj, ls.initial_state(), n,
                              ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work, strategy="async_multistage",
                              disk_budget="8 GiB", interval=k, compute_threads=1) as ckp:
        ckp.forward()
        print("slots", ckp.slots, "in flight", ckp._engine._dp.max_in_flight if hasattr(ckp._engine._dp, "max_in_flight") else "?")
finally:
    shutil.rmtree(work, ignore_errors=True)
base = min(a for p in seq for a in p)
idx = [((s - base) // ls.SLOT_NBYTES, (d - base) // ls.SLOT_NBYTES) for s, d in seq]
print(idx[:40])
print(collections.Counter(d for _, d in idx))
