"""Ad hoc (session 21): the temporal-blocking estimate of docs/benchmarks.md "Why not 3x",
measured end to end instead of priced from kernels timed alone.

temporal_blocking_ab.py timed three fused kernels alone and estimated that with every kernel
fused where each tool's calls allow it, async multistage would be about 2.8x faster than
pyrevolve at n = 10^4 (short of 3x). This script runs the whole sweeps, at n given, one numba
thread, the variants interleaved round by round (the order rotating):

a. pyrevolve's Revolver with 10 checkpoints, the load's kernels (as long_sequences.py);
b. async multistage with pairs of steps and the automatic k, the load's kernels (as
   long_sequences.py);
c. a with every multi-step advance fused two steps at a time (``wave_steps`` replaced); the
   single step pyrevolve runs before each reverse step stays a single step;
d. b with the same fused advances (an out-of-place pair fused too) and the reverse operator
   running the two reverse steps a pair's state serves in one pass (``adjoint_pair``).

The first run (the log's first part, commit 4b6d231) had the operator fuse the reverse steps
by itself: on ``reverse(x_t, t)`` with t odd it ran steps t and t - 1 and skipped the engine's
next call. Since 7e63ea2 the engine does it (the protocol's ``reverse_pair``), and since the
commit after it benchmarks/_wave.py's serial steps and paired adjoint are the fused ones: this
script now patches in the unfused ones (temporal_blocking_ab.unfused_steps, the paired adjoint
without ``reverse_pair``) for a and b.

Every variant's gradient is checked bitwise equal to a's. The ratios a/b and c/d are taken
round by round (each pair ran back to back).

    .venv/bin/python benchmarks/results/fused_sweep_ab.py N ROUNDS
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _wave
import long_sequences
import numba
import numpy as np
from _machine import describe
from temporal_blocking_ab import unfused_steps

n, rounds = int(sys.argv[1]), int(sys.argv[2])


class UnfusedPairedAdjoint(_wave.PairedAdjoint):
    """The paired adjoint without reverse_pair: one call a reverse step. Its own ``reverse``,
    so that amcheck remembers the interval of its sweeps apart from the fused ones'."""

    reverse_pair = None

    def reverse(self, state, t):
        _wave.adjoint_step(self.lam, self.grad, state["u"], t)


fused_steps, fused_adjoint = _wave.wave_steps, long_sequences._PairedAdjoint


def use(fused: bool) -> None:
    """Point the load's advances (both tools) and amcheck's paired adjoint at one variant."""
    _wave.wave_steps = fused_steps if fused else (
        lambda s, d, t0, t1: unfused_steps(s, d, t0, t1))
    long_sequences._PairedAdjoint = fused_adjoint if fused else UnfusedPairedAdjoint


def run(label: str, workdir: Path) -> dict:
    use(label in ("c", "d"))
    if label in ("a", "c"):
        result = long_sequences.run_pyrevolve(n, long_sequences.RAM_STATES)
    else:
        result = long_sequences.run_amcheck(n, workdir=workdir, strategy="async_multistage",
                                            pairs=True)
    use(False)
    return result


def main() -> None:
    numba.set_num_threads(1)
    _wave.compile_kernels()
    x = _wave.initial_state(8)["u"]
    unfused_steps(x, x.copy(), 0, 5)
    unfused_steps(x, x, 0, 5)
    frozen = x.copy()
    frozen.flags.writeable = False
    unfused_steps(frozen, x, 0, 5)
    print(f"{describe()}; n = {n}, {rounds} rounds, one numba thread")
    labels = ["a", "b", "c", "d"]
    times: dict[str, list[float]] = {k: [] for k in labels}
    ratios: dict[str, list[float]] = {"a/b": [], "c/d": [], "a/d": []}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = labels[r % 2 * 2:] + labels[:r % 2 * 2]  # a b c d, then c d a b
            walls = {}
            for label in order:
                start = time.perf_counter()
                result = run(label, Path(tmp) / label)
                walls[label] = result["wall"]
                grad = result.get("grad")
                extra = (f", k {result['interval']}, recompute {result['recompute']:.3f}"
                         if label in ("b", "d") else f", recompute {result['recompute']:.3f}")
                print(f"  round {r + 1} {label}: {result['wall']:.2f} s{extra} "
                      f"({time.perf_counter() - start:.1f} s with set-up)", flush=True)
                if grad is not None:
                    if reference is None:
                        reference = grad.copy()
                    assert np.array_equal(grad, reference), f"{label}: gradient differs"
            for label in labels:
                times[label].append(walls[label])
            ratios["a/b"].append(walls["a"] / walls["b"])
            ratios["c/d"].append(walls["c"] / walls["d"])
            ratios["a/d"].append(walls["a"] / walls["d"])
    names = {"a": "pyrevolve", "b": "async multistage, pairs, auto k",
             "c": "pyrevolve, fused advances",
             "d": "async multistage, pairs, auto k, fused advances and reverse pairs"}
    print("\nwall seconds: median (min-max)")
    for label in labels:
        t = times[label]
        print(f"  {label}. {names[label]:66s} {statistics.median(t):6.2f} "
              f"({min(t):.2f}-{max(t):.2f})")
    print("\nratios round by round: median (min-max)")
    for key, values in ratios.items():
        print(f"  {key}: {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
