"""WPO: the natural Wasserstein policy gradient and the decoupled KL on hand-computed cases, the
target policy, the multipliers, a smoke run, save/load and invalid hyperparameters."""

from __future__ import annotations

import csv
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wppg
from wppg.algorithms import ConfigError, WPOAlgorithm, WPOConfig
from wppg.algorithms.base import AgentState, min_q
from wppg.algorithms.wpo import (
    decoupled_kl,
    inverse_softplus,
    pre_tanh_q_grad,
    wpo_policy_loss,
)
from wppg.envs import ActionBounds
from wppg.policies import sample_latents

BOUNDS = ActionBounds(np.array([2.0, 1.0], np.float32), np.array([0.0, 0.5], np.float32))
TINY = {
    "hidden": (32, 32),
    "K": 4,
    "batch_size": 32,
    "buffer_size": 5_000,
    "learning_starts": 100,
    "eval_episodes": 1,
    "eval_every": 10**6,
    "checkpoint_every": 0,
    "log_every": 10**6,
    "progress": False,
}


def quadratic_q(a: jnp.ndarray, c: np.ndarray, w: np.ndarray) -> jnp.ndarray:
    """Q(a) = -1/2 sum_d w_d (a_d - c_d)^2 per sample: [B, K, d] -> [B, K]."""
    return -0.5 * jnp.sum(w * (a - c) ** 2, axis=-1)


