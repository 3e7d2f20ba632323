"""Hopper-v5 learning curves, paired by seed: the cheap default's WPPG-I runs against the mujoco-cpu
suite's WPPG-I (preset "cpu") and SAC of the same seeds (evaluation return of the stochastic policy,
as compare.py). Writes experiments/cheap-default/figures/Hopper-v5.png.

    python experiments/cheap-default/figure.py [NEW_DIR]
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NEW = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/cheap-default/runs") / "Hopper-v5" / "wppg-i"
BASE = Path("experiments/mujoco-cpu/runs/Hopper-v5")
OUT = Path("experiments/cheap-default/figures/Hopper-v5.png")


def curve(run: Path) -> tuple[list[int], list[float]]:
    with open(run / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["return_stochastic"]) for r in rows]


seeds = sorted(p.name for p in NEW.glob("seed*") if (p / "eval.csv").exists())
fig, axes = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 3.6), squeeze=False, sharey=True)
for ax, seed in zip(axes[0], seeds):
    for run, label, style in (
        (NEW / seed, "WPPG-I, default", dict(color="C0", lw=2)),
        (BASE / "wppg-i" / seed, 'WPPG-I, preset "cpu" (suite)', dict(color="C1", ls="--")),
        (BASE / "sac" / seed, "SAC (suite)", dict(color="C2", ls=":")),
    ):
        ax.plot(*curve(run), label=label, **style)
    ax.set_title(f"Hopper-v5, {seed}")
    ax.set_xlabel("env steps")
    ax.grid(alpha=0.3)
axes[0][0].set_ylabel("evaluation return (stochastic, 10 episodes)")
axes[0][0].legend(loc="upper left", fontsize=8)
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT, dpi=110)
print(f"wrote {OUT}")
