"""The quadratic bandit with the cheap default and one lever set back to the paper's value at a time."""

import json
import sys

sys.path.insert(0, "experiments/cheap-default")
from multimodal_check import SMALL, measure  # noqa: E402

T = "wppg/BanditQuadratic-v0"
LEVERS = [(1800, {}), (900, {"policy_delay": 1}), (900, {"latent_input": "first"}), (900, {"target_samples": None})]
for steps, kw in LEVERS:
    r = measure(T, steps, {**SMALL, "tau": 0.1, **kw}, "default")
    r["changed"] = kw
    print(json.dumps(r), flush=True)
