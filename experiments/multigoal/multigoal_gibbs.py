"""MultiGoal: does a trained policy follow the Gibbs policy of its own critic at the origin?

For each run directory (a `wppg train` / `wppg bench run` run on wppg/MultiGoal-v*), at the start
state (0, 0): the Gibbs policy exp(min_j Q_j(0, a) / T) of the run's critic on a 121 x 121 grid of
the action box (T: the run's tau, or SAC's alpha), and 1000 samples of its policy; each split by
the goal direction the action heads for (the goal g maximising <a, g>). Prints both shares, their
total-variation distance (half the sum of the absolute differences: 0 when the policy splits its
actions as its critic's Gibbs policy does, 1 when they share no direction) and the critic's range of
Q over the box.

    python experiments/multigoal/multigoal_gibbs.py RUN_DIR [RUN_DIR ...]

Loads `checkpoints/last.npz` (no code runs from it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import wppg
from wppg.algorithms.base import min_q
from wppg.tasks import MultiGoalEnv

GRID = 121
SAMPLES = 1000


def temperature(run_dir: Path) -> float:
    config = json.loads((run_dir / "config.json").read_text())["algo_config"]
    return float(config["tau"] if "tau" in config else config["alpha"])


def shares(run_dir: Path) -> dict[str, np.ndarray | float]:
    agent = wppg.Agent.load(run_dir, progress=False)
    t = temperature(run_dir)
    g = np.linspace(-1.0, 1.0, GRID)
    actions = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    critic_params = agent.trainer.state.critic_params
    q = np.asarray(min_q(agent.algorithm.critic, critic_params, jnp.zeros((1, 2)), jnp.asarray(actions)[None]))[0]
    w = np.exp((q - q.max()) / t)
    heading = np.argmax(actions @ MultiGoalEnv.goals.T, axis=1)
    gibbs = np.bincount(heading, weights=w / w.sum(), minlength=4)
    params = agent.trainer.state.actor_params
    obs = np.zeros((SAMPLES, 2), np.float32)
    a = np.asarray(agent.algorithm.act(params, jnp.asarray(obs), jax.random.PRNGKey(0), deterministic=False))
    policy = np.bincount(np.argmax(a @ MultiGoalEnv.goals.T, axis=1), minlength=4) / SAMPLES
    return {"temperature": t, "q_range": float(q.max() - q.min()), "gibbs": gibbs, "policy": policy}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args()
    print("| run | T | Q range at the origin | Gibbs share of its critic (+x, -x, +y, -y) | policy share | TV |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        s = shares(run)
        fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
        name = "/".join(run.parts[-2:])
        tv = 0.5 * float(np.abs(s["gibbs"] - s["policy"]).sum())
        cells = [name, f"{s['temperature']:g}", f"{s['q_range']:.2f}", fmt(s["gibbs"]), fmt(s["policy"]), f"{tv:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
