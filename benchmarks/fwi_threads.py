"""FWI gradients with checkpoints on disk: numba threads for compute, or a core left to I/O.

While a Checkpointer streams checkpoints to disk, a transfer thread runs beside the user's
kernels. ``compute_threads`` says how many numba threads the kernels get meanwhile: ``1`` here
leaves the second core to I/O, ``"all"`` keeps both, ``None`` (the default) measures both during
the sweep and keeps the faster (:class:`amcheck._cores.ThreadChooser`), and the process
remembers the choice for the next gradient. This script times ``fwi_gradient`` (asynchronous
multistage, a ZarrTier in a temporary directory, automatic interval) with each setting, ``None``
twice: as the first gradient of a process (the remembered choice forgotten first) and as a later
one (going on from the choice of the one before), and amcheck's Revolve in RAM with the same
budget for reference, interleaved round after round; medians of ``--repeats`` rounds (min-max), the ratios round by
round (``long_sequences.paired``), the count ``compute_threads=None`` ended on, and a check that
every gradient is bitwise the same.

The model: a two-layer velocity (2.0 and 2.5 km/s), 10 m spacing, order 8, float32, ``nbl``
absorbing points, a source and a line of 51 receivers near the top, 600 ms.

    .venv/bin/python benchmarks/fwi_threads.py                        # 3-D 100^3, 5 rounds
    .venv/bin/python benchmarks/fwi_threads.py --shape 1001x1001 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

import numba
import numpy as np
from _args import grid_shape, int_at_least, positive_int  # shared argparse types
from _machine import describe  # which host: CPU model and caches
from amcheck.kernels import AcousticForward, Geometry, Model, forward_modeling, fwi_gradient
from amcheck.storage import slot_layout
from long_sequences import paired, ratio_text, settle

from amcheck._remember import forget


def problem(shape: tuple[int, ...], nbl: int) -> tuple[Model, Geometry, np.ndarray]:
    """The starting model (2.0 km/s), the geometry, and data observed in the layered model."""
    vp = np.full(shape, 2.0, np.float32)
    vp[..., shape[-1] // 2:] = 2.5
    spacing = (10.0,) * len(shape)
    true = Model(vp, spacing, nbl=nbl, space_order=8)
    centre = [5.0 * (n - 1) for n in shape[:-1]]
    receivers = [[*centre[:-1], x, 20.0] for x in np.linspace(0.0, 10.0 * (shape[-2] - 1), 51)]
    geometry = Geometry(true, [[*centre, 20.0]], receivers, t0=0.0, tn=600.0, f0=0.010)
    start = Model(np.full(shape, 2.0, np.float32), spacing, nbl=nbl, space_order=8)
    return start, geometry, forward_modeling(true, geometry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=grid_shape(), default=(100, 100, 100),
                        help="physical grid NxM or NxMxK, each axis >= 16 (default 100x100x100)")
    parser.add_argument("--nbl", type=positive_int, default=20,
                        help="absorbing-layer points on each side (default 20)")
    parser.add_argument("--ram-states", type=int_at_least(4), default=20,
                        help="RAM budget in states, at least 4 (default 20)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    model, geometry, d_obs = problem(args.shape, args.nbl)
    spec = AcousticForward(model, geometry).spec  # the state fwi_gradient checkpoints
    ram = args.ram_states * slot_layout(spec)[1]
    threads = numba.get_num_threads()
    print(f"grid {model.grid_shape} ({args.shape} + {args.nbl} layer points), {geometry.n_steps} "
          f"steps, state {spec.nbytes / 2**20:.1f} MiB, RAM {args.ram_states} states; "
          f"{describe()}, numba "
          f"{numba.__version__} ({threads} threads), load average {os.getloadavg()}", flush=True)
    work = tempfile.mkdtemp(prefix="amcheck-bench-")
    first = "compute_threads=None, first call"
    variants: dict[str, dict[str, Any]] = {
        first: {"disk": work},
        "compute_threads=None, later call": {"disk": work},
        "compute_threads=1 (1 core to I/O)": {"disk": work, "compute_threads": 1},
        f"compute_threads='all' ({threads})": {"disk": work, "compute_threads": "all"},
        "Revolve in RAM (all threads)": {"strategy": "revolve"},
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    reference = None
    try:
        fwi_gradient(model, geometry, d_obs, ram=ram, disk=work)  # compile, first store
        for r in range(args.repeats):
            for name, kwargs in variants.items():
                if name == first:
                    forget()  # as in a new process: the sweeps probe both counts
                settle()
                start = time.perf_counter()
                result = fwi_gradient(model, geometry, d_obs, ram=ram, **kwargs)
                wall = time.perf_counter() - start
                if reference is None:
                    reference = result.gradient
                if not np.array_equal(result.gradient, reference):
                    raise SystemExit(f"{name}: the gradient differs from the first variant's")
                stats = result.stats
                runs[name].append({"wall": wall, "threads": stats.compute_threads,
                                   "recompute": stats.recompute_factor,
                                   "interval": stats.interval})
                print(f"  round {r + 1}/{args.repeats} {name}: {wall:.2f} s (recompute "
                      f"{stats.recompute_factor:.3f}, k {stats.interval}, threads "
                      f"{stats.compute_threads})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    for name, rs in runs.items():
        walls = [x["wall"] for x in rs]
        print(f"{name:36s} {statistics.median(walls):7.2f} s ({min(walls):.2f}-{max(walls):.2f})"
              f"  recompute {statistics.median(x['recompute'] for x in rs):.3f}")
    names = list(variants)
    print()
    for a, b in ((2, 0), (3, 0), (0, 1), (3, 1), (0, 4), (1, 4)):
        ratios = ratio_text(paired(runs[names[a]], runs[names[b]]))
        print(f"round by round: {names[a]} / {names[b]}: {ratios}")
    for name in names[:2]:
        print(f"threads {name} ended on, round by round: {[x['threads'] for x in runs[name]]}")
    print(f"load average {os.getloadavg()}; every gradient bitwise equal")


if __name__ == "__main__":
    main()
