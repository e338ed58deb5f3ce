"""The timeline: event recording from several threads, overlap figures and the plot."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import amcheck
from amcheck._timeline import _BLOCK, EVENT_KINDS, Timeline


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
    assert repr(tl) == "Timeline(events=0, enabled=False)"


def test_bad_kind() -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="kind"):
        Timeline().record("nap", 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(amcheck.ArgumentTypeError, match="kind must be a str"):
        Timeline().record(["write"], 0.0, 1.0)  # type: ignore[arg-type]


def test_steps_and_sizes_fit_the_records() -> None:
    """Events are int64 records: a step below 0 or either at 2**63 was accepted, and every
    summary of the timeline then raised OverflowError; span checks as record does."""
    tl = Timeline()
    for kwargs, match in (({"step": -1}, "step must be an integer >= 0"),
                          ({"step": 2**63}, r"step must be at most 2\*\*63 - 1"),
                          ({"nbytes": 2**64}, r"nbytes must be at most 2\*\*63 - 1")):
        with pytest.raises(amcheck.InvalidArgumentError, match=match):
            tl.record("write", 0.0, 1.0, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(amcheck.InvalidArgumentError, match=match), \
                tl.span("write", **kwargs):  # type: ignore[arg-type]
            pass
    with pytest.raises(amcheck.InvalidArgumentError, match="end must be a finite number, got an "
                       "integer too large for a float"):
        tl.record("write", 0.0, 10**400)
    tl.record("write", 0.0, 1.0, step=2**63 - 1, nbytes=2**63 - 1)
    assert tl.totals()["write"] == 1.0 and tl.to_json()[0]["step"] == 2**63 - 1


def test_plot_writes_png(tmp_path: Path) -> None:
    tl = Timeline()
    tl.record("compute", 0.0, 1.0, thread="main")
    tl.record("write", 0.2, 0.7, thread="amcheck-transfer", tier="disk")
    tl.record("wait", 1.0, 1.1, thread="main")
    out = tl.plot(tmp_path / "timeline.png")
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert tl.to_json()[0]["start"] == 0.0


def test_plot_puts_the_compute_thread_first_and_the_legend_beside_the_lanes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lanes' order was that of their first events, so a read prefetched before the first
    reverse step put the transfer thread on top; the legend sat inside the axes over bars."""
    import matplotlib.axes
    import matplotlib.figure

    seen: dict[str, Any] = {}
    set_yticks, savefig = matplotlib.axes.Axes.set_yticks, matplotlib.figure.Figure.savefig

    def ticks(self: Any, positions: Any, labels: Any = None, **kwargs: Any) -> Any:
        seen["lanes"] = list(labels)
        seen["axes"] = self
        return set_yticks(self, positions, labels, **kwargs)

    def save(self: Any, *args: Any, **kwargs: Any) -> Any:
        axes, legend = seen["axes"], seen["axes"].get_legend()
        renderer = self.canvas.get_renderer()
        seen["beside"] = (legend.get_window_extent(renderer).x0
                          >= axes.get_window_extent(renderer).x1)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_yticks", ticks)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", save)
    tl = Timeline()
    tl.record("read", 0.0, 0.5, thread="amcheck-transfer", tier="disk")
    tl.record("wait", 0.1, 0.5, thread="main")
    tl.record("reverse", 0.5, 1.0, thread="main")
    tl.plot(tmp_path / "t.png")
    assert seen["lanes"] == ["main", "main (wait)", "amcheck-transfer"]
    assert seen["beside"]


def test_a_disabled_timeline_does_not_plot_an_empty_picture(tmp_path: Path) -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match=r"this timeline is disabled "
                       r"\(enabled=False, as with Checkpointer\(..., timeline=False\)\)"):
        Timeline(enabled=False).plot(tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


# -- the compact store against a plain reference --------------------------------------------------


def _reference_hidden(events: list[tuple[str, float, float]]) -> float | None:
    """The overlap fraction computed the obvious way: merge, then walk both lists."""

    def union(kinds: tuple[str, ...]) -> list[tuple[float, float]]:
        merged: list[tuple[float, float]] = []
        for lo, hi in sorted((s, e) for k, s, e in events if k in kinds):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged

    transfer, work = union(("write", "read")), union(("compute", "reverse"))
    busy = sum(hi - lo for lo, hi in transfer)
    if busy <= 0.0:
        return None
    shared = sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in transfer for b0, b1 in work)
    return shared / busy


_interval = st.tuples(
    st.sampled_from(EVENT_KINDS),
    st.integers(0, 200),
    st.integers(0, 40),
)


@given(st.lists(_interval, max_size=60))
def test_summaries_match_the_plain_reference(raw: list[tuple[str, int, int]]) -> None:
    events = [(kind, start / 8, (start + length) / 8) for kind, start, length in raw]
    tl = Timeline()
    for kind, start, end in events:
        tl.record(kind, start, end, thread="t")  # type: ignore[arg-type]
    want = _reference_hidden(events)
    got = tl.hidden_fraction()
    if want is None:
        assert got is None
    else:
        assert got == pytest.approx(want, abs=1e-12)
    for kind in EVENT_KINDS:
        assert tl.totals()[kind] == pytest.approx(
            sum(e - s for k, s, e in events if k == kind), abs=1e-9)


