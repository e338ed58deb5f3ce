"""The load of the engine benchmarks (zero_copy.py, long_sequences.py): a memory-bound operator.

A 2-D wave equation, 5-point Laplacian, leapfrog in time, float32. The state is one field ``u`` of
shape (2, nx, nx): level ``t % 2`` holds u_t, the other u_{t-1}, and a step overwrites u_{t-1}
with u_{t+1} (in place when src is dst). The reverse operator leapfrogs an adjoint wavefield and
accumulates a gradient image from u_t; every variant of a benchmark must produce it bitwise equal.

``advance`` runs all its steps in one nogil numba call, so the compute thread needs the GIL once
per advance, not once per step (the operator protocol's multi-step ``advance(src, dst, t0, t1)``
exists for this). With more than one numba thread the steps are ``parallel`` loops. On one
thread they are serial loops instead, for a reason that matters whenever I/O threads run beside
the kernel: numba takes the GIL to launch every parallel region, even inside a nogil function.
Measured here, 1000 steps of the (2, 724, 724) state in one call on one thread: 0.116 s alone,
6.3 s while another thread held the GIL (each launch waited for the 5 ms switch interval); the
serial loop, 0.104 ms a step, was not slowed at all. The serial rows are written so that LLVM
vectorises them: every index is a loop variable plus a non-negative constant, and the in-place
row reads and writes u_{t-1} through one array (two views of the same memory would fail LLVM's
runtime alias check and run the scalar loop, 5x slower). Both paths give bitwise the same states.

An advance of two or more steps out of place (src is not dst: a restore from a read-only
checkpoint, or the step that ends in a staging slot) runs its first two steps as a fused pair
(:func:`wave_pair`): step t writes u_{t+1} into dst, step t+1 reads u_t from src instead of from
a copy of it in dst, so u_t is never copied. The same arithmetic, so bitwise the same state.
Measured here (one thread, read-only src, dst rotating over 9 buffers, medians of 7): an
out-of-place advance of 2 steps 0.538 -> 0.495 ms, of 4 steps 0.935 -> 0.814 ms; an in-place
step takes 0.144 ms, a copying out-of-place one 0.33 ms (it writes both levels of dst).

On one thread (session 21) every advance runs two steps in one pass over memory wherever it
has two to run (temporal blocking, :func:`in_place_pair`, :func:`out_of_place_pair`): row i of
step t, then row i - 1 of step t + 1, which reads the rows step t has just written while they are
in cache. pyrevolve's advances and amcheck's run the same function, so both gain; the single
step pyrevolve runs before each reverse step has no partner. The paired adjoint likewise runs the
two reverse steps one state serves in one pass (``PairedAdjoint.reverse_pair``,
:func:`adjoint_pair`), which pyrevolve, restoring before every reverse step, cannot use. Each is
bitwise the unfused steps. Measured here alone (one thread, medians of 7 x 100 calls,
``benchmarks/results/temporal_blocking_ab.py``): two in-place steps 0.356 -> 0.266 ms, an
out-of-place pair 0.603 -> 0.433 ms, two reverse steps 0.733 -> 0.514 ms.

The kernels flush subnormals to zero (FTZ/DAZ, set and restored around each call or parallel row,
as amcheck's kernels do): the leapfrog spreads the bump's tails, and until step ~400 up to 10% of
the grid was subnormal, which made those steps about 18% slower (0.125 against 0.106 ms a step)
and so made short sequences look slower per step than long ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from amcheck.kernels._jit import ftz_on, ftz_restore
from numba import prange

C2 = np.float32(0.2)  # (c dt / h)^2, stable for the 2-D leapfrog (< 0.5)


@numba.njit(nogil=True, inline="always", cache=True)
def _lap(am: np.ndarray, a0: np.ndarray, ap: np.ndarray, j: int) -> Any:  # pragma: no cover
    """The 5-point Laplacian at point j + 1 of row a0 (am, ap: the rows above and below)."""
    return am[j + 1] + ap[j + 1] + a0[j] + a0[j + 2] - np.float32(4.0) * a0[j + 1]


@numba.njit(nogil=True, inline="always", cache=True)
def _row_in_place(am: np.ndarray, a0: np.ndarray, ap: np.ndarray, bo: np.ndarray
                  ) -> None:  # pragma: no cover - numba
    """One interior row in place: ``bo`` holds u_{t-1} and receives u_{t+1}."""
    for j in range(a0.shape[0] - 2):
        bo[j + 1] = np.float32(2.0) * a0[j + 1] - bo[j + 1] + C2 * _lap(am, a0, ap, j)


@numba.njit(nogil=True, inline="always", cache=True)
def _row_copy(am: np.ndarray, a0: np.ndarray, ap: np.ndarray, b: np.ndarray, out: np.ndarray,
              keep: np.ndarray) -> None:  # pragma: no cover - numba
    """One interior row out of place: u_{t+1} into ``out``, and u_t (row ``a0``) into ``keep``."""
    for j in range(a0.shape[0] - 2):
        out[j + 1] = np.float32(2.0) * a0[j + 1] - b[j + 1] + C2 * _lap(am, a0, ap, j)
    for j in range(a0.shape[0]):
        keep[j] = a0[j]


@numba.njit(nogil=True, inline="always", cache=True)
def _row_out(am: np.ndarray, a0: np.ndarray, ap: np.ndarray, b: np.ndarray, out: np.ndarray
             ) -> None:  # pragma: no cover - numba
    """One interior row out of place, u_{t+1} into ``out`` only (the fused pair of steps)."""
    for j in range(a0.shape[0] - 2):
        out[j + 1] = np.float32(2.0) * a0[j + 1] - b[j + 1] + C2 * _lap(am, a0, ap, j)


@numba.njit(nogil=True, inline="always", cache=True)
def _edges(a: np.ndarray, out: np.ndarray, keep: np.ndarray) -> None:  # pragma: no cover
    """Out of place: the boundary rows of u_t, and the zero boundary of u_{t+1}."""
    ny, nx = a.shape
    for j in range(nx):
        keep[0, j] = a[0, j]
        keep[ny - 1, j] = a[ny - 1, j]
        out[0, j] = np.float32(0.0)
        out[ny - 1, j] = np.float32(0.0)
    for i in range(ny):
        out[i, 0] = np.float32(0.0)
        out[i, nx - 1] = np.float32(0.0)


@numba.njit(nogil=True, parallel=True, cache=True)
def wave_step(src: np.ndarray, dst: np.ndarray, t: int) -> None:  # pragma: no cover - numba
    """x_{t+1} from x_t: u[t%2] is u_t, u[(t+1)%2] is u_{t-1}; writes dst (may be src)."""
    cur, old = t % 2, (t + 1) % 2
    a = src[cur]
    if src.ctypes.data == dst.ctypes.data:
        bo = dst[old]
        for i in prange(a.shape[0] - 2):
            mx = ftz_on()
            _row_in_place(a[i], a[i + 1], a[i + 2], bo[i + 1])
            ftz_restore(mx)
    else:
        b, out, keep = src[old], dst[old], dst[cur]
        for i in prange(a.shape[0] - 2):
            mx = ftz_on()
            _row_copy(a[i], a[i + 1], a[i + 2], b[i + 1], out[i + 1], keep[i + 1])
            ftz_restore(mx)
        _edges(a, out, keep)


@numba.njit(nogil=True, cache=True)
def wave_step_serial(src: np.ndarray, dst: np.ndarray, t: int) -> None:  # pragma: no cover
    """:func:`wave_step` on the calling thread alone, with no parallel launch (no GIL).

    Its own function, not ``wave_step``'s body compiled without ``parallel``: numba's on-disk
    cache keys on the Python function, not on the compile options, so the two would share entries.
    """
    cur, old = t % 2, (t + 1) % 2
    a = src[cur]
    if src.ctypes.data == dst.ctypes.data:
        bo = dst[old]
        for i in range(a.shape[0] - 2):
            _row_in_place(a[i], a[i + 1], a[i + 2], bo[i + 1])
    else:
        b, out, keep = src[old], dst[old], dst[cur]
        for i in range(a.shape[0] - 2):
            _row_copy(a[i], a[i + 1], a[i + 2], b[i + 1], out[i + 1], keep[i + 1])
        _edges(a, out, keep)


@numba.njit(nogil=True, inline="always", cache=True)
def _zero_edges(a: np.ndarray) -> None:  # pragma: no cover - numba
    """The zero boundary of a new level (u_{t+1} out of place), as :func:`_edges` writes it."""
    ny, nx = a.shape
    for j in range(nx):
        a[0, j] = np.float32(0.0)
        a[ny - 1, j] = np.float32(0.0)
    for i in range(1, ny - 1):
        a[i, 0] = np.float32(0.0)
        a[i, nx - 1] = np.float32(0.0)


@numba.njit(nogil=True, inline="always", cache=True)
def _copy_edges(src: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - numba
    """The boundary of ``src`` into ``dst``: u_{t+2} of the fused pair keeps u_t's, as the
    in-place step leaves the boundary of the copy of u_t that it overwrites."""
    ny, nx = src.shape
    for j in range(nx):
        dst[0, j] = src[0, j]
        dst[ny - 1, j] = src[ny - 1, j]
    for i in range(1, ny - 1):
        dst[i, 0] = src[i, 0]
        dst[i, nx - 1] = src[i, nx - 1]


@numba.njit(nogil=True, parallel=True, cache=True)
def wave_pair(src: np.ndarray, dst: np.ndarray, t: int) -> None:  # pragma: no cover - numba
    """x_{t+2} from x_t out of place (src is not dst), without copying u_t into dst.

    Step t writes u_{t+1} into dst's level ``(t+1) % 2``; step t+1 reads u_t from src instead
    of from a copy in dst and writes u_{t+2} into dst's level ``t % 2``. The same arithmetic as
    one out-of-place step and one in-place step (bitwise the same state), without the copy.
    """
    cur, old = t % 2, (t + 1) % 2
    a, b, out, new = src[cur], src[old], dst[old], dst[cur]
    for i in prange(a.shape[0] - 2):
        mx = ftz_on()
        _row_out(a[i], a[i + 1], a[i + 2], b[i + 1], out[i + 1])
        ftz_restore(mx)
    _zero_edges(out)  # step t+1 reads it
    for i in prange(a.shape[0] - 2):
        mx = ftz_on()
        _row_out(out[i], out[i + 1], out[i + 2], a[i + 1], new[i + 1])
        ftz_restore(mx)
    _copy_edges(a, new)


@numba.njit(nogil=True, cache=True)
def wave_pair_serial(src: np.ndarray, dst: np.ndarray, t: int) -> None:  # pragma: no cover
    """:func:`wave_pair` on the calling thread alone (see :func:`wave_step_serial`)."""
    cur, old = t % 2, (t + 1) % 2
    a, b, out, new = src[cur], src[old], dst[old], dst[cur]
    for i in range(a.shape[0] - 2):
        _row_out(a[i], a[i + 1], a[i + 2], b[i + 1], out[i + 1])
    _zero_edges(out)  # step t+1 reads it
    for i in range(a.shape[0] - 2):
        _row_out(out[i], out[i + 1], out[i + 2], a[i + 1], new[i + 1])
    _copy_edges(a, new)


@numba.njit(nogil=True, cache=True)
def in_place_pair(u: np.ndarray, t: int) -> None:  # pragma: no cover - numba
    """Steps t and t + 1 in place in one pass over memory (temporal blocking): row i of step t,
    then row i - 1 of step t + 1, which reads step t's rows i - 2 … i while they are in cache.
    No row buffer is needed: step t + 1 overwrites row i - 1 of u_t only after step t's last
    reader of it (row i) has run. The same arithmetic as two in-place steps, bitwise."""
    mx = ftz_on()
    a, b = u[t % 2], u[(t + 1) % 2]
    ny = a.shape[0]
    for i in range(ny - 2):
        _row_in_place(a[i], a[i + 1], a[i + 2], b[i + 1])
        if i >= 1:
            _row_in_place(b[i - 1], b[i], b[i + 1], a[i])
    _row_in_place(b[ny - 3], b[ny - 2], b[ny - 1], a[ny - 2])
    ftz_restore(mx)


@numba.njit(nogil=True, cache=True)
def out_of_place_pair(src: np.ndarray, dst: np.ndarray, t: int) -> None:  # pragma: no cover
    """:func:`wave_pair_serial` in one pass over memory: row i of u_{t+1}, then row i - 1 of
    u_{t+2}. The same arithmetic, bitwise."""
    mx = ftz_on()
    a, b, out, new = src[t % 2], src[(t + 1) % 2], dst[(t + 1) % 2], dst[t % 2]
    ny = a.shape[0]
    _zero_edges(out)
    for i in range(ny - 2):
        _row_out(a[i], a[i + 1], a[i + 2], b[i + 1], out[i + 1])
        if i >= 1:
            _row_out(out[i - 1], out[i], out[i + 1], a[i], new[i])
    _row_out(out[ny - 3], out[ny - 2], out[ny - 1], a[ny - 2], new[ny - 2])
    _copy_edges(a, new)
    ftz_restore(mx)


@numba.njit(nogil=True, cache=True)
def _steps_parallel(src: np.ndarray, dst: np.ndarray, t0: int, t1: int) -> None:  # pragma: no cover
    first = t0 + 1  # the first step left to run in place
    if src.ctypes.data != dst.ctypes.data and t1 - t0 >= 2:
        wave_pair(src, dst, t0)
        first += 1
    else:
        wave_step(src, dst, t0)
    for t in range(first, t1):
        wave_step(dst, dst, t)


@numba.njit(nogil=True, cache=True)
def _steps_serial(src: np.ndarray, dst: np.ndarray, t0: int, t1: int) -> None:  # pragma: no cover
    """Two steps in one pass over memory wherever there are two to run (session 21)."""
    mx = ftz_on()
    t = t0
    if src.ctypes.data != dst.ctypes.data:
        if t1 - t0 >= 2:
            out_of_place_pair(src, dst, t0)
            t += 2
        else:
            wave_step_serial(src, dst, t0)
            t += 1
    while t + 2 <= t1:
        in_place_pair(dst, t)
        t += 2
    if t < t1:
        wave_step_serial(dst, dst, t)
    ftz_restore(mx)


def wave_steps(src: np.ndarray, dst: np.ndarray, t0: int, t1: int) -> None:
    """Steps t0 … t1-1 in one call that holds no GIL: x_t0 in src, x_t1 left in dst; parallel
    loops on numba's threads, serial ones (no GIL at all) when numba runs one thread."""
    if numba.get_num_threads() == 1:
        _steps_serial(src, dst, t0, t1)
    else:
        _steps_parallel(src, dst, t0, t1)


