"""Policy-spread diagnostics, the same for every algorithm: does the policy keep its entropy?

At each train.csv / TensorBoard row the trainers draw `SAMPLES` actions per state with the
algorithm's own stochastic `act` on up to `STATES` recent observations and log, on the unit box
u = (a - bias) / scale (so that envs and algorithms compare):

- `policy_std`: the per-state standard deviation of the samples, averaged over action dimensions
  and states. A policy that collapses to a deterministic map shows it as a fall towards 0.
- `policy_entropy`: the plug-in mixture estimate (`wppg.entropy.mixture_entropy`, kernel width
  `SIGMA`, half the samples as centres, half as baselines). It measures the policy smoothed by
  the kernel, so its floor is the kernel's own entropy, d/2 log(2 pi e SIGMA^2): a value at that
  floor means a collapsed policy. It reads broad policies too high.
- `policy_entropy_knn`: the nearest-neighbour estimate (`wppg.entropy.knn_entropy`, WPPG's default
  estimator) on all the samples: nearly unbiased where the policy's widths are alike across dimensions,
  too high where they differ (docs/algorithm.md#entropy-estimator), with no floor but the distance floor's, so a
  collapsed policy reads far below zero; comparable with SAC's own -E log pi on the unit box.
- `policy_on_walls`: the fraction of samples with a coordinate within `WALL` of the box's walls
  (|u| > 1 - WALL). A squashed policy driven into saturation shows it as a rise towards 1 (WPPG
  without the `boundary` rule, docs/algorithm.md#action-box); so does a policy that rightly
  acts at the bounds (bang-bang control), so read it with the returns.

The draws use a key of their own (the run seed and the env step), never the training streams, so
logging them changes no training numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wppg.entropy import knn_entropy, mixture_entropy
from wppg.envs import ActionBounds
from wppg.noise import standard_normal

SAMPLES = 32
STATES = 256
SIGMA = 0.1
WALL = 1e-2


def make_policy_spread(
    act: Callable[..., jnp.ndarray], bounds: ActionBounds
) -> Callable[[Any, np.ndarray, jax.Array], dict]:
    """A jitted `spread(actor_params, obs [n, D], key)` -> {'policy_std', 'policy_entropy', 'policy_entropy_knn',
    'policy_on_walls'} for an algorithm's `act(actor_params, obs, key, deterministic=False)`."""
    scale, bias = jnp.asarray(bounds.scale), jnp.asarray(bounds.bias)

    @jax.jit
    def spread(actor_params: Any, obs: jnp.ndarray, key: jax.Array) -> dict[str, jnp.ndarray]:
        n = obs.shape[0]
        k_act, k_noise = jax.random.split(key)
        keys = jax.random.split(k_act, SAMPLES)
        a = jax.vmap(lambda k: act(actor_params, obs, k, deterministic=False))(keys)  # [SAMPLES, n, d]
        u = (jnp.moveaxis(a, 0, 1) - bias) / scale  # [n, SAMPLES, d]
        half = SAMPLES // 2
        baselines = u[:, half:] + SIGMA * standard_normal(k_noise, (n, SAMPLES - half, u.shape[-1]))
        return {
            "policy_std": jnp.mean(jnp.std(u, axis=1)),
            "policy_entropy": jnp.mean(mixture_entropy(u[:, :half], baselines, SIGMA)),
            "policy_entropy_knn": jnp.mean(knn_entropy(u)),
            "policy_on_walls": jnp.mean(jnp.any(jnp.abs(u) > 1.0 - WALL, axis=-1)),
        }

    return spread
