"""The pictures of ``amcheck demo``: models, gradient and misfit (matplotlib, Agg backend).

The timeline picture is :meth:`amcheck.Timeline.plot`. Axes are in km: depth down, distance
across; sources are stars, receivers a line of dots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_gradient", "plot_misfit", "plot_models"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency of the demo
        raise ImportError("amcheck demo needs matplotlib: pip install 'amcheck[plot]'") from exc
    return plt


def _extent(survey: Any) -> tuple[float, float, float, float]:
    nz, nx = survey.size.shape
    h = survey.size.spacing / 1000.0
    return (-0.5 * h, (nx - 0.5) * h, (nz - 0.5) * h, -0.5 * h)


def _survey_marks(ax: Any, survey: Any) -> None:
    rec = survey.geometries[0].rec_positions / 1000.0
    ax.plot(rec[::4, 1], rec[::4, 0], ".", color="white", markersize=2, label="receivers")
    for i, g in enumerate(survey.geometries):
        src = g.src_positions[0] / 1000.0
        ax.plot(src[1], src[0], "*", color="red", markersize=9,
                markeredgecolor="black", label="shots" if i == 0 else None)


def plot_models(path: Path, survey: Any, vp_final: np.ndarray) -> Path:
    """True, starting and inverted velocity, one panel each, on one colour scale."""
    plt = _pyplot()
    panels = [("true model", survey.vp_true), ("starting model (smoothed)", survey.vp_start),
              ("after FWI", vp_final)]
    nz, nx = survey.size.shape
    height = 1.2 + 3 * 3.2 * nz / nx * 10 / 8.5
    fig, axes = plt.subplots(3, 1, figsize=(10, max(height, 5.0)), sharex=True,
                             layout="constrained")
    vmin, vmax = 1.5, float(survey.vp_true.max())
    image = None
    for ax, (title, vp) in zip(axes, panels):
        image = ax.imshow(vp, extent=_extent(survey), vmin=vmin, vmax=vmax, cmap="viridis",
                          aspect="auto", interpolation="nearest")
        ax.set_title(title)
        ax.set_ylabel("depth (km)")
    _survey_marks(axes[0], survey)
    axes[0].legend(loc="lower left", fontsize="small", framealpha=0.6)
    axes[-1].set_xlabel("distance (km)")
    fig.colorbar(image, ax=list(axes), label="velocity (km/s)", shrink=0.9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gradient(path: Path, survey: Any, gradient: np.ndarray,
                  store_all: np.ndarray | None) -> Path:
    """The first FWI gradient (checkpointed) and its difference from store-all."""
    plt = _pyplot()
    shown = gradient.copy()
    shown[: survey.water] = 0.0  # the water layer is not inverted; sources sit there
    clip = float(np.percentile(np.abs(shown), 99.0)) or 1.0
    two = store_all is not None
    fig, axes = plt.subplots(2 if two else 1, 1, figsize=(10, 6.5 if two else 3.6),
                             sharex=True, squeeze=False, layout="constrained")
    ax = axes[0, 0]
    image = ax.imshow(shown, extent=_extent(survey), vmin=-clip, vmax=clip, cmap="seismic",
                      aspect="auto", interpolation="nearest")
    ax.set_title("FWI gradient dJ/dm of the starting model, all shots (checkpointed)")
    ax.set_ylabel("depth (km)")
    fig.colorbar(image, ax=ax, label="dJ/dm (clipped at the 99th percentile)")
    if store_all is not None:
        diff = gradient - store_all
        ax2 = axes[1, 0]
        peak = float(np.max(np.abs(diff)))
        image2 = ax2.imshow(diff, extent=_extent(survey), vmin=-clip, vmax=clip, cmap="seismic",
                            aspect="auto", interpolation="nearest")
        what = "exactly zero everywhere" if peak == 0.0 else f"max |difference| {peak:.3g}"
        ax2.set_title(f"checkpointed minus store-all: {what}")
        ax2.set_ylabel("depth (km)")
        fig.colorbar(image2, ax=ax2, label="same scale")
    axes[-1, 0].set_xlabel("distance (km)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_misfit(path: Path, misfit: list[float]) -> Path:
    """Misfit per L-BFGS-B iteration, relative to the start."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    rel = np.asarray(misfit) / misfit[0]
    ax.plot(np.arange(len(rel)), rel, "o-", color="#4C72B0")
    for k, value in enumerate(rel):
        ax.annotate(f"{100 * value:.0f}%", (k, value), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize="small")
    ax.set_xlabel("L-BFGS-B iteration")
    ax.set_ylabel("misfit / starting misfit")
    ax.set_xticks(np.arange(len(rel)))
    ax.set_ylim(0.0, 1.1)
    ax.set_title(f"FWI misfit: {misfit[0]:.3e} -> {misfit[-1]:.3e}")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
