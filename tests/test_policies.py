"""Pushforward policies: bounds, shapes, modes, the tanh-Gaussian log-density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from wppg.policies import default_latent_dim, make_policy, sample_latents

LOW, HIGH = np.array([-1.0, 0.0, -3.0]), np.array([3.0, 0.5, -2.0])
SCALE, BIAS = (HIGH - LOW) / 2, (HIGH + LOW) / 2


@pytest.mark.parametrize("kind", ["gaussian", "implicit"])
def test_actions_inside_bounds_even_for_huge_latents(kind):
    policy = make_policy(kind, 5, 3, SCALE, BIAS, (32, 32), latent_dim=2)
    obs = jax.random.normal(jax.random.PRNGKey(0), (64, 5)) * 100
    params = policy.init(jax.random.PRNGKey(1), obs, jnp.zeros((64, 1, policy.latent_dim)))
    params = jax.tree.map(lambda p: p * 30, params)  # saturate the tanh
    eps = 1e3 * sample_latents(policy, jax.random.PRNGKey(2), 64, 8)
    a = np.asarray(policy.apply(params, obs, eps))
    assert a.shape == (64, 8, 3)
    assert np.all(a >= LOW - 1e-6) and np.all(a <= HIGH + 1e-6)
    assert np.isfinite(a).all()


def test_latent_dims():
    assert make_policy("gaussian", 17, 6, np.ones(6), np.zeros(6), (8,)).latent_dim == 6
    assert make_policy("implicit", 17, 6, np.ones(6), np.zeros(6), (8,)).latent_dim == default_latent_dim(17, 6) == 6
    assert default_latent_dim(376, 17) == 125 and default_latent_dim(11, 3) == 4  # the paper's rule: obs_dim / 3
    # ... raised to dim(A) where a third of obs_dim is less (MultiGoal: obs 2, actions 2; a 1-D bandit: 1, 1).
    assert default_latent_dim(2, 2) == 2 and default_latent_dim(1, 1) == 1 and default_latent_dim(1, 2) == 2
    assert make_policy("implicit", 17, 6, np.ones(6), np.zeros(6), (8,), latent_dim=3).latent_dim == 3


def test_gaussian_mode_is_tanh_of_mean():
    policy = make_policy("gaussian", 4, 2, np.array([2.0, 1.0]), np.array([0.0, 1.0]), (16,))
    obs = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    params = policy.init(jax.random.PRNGKey(1), obs, jnp.zeros((3, 1, 2)))
    mu, _ = policy.apply(params, obs, method=policy.stats)
    a = policy.apply(params, obs, jnp.zeros((3, 1, 2)))[:, 0]
    np.testing.assert_allclose(a, np.array([2.0, 1.0]) * np.tanh(mu) + np.array([0.0, 1.0]), rtol=1e-6)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    # 1-D: a = s * tanh(x) + b, x ~ N(mu, std^2). On the unit box u = tanh(x): p(u) = N(x; mu, std) / (1 - tanh(x)^2);
    # p(a) = p(u) / s is not what the method returns (SAC's convention, see SACConfig).
    s, b = 2.0, 0.5
    policy = make_policy("gaussian", 3, 1, np.array([s]), np.array([b]), (16,))
    obs = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    params = policy.init(jax.random.PRNGKey(1), obs, jnp.zeros((4, 1, 1)))
    eps = jax.random.normal(jax.random.PRNGKey(2), (4, 5, 1))
    a, logp = policy.apply(params, obs, eps, method=policy.sample_and_log_prob)
    mu, log_std = policy.apply(params, obs, method=policy.stats)
    mu, std, eps = (np.asarray(v, np.float64) for v in (mu, np.exp(log_std), eps))
    x = mu[:, None, :] + std[:, None, :] * eps  # float64: 1 - tanh^2 cancels badly in float32
    ref = stats.norm.logpdf(x, mu[:, None, :], std[:, None, :]) - np.log(1 - np.tanh(x) ** 2)
    np.testing.assert_allclose(logp, ref[..., 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a, s * np.tanh(x) + b, rtol=1e-5, atol=1e-6)
