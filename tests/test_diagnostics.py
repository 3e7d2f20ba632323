"""The policy-spread diagnostics on policies whose answers are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wppg.diagnostics import make_policy_spread
from wppg.envs import ActionBounds

BOUNDS = ActionBounds(np.array([2.0, 1.0], np.float32), np.array([1.0, 0.0], np.float32))


def spread_of(sample):
    """Diagnostics of a policy whose actions on the unit box are `sample(key, n)` [n, 2]."""

    def act(params, obs, key, deterministic=False):
        return sample(key, obs.shape[0]) * BOUNDS.scale + BOUNDS.bias

    out = make_policy_spread(act, BOUNDS)(None, np.zeros((64, 3), np.float32), jax.random.PRNGKey(0))
    return {k: float(v) for k, v in out.items()}


def test_a_policy_on_a_corner_is_all_on_the_walls_and_collapsed():
    out = spread_of(lambda key, n: jnp.ones((n, 2)))
    assert out["policy_on_walls"] == 1.0 and out["policy_std"] == 0.0 and out["policy_entropy_knn"] < -10


def test_a_uniform_policy_inside_the_box():
    out = spread_of(lambda key, n: jax.random.uniform(key, (n, 2), minval=-0.9, maxval=0.9))
    assert out["policy_on_walls"] == 0.0
    assert out["policy_std"] == pytest.approx(1.8 / np.sqrt(12), rel=0.15)
    assert out["policy_entropy_knn"] == pytest.approx(2 * np.log(1.8), abs=0.3)  # uniform on [-0.9, 0.9]^2


def test_half_the_mass_on_one_wall():
    def sample(key, n):
        u = jax.random.uniform(key, (n, 2), minval=-0.5, maxval=0.5)
        return u.at[: n // 2, 0].set(-1.0)  # the first half of the states act on the wall u_0 = -1

    out = spread_of(sample)
    assert out["policy_on_walls"] == pytest.approx(0.5)
