"""The command line: --help everywhere, one-line errors with exit status 2, bench and info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import amcheck
from amcheck.cli import BENCHMARKS, _benchmarks_dir, build_parser, main


@pytest.mark.parametrize(
    ("argv", "words"),
    [([], "demo"), (["demo"], "--small"), (["plan"], "--ram-slots"), (["bench"], "zero-copy"),
     (["info"], "--json")],
)  # fmt: skip
def test_help_everywhere(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: amcheck")
    assert words in out


def test_every_command_is_listed() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("demo", "plan", "bench", "info"):
        assert command in help_text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"amcheck {amcheck.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("amcheck: error: a command is required")
    assert captured.err.count("\n") == 1  # one line, as every other error


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["demo", "--shots", "0"], "argument --shots: must be an integer >= 1, got 0"),
        (["demo", "--iterations", "-1"], "argument --iterations: must be an integer >= 0"),
        (["demo", "--ram", "lots"], "argument --ram"),
        (["demo", "--compression", "zfp:tol=abc"], "argument --compression"),
        (["demo", "--compression", "snappy9"], "argument --compression"),
        (["demo", "--strategy", "store_all"], "invalid choice: 'store_all'"),
        (["demo", "--small", "--ram", "1000"], "ram"),
        (["demo", "--small", "--strategy", "revolve", "--interval", "4"], "--interval"),
        (["demo", "--small", "--disk", "/dev/null"], "--disk must be a directory, got the file"),
        (["demo", "--small", "--disk", ""], "argument --disk: names no directory"),
        (["demo", "--small", "--out", " "], "argument --out: names no directory"),
        (["bench", "nope"], "invalid choice: 'nope'"),
        (["bench", "--dir", "/nonexistent/amcheck", "schedules"], "--dir '/nonexistent/amcheck' is not a folder"),
        (["bench", "--dir", "", "schedules"], "argument --dir: names no directory"),
        (["bench", "--dir", "~/no-such-amcheck", "schedules"], f"--dir '{Path.home()}/no-such-amcheck' is not a folder"),
        (["info", "--bogus"], "unrecognized arguments: --bogus"),
        (["plan", "--steps", "99999999999999999999", "--ram-slots", "3"], "is more than 10,000,000"),
    ],
)  # fmt: skip
def test_bad_arguments_one_line_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a demo that got past its checks would write here
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("amcheck: error: ")
    assert words in lines[0]
    assert not (tmp_path / "amcheck-demo" / "summary.json").exists()


def test_demo_out_must_be_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = tmp_path / "taken"
    file.write_text("")
    assert main(["demo", "--small", "--out", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out must be a folder" in err


def test_a_failed_demo_removes_the_folders_it_made_for_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Only the innermost was removed: --out np/a/b left np/a behind."""
    out = tmp_path / "np" / "a" / "b"
    assert main(["demo", "--small", "--out", str(out), "--ram", "1KiB"]) == 2
    assert "amcheck: error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", ["amcheck.cli", "amcheck"])
