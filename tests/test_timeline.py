"""The timeline: event recording from several threads, overlap figures and the plot."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import amcheck
from amcheck._timeline import Timeline


def test_hidden_fraction_counts_only_overlap() -> None:
    tl = Timeline()
    tl.record("compute", 0.0, 1.0, step=0, thread="main")
    tl.record("compute", 2.0, 3.0, step=1, thread="main")
    tl.record("write", 0.5, 2.5, step=0, tier="disk", nbytes=10, thread="io")  # 1.0 of 2.0 hidden
    tl.record("read", 2.6, 2.8, step=0, tier="disk", thread="io")  # all of 0.2 hidden
    assert tl.hidden_fraction() == pytest.approx(1.2 / 2.2)
    assert tl.totals()["write"] == pytest.approx(2.0)


def test_no_transfer_means_no_fraction() -> None:
    tl = Timeline()
    tl.record("compute", 0.0, 1.0)
    assert tl.hidden_fraction() is None


def test_records_thread_names_and_is_thread_safe() -> None:
    tl = Timeline()

    def work() -> None:
        for i in range(500):
            with tl.span("write", step=i):
                pass

    threads = [threading.Thread(target=work, name=f"io-{k}") for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = tl.events
    assert len(events) == 2000
    assert {e.thread for e in events} == {f"io-{k}" for k in range(4)}
    assert all(e.end >= e.start for e in events)


def test_disabled_records_nothing() -> None:
    tl = Timeline(enabled=False)
    tl.record("compute", 0.0, 1.0)
    assert len(tl) == 0


def test_bad_kind() -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="kind"):
        Timeline().record("nap", 0.0, 1.0)  # type: ignore[arg-type]


def test_plot_writes_png(tmp_path: Path) -> None:
    tl = Timeline()
    tl.record("compute", 0.0, 1.0, thread="main")
    tl.record("write", 0.2, 0.7, thread="amcheck-transfer", tier="disk")
    tl.record("wait", 1.0, 1.1, thread="main")
    out = tl.plot(tmp_path / "timeline.png")
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert tl.to_json()[0]["start"] == 0.0