@numba.njit(nogil=True, parallel=True, cache=True)
def adjoint_step(
    lam: np.ndarray, grad: np.ndarray, u: np.ndarray, t: int
) -> None:  # pragma: no cover - numba
    """One reverse step: leapfrog the adjoint in place, inject and image with u_t = u[t%2].

    Called once a step from Python, so it takes the GIL once a step in any case; it stays a
    parallel loop on every thread count (numba's parallel loop body, whose arrays LLVM may
    assume do not overlap, ran 0.169 ms a step here, a serial loop 0.19 ms).
    """
    cur, old = t % 2, (t + 1) % 2
    ny, nx = lam.shape[1], lam.shape[2]
    a = lam[cur]
    b = lam[old]
    ut = u[cur]
    for i in prange(1, ny - 1):
        mx = ftz_on()
        for j in range(1, nx - 1):
            lap = a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1] - np.float32(4.0) * a[i, j]
            b[i, j] = np.float32(2.0) * a[i, j] - b[i, j] + C2 * lap + np.float32(1e-3) * ut[i, j]
            grad[i, j] += a[i, j] * ut[i, j]
        ftz_restore(mx)


@numba.njit(nogil=True, inline="always", cache=True)
def _adjoint_row(am: np.ndarray, a0: np.ndarray, ap: np.ndarray, b: np.ndarray, ut: np.ndarray,
                 g: np.ndarray) -> None:  # pragma: no cover - numba
    """One interior row of :func:`adjoint_step`: the same arithmetic per point."""
    for j in range(a0.shape[0] - 2):
        lap = am[j + 1] + ap[j + 1] + a0[j] + a0[j + 2] - np.float32(4.0) * a0[j + 1]
        b[j + 1] = np.float32(2.0) * a0[j + 1] - b[j + 1] + C2 * lap + np.float32(1e-3) * ut[j + 1]
        g[j + 1] += a0[j + 1] * ut[j + 1]