def test_events_round_trip_across_blocks() -> None:
    tl = Timeline()
    n = 3 * _BLOCK + 17
    for i in range(n):
        tl.record("write" if i % 3 else "compute", float(i), i + 0.5,
                  step=None if i % 5 == 0 else i, tier="disk" if i % 3 else None,
                  nbytes=i * 1024 ** 2, thread=f"t{i % 4}")
    events = tl.events
    assert len(tl) == len(events) == n
    assert repr(tl) == f"Timeline(events={n})"
    for i, e in enumerate(events):
        assert e == amcheck.Event("write" if i % 3 else "compute", float(i), i + 0.5, f"t{i % 4}",
                                  None if i % 5 == 0 else i, "disk" if i % 3 else None,
                                  i * 1024 ** 2)
    assert tl.to_json()[-1]["start"] == float(n - 1)
    tl.clear()
    assert len(tl) == 0 and tl.events == [] and tl.hidden_fraction() is None


def test_operator_calls_added_in_batches_fill_whole_blocks() -> None:
    """The engine hands over its calls' events a batch at a time; a batch that crosses one or
    more block boundaries leaves every block whole (len() counts on it) and keeps the order."""
    tl = Timeline()
    tl.record("write", 0.0, 1.0, step=0, tier="disk", thread="amcheck-io")
    rows = [("compute" if i % 2 else "reverse", float(i), i + 0.25, i) for i in range(2 * _BLOCK + 5)]
    tl._add_steps(rows[:7])
    tl._add_steps(rows[7:])
    events = tl.events
    assert len(tl) == len(events) == len(rows) + 1
    me = threading.current_thread().name
    assert events[1:] == [amcheck.Event(kind, start, end, me, step)  # type: ignore[arg-type]
                          for kind, start, end, step in rows]
    assert all(len(block) == _BLOCK for block in tl._blocks)
    disabled = Timeline(enabled=False)
    disabled._add_steps(rows)
    assert len(disabled) == 0


def test_an_event_keeps_under_64_bytes() -> None:
    """About two events a step: a long sequence's timeline must stay small (it was ~200 B)."""
    n = 20 * _BLOCK
    tracemalloc.start()
    try:
        tl = Timeline()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            tl.record("reverse", i * 1e-3, i * 1e-3 + 5e-4, step=i, thread="main")
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / n < 64
    assert len(tl) == n


def test_plot_of_a_long_run_merges_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    drawn: list[int] = []
    original = matplotlib.axes.Axes.broken_barh

    def counting(self: Any, xranges: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append(len(xranges))
        return original(self, xranges, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "broken_barh", counting)
    tl = Timeline()
    for i in range(50_000):  # 50 000 reverse steps 10 us apart over 5 s: a pixel is ~4 ms
        tl.record("reverse", i * 1e-4, i * 1e-4 + 9e-5, step=i, thread="main")
        if i % 1000 == 0:  # 50 reads of 50 ms, 100 ms apart: each its own bar
            tl.record("read", i * 1e-4, i * 1e-4 + 5e-2, step=i, tier="disk",
                      thread="amcheck-transfer")
    out = tl.plot(tmp_path / "long.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(drawn) == [1, 50]  # the reverse steps as one bar, the reads as 50


def test_plot_names_a_bad_path_before_drawing(tmp_path: Path) -> None:
    timeline = Timeline()
    with pytest.raises(amcheck.InvalidArgumentError, match=r"the folder .*nodir' does not exist"):
        timeline.plot(tmp_path / "nodir" / "t.png")
    with pytest.raises(amcheck.InvalidArgumentError,
                       match=r"names a format the plot cannot be saved in, 'xyz'; use .*png"):
        timeline.plot(tmp_path / "t.xyz")
    with pytest.raises(amcheck.InvalidArgumentError, match=r"t' has no suffix to name a format"):
        timeline.plot(tmp_path / "t")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(amcheck.InvalidArgumentError,
                       match=r"folder.png' could not be written \(IsADirectoryError: ") as info:
        timeline.plot(tmp_path / "folder.png")
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert timeline.plot(tmp_path / "t.svg").exists()


def test_stats_and_timeline_pickle(tmp_path: Path) -> None:
    """Both travel back from worker processes (a pickled copy, read-only mappings again)."""
    import pickle

    from toy_problem import Adjoint, Forward, initial_state

    from amcheck import Checkpointer

    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), 30, ram="1 MiB", disk=tmp_path,
                      interval=4) as ckp:
        adj.start(ckp.forward())
        ckp.reverse()
        stats, timeline = ckp.stats, ckp.timeline
    stats2, timeline2 = pickle.loads(pickle.dumps((stats, timeline)))
    assert stats2 == stats and stats2.writes["disk"] > 0
    with pytest.raises(TypeError):
        stats2.writes["disk"] = 0  # type: ignore[index]
    assert timeline2.events == timeline.events and timeline2.totals() == timeline.totals()
    timeline2.record("compute", 0.0, 1.0, step=0)  # a lock of its own
    assert len(timeline2.events) == len(timeline.events) + 1
