"""Paired by seed: the cheap default's WPPG-I runs (experiments/cheap-default/runs, or their export)
against the mujoco-cpu suite's WPPG-I and SAC (experiments/mujoco-cpu/runs), Hopper-v5: evaluation
returns (stochastic policy, as the suite's report) at each step both have, the final return and the
mean of the last 5 evaluations of finished runs, and the wall time per env step.

    python experiments/cheap-default/compare.py [NEW_DIR]
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

NEW = Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/cheap-default/runs") / "Hopper-v5" / "wppg-i"
BASE = Path("experiments/mujoco-cpu/runs/Hopper-v5")


def returns(run: Path) -> dict[int, float]:
    with open(run / "eval.csv") as f:
        return {int(r["step"]): float(r["return_stochastic"]) for r in csv.DictReader(f)}


def cost(run: Path) -> str:
    p = run / "summary.json"
    if not p.exists():
        return "running"
    s = json.loads(p.read_text())
    return f"{1e3 * s['wall_time_s'] / s['env_steps']:.1f} ms/env step, {s['ms_per_gradient_step']:.1f} ms/grad step"


for seed_dir in sorted(NEW.glob("seed*")):
    if not (seed_dir / "eval.csv").exists():
        continue
    new, old, sac = returns(seed_dir), returns(BASE / "wppg-i" / seed_dir.name), returns(BASE / "sac" / seed_dir.name)
    print(
        f"\n{seed_dir.name}: cheap {cost(seed_dir)}; suite wppg-i {cost(BASE / 'wppg-i' / seed_dir.name)}; "
        f"sac {cost(BASE / 'sac' / seed_dir.name)}"
    )
    print("| step | cheap WPPG-I | suite WPPG-I (cpu preset) | SAC |\n|---:|---:|---:|---:|")
    for step in sorted(new):
        print(f"| {step} | {new[step]:.0f} | {old.get(step, float('nan')):.0f} | {sac.get(step, float('nan')):.0f} |")
    steps = sorted(new)
    if steps and steps[-1] == max(old):
        last5 = steps[-5:]
        m5 = {k: np.mean([r[s] for s in last5]) for k, r in (("cheap", new), ("suite", old), ("sac", sac))}
        print(
            f"final: cheap {new[steps[-1]]:.0f}, suite {old[steps[-1]]:.0f}, sac {sac[steps[-1]]:.0f}; last-5 mean: "
            + ", ".join(f"{k} {v:.0f}" for k, v in m5.items())
        )
    common = [s for s in steps if s in old]
    print(
        f"mean over the {len(common)} common evaluations: cheap {np.mean([new[s] for s in common]):.0f}, "
        f"suite {np.mean([old[s] for s in common]):.0f}, sac {np.mean([sac[s] for s in common]):.0f}"
    )
