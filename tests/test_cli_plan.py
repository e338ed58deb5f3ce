"""`amcheck plan`: the table, --json, and one-line usage errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from amcheck.cli import main
from amcheck.schedules import AsyncMultistage, Paired, Revolve, StoreAll, TwoLevel, simulate


def test_plan_table_default_revolve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--steps", "1000", "--ram-slots", "10"]) == 0
    out = capsys.readouterr().out
    stats = simulate(Revolve(1000, 10))
    rows = dict(line.split("  ", 1) for line in out.splitlines())
    rows = {name.strip(): value.strip() for name, value in rows.items()}
    assert rows["strategy"] == "revolve"
    assert rows["steps n"] == "1,000"
    assert rows["RAM slots"] == "10"
    assert rows["interval"] == "-"
    assert rows["forward steps"] == f"{stats.forward_steps:,}"
    assert rows["reverse steps"] == "1,000"
    assert rows["recompute factor"] == f"{stats.recompute_factor:.4f}"
    assert rows["ram: writes / reads / peak"] == (
        f"{stats.writes['ram']:,} / {stats.reads['ram']:,} / {stats.peak['ram']:,}"
    )
    assert rows["disk: writes / reads / peak"] == "0 / 0 / 0"
    assert rows["peak RAM buffers"] == str(stats.peak_buffers)
    assert rows["peak RAM buffers, forward"] == str(stats.peak_buffers_forward)
    assert float(rows["seconds to plan"]) >= 0.0


@pytest.mark.parametrize(
    ("argv", "strategy", "schedule"),
    [
        (["--interval", "50"], "async_multistage", AsyncMultistage(2000, 5, 50)),
        (["--interval", "50", "--strategy", "two_level"], "two_level", TwoLevel(2000, 5, 50)),
        (["--strategy", "store_all"], "store_all", StoreAll(2000)),
        (["--strategy", "revolve"], "revolve", Revolve(2000, 5)),
        (["--pairs"], "revolve", Paired(Revolve(1001, 5), 2000)),
        (["--pairs", "--interval", "49"], "async_multistage",
         Paired(AsyncMultistage(1001, 5, 25), 2000)),
    ],
)
def test_plan_json(
    argv: list[str], strategy: str, schedule: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--steps", "2000", "--ram-slots", "5", "--json", *argv]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = simulate(schedule).to_dict()  # type: ignore[arg-type]
    assert out["strategy"] == strategy
    assert out["pairs"] == ("--pairs" in argv)
    if "--interval" in argv:
        assert out["interval"] == 50  # with --pairs, 49 steps round up to 25 pairs
    assert {key: out[key] for key in expected} == expected
    assert out["seconds"] >= 0.0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--steps", "0", "--ram-slots", "3"], "argument --steps: must be an integer >= 1, got 0"),
        (["--steps", "ten", "--ram-slots", "3"], "must be an integer >= 1, got 'ten'"),
        (["--steps", "10", "--ram-slots", "3.5"], "argument --ram-slots"),
        (["--steps", "10"], "--ram-slots is required with --strategy revolve"),
        (["--steps", "10", "--interval", "3"],
         "--ram-slots is required with --strategy async_multistage"),
        (["--steps", "10", "--interval", "3", "--strategy", "two_level"],
         "--ram-slots is required with --strategy two_level"),
        (["--steps", "10", "--ram-slots", "3", "--strategy", "x"], "invalid choice: 'x'"),
        (["--steps", "10", "--ram-slots", "3", "--strategy", "two_level"], "--interval is req"),
        (["--steps", "10", "--ram-slots", "3", "--interval", "2", "--strategy", "revolve"],
         "--interval does not apply"),
    ],
)  # fmt: skip
def test_plan_bad_arguments(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("amcheck: error: ")
    assert words in lines[0]


@pytest.mark.parametrize(("interval", "shown"), [
    ("8", "8"), ("7", "8 (7 given, in whole pairs and at most n)"),
    ("200", "100 (200 given, in whole pairs and at most n)"),
])
def test_plan_table_says_when_pairs_change_the_interval(
    interval: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "--steps", "100", "--ram-slots", "5", "--interval", interval, "--pairs"]
    assert main(argv) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("interval")]
    assert row.split(None, 1)[1] == shown


def test_plan_store_all_needs_no_ram_slots(capsys: pytest.CaptureFixture[str]) -> None:
    # store_all keeps every state: --ram-slots is optional (and ignored when given).
    assert main(["plan", "--steps", "50", "--strategy", "store_all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = simulate(StoreAll(50)).to_dict()
    assert {key: out[key] for key in expected} == expected
    assert out["strategy"] == "store_all" and out["slots"] is None
    assert main(["plan", "--steps", "50", "--strategy", "store_all", "--ram-slots", "3"]) == 0
    rows = capsys.readouterr().out
    assert "n (all)" in rows


def test_plan_entry_point_exit_status() -> None:
    # The installed command: a real process, its exit status and its one line on stderr.
    ok = subprocess.run(
        [sys.executable, "-m", "amcheck.cli", "plan", "--steps", "100", "--ram-slots", "4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "recompute factor" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "amcheck.cli", "plan", "--steps", "-3", "--ram-slots", "4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("amcheck: error: ")
