"""Do the new fields at the paper's values reproduce the previous code's update bit for bit?

Run once with the previous code (PYTHONPATH=<old>/src ... save) and once with this branch (... check):
the same 3 gradient steps of wppg and wppg-i from the same seeds and batches, at the previous 'cpu'
preset and the previous defaults (K = 32), compared array by array."""

import sys

import jax
import numpy as np

from wppg import registry
from wppg.bench.speed import random_batches
from wppg.envs import ActionBounds
from wppg.trainer import TrainConfig

CASES = {  # name -> (variant, preset in this branch, preset in the previous code)
    "wppg cpu": ("wppg", "cpu", "cpu"),
    "wppg-i cpu": ("wppg-i", "cpu", "cpu"),
    "wppg paper-K": ("wppg", "gpu", "default"),
    "wppg-i paper-K": ("wppg-i", "gpu", "default"),
    "wppg-i paper": ("wppg-i", "paper", "paper"),
}


def run(new: bool) -> dict:
    out = {}
    bounds = ActionBounds(np.ones(3, np.float32), np.zeros(3, np.float32))
    batches = random_batches(3, 64, 11, 3)
    for name, (variant, p_new, p_old) in CASES.items():
        entry = registry.get(variant)
        cfg = entry.make_config(p_new if new else p_old, hidden=(64, 64), tau="auto")
        algo = entry.algorithm_cls.build(cfg, 11, bounds, TrainConfig())
        state, metrics = algo.update(algo.init(jax.random.PRNGKey(0)), batches, jax.random.PRNGKey(1))
        leaves = jax.tree.leaves((state.actor_params, state.critic_params, state.target_critic_params))
        out[name] = [np.asarray(x) for x in leaves] + [np.asarray(metrics[k]) for k in sorted(metrics)]
    return out


if __name__ == "__main__":
    path = "/tmp/bitwise_old.npz"
    if sys.argv[1] == "save":
        res = run(new=False)
        np.savez(path, **{f"{k}|{i}": v for k, arrs in res.items() for i, v in enumerate(arrs)})
    else:
        old = np.load(path)
        res = run(new=True)
        for k, arrs in res.items():
            same = all(np.array_equal(old[f"{k}|{i}"], v) for i, v in enumerate(arrs))
            n = sum(1 for key in old.files if key.startswith(k + "|"))
            print(f"{k:16s} {'bit-for-bit equal' if same and n == len(arrs) else 'DIFFERENT'} ({len(arrs)} arrays)")