@numba.njit(nogil=True, cache=True)
def adjoint_pair(lam: np.ndarray, grad: np.ndarray, u: np.ndarray, t: int
                 ) -> None:  # pragma: no cover - numba
    """Reverse steps t and t - 1 from x_t (u_t in level ``t % 2``, u_{t-1} in the other) in one
    pass over memory: row i of step t, then row i - 1 of step t - 1. Bitwise
    ``adjoint_step(..., t)`` then ``adjoint_step(..., t - 1)``."""
    mx = ftz_on()
    a, b, ut, um = lam[t % 2], lam[(t + 1) % 2], u[t % 2], u[(t + 1) % 2]
    ny = a.shape[0]
    for i in range(1, ny - 1):
        _adjoint_row(a[i - 1], a[i], a[i + 1], b[i], ut[i], grad[i])
        if i >= 2:
            _adjoint_row(b[i - 2], b[i - 1], b[i], a[i - 1], um[i - 1], grad[i - 1])
    _adjoint_row(b[ny - 3], b[ny - 2], b[ny - 1], a[ny - 2], um[ny - 2], grad[ny - 2])
    ftz_restore(mx)


def state_nbytes(nx: int) -> int:
    """Bytes of one state of the (2, nx, nx) float32 load."""
    return 2 * nx * nx * 4


