"""Time per update call (one gradient step, batch 256, (256, 256) MLPs) at K = 1, 8, 32.

    python benchmarks/update_time.py [--reps 20] [--out docs/results/update_time.md]

Also times 8 gradient steps scanned in one call (per step). Synthetic Pendulum-shaped data
(obs_dim 3, act_dim 1); the numbers depend on the machine and its load: the header says which.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from wppg.algorithms import SACAlgorithm, SACConfig, WPPGAlgorithm, WPPGConfig
from wppg.envs import ActionBounds


def time_update(algo, n_steps: int, reps: int, obs_dim: int = 3, act_dim: int = 1, batch: int = 256) -> float:
    """Median milliseconds per gradient step over `reps` calls of `n_steps` scanned steps."""
    rng = np.random.default_rng(0)
    batches = {
        "obs": rng.normal(size=(n_steps, batch, obs_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n_steps, batch, act_dim)).astype(np.float32),
        "reward": rng.normal(size=(n_steps, batch)).astype(np.float32),
        "next_obs": rng.normal(size=(n_steps, batch, obs_dim)).astype(np.float32),
        "terminated": np.zeros((n_steps, batch), np.float32),
    }
    state = algo.init(jax.random.PRNGKey(0))
    state, _ = algo.update(state, batches, jax.random.PRNGKey(1))
    jax.block_until_ready(state)
    times = []
    for i in range(reps):
        t = time.perf_counter()
        state, m = algo.update(state, batches, jax.random.PRNGKey(i))
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) / n_steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("docs/results/update_time.md"))
    args = p.parse_args()
    bounds = ActionBounds(np.array([2.0], np.float32), np.array([0.0], np.float32))
    rows = []
    cases = [("sac", 1, lambda: SACAlgorithm(SACConfig(), 3, bounds))]
    for k in (1, 8, 32):
        cases.append(("wppg (M=L=16)", k, lambda k=k: WPPGAlgorithm(WPPGConfig(K=k), 3, bounds)))
        cases.append(("wppg-i (M=L=16)", k, lambda k=k: WPPGAlgorithm(WPPGConfig(K=k, policy="implicit"), 3, bounds)))
    cases.append(("wppg, cpu preset (M=L=8)", 8, lambda: WPPGAlgorithm(WPPGConfig(K=8, entropy_M=8, entropy_L=8), 3, bounds)))
    cases.append(("wppg-i, cpu preset (M=L=8)", 8, lambda: WPPGAlgorithm(WPPGConfig(K=8, entropy_M=8, entropy_L=8, policy="implicit"), 3, bounds)))
    for name, k, make in cases:
        algo = make()
        one, scanned = time_update(algo, 1, args.reps), time_update(algo, 8, max(3, args.reps // 4))
        rows.append(f"| {name} | {k} | {one:.1f} | {scanned:.1f} |")
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    header = [
        "# Time per update (batch 256, (256, 256) MLPs, obs_dim 3, act_dim 1)",
        "",
        "Command: `python benchmarks/update_time.py`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
        f"{jax.devices()[0].platform}; 1-minute load average {load:.1f} when the table was written "
        "(other processes were running: read ratios within this table, not absolute times).",
        "",
        "| algorithm | K | ms per call (1 step) | ms per step (8 steps in one scan) |",
        "|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")


if __name__ == "__main__":
    main()
