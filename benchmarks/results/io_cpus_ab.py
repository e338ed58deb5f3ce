"""A/B (session 23): the transfer threads on the CPUs that take the disk's interrupts
(``io_cpus=None``, the default) against anywhere (``io_cpus="any"``, as before).

Per round, interleaved: the compute-only sweep (n = 10^4 advances of k = 50 in place, one numba
thread) unconfined and confined to the CPUs left to compute; the overlapped forward sweep of
long_sequences.py's overlap setting (async multistage, k = 50, compute_threads=1) with each
setting; the whole sweep of its headline variant (pairs, automatic k, compute_threads=None) with
each setting. Also the compute thread's involuntary context switches during each forward sweep.

    .venv/bin/python benchmarks/results/io_cpus_ab.py [rounds]
"""
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import long_sequences as ls
import numba
from amcheck.storage._cpus import io_cpus

import amcheck

n, k = 10000, 50
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
ls.compile_kernels()
threads = numba.get_num_threads()
work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
io = io_cpus(work)
usable = os.sched_getaffinity(0)
compute = usable - io if io else usable
print(f"usable CPUs {sorted(usable)}; the disk's interrupt CPUs here {sorted(io) if io else None}")


def preempted() -> int:
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("nonvoluntary"))


def overlapped(setting, r):
    with amcheck.Checkpointer(ls.advance, ls._Adjoint(ls.NX), ls.initial_state(), n,
                              ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work / f"o{setting}{r}",
                              strategy="async_multistage", interval=k, compute_threads=1,
                              disk_budget="8 GiB", io_cpus=setting) as ckp:
        ls.settle()
        p0, t0 = preempted(), time.perf_counter()
        ckp.forward()
        return time.perf_counter() - t0, preempted() - p0


def whole(setting, r):
    numba.set_num_threads(threads)
    with amcheck.Checkpointer(ls.advance, ls._PairedAdjoint(ls.NX), ls.initial_state(), n,
                              ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work / f"w{setting}{r}",
                              strategy="async_multistage", disk_budget="8 GiB",
                              io_cpus=setting) as ckp:
        ls.settle()
        t0 = time.perf_counter()
        ckp.forward()
        ckp.reverse()
        return time.perf_counter() - t0, ckp.stats.interval


rows = []
try:
    for r in range(rounds):
        row = {"alone": ls.compute_only_forward(n, 1, usable),
               "alone_same": ls.compute_only_forward(n, 1, compute)}
        for setting in ("any", None):
            row[f"fwd_{setting}"], row[f"pre_{setting}"] = overlapped(setting, r)
        for setting in ("any", None):
            row[f"all_{setting}"], row[f"k_{setting}"] = whole(setting, r)
        rows.append(row)
        print(f"round {r + 1}: compute only {row['alone']:.3f} s (on the compute CPUs "
              f"{row['alone_same']:.3f}); overlapped any {row['fwd_any']:.3f} s "
              f"({row['pre_any']} preemptions), io_cpus {row['fwd_None']:.3f} s "
              f"({row['pre_None']}); whole sweep any {row['all_any']:.2f} s (k {row['k_any']}), "
              f"io_cpus {row['all_None']:.2f} s (k {row['k_None']})", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)


def text(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


print("overlapped / compute only, round by round (median, min-max):")
print(f"  io_cpus='any', against compute only unconfined:          "
      f"{text([x['fwd_any'] / x['alone'] for x in rows])}")
print(f"  io_cpus=None, against compute only unconfined:           "
      f"{text([x['fwd_None'] / x['alone'] for x in rows])}")
print(f"  io_cpus=None, against compute only on the compute CPUs:  "
      f"{text([x['fwd_None'] / x['alone_same'] for x in rows])}")
print(f"  compute only on the compute CPUs / unconfined:           "
      f"{text([x['alone_same'] / x['alone'] for x in rows])}")
print(f"forward sweep, 'any' / None: {text([x['fwd_any'] / x['fwd_None'] for x in rows])}")
print(f"whole sweep (pairs, automatic k), 'any' / None: "
      f"{text([x['all_any'] / x['all_None'] for x in rows])}")
