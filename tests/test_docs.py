"""The user docs stay in step with the code: every public name in docs/reference.md, no stale
entries, relative links that resolve, and the choosing-a-strategy table equal to simulate()."""

from __future__ import annotations

import importlib
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from amcheck.schedules import AsyncMultistage, Revolve, simulate

DOCS = Path(__file__).resolve().parents[1] / "docs"
PACKAGES = ("amcheck", "amcheck.schedules", "amcheck.storage", "amcheck.kernels",
            "amcheck.compat.pyrevolve")


def _reference_entries() -> dict[str, set[str]]:
    """Package -> names listed in the reference tables (rows "| `package.name` | ... |")."""
    text = (DOCS / "reference.md").read_text()
    found: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for full in re.findall(r"^\| `([\w\.]+)` \|", text, flags=re.MULTILINE):
        package, _, name = full.rpartition(".")
        assert package in found, f"reference.md lists {full!r} under an unknown package"
        found[package].add(name)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_reference_lists_exactly_the_public_names(package: str) -> None:
    public = set(importlib.import_module(package).__all__)
    listed = _reference_entries()[package]
    assert public - listed == set(), f"add to docs/reference.md: {sorted(public - listed)}"
    assert listed - public == set(), f"stale in docs/reference.md: {sorted(listed - public)}"


def _anchors(page: Path) -> set[str]:
    """The ids mkdocs gives the headings of ``page`` (Python-Markdown's toc slugify)."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            slug = re.sub(r"[^\w\s-]", "", match[1].encode("ascii", "ignore").decode())
            anchors.add(re.sub(r"[-\s]+", "-", slug.strip().lower()))
    return anchors


def test_relative_links_resolve() -> None:
    for page in sorted(DOCS.glob("*.md")) + [DOCS.parent / "README.md"]:
        text = page.read_text()
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            linked = page.parent / target if target else page
            assert linked.exists(), f"{page.name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked), f"{page.name}: no heading {target}#{anchor}"


def _table_after(heading: str) -> list[list[str]]:
    text = (DOCS / "choosing.md").read_text()
    part = text.split(heading, 1)[1]
    rows = []
    for line in part.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows


def test_choosing_revolve_table_is_what_simulate_counts() -> None:
    rows = _table_after("<!-- table: revolve -->")
    ns = [int(cell.split("=")[1].replace(",", "")) for cell in rows[0][1:]]
    checked = 0
    for row in rows[2:]:
        slots = int(row[0])
        for n, cell in zip(ns, row[1:]):
            if slots >= n:
                assert cell.startswith("1")
                continue
            if n > 10_000:
                continue  # the 100,000-step column takes seconds to replay; spot-checked below
            assert cell == f"{simulate(Revolve(n, slots)).recompute_factor:.2f}", (n, slots)
            checked += 1
    assert checked >= 12
    assert rows[4][4] == f"{simulate(Revolve(100_000, 20)).recompute_factor:.2f}"


def test_choosing_multistage_table_is_what_simulate_counts() -> None:
    rows = _table_after("<!-- table: multistage -->")
    ks = [int(cell.split("=")[1]) for cell in rows[0][1:]]
    for row in rows[2:]:
        slots = int(row[0])
        for k, cell in zip(ks, row[1:]):
            factor = simulate(AsyncMultistage(10_000, slots, k)).recompute_factor
            assert cell == f"{factor:.2f}", (slots, k)


def test_index_example_runs_and_its_gradient_is_right() -> None:
    # The 30-line example of docs/index.md, as printed there, then a finite-difference check.
    text = (DOCS / "index.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/index.md", "exec"), namespace)  # noqa: S102 - our own docs
    ckp = namespace["ckp"]
    assert ckp.strategy == "async_multistage"  # type: ignore[attr-defined]
    stats = ckp.stats  # type: ignore[attr-defined]
    assert stats.writes["disk"] > 0 and stats.reverse_steps == 2000
    gradient = namespace["gradient"]
    advance = namespace["advance"]
    x0 = namespace["x0"]["u"]  # type: ignore[index]
    n = namespace["n"]

    def objective(u0: np.ndarray) -> float:
        state = {"u": u0.copy()}
        advance(state, state, 0, n)  # type: ignore[operator]
        return 0.5 * float(np.sum(state["u"] ** 2))

    direction = np.cos(np.linspace(0.0, 6.0, x0.size))
    eps = 1e-6
    fd = (objective(x0 + eps * direction) - objective(x0 - eps * direction)) / (2 * eps)
    assert float(np.dot(gradient, direction)) == pytest.approx(fd, rel=1e-6)  # type: ignore[call-overload]


def test_quickstart_fwi_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "Your own problem" in docs/quickstart.md, as printed there (it writes timeline.png).
    text = (DOCS / "quickstart.md").read_text().split("## Your own problem", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its scratch directory too
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/quickstart.md", "exec"), namespace)  # noqa: S102 - our own docs
    result = namespace["result"]
    assert result.strategy == "async_multistage"  # type: ignore[attr-defined]
    assert result.stats.writes["disk"] > 0  # type: ignore[attr-defined]
    assert np.isfinite(namespace["misfit"]) and (tmp_path / "timeline.png").exists()  # type: ignore[call-overload]
