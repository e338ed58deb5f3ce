"""Ad hoc (session 20): where one sweep of long_sequences.py's load spends its time, from the
timeline amcheck records.

Async multistage with pairs of steps at a fixed interval K (4 MiB states, 10 states of RAM, a
ZarrTier in a temporary directory, 8 GiB disk budget, one numba thread), n = N, ROUNDS sweeps
after an untimed one. For each sweep and each direction: the wall time, the time inside the
operators (``compute`` events: advances; ``reverse`` events: reverse steps) with the count and
median of each, and what is left, the engine's own time between the calls (its Python, the
schedule's actions, the timeline) and the waits for the disk. For the forward sweep also the
disk writes (on the transfer thread): their count, median time, summed time, and the time at
least one was in flight, which is shorter than the sum when writes overlap.

    .venv/bin/python benchmarks/results/long_sequences_split.py N K ROUNDS
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
from _machine import describe

import amcheck

n, k, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ls.compile_kernels()
numba.set_num_threads(1)
print(f"{describe()}; n = {n}, k = {k}, pairs, {rounds} sweeps after an untimed one")


def split(events: list, lo: float, hi: float) -> dict[str, list[float]]:
    """Durations of the events that started in [lo, hi), by kind."""
    kinds: dict[str, list[float]] = {}
    for event in events:
        if lo <= event.start < hi:
            kinds.setdefault(event.kind, []).append(event.end - event.start)
    return kinds


def busy(events: list, lo: float, hi: float) -> float:
    """Seconds during which at least one write that started in [lo, hi) was in flight."""
    total, reach = 0.0, lo
    for start, end in sorted((e.start, e.end) for e in events
                             if e.kind == "write" and lo <= e.start < hi):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


work = Path(tempfile.mkdtemp(prefix="amcheck-bench-"))
try:
    for sweep in range(rounds + 1):
        adj = ls._PairedAdjoint(ls.NX)
        with amcheck.Checkpointer(ls.advance, adj, ls.initial_state(), n,
                                  ram=ls.RAM_STATES * ls.SLOT_NBYTES, disk=work,
                                  disk_budget="8 GiB", interval=k) as ckp:
            ls.settle()
            t0 = time.perf_counter()
            ckp.forward()
            t1 = time.perf_counter()
            ckp.reverse()
            t2 = time.perf_counter()
            events = ckp.timeline.events
        if not sweep:
            continue
        for name, lo, hi in (("forward", t0, t1), ("reverse", t1, t2)):
            kinds = split(events, lo, hi)
            inside = sum(sum(kinds.get(kind, [])) for kind in ("compute", "reverse"))
            waits = sum(kinds.get("wait", []))
            parts = ", ".join(
                f"{kind} {len(kinds[kind])} x {1e3 * statistics.median(kinds[kind]):.3f} ms = "
                f"{sum(kinds[kind]):.2f} s" for kind in ("compute", "reverse") if kind in kinds)
            print(f"sweep {sweep} {name}: wall {hi - lo:.2f} s; {parts}; waits {waits:.2f} s; "
                  f"engine {hi - lo - inside - waits:.2f} s", flush=True)
            if name == "forward":
                writes = kinds["write"]
                print(f"  writes {len(writes)} x {1e3 * statistics.median(writes):.2f} ms "
                      f"(median), {sum(writes):.2f} s summed, in flight "
                      f"{busy(events, lo, hi):.2f} s", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
