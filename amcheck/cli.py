"""The ``amcheck`` command line: ``demo``, ``plan``, ``bench`` and ``info``.

Commands are argparse subparsers; each one is a ``_add_<name>(subparsers)`` function that registers
its arguments and sets ``handler`` to a ``_run_<name>(args) -> int``. Usage errors, and every
:class:`~amcheck.AmcheckError` a command raises, print one line ``amcheck: error: …`` to stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from amcheck._errors import AmcheckError

__all__ = ["build_parser", "main"]

STRATEGIES = ("store_all", "revolve", "two_level", "async_multistage")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit status 2, and which
    takes no abbreviated option (``plan --ram 3`` was read as ``--ram-slots 3``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"amcheck: error: {message}\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``, with a message that names what was given."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _folder(text: str) -> Path:
    """argparse type: a directory path, not empty (``""`` would mean the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("names no directory (an unset environment variable?)")
    return Path(text).expanduser()


def _byte_size(text: str) -> str:
    """argparse type: a byte size such as ``"64 MiB"``, ``"2GB"``, ``"5%"`` (checked now)."""
    from amcheck._bytes import parse_bytes

    try:
        parse_bytes(text, "the size")
    except AmcheckError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _compression(text: str) -> str | None:
    """argparse type: a compression spec of amcheck.storage ("none" for raw bytes)."""
    if text.lower() == "none":
        return None
    from amcheck.storage import parse_compression

    try:
        parse_compression(text)
    except AmcheckError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# -- demo ----------------------------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    from amcheck._demo import DEMO_STRATEGIES, SIZES

    default, small = SIZES["default"], SIZES["small"]
    demo = subparsers.add_parser(
        "demo",
        help="full waveform inversion of a synthetic model with checkpointed gradients",
        description=(
            "Build a synthetic 2-D section (water, sediment layers, a salt body) and a surface "
            "survey, compute the FWI gradient of a smoothed starting model with asynchronous "
            "multistage checkpointing (a small RAM budget plus a temporary zarr store on disk), "
            "compare it with store-all, run a few L-BFGS-B iterations, and write model.png, "
            "gradient.png, misfit.png, timeline.png and summary.json into the output folder. "
            f"Default size: {default.shape[0]} x {default.shape[1]} points, {default.shots} "
            f"shots, {default.iterations} iterations (1-2 minutes on 2 cores); --small: "
            f"{small.shape[0]} x {small.shape[1]}, {small.shots} shots, {small.iterations} "
            "iterations (seconds)."
        ),
    )
    demo.add_argument("--small", action="store_true", help="a small problem (CI, tests)")
    demo.add_argument("--out", type=_folder, default=Path("amcheck-demo"), metavar="DIR",
                      help="output folder (default ./amcheck-demo)")
    demo.add_argument("--shots", type=_positive_int, default=None, metavar="N",
                      help=f"number of shots (default {default.shots}, --small {small.shots})")
    demo.add_argument("--iterations", type=_nonnegative_int, default=None, metavar="N",
                      help=f"L-BFGS-B iterations (default {default.iterations}, --small "
                      f"{small.iterations})")
    demo.add_argument("--ram", type=_byte_size, default=None, metavar="SIZE",
                      help="RAM for states per gradient, e.g. '16 MiB' (default "
                      f"{100 * default.ram_fraction:g}%% of store-all, --small "
                      f"{100 * small.ram_fraction:g}%%; 'N%%' means N%% of physical memory)")
    demo.add_argument("--disk", type=_folder, default=None, metavar="DIR",
                      help="directory for the temporary zarr checkpoint store (default: the "
                      "system's temporary directory; created if missing); removed afterwards")
    demo.add_argument("--compression", type=_compression, default=None, metavar="CODEC",
                      help="codec of the disk checkpoints: none (default), blosc, zstd, "
                      "zfp:tol=1e-9, zfp:rate=16, bitround:keepbits=12, ... (lossy codecs make "
                      "the gradient approximate)")
    demo.add_argument("--strategy", choices=DEMO_STRATEGIES, default="async_multistage",
                      help="checkpointing strategy (default async_multistage; revolve: RAM "
                           "only; auto: the Checkpointer's choice, store-all where the states "
                           "fit in --ram, else Revolve or async multistage)")
    demo.add_argument("--interval", type=_positive_int, default=None, metavar="K",
                      help="steps between disk checkpoints (default: the Checkpointer's)")
    demo.add_argument("--no-compare", action="store_true",
                      help="skip the store-all gradient")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import importlib.util

    from amcheck._demo import DemoConfig, run_demo

    if importlib.util.find_spec("matplotlib") is None:
        raise _UsageError("amcheck demo draws its pictures with matplotlib: "
                          "pip install 'amcheck[plot]'")
    if args.out.exists() and not args.out.is_dir():
        raise _UsageError(f"--out must be a folder, got the file {str(args.out)!r}")
    # --out and the parents it needs: a run that fails before writing anything removes them
    created = [p for p in (args.out, *args.out.parents) if not p.exists()]

    def remove_created() -> None:
        for folder in created:  # innermost first, while empty
            with contextlib.suppress(OSError):
                folder.rmdir()

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_created()
        raise _UsageError(f"--out: cannot create {str(args.out)!r}: {exc.strerror}") from None
    try:  # before the run, not after it, when the pictures are written
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as exc:
        remove_created()
        raise _UsageError(f"--out: cannot write into {str(args.out)!r}: {exc.strerror}") from None
    config = DemoConfig(
        out=args.out,
        size="small" if args.small else "default",
        shots=args.shots,
        iterations=args.iterations,
        ram=args.ram,
        disk=args.disk,
        compression=args.compression,
        strategy=args.strategy,
        interval=args.interval,
        compare=not args.no_compare,
        progress=not args.no_progress,
    )
    try:
        run_demo(config)
    except BaseException:
        remove_created()  # no empty --out (or its parents) left behind
        raise
    return 0


# -- plan ----------------------------------------------------------------------------------------


def _add_plan(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    plan = subparsers.add_parser(
        "plan",
        help="plan a checkpoint schedule and print what it costs",
        description=(
            "Plan a checkpoint schedule for N steps, replay it with amcheck.schedules.simulate "
            "and print its costs: forward steps (recompute factor), checkpoint reads, writes and "
            "peak per tier, and the RAM buffers a zero-copy engine needs."
        ),
    )
    plan.add_argument("--steps", type=_positive_int, required=True, metavar="N", help="steps n")
    plan.add_argument(
        "--ram-slots",
        type=_positive_int,
        default=None,
        metavar="S",
        help="RAM checkpoints held at most; required except with --strategy store_all, which "
        "ignores it",
    )
    plan.add_argument(
        "--interval",
        type=_positive_int,
        default=None,
        metavar="K",
        help="steps between disk checkpoints (two_level, async_multistage)",
    )
    plan.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="default: async_multistage when --interval is given, else revolve",
    )
    plan.add_argument(
        "--pairs",
        action="store_true",
        help="plan over pairs of steps (amcheck.schedules.Paired), as a Checkpointer does for a "
        "reverse operator that declares reverse_from_next (N >= 3); --interval is then rounded "
        "up to whole pairs",
    )
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(handler=_run_plan)


#: ``amcheck plan`` replays every action of the schedule: about 3 s for 10^6 steps here and half
#: a minute for 10^7 (52 million actions), so a larger n is refused rather than left running.
PLAN_MAX_STEPS: Final = 10**7


def _run_plan(args: argparse.Namespace) -> int:
    from amcheck.schedules import (
        AsyncMultistage,
        Paired,
        Revolve,
        Schedule,
        StoreAll,
        TwoLevel,
        simulate,
    )

    if args.steps > PLAN_MAX_STEPS:
        raise _UsageError(
            f"--steps {args.steps:,} is more than {PLAN_MAX_STEPS:,}: plan replays every action "
            "(10^7 steps take about half a minute); the recompute factor of a fixed interval "
            "hardly depends on n (amcheck.schedules.multistage_recompute_factor(k, slots, n) "
            "gives it for any n), Revolve's forward "
            "steps are amcheck.schedules.binomial_forward_steps(n, slots)"
        )
    strategy: str = args.strategy or ("async_multistage" if args.interval else "revolve")
    interval: int | None = args.interval
    if strategy in ("two_level", "async_multistage") and interval is None:
        raise _UsageError(f"--interval is required with --strategy {strategy}")
    if strategy in ("store_all", "revolve") and interval is not None:
        raise _UsageError(f"--interval does not apply to --strategy {strategy}")
    if strategy != "store_all" and args.ram_slots is None:
        raise _UsageError(
            f"--ram-slots is required with --strategy {strategy} (only store_all does without)"
        )
    started = time.perf_counter()
    pairs = args.pairs and args.steps >= 3
    n = Paired.pairs(args.steps) if pairs else args.steps
    k = None if interval is None else (Paired.interval_pairs(interval, args.steps) if pairs
                                       else interval)
    schedule: Schedule
    if strategy == "store_all":
        schedule = StoreAll(n)
    elif strategy == "revolve":
        schedule = Revolve(n, args.ram_slots)
    elif strategy == "two_level":
        schedule = TwoLevel(n, args.ram_slots, k)  # type: ignore[arg-type]
    else:
        schedule = AsyncMultistage(n, args.ram_slots, k)  # type: ignore[arg-type]
    if pairs:
        schedule = Paired(schedule, args.steps)
        interval = schedule.interval if k is not None else None
    stats = simulate(schedule)
    seconds = time.perf_counter() - started
    slots = None if strategy == "store_all" else args.ram_slots
    if args.json:
        out = {"strategy": strategy, "slots": slots, "interval": interval, "pairs": pairs}
        out.update(stats.to_dict())
        out["seconds"] = seconds
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        ("strategy", strategy),
        ("steps n", f"{stats.n_steps:,}"),
        ("RAM slots", "n (all)" if slots is None else f"{slots:,}"),
        ("interval", "-" if interval is None else f"{interval:,}" if interval == args.interval
         else f"{interval:,} ({args.interval:,} given, in whole pairs and at most n)"),
        ("pairs of steps", f"yes: {n:,} pairs" if pairs else
         "no (they change nothing below 3 steps)" if args.pairs else "no"),
        ("forward steps", f"{stats.forward_steps:,}"),
        ("reverse steps", f"{stats.reverse_steps:,}"),
        ("recompute factor", f"{stats.recompute_factor:.4f}"),
    ]
    for tier in ("ram", "disk"):
        rows.append(
            (
                f"{tier}: writes / reads / peak",
                f"{stats.writes[tier]:,} / {stats.reads[tier]:,} / {stats.peak[tier]:,}",
            )
        )
    rows += [
        ("peak RAM buffers", f"{stats.peak_buffers:,}"),
        ("peak RAM buffers, forward", f"{stats.peak_buffers_forward:,}"),
        ("  while writing to disk", f"{stats.peak_buffers_writing:,}"),
        ("actions", f"{stats.actions:,}"),
        ("seconds to plan", f"{seconds:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


# -- bench ---------------------------------------------------------------------------------------

#: ``amcheck bench NAME`` -> the scripts in benchmarks/ it may run (the first that exists).
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "disk-vs-ram": ("disk_vs_ram.py",),
    "fwi-overlap": ("fwi_overlap.py",),
    "fwi-threads": ("fwi_threads.py",),
    "long": ("long_sequences.py",),
    "kernels": ("kernels_vs_devito.py",),
    "schedules": ("schedules.py",),
    "zero-copy": ("zero_copy.py",),
}

_BENCH_HELP = {
    "disk-vs-ram": "RAM vs raw disk vs zarr tiers, with and without compression",
    "fwi-overlap": "FWI forward sweeps with disk writes: fused time loop vs step loop",
    "fwi-threads": "FWI gradients on disk: numba threads for compute vs a core left to I/O",
    "long": "recompute factor and time against the length of the sequence",
    "kernels": "the numba wave kernels beside Devito and a STREAM triad",
    "schedules": "time to plan schedules beside checkpoint_schedules",
    "zero-copy": "the zero-copy engine beside deep copies and pyrevolve",
}


def _benchmarks_dir() -> Path:
    """benchmarks/ of the source checkout amcheck runs from (absent in a wheel install)."""
    import amcheck

    return Path(amcheck.__file__).resolve().parent.parent / "benchmarks"


def _add_bench(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    lines = "\n".join(f"  {name:<12} {text}" for name, text in _BENCH_HELP.items())
    bench = subparsers.add_parser(
        "bench",
        help="run one of the benchmark scripts in benchmarks/",
        description=textwrap.fill(
            "Run a benchmark script of the source checkout with this Python, passing the "
            "remaining arguments through (e.g. `amcheck bench schedules --sizes 10000`; "
            "`amcheck bench kernels --help` shows the script's own options). Some need the "
            "bench extra: pip install -e '.[bench]'.",
            width=78,
        )
        + "\n\nbenchmarks:\n"
        + lines,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("name", choices=tuple(BENCHMARKS), metavar="NAME",
                       help="one of: " + ", ".join(BENCHMARKS))
    bench.add_argument("--dir", type=_folder, default=None, metavar="DIR",
                       help="the benchmarks folder, given before NAME (default: benchmarks/ "
                       "next to the amcheck package of a source checkout)")
    bench.add_argument("args", nargs=argparse.REMAINDER, metavar="...",
                       help="arguments for the script")
    bench.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    folder: Path = args.dir if args.dir is not None else _benchmarks_dir()
    if not folder.is_dir():
        raise _UsageError(
            f"--dir {str(folder)!r} is not a folder: give the benchmarks/ folder of a source "
            "checkout" if args.dir is not None else
            f"no benchmarks folder at {str(folder)!r}: the benchmarks ship with the source "
            "checkout, not the installed package; clone the repository and install it with "
            "`pip install -e '.[bench]'`, or pass --dir"
        )
    names = BENCHMARKS[args.name]
    script = next((folder / n for n in names if (folder / n).is_file()), None)
    if script is None:
        raise _UsageError(
            f"benchmark {args.name!r} is not in {str(folder)!r} (looked for "
            f"{', '.join(names)})"
        )
    extra = list(args.args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    print(f"amcheck bench {args.name}: {sys.executable} {script} {' '.join(extra)}".rstrip(),
          flush=True)
    code = subprocess.run([sys.executable, str(script), *extra], check=False).returncode
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


# -- info ----------------------------------------------------------------------------------------


def _add_info(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    info = subparsers.add_parser(
        "info",
        help="versions, threads, memory and the default tiers of this installation",
        description=(
            "Print the versions of amcheck and its main dependencies, numba's threading layer "
            "and thread count, the CPUs and physical memory, and the tiers a Checkpointer uses "
            "by default (the RAM budget, where a disk tier would go)."
        ),
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(handler=_run_info)


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """What ``amcheck info`` prints, as a dict (see :func:`main`)."""
    import amcheck
    from amcheck._bytes import format_bytes, parse_bytes, physical_memory

    versions: dict[str, str | None] = {"amcheck": amcheck.__version__,
                                       "python": platform.python_version()}
    for name in ("numpy", "zarr", "numcodecs", "zfpy", "numba", "scipy", "matplotlib", "tqdm"):
        versions[name] = _version(name)
    threading: dict[str, Any] = {}
    try:
        import numba

        from amcheck.kernels import Geometry, Model, forward_modeling

        # numba picks its threading layer on the first parallel call: run a tiny one.
        model = Model(__import__("numpy").full((8, 8), 1.5), (10.0, 10.0), nbl=2,
                      space_order=2)
        forward_modeling(model, Geometry(model, [20.0, 20.0], [[30.0, 30.0]], tn=10.0))
        threading = {
            "layer": numba.threading_layer(),  # type: ignore[attr-defined]
            "threads": int(numba.get_num_threads()),
            "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        }
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: info must always print
        threading = {"error": f"{type(exc).__name__}: {exc}"}
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    memory = physical_memory()
    tmp = tempfile.gettempdir()
    try:
        stat = os.statvfs(tmp)
        free: int | None = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    ram = parse_bytes("25%", "ram")
    return {
        "versions": versions,
        "numba": threading,
        "cpus": {"count": os.cpu_count(), "usable": affinity},
        "physical_memory_bytes": memory,
        "platform": platform.platform(),
        "default_tiers": {
            "ram": f"RamTier, budget '25%' of physical memory = {format_bytes(ram)}",
            "ram_bytes": ram,
            "disk": "none unless given (disk=...): ZarrTier for a path, uncompressed",
            "temporary_directory": tmp,
            "temporary_directory_free_bytes": free,
        },
    }


def _run_info(args: argparse.Namespace) -> int:
    from amcheck._bytes import format_bytes

    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    versions = info["versions"]
    rows = [(name, value or "not installed") for name, value in versions.items()]
    numba_info = info["numba"]
    if "error" in numba_info:
        rows.append(("numba threads", f"unavailable ({numba_info['error']})"))
    else:
        env = numba_info["NUMBA_NUM_THREADS"]
        rows.append(("numba threading layer", str(numba_info["layer"])))
        rows.append(("numba threads", f"{numba_info['threads']}"
                     + (f" (NUMBA_NUM_THREADS={env})" if env else "")))
    cpus = info["cpus"]
    rows.append(("CPUs", f"{cpus['count']} ({cpus['usable']} usable by this process)"))
    rows.append(("physical memory", format_bytes(info["physical_memory_bytes"])))
    rows.append(("platform", info["platform"]))
    tiers = info["default_tiers"]
    rows.append(("default RAM tier", tiers["ram"]))
    rows.append(("default disk tier", tiers["disk"]))
    free = tiers["temporary_directory_free_bytes"]
    rows.append(("temporary directory", tiers["temporary_directory"]
                 + ("" if free is None else f" ({format_bytes(free)} free)")))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


class _UsageError(Exception):
    """A combination of arguments that argparse cannot express; reported like a usage error."""


#: Each command's registration function, in the order ``--help`` lists them.
_COMMANDS: tuple[Callable[[argparse._SubParsersAction[_Parser]], None], ...] = (
    _add_demo,
    _add_plan,
    _add_bench,
    _add_info,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with one subparser per command."""
    parser = _Parser(
        prog="amcheck",
        description=(
            "Asynchronous multistage checkpointing for adjoint computations. Start with "
            "`amcheck demo`; `amcheck COMMAND --help` explains each command."
        ),
    )
    import amcheck

    parser.add_argument("--version", action="version", version=f"amcheck {amcheck.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a usage error, 130 when interrupted,
    143 when terminated, 141 when the reader of its output went away, as after SIGPIPE, and 1
    when the output cannot be written)."""
    stdout, sys.stdout = sys.stdout, _Output(sys.stdout)
    try:
        code = _main(argv)
        sys.stdout.flush()  # what is still buffered fails here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        # `amcheck plan ... | head -1`: stop quietly
        _drop_stdout()
        return 141
    except _OutputError as exc:
        # `amcheck plan ... > /dev/full`, a full disk: one line, not a traceback
        _drop_stdout()
        print(f"amcheck: error: the output could not be written ({exc})", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout


class _OutputError(Exception):
    """Writing to standard output failed (other than a closed pipe)."""


class _Output:
    """Standard output whose write failures raise :class:`_OutputError`, told apart from the
    OSErrors of the files a command writes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with _output_errors():
            return self._stream.write(text)

    def flush(self) -> None:
        with _output_errors():
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _output_errors() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _OutputError(f"{type(exc).__name__}: {exc}") from exc


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's flush at exit does not fail on the
    same output again."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:  # a usage error like any other: one line on stderr
        print("amcheck: error: a command is required: demo, plan, bench or info (amcheck --help "
              "says what each does)", file=sys.stderr)
        return 2
    try:
        with _terminate_as_exception():
            code: int = args.handler(args)
    except (_UsageError, AmcheckError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"amcheck: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("amcheck: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("amcheck: terminated", file=sys.stderr)
        return 143
    return code


class _Terminated(BaseException):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler's time limit), raised in the main thread
    so that, as after Ctrl-C, every Checkpointer closes and removes its disk folder."""


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`_Terminated` (it ended the process at once,
    leaving the demo's disk folders behind); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
