"""Milliseconds per gradient step of each algorithm (4 steps scanned per call, median of N calls),
Hopper-v5 shapes (obs 11, act 3), batch 256, (256, 256) MLPs, entropy M = L = 16.

    python experiments/performance/step_time.py [REPS] [OUT.json] [CASE ...]      # CASE: e.g. "sac" "wppg K=1"

It uses only the API every version of the package has (the algorithm classes and `update`), so
two versions can be timed in one run: put an older checkout's `src` first on PYTHONPATH for one
of the two invocations (experiments/performance/notes.md, "Cutting the work, not the math").
"""

import json
import sys
import time

import jax
import numpy as np

import wppg
from wppg.algorithms import SACAlgorithm, SACConfig, WPPGAlgorithm, WPPGConfig
from wppg.bench.speed import random_batches
from wppg.envs import ActionBounds

D, d, B, N = 11, 3, 256, 4
CASES = [
    ("sac", lambda b: SACAlgorithm(SACConfig(), D, b)),
    ("wppg K=1", lambda b: WPPGAlgorithm(WPPGConfig(K=1), D, b)),
    ("wppg K=8", lambda b: WPPGAlgorithm(WPPGConfig(K=8), D, b)),
    ("wppg K=32", lambda b: WPPGAlgorithm(WPPGConfig(K=32), D, b)),
    ("wppg-i K=8", lambda b: WPPGAlgorithm(WPPGConfig(K=8, policy="implicit"), D, b)),
    ("wppg-i K=32", lambda b: WPPGAlgorithm(WPPGConfig(K=32, policy="implicit"), D, b)),
]


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bounds = ActionBounds(np.ones(d, np.float32), np.zeros(d, np.float32))
    batches = random_batches(N, B, D, d)
    out = {}
    only = set(sys.argv[3:])
    for name, make in CASES:
        if only and name not in only:
            continue
        algo = make(bounds)
        state, key = algo.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
        jax.block_until_ready(algo.update(state, batches, key))
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            jax.block_until_ready(algo.update(state, batches, key))
            times.append(time.perf_counter() - t)
        out[name] = 1e3 * float(np.median(times)) / N
        print(f"{wppg.__file__}: {name} {out[name]:.2f} ms/step", flush=True)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