def slot_nbytes(nx: int) -> int:
    """Bytes one state takes in amcheck's RAM pool (its large fields start on 4 KiB pages): a
    RAM budget of k states is k of these."""
    from amcheck.storage import slot_layout

    import amcheck

    return slot_layout(amcheck.StateSpec({"u": ((2, nx, nx), "float32")}))[1]


def initial_state(nx: int) -> dict[str, np.ndarray]:
    """x_0: a smooth bump in both time levels."""
    u = np.zeros((2, nx, nx), dtype=np.float32)
    y, x = np.mgrid[0:nx, 0:nx].astype(np.float32) / nx
    bump = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.002).astype(np.float32)
    bump[bump < np.finfo(np.float32).tiny] = 0.0  # no subnormals (the kernels flush them anyway)
    u[0] = bump
    u[1] = bump
    return {"u": u}


class Adjoint:
    """The reverse operator: owns the adjoint wavefield and the gradient."""

    def __init__(self, nx: int) -> None:
        self.lam = np.zeros((2, nx, nx), dtype=np.float32)
        self.grad = np.zeros((nx, nx), dtype=np.float32)

    def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
        adjoint_step(self.lam, self.grad, state["u"], t)


class PairedAdjoint(Adjoint):
    """The same reverse operator, declaring what it reads: only u_t (level ``t % 2``), which
    x_{t+1} holds too, so amcheck may plan over pairs of steps (``amcheck.schedules.Paired``),
    and running the two reverse steps x_t serves in one pass (``reverse_pair``)."""

    reverse_from_next = True

    def reverse_pair(self, state: Mapping[str, np.ndarray], t: int) -> None:
        adjoint_pair(self.lam, self.grad, state["u"], t)


