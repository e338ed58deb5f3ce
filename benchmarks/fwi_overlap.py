"""FWI forward sweeps with checkpoints streaming to disk: the fused time loop against the step loop.

amcheck's acoustic operator (``amcheck.kernels.AcousticForward``) can step two ways: a Python loop
calling the ``parallel`` numba kernel once a step, plus numpy-side source injection and receiver
sampling (``fused = False``), or one serial numba call for a whole advance that never takes the
GIL (``fused = True``, the default on one numba thread). The step loop needs the GIL a few times
a step, which the transfer service's threads may hold while a checkpoint is written (measured
here: that did not slow it down; the fused loop gains the Python between steps, 2-5 %). This
script measures, on one numba thread (one of the two counts ``compute_threads=None`` measures
for disk sweeps, and the one it ran always before session 12), for each grid and each way:

1. **compute only**: ``advance(x, x, 0, n)``, in place, no checkpoints;
2. **overlapped**: the forward sweep of a Checkpointer (``async_multistage``, a ZarrTier in a
   temporary directory, interval ``--interval``), its disk writes in flight beside the compute.

It prints medians of ``--repeats`` rounds (min-max) and the ratios round by round (the variants of
one round ran back to back; see ``long_sequences.paired``): overlapped / compute only for each
way, and fused / step loop for each sweep. The model is layered (1.5 to 3.5 km/s), order 8,
float32, 10 m spacing, ``nbl`` = 40, one source and a line of receivers near the top.

    .venv/bin/python benchmarks/fwi_overlap.py                  # 201x401 and 601x1201, 7 rounds
    .venv/bin/python benchmarks/fwi_overlap.py --shapes 101x201 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from _args import grid_shape, positive_int  # the benchmarks' shared argparse types
from _machine import describe  # which host: CPU model and caches
from amcheck.kernels import Geometry, Model
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward
from long_sequences import paired, ratio_text, settle

import amcheck


def layered(shape: tuple[int, int]) -> Model:
    vp = np.empty(shape, np.float32)
    vp[...] = np.linspace(1.5, 3.5, 6, dtype=np.float32).repeat(-(-shape[1] // 6))[:shape[1]]
    return Model(vp, (10.0, 10.0), nbl=40, space_order=8, dtype=np.float32)


def operators(model: Model, steps: int, fused: bool) -> tuple[AcousticForward, AcousticAdjoint]:
    nx = model.shape[0]
    geometry = Geometry(model, [10.0 * (nx // 2), 20.0],
                        [[10.0 * x, 20.0] for x in range(0, nx, 4)],
                        tn=steps * 0.9 * model.critical_dt, f0=0.010)
    fwd = AcousticForward(model, geometry)
    fwd.fused = fused
    return fwd, AcousticAdjoint(fwd)


def compute_only(fwd: AcousticForward) -> float:
    x = fwd.initial_state()
    settle()
    start = time.perf_counter()
    fwd.advance(x, x, 0, fwd.n_steps)
    return time.perf_counter() - start


def overlapped(fwd: AcousticForward, adj: AcousticAdjoint, interval: int, workroot: Path
               ) -> float:
    x0 = fwd.initial_state()
    with tempfile.TemporaryDirectory(dir=workroot) as disk:
        ckp = amcheck.Checkpointer(fwd.advance, adj.reverse, x0, fwd.n_steps,
                                   ram=12 * fwd.spec.nbytes + 2**20, disk=disk,
                                   strategy="async_multistage", interval=interval,
                                   compute_threads=1, timeline=False)
        with ckp:
            settle()
            start = time.perf_counter()
            ckp.forward()
            return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", type=grid_shape((2,), 8),
                        default=[(201, 401), (601, 1201)],
                        help="physical grids NXxNZ (default: 201x401 601x1201)")
    parser.add_argument("--steps", type=positive_int, default=2000, help="time steps (default 2000)")
    parser.add_argument("--interval", type=positive_int, default=50, help="disk interval k (default 50)")
    parser.add_argument("--repeats", type=positive_int, default=7, help="rounds (default 7)")
    args = parser.parse_args()
    numba.set_num_threads(1)
    print(f"{describe()}, numba {numba.__version__}, "
          f"one numba thread, {args.steps} steps, k = {args.interval}, {args.repeats} rounds")
    with tempfile.TemporaryDirectory(prefix="amcheck-fwi-overlap-") as workroot:
        for shape in args.shapes:
            measure("x".join(map(str, shape)), shape, args, Path(workroot))


def measure(text: str, shape: tuple[int, int], args: argparse.Namespace, workroot: Path
            ) -> None:
    """The rounds of the grid ``text`` (``NXxNZ``), and their medians and ratios."""
    model = layered(shape)
    ops = {fused: operators(model, args.steps, fused) for fused in (False, True)}
    fwd = ops[False][0]
    print(f"\n{text} + 40 layer points: state {fwd.spec.nbytes / 2**20:.2f} MiB, "
          f"{fwd.n_steps} steps", flush=True)
    variants: dict[str, Callable[[], float]] = {}
    for fused, name in ((False, "step loop"), (True, "fused")):
        f, a = ops[fused]
        variants[f"{name}, compute only"] = lambda f=f: compute_only(f)
        variants[f"{name}, overlapped"] = lambda f=f, a=a: overlapped(f, a, args.interval,
                                                                      workroot)
    for fn in variants.values():
        fn()  # untimed: compilation, thread pools, the first zarr store
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            runs[name].append({"wall": fn()})
    for name, rs in runs.items():
        walls = [r["wall"] for r in rs]
        print(f"  {name:28s} {statistics.median(walls):7.3f} s ({min(walls):.3f}-"
              f"{max(walls):.3f}), {1e3 * statistics.median(walls) / fwd.n_steps:.3f} ms/step")
    for name in ("step loop", "fused"):
        print(f"  overlapped / compute only, {name}: "
              + ratio_text(paired(runs[f"{name}, overlapped"], runs[f"{name}, compute only"])))
    for sweep in ("compute only", "overlapped"):
        print(f"  fused / step loop, {sweep}: "
              + ratio_text(paired(runs[f"fused, {sweep}"], runs[f"step loop, {sweep}"])))


if __name__ == "__main__":
    main()
