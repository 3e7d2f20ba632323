"""Standard-normal draws for the updates' noise (policy latents, heat noise, kernel noise)."""

import math

import jax
import jax.numpy as jnp


def standard_normal(key: jax.Array, shape: tuple[int, ...]) -> jnp.ndarray:
    """`jax.random.normal(key, shape)`, drawn as one flat vector and reshaped.

    The numbers are the same: with JAX's partitionable threefry (its default) the bits of an
    element depend only on its flat index, so the reshape changes nothing
    (tests/test_perf_equivalence.py checks it). The speed is not: the latents here end in a short
    axis (the action or latent dimension, 1-17), and XLA:CPU vectorises the generator poorly over
    such an innermost axis, and over one long axis the same draws are faster.
    """
    return jax.random.normal(key, (math.prod(shape),)).reshape(shape)
