"""The cost levers of WPPG / WPPG-I (`target_samples`, `policy_delay`, `latent_input`) and the presets:
at the paper's values they give the paper's update; otherwise they do what their docstrings say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wppg.algorithms import WPPGAlgorithm, WPPGConfig
from wppg.algorithms.base import min_q
from wppg.algorithms.wppg import PAPER_COST, PRESETS, backend_preset
from wppg.bench.speed import random_batches
from wppg.config import ConfigError
from wppg.envs import ActionBounds
from wppg.networks import LateSampleMLP, StateSampleMLP
from wppg.policies import make_policy, sample_latents

BOUNDS = ActionBounds(np.array([2.0, 1.0], np.float32), np.array([0.0, 0.5], np.float32))
SMALL = {"hidden": (16, 16), "K": 4, "entropy_M": 3, "entropy_L": 5}


def make(**kw):
    algo = WPPGAlgorithm(WPPGConfig(**{**SMALL, **kw}), 3, BOUNDS)
    return algo, algo.init(jax.random.PRNGKey(0))


def update(algo, state, n=1, seed=1):
    return algo.update(state, random_batches(n, 8, 3, 2, seed=seed), jax.random.PRNGKey(seed))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("policy", [pytest.param("gaussian", marks=pytest.mark.full), "implicit"])
def test_target_samples_k_is_the_paper_target(policy):
    """target_samples = K and None (the paper's: the K actions of the actor step) give the same update."""
    a, s = make(policy=policy, target_samples=None, policy_delay=1)
    b, _ = make(policy=policy, target_samples=4, policy_delay=1)
    assert_same(update(a, s), update(b, s))


def test_soft_target_averages_target_samples_actions():
    """With tau = 0 the soft target is the mean of min Q over the first T bootstrap actions drawn."""
    algo, state = make(policy="implicit", target_samples=2, tau=0.0)
    obs = jax.random.normal(jax.random.PRNGKey(3), (6, 3))
    key = jax.random.PRNGKey(4)
    v, _ = algo.soft_value(state, obs, key)
    k_actions, _ = jax.random.split(key)
    n = 2 + 3 + (5 - 2)  # T + M + the L baselines not reused from the T bootstrap actions
    eps = sample_latents(algo.policy, k_actions, 6, n)
    actions = algo.sample_actions(state.actor_params, obs, eps)
    expected = jnp.mean(min_q(algo.critic, state.target_critic_params, obs, actions[:, :2]), axis=-1)
    np.testing.assert_allclose(v, expected, rtol=1e-6)


@pytest.mark.parametrize("auto", [pytest.param(False, marks=pytest.mark.full), True])
def test_policy_delay_skips_the_actor_step_and_nothing_else(auto):
    """d = 2: the first gradient step is the d = 1 step bit for bit; the second moves the critics as d = 1
    does and leaves the policy, reporting the first step's actor metrics."""
    tau = "auto" if auto else 1e-4
    one, s1 = make(policy_delay=1, tau=tau)
    two, s2 = make(policy_delay=2, tau=tau)
    b = random_batches(2, 8, 3, 2)
    key = jax.random.PRNGKey(1)
    first = {k: v[:1] for k, v in b.items()}
    st1, m1 = one.update(s1, first, key)
    st2, m2 = two.update(s2, first, key)
    assert_same((st1.actor_params, st1.critic_params), (st2.actor_params, st2.critic_params))
    second = {k: v[1:] for k, v in b.items()}
    key2 = jax.random.PRNGKey(2)
    st1b, _ = one.update(st1, second, key2)
    st2b, m2b = two.update(st2, second, key2)
    assert_same(st1b.critic_params, st2b.critic_params)
    assert_same(st2b.actor_params, st2.actor_params)  # no actor step
    assert float(m2b["actor_loss"]) == float(m1["actor_loss"])
    st2c, _ = two.update(st2b, second, key2)  # the third step has one again
    assert not np.array_equal(leaves(st2c.actor_params)[0], leaves(st2b.actor_params)[0])
    assert int(st2c.step) == 3


def test_late_sample_mlp_shapes_and_one_state_pass():
    """[B, Dy] -> [B, out], [B, K, Dy] -> [B, K, out], each sample as if alone; one hidden layer is
    the `StateSampleMLP` with the same parameters."""
    s = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    y = jax.random.normal(jax.random.PRNGKey(1), (5, 7, 2))
    net = LateSampleMLP((16, 8), 3)
    params = net.init(jax.random.PRNGKey(2), s, y)
    out = net.apply(params, s, y)
    assert out.shape == (5, 7, 3) and net.apply(params, s, y[:, 0]).shape == (5, 3)
    np.testing.assert_allclose(net.apply(params, s, y[:, 3]), out[:, 3], rtol=1e-6)
    assert set(params["params"]) == {"Dense_0", "state_in", "sample_in", "Dense_1"}
    assert params["params"]["sample_in"]["kernel"].shape == (2, 8)  # z enters the last hidden layer
    one = LateSampleMLP((16,), 3)
    p1 = one.init(jax.random.PRNGKey(2), s, y)
    np.testing.assert_allclose(one.apply(p1, s, y), StateSampleMLP((16,), 3).apply(p1, s, y), rtol=1e-6)


@pytest.mark.parametrize("latent_input, net", [("first", "StateSampleMLP_0"), ("last", "LateSampleMLP_0")])
def test_implicit_policy_latent_input(latent_input, net):
    """'first' is the paper's network of [s, z] (its parameters as before); 'last' the late-latent one.
    Both give K actions in the box per state and vary with z."""
    pol = make_policy("implicit", 3, 2, BOUNDS.scale, BOUNDS.bias, (16, 16), 2, latent_input=latent_input)
    obs = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    z = 3 * jax.random.normal(jax.random.PRNGKey(1), (4, 6, 2))
    params = pol.init(jax.random.PRNGKey(2), obs, z)
    assert list(params["params"]) == [net]
    a = np.asarray(pol.apply(params, obs, z))
    assert a.shape == (4, 6, 2)
    assert np.all(np.abs(a - BOUNDS.bias) <= BOUNDS.scale)
    assert np.all(np.std(a, axis=1) > 0)


def test_invalid_levers_are_refused():
    for kw, field in [({"target_samples": 0}, "target_samples"), ({"policy_delay": 0}, "policy_delay"),
                      ({"latent_input": "middle"}, "latent_input")]:  # fmt: skip
        with pytest.raises(ConfigError, match=field):
            WPPGConfig(**kw)


def test_presets_and_backend():
    """'gpu' and 'paper' carry the paper's cost, 'cpu' the earlier CPU preset; the backend picks one."""
    assert WPPGConfig(**PRESETS["gpu"]).K == 32 and WPPGConfig(**PRESETS["paper"]).policy_delay == 1
    cpu = WPPGConfig(**PRESETS["cpu"])
    assert (cpu.K, cpu.n_target, cpu.policy_delay, cpu.latent_input, cpu.entropy_M) == (8, 8, 1, "first", 8)
    assert all(k in PRESETS["paper"] for k in PAPER_COST)
    assert backend_preset("cpu") == "default" and backend_preset("gpu") == "gpu" and backend_preset("tpu") == "gpu"
    assert WPPGConfig.FIELDS_ADDED["policy_delay"] == 1 and WPPGConfig.FIELDS_ADDED["target_samples"] is None
