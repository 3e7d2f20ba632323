"""Pushforward policies a = g_theta(s, eps) with eps ~ N(0, I): no log-density is needed to train them.

Shapes: `policy.apply(params, obs, eps)` takes obs [B, obs_dim] and eps [B, K, latent_dim] and
returns K actions per state, [B, K, act_dim], inside the env's Box (a = scale * tanh(.) + bias).
The mode of each class is eps = 0 (Gaussian) or z = 0 (implicit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wppg.networks import MLP, LateSampleMLP, StateSampleMLP
from wppg.noise import standard_normal

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianPolicy(nn.Module):
    """WPPG: a = scale * tanh(mu(s) + sigma(s) * eps) + bias, eps ~ N(0, I_d)."""

    hidden: Sequence[int]
    act_dim: int
    scale: tuple[float, ...]
    bias: tuple[float, ...]
    precision: str = "float32"

    @property
    def latent_dim(self) -> int:
        return self.act_dim

    def setup(self) -> None:
        self.net = MLP(self.hidden, 2 * self.act_dim, self.precision)

    def stats(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Pre-squash mean and log-std, [B, d] each; log-std is clipped to a safe range."""
        mu, log_std = jnp.split(self.net(obs), 2, axis=-1)
        return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def __call__(self, obs: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
        mu, log_std = self.stats(obs)
        x = mu[..., None, :] + jnp.exp(log_std)[..., None, :] * eps
        return jnp.asarray(self.scale) * jnp.tanh(x) + jnp.asarray(self.bias)

    def sample_and_log_prob(self, obs: jnp.ndarray, eps: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Actions [B, K, d] and the log-density [B, K] of u = tanh(x) = (a - bias) / scale, on the unit box
        (used by SAC only). The density of a itself is this minus sum(log scale); the unit box makes an
        entropy target mean the same whatever the env's action bounds (SB3's convention)."""
        mu, log_std = self.stats(obs)
        x = mu[..., None, :] + jnp.exp(log_std)[..., None, :] * eps
        log_normal = -0.5 * eps**2 - log_std[..., None, :] - 0.5 * math.log(2 * math.pi)
        # log |d tanh(x)/dx| = 2 (log 2 - x - softplus(-2x)), stable for large |x|.
        log_det = 2.0 * (math.log(2.0) - x - jax.nn.softplus(-2.0 * x))
        action = jnp.asarray(self.scale) * jnp.tanh(x) + jnp.asarray(self.bias)
        return action, jnp.sum(log_normal - log_det, axis=-1)


LATENT_INPUTS = ("first", "last")
"""Where an implicit policy's latent z enters its network: 'first' (the paper's f([s, z]), z joined to
the state at the input, `wppg.networks.StateSampleMLP`) or 'last' (z joined at the last hidden layer,
the layers before it run once per state, `wppg.networks.LateSampleMLP`)."""


class ImplicitPolicy(nn.Module):
    """WPPG-I: a = scale * tanh(f(s, z)) + bias, z ~ N(0, I_m); f is the paper's MLP of [s, z]
    (latent_input='first') or the state's features with z entering the last hidden layer ('last')."""

    hidden: Sequence[int]
    act_dim: int
    scale: tuple[float, ...]
    bias: tuple[float, ...]
    latent: int
    precision: str = "float32"
    latent_input: str = "first"

    @property
    def latent_dim(self) -> int:
        return self.latent

    @nn.compact
    def __call__(self, obs: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
        net = StateSampleMLP if self.latent_input == "first" else LateSampleMLP
        f = net(self.hidden, self.act_dim, self.precision)(obs, z)
        return jnp.asarray(self.scale) * jnp.tanh(f) + jnp.asarray(self.bias)


def default_latent_dim(obs_dim: int, act_dim: int) -> int:
    """WPPG-I's latent dimension: the paper's rule of thumb, about one third of the state dimension, but
    at least dim(A), so that the pushforward of the latent can have a density on the action space."""
    return max(act_dim, round(obs_dim / 3))


def make_policy(
    kind: str,
    obs_dim: int,
    act_dim: int,
    scale,
    bias,
    hidden: Sequence[int],
    latent_dim: int | None = None,
    precision: str = "float32",
    latent_input: str = "first",
) -> GaussianPolicy | ImplicitPolicy:
    """Build a policy of class `kind` ('gaussian' or 'implicit'); `precision` of its matrix
    products as in `wppg.networks.PRECISIONS`; `latent_input` (`LATENT_INPUTS`) of an implicit one."""
    scale, bias = tuple(float(x) for x in scale), tuple(float(x) for x in bias)
    if kind == "gaussian":
        return GaussianPolicy(tuple(hidden), act_dim, scale, bias, precision)
    if kind == "implicit":
        m = default_latent_dim(obs_dim, act_dim) if latent_dim is None else latent_dim
        if latent_input not in LATENT_INPUTS:
            raise ValueError(f"latent_input must be one of {LATENT_INPUTS}, got {latent_input!r}")
        return ImplicitPolicy(tuple(hidden), act_dim, scale, bias, m, precision, latent_input)
    raise ValueError(f"unknown policy class {kind!r}: expected 'gaussian' or 'implicit'")


def sample_latents(policy: GaussianPolicy | ImplicitPolicy, key: jax.Array, batch: int, k: int) -> jnp.ndarray:
    """K standard-normal latents per state, [batch, k, latent_dim]."""
    return standard_normal(key, (batch, k, policy.latent_dim))
