"""The package layout, the import rules and the error hierarchy."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import amcheck

ROOT = Path(__file__).resolve().parent.parent


def test_storage_and_kernels_install_under_amcheck() -> None:
    import amcheck.kernels
    import amcheck.storage

    assert Path(amcheck.storage.__file__).resolve().parent == ROOT / "storage"
    assert Path(amcheck.kernels.__file__).resolve().parent == ROOT / "kernels"


def test_no_top_level_storage_or_kernels_module() -> None:
    code = (
        "import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')];"
        "print(importlib.util.find_spec('storage'), importlib.util.find_spec('kernels'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    assert out.split() == ["None", "None"]


@pytest.mark.parametrize("module", ["amcheck", "amcheck.schedules"])
def test_light_imports(module: str) -> None:
    code = f"import sys, {module}; print('numba' in sys.modules, 'zarr' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_all_is_importable() -> None:
    for name in amcheck.__all__:
        assert hasattr(amcheck, name), name


def test_error_hierarchy() -> None:
    assert issubclass(amcheck.InvalidArgumentError, ValueError)
    assert issubclass(amcheck.ArgumentTypeError, TypeError)
    assert issubclass(amcheck.CheckpointNotFoundError, KeyError)
    assert issubclass(amcheck.TransferError, OSError)
    for name in amcheck.__all__:
        obj = getattr(amcheck, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, amcheck.AmcheckError), name
            # tracebacks name the public path; pickling (process pools) finds it there
            assert f"{obj.__module__}.{obj.__qualname__}" == f"amcheck.{name}"
            copy = pickle.loads(pickle.dumps(obj("why")))
            assert type(copy) is obj and str(copy) == "why"
    assert str(amcheck.CheckpointNotFoundError("no step 3")) == "no step 3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512 MiB", 512 * 2**20), ("2 GiB", 2 * 2**30), ("1.5GB", 1_500_000_000), ("4096", 4096),
     ("8 g", 8 * 2**30), (123, 123), ("1e3 kB", 10**6)],
)
def test_parse_bytes(text: int | str, expected: int) -> None:
    assert amcheck.parse_bytes(text) == expected


def test_parse_bytes_percent() -> None:
    from amcheck._bytes import physical_memory

    assert amcheck.parse_bytes("25%") == physical_memory() // 4


def test_parse_bytes_takes_numpy_integers() -> None:
    import numpy as np

    assert amcheck.parse_bytes(np.int64(2**33), "ram") == 2**33
    assert type(amcheck.parse_bytes(np.uint32(7), "ram")) is int


@pytest.mark.parametrize("bad", ["", "lots", "3 parsecs", "0%", "101%", -1, "1e400 GiB"])
def test_parse_bytes_rejects(bad: int | str) -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="ram"):
        amcheck.parse_bytes(bad, "ram")


@pytest.mark.parametrize("bad", [1.5, None, True, b"1 GiB"])
def test_parse_bytes_rejects_types(bad: object) -> None:
    with pytest.raises(amcheck.ArgumentTypeError, match="ram"):
        amcheck.parse_bytes(bad, "ram")  # type: ignore[arg-type]
