"""Learning curves from run directories: several seeds as a mean with a bootstrap CI band."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from wppg.logger import read_csv


def run_label(run_dir: Path) -> str:
    cfg = json.loads((run_dir / "config.json").read_text())
    return f"{cfg['variant']} on {cfg['env_id']}"


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over axis 0 (seeds), per column."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    means = values[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def plot_runs(run_dirs: list[str | Path], out: str | Path, metric: str = "return_mode") -> Path:
    """Plot eval curves of `metric`, one line per (variant, env), band = 95% bootstrap CI over seeds."""
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for d in map(Path, run_dirs):
        if not (d / "eval.csv").exists():
            raise FileNotFoundError(f"{d} has no eval.csv: is it a wppg run directory?")
        curve = read_csv(d / "eval.csv")
        groups[run_label(d)].append((np.asarray(curve["step"]), np.asarray(curve[metric])))
    title = "mean over seeds; band: 95% bootstrap CI of the mean"
    return plot_curves(groups, out, title=title, ylabel=f"eval {metric.replace('_', ' ')}")


def plot_curves(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], out: str | Path, *, title: str, ylabel: str) -> Path:
    """One line per label: the mean over its runs' (steps, values) curves at the steps they all
    have, with a 95% bootstrap CI band when there are several runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, runs in sorted(curves.items()):
        steps = np.asarray(sorted(set.intersection(*(set(s.tolist()) for s, _ in runs))))
        if len(steps) == 0:
            continue
        y = np.asarray([v[np.searchsorted(s, steps)] for s, v in runs])
        (line,) = ax.plot(steps, y.mean(axis=0), marker="o", markersize=3, label=f"{label} (n={len(runs)})")
        if len(runs) > 1:
            lo, hi = bootstrap_ci(y)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
