"""A/B: FWI gradients planned over pairs of steps (the default: AcousticAdjoint declares
reverse_from_next) or step by step (``pairs=False``).

The same fwi_gradient, the same RAM budget, interleaved round after round; the gradient must be
bitwise the same. The model and survey are benchmarks/fwi_threads.py's.

    .venv/bin/python benchmarks/results/fwi_pairs_ab.py --repeats 3     # 3-D 100^3 + 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

from _args import positive_int
from _machine import describe
from amcheck.kernels import AcousticForward, fwi_gradient
from amcheck.storage import slot_layout
from fwi_threads import problem, shape_arg
from long_sequences import paired, ratio_text, settle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=shape_arg, default=(100, 100, 100))
    parser.add_argument("--nbl", type=positive_int, default=20)
    parser.add_argument("--ram-states", type=positive_int, default=20)
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args()
    model, geometry, d_obs = problem(args.shape, args.nbl)
    spec = AcousticForward(model, geometry).spec
    ram = args.ram_states * slot_layout(spec)[1]
    print(f"{describe()}; grid {model.grid_shape}, {geometry.nt} steps, state "
          f"{spec.nbytes / 2**20:.1f} MiB, RAM {args.ram_states} states, load "
          f"{os.getloadavg()}", flush=True)
    work = tempfile.mkdtemp(prefix="amcheck-bench-")
    variants = {"async multistage (disk)": {"disk": work, "strategy": "async_multistage"},
                "Revolve in RAM": {"strategy": "revolve"}}
    runs: dict[str, list[dict[str, Any]]] = {}
    reference = None
    try:
        fwi_gradient(model, geometry, d_obs, ram=ram, disk=work,
                     strategy="async_multistage")  # compile, first store
        for r in range(args.repeats):
            for name, kwargs in variants.items():
                for pairs in (True, False):
                    label = f"{name}, {'pairs' if pairs else 'no pairs'}"
                    settle()
                    start = time.perf_counter()
                    result = fwi_gradient(model, geometry, d_obs, ram=ram, pairs=pairs, **kwargs)
                    wall = time.perf_counter() - start
                    if reference is None:
                        reference = result.gradient
                    if not np.array_equal(result.gradient, reference):
                        raise SystemExit(f"{label}: another gradient")
                    runs.setdefault(label, []).append(
                        {"wall": wall, "recompute": result.stats.recompute_factor})
                    print(f"  round {r + 1} {label}: {wall:.2f} s (recompute "
                          f"{result.stats.recompute_factor:.3f}, {result.strategy}, k "
                          f"{result.interval})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for label, rs in runs.items():
        walls = [x["wall"] for x in rs]
        print(f"{label:36s} {statistics.median(walls):7.2f} s ({min(walls):.2f}-{max(walls):.2f})"
              f"  recompute {statistics.median(x['recompute'] for x in rs):.3f}")
    for name in variants:
        ratios = paired(runs[f"{name}, no pairs"], runs[f"{name}, pairs"])
        print(f"round by round: {name}, no pairs / pairs: {ratio_text(ratios)}")
    print(f"load {os.getloadavg()}; every gradient bitwise equal")


if __name__ == "__main__":
    main()
