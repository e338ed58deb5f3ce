"""Disk vs RAM tiers: write/read bandwidth, overlap with a numba kernel, compression ratios.

For checkpoint sizes of 1, 16 and 128 MB (a two-level 2-D float32 wavefield, a smooth expanding
ring, so compression sees realistic data) and each tier and codec, this measures

- write and read MB/s through a :class:`~amcheck.storage.TransferService` with its defaults
  (max_in_flight=4, workers=2 codec threads, io_threads=4), checkpoints submitted back to back, ``os.sync()`` included in the write time;
  reads after ``posix_fadvise(DONTNEED)`` on every file (so not from the page cache, as far as
  the guest can tell: the virtio host may still cache). Two write figures, side by side in each
  repetition: **first write** into a fresh tier (every zarr shard file is created), and **steady
  state**: the same tier after it has held and deleted checkpoints (the engine's pattern in a
  long or repeated run: write every k steps, delete after reading; a flush stands for the index
  save that ``index_interval`` makes within a second), so freed rows' files are rewritten in
  place;
- the fraction of the write time hidden behind a numba ``nogil`` stencil running in the caller's
  thread: ``hidden = 1 - (T_overlap - T_kernel) / T_write``;
- the compression ratio (state bytes / stored bytes),

``raw`` and ``zarr`` use direct I/O (``O_DIRECT``, their default where the file system has it);
``raw`` is the bare-disk baseline, so it runs with ``checksum=False`` (no crc32c of its records,
which RawTier computes and checks by default; the zarr tiers always keep theirs);
``zarr-pagecache`` is the zarr tier through the page cache (``direct=False``). And, in the same
run, the machine's own limits: ``memcpy`` bandwidth (``np.copyto``), a plain
Python sequential ``os.write`` + ``fsync`` / ``os.readv`` of the same bytes, and the bare numcodecs
ZFPY codec on the same data (one thread, each time level coded separately).

Every figure is the median of ``--repeats`` runs; the spread (max/min) is printed as noise.
Run: ``.venv/bin/python benchmarks/disk_vs_ram.py [--sizes 1 16 128] [--repeats 3]``; the
docs' figures add ``--out benchmarks/results/disk_vs_ram.json --plot docs/img/disk_vs_ram.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
from _args import positive_int  # the benchmarks' shared argparse types
from _machine import describe  # which host: CPU model and caches
from amcheck.storage import RamTier, RawTier, Tier, TransferService, ZarrTier, slot_layout
from amcheck.storage._codecs import quiet_numcodecs

from amcheck import StateSpec

TIERS = ("ram", "raw", "zarr", "zarr-pagecache", "zarr+blosc", "zarr+zfp")
TOTAL_BYTES = 128 * 2**20  # bytes written per measurement (at least 2 checkpoints)


@numba.njit(nogil=True, cache=True)
def _stencil(a: np.ndarray, b: np.ndarray, sweeps: int) -> None:
    ny, nx = a.shape
    for _ in range(sweeps):
        for i in range(1, ny - 1):
            for j in range(1, nx - 1):
                b[i, j] = np.float32(0.25) * (a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1])
        a, b = b, a


def wavefield(n: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / np.float32(n)
    r = np.hypot(x - 0.4, y - 0.55)
    ring = np.exp(-((r - 0.3) ** 2) / 0.01) * 1.5e-5  # peaks near 1e-5, as measured wavefields do
    u0 = ring * np.sin(60 * r)
    u1 = ring * np.sin(60 * r - 0.3)
    return {"u": np.ascontiguousarray(np.stack([u0, u1]), dtype=np.float32)}


def median_spread(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values) / max(min(values), 1e-12)


def drop_cache(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def plain_write_read(state: dict[str, np.ndarray], count: int, path: Path) -> tuple[float, float]:
    """Seconds for a plain sequential write+fsync of ``count`` states, and a cold read."""
    data = memoryview(state["u"].reshape(-1).view(np.uint8))
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(count):
        view = data
        while view:
            view = view[os.write(fd, view) :]
    os.fsync(fd)
    os.close(fd)
    t_write = time.perf_counter() - t0
    drop_cache(path)
    out = np.empty_like(state["u"])
    buf = memoryview(out.reshape(-1).view(np.uint8))
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    for _ in range(count):
        got = 0
        while got < len(buf):
            got += os.readv(fd, [buf[got:]])
    os.close(fd)
    t_read = time.perf_counter() - t0
    path.unlink()
    return t_write, t_read


def make_tier(kind: str, spec: StateSpec, where: Path, count: int, peak: float) -> Tier:
    if kind == "ram":
        return RamTier(2 * count * slot_layout(spec)[1], spec, slots=2 * count)
    if kind == "raw":
        # The raw-disk baseline: no crc32c pass over each record (RawTier checks one by default).
        return RawTier(where / "raw.bin", spec, records=2 * count, checksum=False)
    compression = {
        "zarr": None,
        "zarr-pagecache": None,
        "zarr+blosc": "blosc",
        "zarr+zfp": "zfp:rtol=1e-3",  # = tol 1e-3 * max|u|, the bare codec's tolerance
    }[kind]
    direct = False if kind == "zarr-pagecache" else None  # None: O_DIRECT where supported
    return ZarrTier(where / "ckpt.zarr", spec, compression, overwrite=True, direct=direct)


def run_transfers(
    service: TransferService,
    submit: Callable[[int], Any],
    count: int,
    kernel: Callable[[], None] | None = None,
) -> tuple[float, int]:
    """Submit ``count`` transfers; run ``kernel`` chunks until they finish. Seconds, chunks."""
    t0 = time.perf_counter()
    futures = [submit(i) for i in range(count)] if kernel is None else []
    chunks = 0
    if kernel is not None:
        pending = list(range(count))
        while pending or any(not f.done() for f in futures):
            if pending and service.in_flight < service.max_in_flight:
                futures.append(submit(pending.pop(0)))
                continue
            kernel()
            chunks += 1
    for future in futures:
        future.result()
    return time.perf_counter() - t0, chunks


def bench_tier(
    kind: str, state: dict[str, np.ndarray], count: int, repeats: int, where: Path,
    kernel: Callable[[], None], t_chunk: float,
) -> dict[str, Any]:
    spec = StateSpec.from_arrays(state)
    peak = float(np.max(np.abs(state["u"])))
    outs = [{"u": np.empty_like(state["u"])} for _ in range(2)]
    writes, reads, hidden, steady_w, steady_r = [], [], [], [], []
    ratio = 1.0
    service = TransferService()  # the defaults: 4 in flight, 2 codec threads, 4 I/O threads
    try:
        for rep in range(repeats + 1):  # the first round warms up and measures the overlap
            tier = make_tier(kind, spec, where, count, peak)
            t_write, _ = run_transfers(
                service, lambda i, t=tier: service.submit_put(t, i, state), count
            )
            t0 = time.perf_counter()
            os.sync()
            t_write += time.perf_counter() - t0
            ratio = spec.nbytes * count / max(tier.nbytes, 1)
            if kind != "ram":
                drop_cache(where)
            t_read, _ = run_transfers(
                service, lambda i, t=tier: service.submit_get(t, i, outs[i % 2]), count
            )
            if rep > 0:
                writes.append(t_write)
                reads.append(t_read)
            # overlap: the same writes again, while the kernel runs in this thread
            t_over, chunks = run_transfers(
                service, lambda i, t=tier: service.submit_put(t, count + i, state), count, kernel
            )
            if kind != "ram":
                t0 = time.perf_counter()
                os.sync()
                t_over += time.perf_counter() - t0
            if rep > 0:
                visible = max(0.0, t_over - chunks * t_chunk)
                hidden.append(max(0.0, 1.0 - visible / t_write))
            # steady state: delete what the tier holds (as the reverse sweep does), then write
            # new checkpoints into the freed rows
            for step in sorted(tier.steps):
                service.submit_delete(tier, step)
            service.wait_all()
            if isinstance(tier, ZarrTier):
                service.run(tier.flush())
            first = 2 * count
            t_steady, _ = run_transfers(
                service, lambda i, t=tier, f=first: service.submit_put(t, f + i, state), count
            )
            t0 = time.perf_counter()
            os.sync()
            t_steady += time.perf_counter() - t0
            if kind != "ram":
                drop_cache(where)
            t_sread, _ = run_transfers(
                service, lambda i, t=tier, f=first: service.submit_get(t, f + i, outs[i % 2]), count
            )
            if rep > 0:
                steady_w.append(t_steady)
                steady_r.append(t_sread)
            service.run(tier.close())
            for child in where.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    finally:
        service.close()
    nbytes = spec.nbytes * count / 1e6
    (w, w_noise), (r, r_noise) = median_spread(writes), median_spread(reads)
    (sw, sw_noise), (sr, sr_noise) = median_spread(steady_w), median_spread(steady_r)
    return {
        "tier": kind, "write_MBps": nbytes / w, "read_MBps": nbytes / r,
        "write_noise": w_noise, "read_noise": r_noise,
        "steady_write_MBps": nbytes / sw, "steady_read_MBps": nbytes / sr,
        "steady_write_noise": sw_noise, "steady_read_noise": sr_noise,
        "hidden": statistics.median(hidden), "ratio": ratio,
    }


def bench_baselines(state: dict[str, np.ndarray], count: int, repeats: int, where: Path,
                    peak: float) -> dict[str, Any]:
    import numcodecs

    nbytes = state["u"].nbytes
    dst = np.empty_like(state["u"])
    copies = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        np.copyto(dst, state["u"])
        copies.append(time.perf_counter() - t0)
    plain_w, plain_r = [], []
    for rep in range(repeats + 1):  # the first round warms the page cache's memory up
        w, r = plain_write_read(state, count, where / "plain.bin")
        if rep > 0:
            plain_w.append(w)
            plain_r.append(r)
    with quiet_numcodecs():
        codec = numcodecs.ZFPY(mode=4, tolerance=1e-3 * peak)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        blobs = [codec.encode(level) for level in state["u"]]
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for blob in blobs:
            codec.decode(blob)
        dec.append(time.perf_counter() - t0)
    mb = nbytes / 1e6
    return {
        "memcpy_MBps": mb / statistics.median(copies[1:]),
        "plain_write_MBps": mb * count / statistics.median(plain_w),
        "plain_read_MBps": mb * count / statistics.median(plain_r),
        "plain_write_noise": median_spread(plain_w)[1],
        "zfp_codec_encode_MBps": mb / statistics.median(enc),
        "zfp_codec_decode_MBps": mb / statistics.median(dec),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[1, 16, 128],
                        help="checkpoint sizes in MB (default 1 16 128)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="runs of each measurement, medians reported (default 3)")
    parser.add_argument("--tiers", nargs="+", choices=TIERS, default=list(TIERS), metavar="TIER",
                        help=f"tiers to measure (default all: {' '.join(TIERS)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write every figure as JSON to this file (the docs' come from "
                        "benchmarks/results/disk_vs_ram.json)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="also draw the bar chart into this file (the docs' is "
                        "docs/img/disk_vs_ram.png)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the tiers write (default: the system's temporary directory; "
                        "give a directory on the disk you mean to measure)")
    args = parser.parse_args()
    print(describe())

    a = np.random.default_rng(0).random((2048, 2048)).astype(np.float32)
    b = a.copy()
    _stencil(a, b, 1)
    t_chunks = []
    for _ in range(20):
        t0 = time.perf_counter()
        _stencil(a, b, 8)
        t_chunks.append(time.perf_counter() - t0)
    t_chunk = statistics.median(t_chunks)

    def kernel() -> None:
        _stencil(a, b, 8)

    results: dict[str, Any] = {
        "machine": f"{platform.node()}: {describe()}",
        "kernel_chunk_ms": t_chunk * 1e3, "sizes": {},
    }
    print(f"kernel chunk (2048^2 stencil, 8 sweeps, 1 thread): {t_chunk * 1e3:.1f} ms")
    with tempfile.TemporaryDirectory(prefix="amcheck-bench-", dir=args.workdir) as tmp:
        where = Path(tmp)
        for size in args.sizes:
            n = int(np.sqrt(size * 1e6 / 8))
            state = wavefield(n)
            count = max(2, TOTAL_BYTES // state["u"].nbytes)
            peak = float(np.max(np.abs(state["u"])))
            base = bench_baselines(state, count, args.repeats, where, peak)
            rows = [bench_tier(k, state, count, args.repeats, where, kernel, t_chunk) for k in args.tiers]
            results["sizes"][size] = {"count": count, "state_MB": state["u"].nbytes / 1e6,
                                      "baselines": base, "tiers": rows}
            print(f"\n## {state['u'].nbytes / 1e6:.1f} MB x {count}: memcpy "
                  f"{base['memcpy_MBps']:.0f} MB/s, plain write+fsync {base['plain_write_MBps']:.0f} "
                  f"(noise {base['plain_write_noise']:.2f}x), plain cold read "
                  f"{base['plain_read_MBps']:.0f}, zfp codec {base['zfp_codec_encode_MBps']:.0f}"
                  f"/{base['zfp_codec_decode_MBps']:.0f} MB/s")
            for row in rows:
                vs = row["write_MBps"] / base["plain_write_MBps"]
                svs = row["steady_write_MBps"] / base["plain_write_MBps"]
                print(f"  {row['tier']:<11} first write {row['write_MBps']:6.0f} MB/s ({vs:4.2f}x "
                      f"plain, noise {row['write_noise']:.2f}x)  steady write "
                      f"{row['steady_write_MBps']:6.0f} ({svs:4.2f}x, noise "
                      f"{row['steady_write_noise']:.2f}x)  read {row['read_MBps']:6.0f} MB/s "
                      f"(noise {row['read_noise']:.2f}x)  hidden {row['hidden']:4.0%}  "
                      f"ratio {row['ratio']:5.1f}x")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    if args.plot is not None:
        plot(results, args.plot)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["sizes"])
    tiers = [row["tier"] for row in results["sizes"][sizes[0]]["tiers"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    width = 0.8 / (len(tiers) + 1)
    titles = {"write": "first write (fresh store)", "steady_write": "steady-state write",
              "read": "read"}
    for ax, what in zip(axes, titles, strict=True):
        for i, tier in enumerate(tiers):
            vals = [next(r for r in results["sizes"][s]["tiers"] if r["tier"] == tier)[f"{what}_MBps"]
                    for s in sizes]
            ax.bar(np.arange(len(sizes)) + i * width, vals, width, label=tier)
        base = "read" if what == "read" else "write"
        plain = [results["sizes"][s]["baselines"][f"plain_{base}_MBps"] for s in sizes]
        ax.bar(np.arange(len(sizes)) + len(tiers) * width, plain, width, label="plain os.write/read",
               color="black")
        ax.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, [f"{s} MB" for s in sizes])
        ax.set_yscale("log")
        ax.set_title(f"{titles[what]} (MB/s of state, median)", fontsize=10)
    axes[0].set_ylabel("MB/s")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"amcheck tiers, {results['machine']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
