"""Ad hoc (session 22): how much work on a second thread of the process slows the load's
compute-only forward sweep (n = 10^4, k = 50, one numba thread). The thread repeats one job
every 6 ms (as a forward sweep at k = 50 writes a checkpoint) while the sweep runs; 4 rounds,
the jobs interleaved; medians and the ratio to no job. Jobs: a ZarrTier put of the 4 MiB state
(direct I/O), a RawTier put, a crc32c of 4 MiB, a 4 MiB copy, an O_DIRECT or buffered write of
4 MiB, allocating and filling 6 MiB, and a Python loop holding the GIL for 1 ms. Name the jobs to
run as arguments (default: all).

    .venv/bin/python benchmarks/results/put_interference.py [JOB ...]
"""
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba
import numpy as np
from amcheck.storage import ZarrTier
from amcheck.storage._direct import aligned_empty

import amcheck

ls.compile_kernels(); numba.set_num_threads(1)
d = tempfile.mkdtemp(dir="/tmp")
buf = aligned_empty(4 << 20, 4096); buf[:] = 1
state = ls.initial_state()
def odirect():
    fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    try: os.pwritev(fd, [buf], 0)
    finally: os.close(fd)
def buffered():
    fd = os.open(os.path.join(d, "g"), os.O_WRONLY | os.O_CREAT, 0o600)
    try: os.pwritev(fd, [buf], 0)
    finally: os.close(fd)
src = np.ones(1 << 20, np.float32); dstc = np.empty_like(src)
def copy(): np.copyto(dstc, src)
tier = ZarrTier(os.path.join(d, "z"), amcheck.StateSpec.from_arrays(state), budget="1 GiB")
loop = asyncio.new_event_loop()
step = [0]
def zput():
    loop.run_until_complete(tier.put(step[0] % 8, state)); step[0] += 1
import crc32c


def crc(): crc32c.crc32c(buf.data.cast("B"))
from amcheck.storage import RawTier

raw = RawTier(os.path.join(d, "r.bin"), amcheck.StateSpec.from_arrays(state), budget="1 GiB")
def rput():
    loop.run_until_complete(raw.put(step[0] % 8, state)); step[0] += 1
def alloc():
    a = np.empty(1 << 20, np.float32); a.fill(1.0); b = np.empty(1 << 19, np.float32); b.fill(2); del a, b
def pyspin():
    t = time.perf_counter()
    while time.perf_counter() - t < 0.001: pass
jobs = {"none": None, "copy 4MiB": copy, "crc 4MiB": crc, "odirect 4MiB": odirect, "buffered 4MiB": buffered,
        "zarr put": zput, "raw put": rput, "alloc 6MiB": alloc, "py spin 1ms (GIL)": pyspin}
if sys.argv[1:]:
    jobs = {"none": None, **{name: jobs[name] for name in sys.argv[1:]}}
def run(job):
    stop = threading.Event(); count = [0]
    def worker():
        while not stop.is_set():
            t = time.perf_counter(); job(); count[0] += 1
            rest = 0.006 - (time.perf_counter() - t)
            if rest > 0: time.sleep(rest)
    th = threading.Thread(target=worker) if job else None
    if th: th.start()
    try: return ls.compute_only_forward(10000, 1), count[0]
    finally:
        stop.set()
        if th: th.join()
res = {k: [] for k in jobs}
for r in range(4):
    for name, job in jobs.items():
        res[name].append(run(job))
base = statistics.median(v for v, _ in res["none"])
for name, v in res.items():
    m = statistics.median(x for x, _ in v)
    print(f"{name:15s} {m:.3f} s x{m/base:.3f} ({min(x for x,_ in v):.3f}-{max(x for x,_ in v):.3f}), jobs {statistics.median(c for _, c in v)}")