def test_errors_from_the_installed_command(module: str) -> None:
    # A real process (python -m amcheck too): its exit status and its single line on stderr,
    # no traceback.
    bad = subprocess.run(
        [sys.executable, "-m", module, "demo", "--small", "--ram", "1000"],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("amcheck: error: ")
    assert "Traceback" not in bad.stderr


def test_sigterm_ends_the_demo_as_ctrl_c_does(tmp_path: Path) -> None:
    """kill / timeout / a scheduler's time limit: it ended the process at once, leaving the
    demo's disk folder behind; now the run closes its Checkpointers and exits with 143."""
    import signal

    disk = tmp_path / "scratch"
    demo = subprocess.Popen(
        [sys.executable, "-m", "amcheck", "demo", "--small", "--no-progress", "--out",
         str(tmp_path / "out"), "--disk", str(disk)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert demo.stdout is not None
    for line in demo.stdout:  # the inversion's gradients, each with a disk folder, follow
        if "iteration 0" in line:
            break
    time.sleep(0.3)  # inside one of them
    demo.send_signal(signal.SIGTERM)
    _, err = demo.communicate(timeout=120)
    assert demo.returncode == 143, err
    assert err.strip().splitlines()[-1] == "amcheck: terminated"
    assert not disk.exists() or not any(disk.iterdir())


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    # `amcheck plan ... | head -1`: the pipe is closed before the command writes to it
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "wb") as pipe:
        done = subprocess.run(
            [sys.executable, "-m", "amcheck.cli", "plan", "--steps", "100", "--ram-slots", "3"],
            stdout=pipe, stderr=subprocess.PIPE, text=True, check=False,
        )
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("command", [["plan", "--steps", "100", "--ram-slots", "3"], ["info"]])
def test_an_output_that_cannot_be_written_is_one_line_not_a_traceback(command: list[str]) -> None:
    # `amcheck plan ... > /dev/full`: every write fails with ENOSPC
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "amcheck", *command], stdout=full,
                              stderr=subprocess.PIPE, text=True, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ("amcheck: error: the output could not be written (OSError: [Errno 28] "
                           "No space left on device)\n")


def test_bench_runs_the_script_with_extra_arguments(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    script = tmp_path / "schedules.py"
    script.write_text(
        "import os, signal, sys\nprint('ran with', sys.argv[1:])\n"
        "if '--term' in sys.argv: os.kill(os.getpid(), signal.SIGTERM)\n"
        "sys.exit(3 if '--fail' in sys.argv else 0)\n"
    )
    assert main(["bench", "--dir", str(tmp_path), "schedules", "--sizes", "10", "-x"]) == 0
    out = capfd.readouterr().out
    assert "ran with ['--sizes', '10', '-x']" in out
    assert main(["bench", "--dir", str(tmp_path), "schedules", "--fail"]) == 3
    # killed by SIGTERM: 143, as a shell reports it (sys.exit(-15) made it 241)
    assert main(["bench", "--dir", str(tmp_path), "schedules", "--term"]) == 143
    assert main(["bench", "--dir", str(tmp_path), "kernels"]) == 2
    assert "benchmark 'kernels' is not in" in capfd.readouterr().err


def test_options_are_not_abbreviated(capsys: pytest.CaptureFixture[str]) -> None:
    """plan --ram 3 was taken as --ram-slots 3 (and --ram "2 GiB" failed about --ram-slots)."""
    assert main(["plan", "--steps", "100", "--ram", "3"]) == 2
    assert "unrecognized arguments: --ram 3" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_folder_that_cannot_be_written_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It failed after the whole run, with a traceback, when the pictures were written (/proc
    refuses new files even to root)."""
    assert main(["demo", "--small", "--out", "/proc", "--iterations", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("amcheck: error: --out: cannot write into '/proc'") and "\n" == err[-1]


def test_bench_help_of_a_real_script(capfd: pytest.CaptureFixture[str]) -> None:
    folder = _benchmarks_dir()
    assert (folder / BENCHMARKS["schedules"][0]).is_file()
    assert main(["bench", "schedules", "--help"]) == 0
    out = capfd.readouterr().out
    assert "usage: schedules.py" in out


def test_every_benchmark_name_maps_to_a_script_or_says_so() -> None:
    folder = _benchmarks_dir()
    for name, scripts in BENCHMARKS.items():
        found = [s for s in scripts if (folder / s).is_file()]
        # The long-sequence benchmark may not have landed yet; every other one exists.
        assert found or name == "long", name


def test_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    versions = info["versions"]
    assert versions["amcheck"] == amcheck.__version__
    for name in ("python", "numpy", "zarr", "numcodecs", "numba"):
        assert versions[name], name
    assert info["numba"]["threads"] >= 1
    assert info["numba"]["layer"] in ("tbb", "omp", "workqueue")
    assert info["cpus"]["count"] >= 1
    assert info["physical_memory_bytes"] > 2**28
    assert info["default_tiers"]["ram_bytes"] == amcheck.parse_bytes("25%")


def test_info_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for words in ("numba threading layer", "CPUs", "physical memory", "default RAM tier"):
        assert words in out
