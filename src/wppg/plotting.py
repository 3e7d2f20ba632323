"""Learning curves from run directories: several seeds as a mean with a bootstrap CI band."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from wppg.logger import read_csv


def run_label(run_dir: Path) -> str:
    cfg = json.loads((run_dir / "config.json").read_text())
    return f"{cfg['variant']} on {cfg['env_id']}"


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over axis 0 (seeds), per column."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    means = values[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def expand_runs(run_dirs: Iterable[str | Path]) -> list[Path]:
    """The run directories: each given one, or for a multi-seed folder (`wppg train --seeds`) its
    seed<k>/ runs; `FileNotFoundError` for a folder that is neither."""
    runs = []
    for d in map(Path, run_dirs):
        if (d / "eval.csv").exists():
            runs.append(d)
            continue
        seeds = sorted(p.parent for p in d.glob("seed*/eval.csv"))
        if not seeds:
            raise FileNotFoundError(f"{d} has no eval.csv: is it a wppg run directory?")
        runs.extend(seeds)
    return runs


def plot_runs(run_dirs: list[str | Path], out: str | Path, metric: str = "return_mode") -> Path:
    """Plot eval curves of `metric`, one line per (variant, env), band = 95% bootstrap CI over seeds;
    a multi-seed folder stands for its seeds' runs (`expand_runs`)."""
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for d in expand_runs(run_dirs):
        curve = read_csv(d / "eval.csv")
        groups[run_label(d)].append((np.asarray(curve["step"]), np.asarray(curve[metric])))
    title = "mean over seeds; band: 95% bootstrap CI of the mean"
    return plot_curves(groups, out, title=title, ylabel=f"eval {metric.replace('_', ' ')}")


Curves = dict[str, list[tuple[np.ndarray, np.ndarray]]]
"""Label -> the (steps, values) curve of each of its runs."""


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour per label, from matplotlib's default cycle in sorted order: pass the labels of all
    the figures that are read together, so that a label keeps its colour in panels and figures
    that lack some of the others."""
    cycle = [f"C{i}" for i in range(10)]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(sorted(set(labels)))}


def _draw_curves(ax: object, curves: Curves, colors: dict[str, str]) -> None:
    """On `ax`, one line per label in its colour: the mean over its runs at the steps they all have,
    with a 95% bootstrap CI band when there are several runs."""
    for label, runs in sorted(curves.items()):
        steps = np.asarray(sorted(set.intersection(*(set(s.tolist()) for s, _ in runs))))
        if len(steps) == 0:
            continue
        y = np.asarray([v[np.searchsorted(s, steps)] for s, v in runs])
        color = colors[label]
        ax.plot(steps, y.mean(axis=0), marker="o", markersize=3, color=color, label=f"{label} (n={len(runs)})")
        if len(runs) > 1:
            lo, hi = bootstrap_ci(y)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.grid(alpha=0.3)


def plot_curves(
    curves: Curves, out: str | Path, *, title: str, ylabel: str, colors: dict[str, str] | None = None
) -> Path:
    """One line per label: the mean over its runs' (steps, values) curves at the steps they all
    have, with a 95% bootstrap CI band when there are several runs. `colors`: see `plot_panels`."""
    return plot_panels([(curves, ylabel, False)], out, title=title, colors=colors)


def plot_panels(
    panels: list[tuple[Curves, str, bool]], out: str | Path, *, title: str, colors: dict[str, str] | None = None
) -> Path:
    """`plot_curves` for several quantities side by side: panels of (curves, ylabel, log y-axis).
    A label has one colour in every panel: `colors`, else `label_colors` of all the panels' labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 7.0 if len(panels) == 1 else 5.0 * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.5), squeeze=False)
    if colors is None:
        colors = label_colors(label for curves, _, _ in panels for label in curves)
    for ax, (curves, ylabel, log) in zip(axes[0], panels, strict=True):
        _draw_curves(ax, curves, colors)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
            low, high = ax.get_ylim()
            if high < 10 * low:  # a near-constant curve: show a decade around it, not float noise
                mid = (low * high) ** 0.5
                ax.set_ylim(mid / 10**0.5, mid * 10**0.5)
        ax.legend(fontsize="small" if len(panels) > 1 else None)
    if len(panels) == 1:
        axes[0, 0].set_title(title)
    else:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
