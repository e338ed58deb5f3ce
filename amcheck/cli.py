"""The ``amcheck`` command line.

Commands are argparse subparsers; each one is a ``_add_<name>(subparsers)`` function that registers
its arguments and sets ``handler`` to a ``_run_<name>(args) -> int``. Usage errors, and every
:class:`~amcheck.AmcheckError` a command raises, print one line ``amcheck: error: …`` to stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from amcheck._errors import AmcheckError

__all__ = ["build_parser", "main"]

STRATEGIES = ("store_all", "revolve", "two_level", "async_multistage")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"amcheck: error: {message}\n")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with a message that names what was given."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


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
        required=True,
        metavar="S",
        help="RAM checkpoints held at most (store_all ignores it)",
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
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(handler=_run_plan)


def _run_plan(args: argparse.Namespace) -> int:
    from amcheck.schedules import AsyncMultistage, Revolve, Schedule, StoreAll, TwoLevel, simulate

    strategy: str = args.strategy or ("async_multistage" if args.interval else "revolve")
    interval: int | None = args.interval
    if strategy in ("two_level", "async_multistage") and interval is None:
        raise _UsageError(f"--interval is required with --strategy {strategy}")
    if strategy in ("store_all", "revolve") and interval is not None:
        raise _UsageError(f"--interval does not apply to --strategy {strategy}")
    started = time.perf_counter()
    schedule: Schedule
    if strategy == "store_all":
        schedule = StoreAll(args.steps)
    elif strategy == "revolve":
        schedule = Revolve(args.steps, args.ram_slots)
    elif strategy == "two_level":
        schedule = TwoLevel(args.steps, args.ram_slots, interval)  # type: ignore[arg-type]
    else:
        schedule = AsyncMultistage(args.steps, args.ram_slots, interval)  # type: ignore[arg-type]
    stats = simulate(schedule)
    seconds = time.perf_counter() - started
    slots = None if strategy == "store_all" else args.ram_slots
    if args.json:
        out = {"strategy": strategy, "slots": slots, "interval": interval}
        out.update(stats.to_dict())
        out["seconds"] = seconds
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        ("strategy", strategy),
        ("steps n", f"{stats.n_steps:,}"),
        ("RAM slots", "n (all)" if slots is None else f"{slots:,}"),
        ("interval", "-" if interval is None else f"{interval:,}"),
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
        ("actions", f"{stats.actions:,}"),
        ("seconds to plan", f"{seconds:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


class _UsageError(Exception):
    """A combination of arguments that argparse cannot express; reported like a usage error."""


#: Each command's registration function, in the order ``--help`` lists them.
_COMMANDS: tuple[Callable[[argparse._SubParsersAction[_Parser]], None], ...] = (_add_plan,)


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with one subparser per command."""
    parser = _Parser(
        prog="amcheck",
        description="Asynchronous multistage checkpointing for adjoint computations.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
    except (_UsageError, AmcheckError) as exc:
        print(f"amcheck: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
