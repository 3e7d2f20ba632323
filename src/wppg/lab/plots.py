"""Small matplotlib helpers for the lab's figures (Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Curve = tuple[np.ndarray, np.ndarray]


def plot_curves(
    path: Path,
    *panels: Mapping[str, Curve],
    xlabel: str,
    titles: Sequence[str],
    shared_legend: bool = False,
) -> None:
    """One semilog-y panel per mapping label -> (x, y)."""
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, panel, title in zip(axes.flat, panels, titles):
        for label, (x, y) in panel.items():
            y = np.asarray(y, dtype=float)
            ax.semilogy(x, np.where(y > 0, y, np.nan), label=label, lw=1.3)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if not shared_legend:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if shared_legend:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_loglog(
    path: Path,
    rows: Sequence[Mapping[str, object]],
    x: str,
    ys: Sequence[str],
    fits: Sequence[Mapping[str, object]] | None,
    *,
    reference_slope: float | None = None,
    title: str = "",
    hlines: Mapping[str, float] | None = None,
    group: str = "n_grid",
) -> None:
    """Log-log plot of rows[y] against rows[x], one line per (rows[group], y); the fitted slope
    (from `fits`, keyed by group and quantity) goes into the legend."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    slopes = {(f[group], f["quantity"]): f["slope"] for f in fits or []}
    markers = "os^vDx"
    for gi, key in enumerate(dict.fromkeys(r[group] for r in rows)):
        sub = [r for r in rows if r[group] == key]
        xs = np.array([r[x] for r in sub], dtype=float)
        for y in ys:
            vals = np.array([r[y] for r in sub], dtype=float)
            slope = slopes.get((key, y))
            label = f"{y} [{key}]" + (f" slope {slope:.2f}" if slope is not None else "")
            ax.loglog(xs, np.where(vals > 0, vals, np.nan), marker=markers[gi % len(markers)], label=label)
    if reference_slope is not None:
        xs = np.array(sorted({float(r[x]) for r in rows}))
        y0 = float(np.nanmax([float(r[ys[0]]) for r in rows]))
        ax.loglog(
            xs, y0 * (xs / xs[-1]) ** reference_slope, "k--", lw=0.8, label=f"slope {reference_slope:g} (theory bound)"
        )
    for label, value in (hlines or {}).items():
        ax.axhline(value, color="gray", ls=":", label=label)
    ax.set_xlabel(x)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
