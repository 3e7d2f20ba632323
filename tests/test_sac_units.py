"""SAC measures log pi on the unit box (as SB3): its entropy terms do not depend on the action bounds."""

import functools

import jax
import numpy as np
import pytest

from wppg.algorithms import ConfigError, SACAlgorithm, SACConfig
from wppg.envs import ActionBounds
from wppg.policies import make_policy, sample_latents

D, OBS = 3, 4
UNIT = ActionBounds(np.ones(D, np.float32), np.zeros(D, np.float32))
WIDE = ActionBounds(np.full(D, 2.0, np.float32), np.array([0.0, 1.0, -1.0], np.float32))


def _sample(bounds: ActionBounds, params=None):
    algo = SACAlgorithm(SACConfig(hidden=(16,)), OBS, bounds)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, OBS))
    if params is None:  # the actor alone: algo.init would also build critics and optimisers
        params = algo.policy.init(jax.random.PRNGKey(0), obs, jax.numpy.zeros((8, 1, D)))
    a, log_p = algo.sample(params, obs, jax.random.PRNGKey(2))
    return algo, params, np.asarray(a), np.asarray(log_p)


def test_sac_log_prob_is_invariant_to_the_action_scale():
    _, params, a1, lp1 = _sample(UNIT)
    _, _, a2, lp2 = _sample(WIDE, params)  # the same network output on a box of scale 2
    np.testing.assert_allclose(a2, 2.0 * a1 + WIDE.bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lp2, lp1, rtol=1e-6, atol=1e-6)


def test_sac_target_entropy_default_is_minus_dim_on_any_box():
    assert SACAlgorithm(SACConfig(hidden=(8,)), OBS, UNIT).target_entropy == -D
    assert SACAlgorithm(SACConfig(hidden=(8,)), OBS, WIDE).target_entropy == -D


def test_scale_one_box_log_prob_is_the_env_unit_density():
    # On a scale-1 box the unit-box density is the density of the env action: nothing changes there.
    _, params, a, log_p = _sample(UNIT)
    policy = make_policy("gaussian", OBS, D, UNIT.scale, UNIT.bias, (16,))
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, OBS))
    eps = sample_latents(policy, jax.random.PRNGKey(2), 8, 1)
    mu, log_std = policy.apply(params, obs, method=policy.stats)
    x = np.asarray(mu, np.float64)[:, None] + np.exp(np.asarray(log_std, np.float64))[:, None] * np.asarray(
        eps, np.float64
    )
    normal = (
        -0.5 * np.asarray(eps, np.float64) ** 2 - np.asarray(log_std, np.float64)[:, None] - 0.5 * np.log(2 * np.pi)
    )
    density_of_a = np.sum(normal - np.log(1.0 - np.tanh(x) ** 2), axis=-1)  # p(a) with a = tanh(x)
    np.testing.assert_allclose(log_p, density_of_a, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a, np.tanh(x), rtol=1e-5, atol=1e-6)


# Two update calls of 3 gradient steps each on a fixed batch, as the code before alpha took 'auto'
# (autotune=True / False at alpha = 0.2) gave them: log alpha and the sums of |parameters|.
@functools.cache
def _batches() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "obs": rng.normal(size=(3, 16, 3)).astype(np.float32),
        "action": rng.uniform(-1, 1, (3, 16, 2)).astype(np.float32),
        "reward": rng.normal(size=(3, 16)).astype(np.float32),
        "next_obs": rng.normal(size=(3, 16, 3)).astype(np.float32),
        "terminated": np.zeros((3, 16), np.float32),
    }


def _two_updates(**kw):
    bounds = ActionBounds(np.array([1.0, 2.0], np.float32), np.array([0.0, 0.5], np.float32))
    algo = SACAlgorithm(SACConfig(hidden=(16,), **kw), 3, bounds)
    state = algo.init(jax.random.PRNGKey(0))
    for i in range(2):
        state, _ = algo.update(state, _batches(), jax.random.PRNGKey(1 + i))
    total = lambda tree: float(sum(np.abs(np.asarray(x)).sum() for x in jax.tree.leaves(tree)))  # noqa: E731
    return float(state.extra["log_alpha"]), total(state.actor_params), total(state.critic_params)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, (-1.611233115196228, 38.68227767944336, 63.852935791015625)),  # alpha='auto' from 0.2: autotune=True
        ({"alpha": "auto", "alpha_init": 0.2}, (-1.611233115196228, 38.68227767944336, 63.852935791015625)),
        ({"alpha": 0.2}, (-1.6094379425048828, 38.68227005004883, 63.85293960571289)),  # autotune=False
    ],
)
def test_alpha_auto_and_fixed_reproduce_autotune_on_and_off(kw, expected):
    np.testing.assert_allclose(_two_updates(**kw), expected, rtol=2e-6)


def test_only_auto_alpha_moves_and_it_starts_at_alpha_init():
    assert _two_updates(alpha=0.2)[0] == pytest.approx(np.log(np.float32(0.2)), abs=1e-7)  # log alpha never moves
    la = _two_updates(alpha="auto", alpha_init=0.5)[0]
    assert la != pytest.approx(np.log(0.5), abs=1e-6) and la == pytest.approx(np.log(0.5), abs=1e-2)
    # alpha_init has no effect on a fixed alpha
    assert _two_updates(alpha=0.2, alpha_init=0.7) == _two_updates(alpha=0.2)


@pytest.mark.parametrize("bad", [{"alpha": "Auto"}, {"alpha": -0.1}, {"alpha_init": 0.0}])
def test_alpha_is_a_positive_number_or_auto(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        SACConfig(**bad)
