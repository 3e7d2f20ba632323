"""ms per gradient step of candidate WPPG / WPPG-I configurations against SAC, Hopper-v5 shapes,
timed in alternation (median over rounds)."""

import time

import jax
import numpy as np

from wppg import registry
from wppg.bench.speed import random_batches
from wppg.envs import ActionBounds
from wppg.trainer import TrainConfig

D, d, B = 11, 3, 256
CASES = {
    "sac": ("sac", {}),
    "wppg cpu": ("wppg", {"preset": "cpu"}),
    "wppg-i cpu": ("wppg-i", {"preset": "cpu"}),
}


def build(name, kw):
    entry = registry.get(name)
    kw = dict(kw)
    preset = kw.pop("preset", "default")
    cfg = entry.make_config(preset, **kw) if entry.presets else entry.make_config(**kw)
    bounds = ActionBounds(np.ones(d, np.float32), np.zeros(d, np.float32))
    return entry.algorithm_cls.build(cfg, D, bounds, TrainConfig()), cfg


def run(cases, rounds=5, n=8):
    algos = {k: build(*v) for k, v in cases.items()}
    batches = random_batches(n, B, D, d)
    states = {k: a.init(jax.random.PRNGKey(0)) for k, (a, _) in algos.items()}
    key = jax.random.PRNGKey(1)
    for k, (a, _) in algos.items():
        jax.block_until_ready(a.update(states[k], batches, key))
    times = {k: [] for k in algos}
    for _ in range(rounds):
        for k, (a, _) in algos.items():
            t = time.perf_counter()
            jax.block_until_ready(a.update(states[k], batches, key))
            times[k].append((time.perf_counter() - t) / n * 1e3)
    sac = np.median(times["sac"])
    for k in algos:
        ms = np.median(times[k])
        print(f"{k:45s} {ms:7.2f} ms/step  {ms / sac:5.2f}x sac", flush=True)


if __name__ == "__main__":
    run(CASES)
