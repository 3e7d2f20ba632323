"""Multimodal tasks with the cheap default against the earlier 'cpu' preset (the paper's cost at K = 8):
the bandits' W2 to the Gibbs policy and spread (tests/test_bandits.py's settings) and MultiGoal's goals
from the origin (tests/test_tasks.py's settings, the default 'energy' projection). One seed each.

    python experiments/cheap-default/multimodal_check.py [bandits] [multigoal]
"""

import json
import sys
import time

import jax

import wppg
from wppg.tasks import policy_metrics

SMALL = {"hidden": (32, 32), "K": 8, "entropy_M": 8, "entropy_L": 8, "learning_starts": 150, "batch_size": 64}
TASKS = {
    "bandits": [
        ("wppg/BanditQuadratic-v0", 900, {**SMALL, "tau": 0.1}),
        ("wppg/BanditDoubleWell-v0", 2000, {"learning_starts": 500, "tau": 0.1}),
    ],
    "multigoal": [("wppg/MultiGoal-v1", 20_000, {"hidden": (64, 64), "learning_starts": 1000, "tau": 1.0})],
}


def measure(task: str, steps: int, budget: dict, preset: str) -> dict:
    t = time.time()
    agent = wppg.WPPG(task, policy="implicit", preset=preset, seed=0, progress=False, eval_every=10**9,
                      eval_episodes=1, **budget).learn(steps)  # fmt: skip
    params = agent.trainer.state.actor_params
    act = lambda obs, k: agent.algorithm.act(params, obs, k, deterministic=False)  # noqa: E731
    m = policy_metrics(agent.env_info.make(), act, jax.random.PRNGKey(0), n=1000)
    return {"task": task, "preset": preset, "steps": steps, "wall_s": time.time() - t, **m}


if __name__ == "__main__":
    for group in sys.argv[1:] or list(TASKS):
        for task, steps, budget in TASKS[group]:
            for preset in ("default", "cpu"):
                print(json.dumps(measure(task, steps, budget, preset)), flush=True)