def advance(src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray], t0: int, t1: int) -> None:
    """The forward operator: all of steps t0 … t1-1 in one nogil call."""
    wave_steps(src["u"], dst["u"], t0, t1)


def compile_kernels() -> None:
    """Compile every signature the benchmarks use (read-only sources included) before timing."""
    tiny = np.zeros((2, 8, 8), dtype=np.float32)
    frozen = tiny.copy()
    frozen.flags.writeable = False
    for src, dst in ((tiny, tiny), (tiny, tiny.copy()), (frozen, tiny)):
        _steps_parallel(src, dst, 0, 2)
        _steps_serial(src, dst, 0, 2)
    grad = np.zeros((8, 8), np.float32)
    for u in (tiny, frozen):
        adjoint_step(tiny.copy(), grad, u, 0)
        adjoint_pair(tiny.copy(), grad, u, 1)


def run_pyrevolve(nx: int, n: int, checkpoints: int) -> dict[str, Any]:
    """Reverse n steps of this load with pyrevolve's classic ``Revolver`` (the ``bench`` extra).

    The operators own one live state, as pyrevolve expects; ``copies`` counts pyrevolve's calls
    for the live buffer on save and load (one 16-byte-a-point copy each). Returns wall time of
    both sweeps (``forward_wall`` for the first), forward steps, copies and the gradient.
    """
    import pyrevolve

    adj = Adjoint(nx)
    live = initial_state(nx)["u"]
    counts = {"forward_steps": 0, "copies": 0}

    class Checkpoint(pyrevolve.Checkpoint):  # type: ignore[misc]
        @property
        def dtype(self) -> Any:
            return np.float32

        @property
        def size(self) -> int:
            return int(live.size)

        def get_data(self, timestep: int) -> list[np.ndarray]:
            counts["copies"] += 1
            return [live]

        def get_data_location(self, timestep: int) -> list[np.ndarray]:
            counts["copies"] += 1
            return [live]

    class Fwd:
        def apply(self, t_start: int, t_end: int) -> None:
            wave_steps(live, live, t_start, t_end)
            counts["forward_steps"] += t_end - t_start

    class Rev:
        def apply(self, t_start: int, t_end: int) -> None:
            # pyrevolve ran fwd.apply(t, t+1) just before: level t%2 still holds u_t.
            adj.reverse({"u": live}, t_start)

    wrp = pyrevolve.Revolver(Checkpoint(), Fwd(), Rev(), checkpoints, n)
    start = time.perf_counter()
    wrp.apply_forward()
    forward = time.perf_counter() - start
    wrp.apply_reverse()
    wall = time.perf_counter() - start
    return {**counts, "wall": wall, "forward_wall": forward, "grad": adj.grad}
