"""Draw the schedule pictures of docs/concepts.md from real amcheck schedules.

    .venv/bin/python docs/figures.py        # writes docs/img/schedule_*.png

Each picture plots, against the position in the schedule, the step the computation is at:
advances are rising lines, reverse steps are dots on the descending diagonal, RAM checkpoints
are squares and disk checkpoints are triangles. Everything drawn comes from iterating the
schedule's actions; nothing is hand-placed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from amcheck.schedules import (
    Advance,
    AsyncMultistage,
    Prefetch,
    Reverse,
    Revolve,
    Save,
    Schedule,
    simulate,
)

OUT = Path(__file__).resolve().parent / "img"


def draw(schedule: Schedule, title: str, path: Path) -> None:
    """Plot ``schedule`` as step against time (one unit per forward step or reverse step)."""
    stats = simulate(schedule)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    clock = 0.0
    for action in schedule:
        match action:
            case Advance(t0, t1, final):
                ax.plot([clock, clock + (t1 - t0)], [t0, t1], color="#4C72B0", lw=1.4,
                        ls=":" if final else "-")
                clock += t1 - t0
            case Reverse(t):
                ax.plot(clock, t, "o", color="#55A868", ms=3.5)
                clock += 1
            case Save(t, tier):
                marker, colour = ("s", "#DD8452") if tier == "ram" else ("^", "#8172B3")
                ax.plot(clock, t, marker, color=colour, ms=6, mfc="none")
            case Prefetch(t, _):
                ax.plot(clock, t, "v", color="#C44E52", ms=5)
            case _:
                pass
    handles = [
        plt.Line2D([], [], color="#4C72B0", label="advance"),
        plt.Line2D([], [], color="#55A868", marker="o", ls="", label="reverse step"),
        plt.Line2D([], [], color="#DD8452", marker="s", mfc="none", ls="", label="save in RAM"),
    ]
    if stats.writes["disk"]:
        handles += [
            plt.Line2D([], [], color="#8172B3", marker="^", mfc="none", ls="", label="write to disk"),
            plt.Line2D([], [], color="#C44E52", marker="v", ls="", label="prefetch hint"),
        ]
    ax.legend(handles=handles, fontsize="small", loc="upper left", ncols=len(handles))
    ax.set_xlabel("time (forward steps + reverse steps)")
    ax.set_ylabel("step t")
    ax.set_title(f"{title}: recompute factor {stats.recompute_factor:.2f}, "
                 f"peak {stats.peak['ram']} RAM checkpoints")
    ax.set_ylim(-1, schedule.n_steps + 6 if schedule.n_steps else None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    draw(Revolve(30, 4), "Revolve(n=30, slots=4)", OUT / "schedule_revolve.png")
    draw(AsyncMultistage(30, 3, 10), "AsyncMultistage(n=30, slots=3, interval=10)",
         OUT / "schedule_multistage.png")


if __name__ == "__main__":
    main()
