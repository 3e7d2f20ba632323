"""Learning curves, paired by seed: the cheap default's WPPG-I runs against the mujoco-cpu suite's
WPPG-I (preset "cpu") and SAC of the same seeds, one panel per env (evaluation return of the policy's
mode, as the README's table; thin lines: seeds, thick: their mean). Writes
experiments/cheap-default/figures/returns.png.

    python experiments/cheap-default/figure.py [NEW_DIR]
"""

import csv
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NEW = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/cheap-default/runs")
BASE = Path("experiments/mujoco-cpu/runs")
OUT = Path("experiments/cheap-default/figures/returns.png")
ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")
SIDES = (
    (NEW, "wppg-i", "WPPG-I, default", "C0"),
    (BASE, "wppg-i", 'WPPG-I, preset "cpu" (suite)', "C1"),
    (BASE, "sac", "SAC (suite)", "C2"),
)


def curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(run / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    return np.array([int(r["step"]) for r in rows]), np.array([float(r["return_mode"]) for r in rows])


def finished(run: Path) -> bool:
    return (run / "summary.json").exists() and (run / "eval.csv").exists()


envs = [e for e in ENVS if any(finished(p) for p in (NEW / e / "wppg-i").glob("seed*"))]
fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
for ax, env in zip(axes[0], envs):
    seeds = sorted(p.name for p in (NEW / env / "wppg-i").glob("seed*") if finished(p))
    for root, algo, label, color in SIDES:
        curves = [curve(root / env / algo / s) for s in seeds]
        n = min(len(c[0]) for c in curves)
        for steps, ret in curves:
            ax.plot(steps, ret, color=color, lw=0.6, alpha=0.35)
        ax.plot(curves[0][0][:n], np.mean([c[1][:n] for c in curves], axis=0), color=color, lw=2, label=label)
    ax.set_title(f"{env}, seeds {', '.join(s.removeprefix('seed') for s in seeds)}")
    ax.set_xlabel("env steps")
    ax.grid(alpha=0.3)
axes[0][0].set_ylabel("evaluation return (mode, 10 episodes)")
axes[0][0].legend(loc="upper left", fontsize=8)
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT, dpi=110)
print(f"wrote {OUT}")
