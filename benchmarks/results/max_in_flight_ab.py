"""Ad hoc (session 21): disk writes in flight, 2 against 3, on the long-sequences load.

Async multistage with pairs and the automatic interval (which stays at the knee, k = 16),
n = 10^4, 10 states of RAM, the disk tier in a temporary directory under /tmp (direct I/O), one
numba thread; max_in_flight=2 and =3 alternated round by round (the order flipping). Every run
keeps 7 checkpoint slots: the third staging slot fits the same budget. This measurement made 3
the default where the budget allows it (``max_in_flight=None``). Each line: max_in_flight, wall,
the final k, the recompute factor, the seconds the computation waited for the disk.

    .venv/bin/python benchmarks/results/max_in_flight_ab.py
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _wave
import long_sequences as ls
import numba

import amcheck

numba.set_num_threads(1)
_wave.compile_kernels()
n = 10000
walls: dict[int, list[float]] = {2: [], 3: []}
for r in range(3):
    for in_flight in (2, 3) if r % 2 == 0 else (3, 2):
        adj = _wave.PairedAdjoint(ls.NX)
        with (tempfile.TemporaryDirectory(dir="/tmp") as workdir,
              amcheck.Checkpointer(_wave.advance, adj, ls.initial_state(), n,
                                   ram=ls.RAM_STATES * ls.SLOT_NBYTES, strategy="async_multistage",
                                   disk=workdir, disk_budget="8 GiB",
                                   max_in_flight=in_flight) as ckp):
            ls.settle()
            start = time.perf_counter()
            ckp.forward()
            ckp.reverse()
            wall = time.perf_counter() - start
            stats = ckp.stats
        walls[in_flight].append(wall)
        print(in_flight, f"{wall:.2f} s k {stats.interval} rec {stats.recompute_factor:.3f} "
              f"stall {stats.stall_seconds:.2f}", flush=True)
for in_flight, values in walls.items():
    print(in_flight, statistics.median(values))