def test_pre_tanh_gradient_of_a_quadratic_q():
    """grad_u Q(scale tanh(u) + bias) = -w (a - c) * scale * (1 - tanh(u)^2)."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(3, 4, 2)).astype(np.float32)
    c, w = np.array([0.5, 0.2], np.float32), np.array([1.0, 3.0], np.float32)
    scale, bias = BOUNDS.scale, BOUNDS.bias
    q, g = pre_tanh_q_grad(lambda a: quadratic_q(a, c, w), jnp.asarray(u), scale, bias)
    a = scale * np.tanh(u) + bias
    np.testing.assert_allclose(q, -0.5 * np.sum(w * (a - c) ** 2, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(g, -w * (a - c) * scale * (1 - np.tanh(u) ** 2), rtol=1e-5, atol=1e-6)


def test_policy_gradient_matches_the_natural_wpo_formula():
    """mu = A theta + m0 and log sigma = C theta + s0, samples u = mu + sigma eps held fixed, G = grad_u Q.

    Plain WPO gradient into mu: -(1/B) sum_k G / sigma^2; into sigma: -(1/B) sum_k 2 eps G / sigma^2.
    Natural scaling (sigma^2 for mu, sigma^2 / 2 for sigma) gives -(1/B) sum_k G and -(1/B) sum_k eps G,
    so into log sigma -(1/B) sum_k sigma eps G; the chain rule then gives A^T g_mu + C^T g_logsigma.
    """
    B, K, d, p = 3, 5, 2, 4
    rng = np.random.default_rng(1)
    A, C = rng.normal(size=(B, d, p)), 0.3 * rng.normal(size=(B, d, p))
    m0, s0 = rng.normal(size=(B, d)), np.log([[0.5, 2.0], [1.5, 0.3], [0.8, 1.2]])
    theta = 0.1 * rng.normal(size=p)
    eps = rng.normal(size=(B, K, d))
    c, w = np.array([0.3, 0.9]), np.array([2.0, 0.5])

    def stats(th):
        return jnp.einsum("bdp,p->bd", A, th) + m0, jnp.einsum("bdp,p->bd", C, th) + s0

    mu, log_std = (np.asarray(x, np.float64) for x in stats(theta))
    sigma = np.exp(log_std)
    u = mu[:, None] + sigma[:, None] * eps
    _, G = pre_tanh_q_grad(lambda a: quadratic_q(a, c, w), jnp.asarray(u, jnp.float32), BOUNDS.scale, BOUNDS.bias)
    G = np.asarray(G, np.float64)

    def loss(th):
        return wpo_policy_loss(*stats(th), jnp.asarray(u, jnp.float32), jnp.asarray(G, jnp.float32))

    th = jnp.asarray(theta, jnp.float32)
    # The forward value is the plain WPO objective -(1/B) sum (grad_u log N)^T G, grad_u log N = -eps / sigma.
    np.testing.assert_allclose(loss(th), -np.sum(-eps / sigma[:, None] * G) / B, rtol=1e-4)
    g_mu = -np.sum(G, axis=1) / B
    g_log_sigma = -np.sum(sigma[:, None] * eps * G, axis=1) / B
    expected = np.einsum("bdp,bd->p", A, g_mu) + np.einsum("bdp,bd->p", C, g_log_sigma)
    np.testing.assert_allclose(jax.grad(loss)(th), expected, rtol=1e-4, atol=1e-5)
    # Without the scaling the mu-gradient would be g_mu / sigma^2: the sigmas above are far from 1,
    # so the comparison would fail if the natural-gradient factors were missing.
    plain = np.einsum("bdp,bd->p", A, g_mu / sigma**2) + np.einsum("bdp,bd->p", C, 2 * g_log_sigma)
    assert np.abs(plain - expected).max() > 0.1


def test_natural_wpo_is_the_reparameterised_gradient_on_the_networks():
    """For a Gaussian in u, the natural WPO direction per sample is G into mu and eps G into sigma,
    which is the reparameterisation gradient of Q(s, scale tanh(mu + sigma eps) + bias): check it on
    the real policy and twin critic, against the gradient of -(1/B) sum_k min_j Q_j."""
    algo, state = make_algo()
    obs = jnp.asarray(np.random.default_rng(6).normal(size=(5, 3)), jnp.float32)
    eps = sample_latents(algo.policy, jax.random.PRNGKey(7), 5, algo.config.K)
    mu, log_std = algo.stats(state.actor_params, obs)
    u = mu[:, None] + jnp.exp(log_std)[:, None] * eps
    _, G = pre_tanh_q_grad(lambda a: min_q(algo.critic, state.critic_params, obs, a), u, algo.scale, algo.bias)
    wpo = jax.grad(lambda p: wpo_policy_loss(*algo.stats(p, obs), u, G))(state.actor_params)
    reparam = jax.grad(
        lambda p: -jnp.sum(min_q(algo.critic, state.critic_params, obs, algo.policy.apply(p, obs, eps))) / 5
    )(state.actor_params)
    for a, b in zip(jax.tree.leaves(wpo), jax.tree.leaves(reparam)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(wpo)) > 1e-4


def test_decoupled_kl_on_hand_computed_numbers():
    mu_t, log_std_t = jnp.zeros((1, 2)), jnp.zeros((1, 2))
    kl_mean, kl_std = decoupled_kl(mu_t, log_std_t, mu_t, log_std_t)
    np.testing.assert_array_equal(kl_mean, 0.0)
    np.testing.assert_array_equal(kl_std, 0.0)
    # KL(N(0,1) || N(1,1)) = 1/2; KL(N(0,1) || N(0, 2^2)) = log 2 + 1/8 - 1/2.
    mu, log_std = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, math.log(2.0)]])
    kl_mean, kl_std = decoupled_kl(mu, log_std, mu_t, log_std_t)
    np.testing.assert_allclose(kl_mean, [[0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(kl_std, [[0.0, math.log(2.0) + 0.125 - 0.5]], atol=1e-6)
    # Each part sees only its own statistic: moving sigma leaves kl_mean at 0 and vice versa.
    assert float(decoupled_kl(mu_t, log_std, mu_t, log_std_t)[0].max()) == 0.0
    assert float(decoupled_kl(mu, log_std_t, mu_t, log_std_t)[1].max()) == 0.0
    # Positive away from the target, in both directions of sigma.
    for s in (-0.7, 0.4):
        assert float(decoupled_kl(mu_t, jnp.full((1, 2), s), mu_t, log_std_t)[1].min()) > 0.0


def make_algo(**kw) -> tuple[WPOAlgorithm, AgentState]:
    algo = WPOAlgorithm(WPOConfig(hidden=(16, 16), K=4, **kw), 3, BOUNDS)
    return algo, algo.init(jax.random.PRNGKey(0))


def batches(n: int, b: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=(n, b, *s)).astype(np.float32)
    return {
        "obs": f(3),
        "action": np.clip(f(2), -1, 1),
        "reward": f(),
        "next_obs": f(3),
        "terminated": np.zeros((n, b), np.float32),
    }


def leaves_equal(x, y) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


@pytest.mark.full
def test_target_policy_is_copied_every_target_period_steps():
    algo, state = make_algo(target_period=3)
    assert leaves_equal(state.extra["target_actor_params"], state.actor_params)
    s2, _ = algo.update(state, batches(2), jax.random.PRNGKey(1))
    assert leaves_equal(s2.extra["target_actor_params"], state.actor_params), "copied before target_period steps"
    assert not leaves_equal(s2.actor_params, state.actor_params)
    s3, _ = algo.update(s2, batches(1, seed=1), jax.random.PRNGKey(2))
    assert int(s3.step) == 3
    assert leaves_equal(s3.extra["target_actor_params"], s3.actor_params), "not copied at step target_period"


def test_bootstrap_uses_the_target_policy_and_no_entropy():
    algo, state = make_algo()
    obs = jnp.asarray(np.random.default_rng(3).normal(size=(5, 3)), jnp.float32)
    key = jax.random.PRNGKey(4)
    moved = state.replace(actor_params=jax.tree.map(lambda p: p + 0.5, state.actor_params))
    v, _ = algo.soft_value(moved, obs, key)
    eps = sample_latents(algo.policy, key, 5, algo.config.K)
    a = algo.policy.apply(state.extra["target_actor_params"], obs, eps)
    np.testing.assert_allclose(v, jnp.mean(min_q(algo.critic, state.target_critic_params, obs, a), axis=-1), rtol=1e-6)


def test_kl_penalty_pulls_towards_the_target():
    """Gradient of the penalty alone: zero at the target, and a step moves the policy back towards it."""
    algo, state = make_algo(alpha_mean=1.0, alpha_stddev=1.0)
    obs = jnp.asarray(np.random.default_rng(5).normal(size=(6, 3)), jnp.float32)
    mu_t, ls_t = algo.stats(state.actor_params, obs)

    def penalty(params):
        return sum(jnp.sum(jnp.mean(kl, 0)) for kl in decoupled_kl(*algo.stats(params, obs), mu_t, ls_t))

    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(jax.grad(penalty)(state.actor_params))) < 1e-6
    away = jax.tree.map(lambda p: p + 0.05, state.actor_params)
    g = jax.grad(penalty)(away)
    back = jax.tree.map(lambda p, gi: p - 1e-2 * gi, away, g)
    assert 0.0 < float(penalty(back)) < float(penalty(away))


@pytest.mark.full
def test_fixed_multipliers_stay_fixed_and_adaptive_ones_follow_the_kl():
    algo, state = make_algo()
    s, info = algo.update(state, batches(2), jax.random.PRNGKey(1))
    np.testing.assert_array_equal(s.extra["dual"], state.extra["dual"])
    np.testing.assert_allclose(info["alpha_mean"], math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(info["alpha_stddev"], 1e4, rtol=1e-6)

    algo, state = make_algo(adapt_multipliers=True, dual_lr=0.1, target_period=1000)
    # At the target both KLs are 0 < epsilon: the multipliers shrink.
    s, _ = algo.actor_step(state, jnp.asarray(batches(1)["obs"][0]), jax.random.PRNGKey(1))
    assert np.all(np.asarray(s.extra["dual"]) < np.asarray(state.extra["dual"]))
    # Far from the target both KLs exceed epsilon: they grow.
    far = state.replace(
        extra={**state.extra, "target_actor_params": jax.tree.map(lambda p: p + 0.3, state.actor_params)}
    )
    s, _ = algo.actor_step(far, jnp.asarray(batches(1)["obs"][0]), jax.random.PRNGKey(1))
    assert np.all(np.asarray(s.extra["dual"]) > np.asarray(state.extra["dual"]))


def test_inverse_softplus():
    for x in (1e-3, math.log(2.0), 3.0, 1e4):
        np.testing.assert_allclose(float(jax.nn.softplus(inverse_softplus(x))), x, rtol=1e-6)


def test_smoke_run_pendulum(tmp_path):
    agent = wppg.WPO(
        "Pendulum-v1", **{**TINY, "log_every": 100, "target_period": 10}, total_steps=300, run_dir=tmp_path
    )
    agent.learn(300)
    assert agent.num_timesteps == 300 and int(agent.trainer.state.step) > 100
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows, "no training rows were logged"
    for name in ("critic_loss", "actor_loss", "kl_mean_rel", "kl_stddev_rel", "policy_std", "q_policy"):
        values = [float(r[name]) for r in rows if r.get(name)]
        assert values and np.all(np.isfinite(values)), f"{name}: {values}"
    assert np.isfinite(agent.trainer.last_eval["return_mode"])
    a = agent.predict(np.zeros(3, np.float32), deterministic=True)[0]
    assert a.shape == (1,) and -2.0 <= float(a[0]) <= 2.0


def test_save_load_round_trip(tmp_path):
    agent = wppg.WPO("Pendulum-v1", seed=3, **{**TINY, "target_period": 7}).learn(150)
    path = agent.save(tmp_path / "wpo.npz")
    loaded = wppg.WPO.load(path, progress=False)
    assert type(loaded) is wppg.WPO and loaded.algo_config == agent.algo_config
    saved_leaves = jax.tree_util.tree_leaves_with_path(agent.trainer.state)
    loaded_leaves = jax.tree_util.tree_leaves_with_path(loaded.trainer.state)
    assert [p for p, _ in saved_leaves] == [p for p, _ in loaded_leaves]
    for (p, a), (_, b) in zip(saved_leaves, loaded_leaves):
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b), jax.tree_util.keystr(p)
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"K": 0}, "K"),
        ({"alpha_mean": 0.0}, "alpha_mean"),
        ({"alpha_stddev": -1.0}, "alpha_stddev"),
        ({"epsilon_mean": 0.0}, "epsilon_mean"),
        ({"epsilon_stddev": -1e-6}, "epsilon_stddev"),
        ({"dual_lr": 0.0}, "dual_lr"),
        ({"target_period": 0}, "target_period"),
        ({"gamma": 1.0}, "gamma"),
    ],
)
def test_invalid_hyperparameters(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        WPOConfig(**kwargs)
    with pytest.raises(ConfigError, match=field):
        wppg.WPO("Pendulum-v1", progress=False, **kwargs)
