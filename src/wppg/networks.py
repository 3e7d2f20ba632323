"""MLPs and the twin soft-Q critic."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    """ReLU multilayer perceptron with a linear output layer."""

    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out_dim)(x)


class StateSampleMLP(nn.Module):
    """The MLP of [s, y] for a state s [B, Ds] and one sample y [B, Dy] or K samples y [B, K, Dy].

    The first layer is written as s W_s + y W_y + b, so the state part is computed once per state
    and broadcast over the K samples instead of once per sample: the same function as an MLP of
    the concatenation [s, y], with W = [W_s; W_y] initialised from the same distribution (LeCun
    normal with fan-in Ds + Dy), for (Ds + Dy) / Dy times fewer first-layer FLOPs.
    """

    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, s: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        fan_in = s.shape[-1] + y.shape[-1]

        def init(part: int):
            return nn.initializers.variance_scaling(part / fan_in, "fan_in", "truncated_normal")

        h_s = nn.Dense(self.hidden[0], kernel_init=init(s.shape[-1]), name="state_in")(s)
        h_y = nn.Dense(self.hidden[0], kernel_init=init(y.shape[-1]), use_bias=False, name="sample_in")(y)
        if y.ndim == s.ndim + 1:
            h_s = h_s[..., None, :]
        x = nn.relu(h_s + h_y)
        for width in self.hidden[1:]:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out_dim)(x)


class TwinQ(nn.Module):
    """Two independent Q(s, a) networks. obs [B, D] with action [B, d] or K actions [B, K, d];
    returns shape (2, B) or (2, B, K)."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jnp.ndarray, action: jnp.ndarray) -> jnp.ndarray:
        q = nn.vmap(
            StateSampleMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=2,
        )(self.hidden, 1)(obs, action)
        return q[..., 0]
