"""The FLOP model counts exactly the matrix products the compiled update contains."""

import jax
import numpy as np
import pytest

from wppg.algorithms import SACAlgorithm, SACConfig, WPPGAlgorithm, WPPGConfig
from wppg.envs import ActionBounds
from wppg.flops import gradient_step_flops, matmul_flops, matmuls_of, mean_step_flops

D, d, B = 11, 3, 16


def batches(n: int) -> dict:
    r = np.random.default_rng(0)
    return {
        "obs": r.normal(size=(n, B, D)).astype(np.float32),
        "action": r.uniform(-1, 1, (n, B, d)).astype(np.float32),
        "reward": r.normal(size=(n, B)).astype(np.float32),
        "next_obs": r.normal(size=(n, B, D)).astype(np.float32),
        "terminated": np.zeros((n, B), np.float32),
    }


CASES = [
    ("sac", {}),
    ("wppg", {"K": 8, "entropy_M": 4, "entropy_L": 6}),
    pytest.param("wppg", {"K": 1, "entropy_M": 3, "entropy_L": 2}, marks=pytest.mark.full),
    ("wppg-i", {"K": 8, "entropy_M": 4, "entropy_L": 12, "latent_dim": 4}),
    pytest.param("wppg-i", {"K": 5, "entropy_M": 2, "entropy_L": 3, "latent_dim": 2}, marks=pytest.mark.full),
    pytest.param("wppg", {"K": 8, "entropy_M": 4, "entropy_L": 6, "target_samples": 1}, marks=pytest.mark.full),
    ("wppg-i", {"K": 8, "entropy_M": 4, "entropy_L": 12, "latent_dim": 4, "target_samples": 3, "latent_input": "last"}),
    ("wppg-i", {"K": 5, "entropy_M": 2, "entropy_L": 3, "latent_dim": 2, "latent_input": "first"}),
]
PAPER_COST = {"target_samples": None, "latent_input": "first"}  # what the FLOP model's defaults mean


@pytest.mark.parametrize("name, kw", CASES)
def test_model_equals_the_products_in_the_lowered_update(name, kw):
    hidden = (64, 32)
    bounds = ActionBounds(np.ones(d, np.float32), np.zeros(d, np.float32))
    if name == "sac":
        algo = SACAlgorithm(SACConfig(hidden=hidden), D, bounds)
    else:
        policy = "implicit" if name == "wppg-i" else "gaussian"
        cfg = WPPGConfig(policy=policy, hidden=hidden, **{**PAPER_COST, "policy_delay": 1, **kw})
        algo = WPPGAlgorithm(cfg, D, bounds)
    state = algo.init(jax.random.PRNGKey(0))
    found = matmul_flops(matmuls_of(algo._update, state, batches(1), jax.random.PRNGKey(0)))
    assert found == gradient_step_flops(name, D, d, hidden, B, **kw)["total"]


def test_k_samples_scale_the_sample_parts_only():
    one = gradient_step_flops("wppg", D, d, (256, 256), 256, K=1, entropy_M=1, entropy_L=1)
    many = gradient_step_flops("wppg", D, d, (256, 256), 256, K=32, entropy_M=1, entropy_L=1)
    assert many["critic_regression"] == one["critic_regression"]
    assert 15 < many["actor"] / one["actor"] < 32  # the Gaussian policy network runs per state


def test_late_latent_and_one_target_sample_cut_the_sample_parts():
    """With z entering the last hidden layer, the implicit policy's per-sample products shrink to
    the sample block and the output layer; one bootstrap action cuts the soft target's critic passes."""
    kw = {"K": 8, "entropy_M": 8, "entropy_L": 8, "latent_dim": 4}
    paper = gradient_step_flops("wppg-i", D, d, (256, 256), 256, **kw)
    late = gradient_step_flops("wppg-i", D, d, (256, 256), 256, latent_input="last", target_samples=1, **kw)
    assert late["critic_regression"] == paper["critic_regression"]
    assert late["soft_target"] < paper["soft_target"] / 5
    assert late["actor"] < 0.7 * paper["actor"]  # the K critic passes remain


def test_policy_delay_divides_the_actor_part():
    kw = {"K": 8, "entropy_M": 8, "entropy_L": 8}
    one = mean_step_flops("wppg", D, d, (256, 256), 256, **kw)
    three = mean_step_flops("wppg", D, d, (256, 256), 256, policy_delay=3, **kw)
    assert three["actor"] == one["actor"] / 3 and three["soft_target"] == one["soft_target"]
    assert three["total"] == three["soft_target"] + three["critic_regression"] + three["actor"]
