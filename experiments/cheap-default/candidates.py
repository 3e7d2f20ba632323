"""The candidate configurations of notes.md's first table: ms per gradient step against SAC, Hopper-v5 shapes."""

import sys

sys.path.insert(0, "experiments/cheap-default")
from step_cost import run  # noqa: E402

# The paper's per-step cost at K = 8 (the cpu preset); each row changes some of it.
base = {"K": 8, "entropy_M": 8, "entropy_L": 8, "target_samples": None, "policy_delay": 1, "latent_input": "first"}
C = {
    "sac": ("sac", {}),
    "wppg-i cpu": ("wppg-i", {**base}),
    "wppg-i cpu last": ("wppg-i", {**base, "latent_input": "last"}),
    "wppg-i last T1": ("wppg-i", {**base, "latent_input": "last", "target_samples": 1}),
    "wppg-i last T1 d2": ("wppg-i", {**base, "latent_input": "last", "target_samples": 1, "policy_delay": 2}),
    "wppg-i last T1 d2 K4": (
        "wppg-i",
        {**base, "K": 4, "latent_input": "last", "target_samples": 1, "policy_delay": 2},
    ),
    "wppg-i last T1 d3": ("wppg-i", {**base, "latent_input": "last", "target_samples": 1, "policy_delay": 3}),
    "wppg T1": ("wppg", {**base, "target_samples": 1}),
    "wppg T1 d2": ("wppg", {**base, "target_samples": 1, "policy_delay": 2}),
    "wppg T1 d2 K4": ("wppg", {**base, "K": 4, "target_samples": 1, "policy_delay": 2}),
}
run(C)
