"""Ad hoc (session 22): what the timeline's per-event append costs the engine between two
operator calls, on engine_overhead.py's sweep (a): Revolve in RAM over pairs, the real 4 MiB
state, n = 2000, engine microseconds per operator call. ``Timeline._append`` as it is and as a
no-op, alternated in one process (the order flipping), 6 rounds; prints each round and the
medians.

    .venv/bin/python benchmarks/results/timeline_append_cost.py
"""
import runpy
import statistics
import sys
from pathlib import Path

from amcheck._timeline import Timeline

sys.argv = ["engine_overhead.py", "2000", "1"]  # its own rounds: one, a warm-up
sweep = runpy.run_path(str(Path(__file__).with_name("engine_overhead.py")), run_name="eo")["sweep"]
real = Timeline._append
res: dict[str, list[float]] = {"real": [], "no-op": []}
for r in range(6):
    for name in ("real", "no-op") if r % 2 == 0 else ("no-op", "real"):
        Timeline._append = real if name == "real" else (lambda *a, **k: None)  # type: ignore[method-assign]
        res[name].append(sweep(724, False))
    print(r, {k: round(v[-1], 1) for k, v in res.items()}, flush=True)
for name, values in res.items():
    print(name, f"{statistics.median(values):.2f} us per operator call (median)")
