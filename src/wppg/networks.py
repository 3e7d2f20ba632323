"""MLPs and the twin soft-Q critic, in float32 or with bf16 matrix products (`PRECISIONS`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "bf16")
"""The networks' matrix products: 'float32', or 'bf16' (bf16 operands, float32 accumulation and
result, forward and backward). Parameters, optimiser states, activations and every other operation
stay float32 either way; `OffPolicyConfig.precision` documents when bf16 pays off."""


@jax.custom_vjp
def bf16_matmul(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """x [..., n] @ w [n, m] with bf16 operands and float32 accumulation. The backward products
    (dx = g w^T, dw = x^T g) are bf16 with float32 accumulation too: with JAX's own transpose rule
    the float32 cotangent would turn them back into float32 products."""
    return jnp.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def _bf16_matmul_fwd(x: jnp.ndarray, w: jnp.ndarray) -> tuple[jnp.ndarray, Any]:
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    return jnp.dot(xb, wb, preferred_element_type=jnp.float32), (xb, wb)


def _bf16_matmul_bwd(res: Any, g: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    xb, wb = res
    gb = g.astype(jnp.bfloat16)
    dx = jnp.dot(gb, wb.T, preferred_element_type=jnp.float32)
    rows = xb.reshape(-1, xb.shape[-1])  # one 2-D product over all leading axes
    dw = jnp.dot(rows.T, gb.reshape(-1, gb.shape[-1]), preferred_element_type=jnp.float32)
    return dx, dw


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def _bf16_dot_general(lhs: jnp.ndarray, rhs: jnp.ndarray, dimension_numbers: Any, precision: Any = None) -> jnp.ndarray:
    """`nn.Dense`'s product (the last axis of the input with the kernel's first) as `bf16_matmul`."""
    if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
        raise ValueError(f"bf16 dense product supports only a Dense layer's contraction, got {dimension_numbers}")
    return bf16_matmul(lhs, rhs)


def dense(features: int, precision: str = "float32", **kwargs: Any) -> nn.Dense:
    """`nn.Dense(features, **kwargs)` whose matrix product follows `precision` (`PRECISIONS`).
    The networks use it for their hidden-to-hidden layers only, the bulk of the work with (256, 256)
    layers: the input and output layers (a few units wide) stay float32, for XLA:CPU has no bf16
    kernel for some of their backward products (an UNIMPLEMENTED error, seen with jax 0.10.2)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        kwargs["dot_general"] = _bf16_dot_general
    return nn.Dense(features, **kwargs)


class MLP(nn.Module):
    """ReLU multilayer perceptron with a linear output layer."""

    hidden: Sequence[int]
    out_dim: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.hidden):
            x = nn.relu(dense(width, self.precision if i else "float32")(x))
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
    precision: str = "float32"

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
            x = nn.relu(dense(width, self.precision)(x))
        return nn.Dense(self.out_dim)(x)


class LateSampleMLP(nn.Module):
    """An MLP of s whose last hidden layer also takes a sample y: x = phi(s) through all hidden layers
    but the last, then relu(x W_x + y W_y + b) and a linear output. For K samples y [B, K, Dy] the
    state part runs once per state and only y W_y, the last activation and the output layer run per
    sample; with one hidden layer it is `StateSampleMLP`. Initialised as that layer's split is."""

    hidden: Sequence[int]
    out_dim: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, s: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        x = s
        for i, width in enumerate(self.hidden[:-1]):
            x = nn.relu(dense(width, self.precision if i else "float32")(x))
        fan_in = x.shape[-1] + y.shape[-1]

        def init(part: int):
            return nn.initializers.variance_scaling(part / fan_in, "fan_in", "truncated_normal")

        deep = self.precision if len(self.hidden) > 1 else "float32"  # hidden-to-hidden: `precision`
        h_s = dense(self.hidden[-1], deep, kernel_init=init(x.shape[-1]), name="state_in")(x)
        h_y = nn.Dense(self.hidden[-1], kernel_init=init(y.shape[-1]), use_bias=False, name="sample_in")(y)
        if y.ndim == s.ndim + 1:
            h_s = h_s[..., None, :]
        return nn.Dense(self.out_dim)(nn.relu(h_s + h_y))


class TwinQ(nn.Module):
    """Two independent Q(s, a) networks. obs [B, D] with action [B, d] or K actions [B, K, d];
    returns shape (2, B) or (2, B, K)."""

    hidden: Sequence[int]
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs: jnp.ndarray, action: jnp.ndarray) -> jnp.ndarray:
        q = nn.vmap(
            StateSampleMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=2,
        )(self.hidden, 1, self.precision)(obs, action)
        return q[..., 0]
