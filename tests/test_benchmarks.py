"""Every benchmark script runs end to end: each in a subprocess with the smallest arguments it
takes (seconds, not its real sizes), checked for a zero exit and the line that says its
variants agreed. The figures themselves are docs/benchmarks.md's; here they mean nothing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

#: script -> (arguments, with {tmp} for a scratch folder; a line its output must hold)
SMALL = {
    "zero_copy.py": (["--n", "50", "--slots", "5", "--repeats", "1"],
                     "gradients: bitwise equal"),
    "long_sequences.py": (["--ns", "100", "--repeats", "1", "--sweep-ks", "10",
                           "--workdir", "{tmp}/ls", "--plot", "{tmp}/ls.png",
                           "--json", "{tmp}/ls.json"], "gradients: bitwise equal"),
    "disk_vs_ram.py": (["--sizes", "1", "--repeats", "1", "--tiers", "ram", "raw", "zarr+zfp",
                        "--out", "{tmp}/dvr.json", "--plot", "{tmp}/dvr.png"], "zarr+zfp"),
    "fwi_overlap.py": (["--shapes", "41x41", "--steps", "100", "--repeats", "1"],
                       "fused / step loop"),
    "fwi_threads.py": (["--shape", "24x24", "--nbl", "4", "--repeats", "1"],
                       "every gradient bitwise equal"),
}


def run(script: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.parametrize("script", sorted(SMALL))
def test_a_benchmark_runs_with_its_smallest_arguments(script: str, tmp_path: Path) -> None:
    args, expected = SMALL[script]
    done = run(script, [a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert expected in done.stdout


def test_the_schedules_benchmark_says_when_its_extra_is_missing(tmp_path: Path) -> None:
    done = run("schedules.py", ["--sizes", "100", "--slots", "5", "--limit", "10",
                                "--json", str(tmp_path / "s.json")])
    if importlib.util.find_spec("checkpoint_schedules") is None:
        assert done.returncode == 2
        assert "install the bench extra" in done.stderr
    else:  # pragma: no cover - with the bench extra installed
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "n=100 s=5" in done.stdout
