"""The networks' bf16 matrix products (`precision='bf16'`): close to float32, the same parameters,
gradients through the custom backward pass, every off-policy algorithm runs with them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wppg import registry
from wppg.algorithms import ConfigError, SACConfig
from wppg.envs import ActionBounds
from wppg.networks import TwinQ, bf16_matmul, dense
from wppg.policies import make_policy


def rel_err(a, b) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("lead", [(64,), (8, 16)])
def test_bf16_matmul_and_its_gradients_are_close_to_float32(lead):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x, w = jax.random.normal(kx, (*lead, 48)), jax.random.normal(kw, (48, 32))
    g = jax.random.normal(kg, (*lead, 32))
    y16, y32 = bf16_matmul(x, w), x @ w
    assert y16.dtype == jnp.float32 and y16.shape == y32.shape
    # bf16 keeps 8 bits of mantissa: about 2^-9 relative error per operand; not bit-identical.
    assert 0 < rel_err(y16, y32) < 1e-2
    vjp16 = jax.vjp(bf16_matmul, x, w)[1](g)
    vjp32 = jax.vjp(lambda a, b: a @ b, x, w)[1](g)
    for d16, d32 in zip(vjp16, vjp32, strict=True):
        assert d16.dtype == jnp.float32 and d16.shape == d32.shape
        assert rel_err(d16, d32) < 1e-2


def test_same_parameters_and_close_outputs_in_both_precisions():
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 5))
    action = jax.random.uniform(jax.random.PRNGKey(2), (16, 4, 2), minval=-1, maxval=1)
    nets = [
        (TwinQ((64, 64)), TwinQ((64, 64), "bf16"), (obs, action)),
        *[
            (make_policy(kind, 5, 2, np.ones(2), np.zeros(2), (64, 64)),
             make_policy(kind, 5, 2, np.ones(2), np.zeros(2), (64, 64), precision="bf16"),
             (obs, jax.random.normal(jax.random.PRNGKey(3), (16, 4, 2 if kind == "gaussian" else 3))))
            for kind in ("gaussian", "implicit")
        ],
    ]  # fmt: skip
    for net32, net16, args in nets:
        params = net32.init(jax.random.PRNGKey(0), *args)
        shapes = jax.tree.map(jnp.shape, params)
        assert jax.tree.map(jnp.shape, jax.eval_shape(net16.init, jax.random.PRNGKey(0), *args)) == shapes
        out32, out16 = net32.apply(params, *args), net16.apply(params, *args)
        assert 0 < rel_err(out16, out32) < 2e-2


def test_invalid_precision_is_refused():
    with pytest.raises(ConfigError, match="precision"):
        SACConfig(precision="float16")
    with pytest.raises(ValueError, match="precision"):
        dense(4, "fp8")


@pytest.mark.parametrize("name, obs_dim", [pytest.param("sac", 96, marks=pytest.mark.full), ("wppg-i", 3)])
def test_off_policy_updates_in_bf16(name, obs_dim):
    """A few gradient steps with bf16 products give finite metrics and move the parameters. sac: the
    Gaussian policy's MLP and the twin critic (as in wppg and wpo, which build the same networks), at
    obs_dim 96, an input width for which XLA:CPU has no bf16 backward kernel (so the input layer stays
    float32); wppg-i: the implicit policy's state-sample MLP."""
    entry = registry.get(name)
    hp = {"hidden": (32, 32), "precision": "bf16", "K": 4, "entropy_M": 4, "entropy_L": 4}
    cfg = entry.make_config(**{k: v for k, v in hp.items() if k in entry.config_fields()})
    act_dim, n, b = 3, 2, 16
    bounds = ActionBounds(np.ones(act_dim, np.float32), np.zeros(act_dim, np.float32))
    algo = entry.algorithm_cls(cfg, obs_dim, bounds)
    r = np.random.default_rng(0)
    batches = {"obs": r.normal(size=(n, b, obs_dim)), "action": r.uniform(-1, 1, (n, b, act_dim)),
               "reward": r.normal(size=(n, b)), "next_obs": r.normal(size=(n, b, obs_dim)),
               "terminated": np.zeros((n, b))}  # fmt: skip
    state = algo.init(jax.random.PRNGKey(0))
    new, metrics = algo.update(state, {k: v.astype(np.float32) for k, v in batches.items()}, jax.random.PRNGKey(1))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(metrics))
    moved = jax.tree.map(lambda a, c: bool(jnp.any(a != c)), state.critic_params, new.critic_params)
    assert all(jax.tree.leaves(moved))
