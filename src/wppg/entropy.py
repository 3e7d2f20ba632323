"""Entropy estimators of a policy from its samples: the plug-in Gaussian mixture (WPPG paper, Algorithm 1)
and the nearest-neighbour estimate (the default of `WPPGConfig.entropy_estimator`).

The plug-in, for one state: centres mu_j = g(s, z_j), j = 1..M; baselines a_l = g(s, z'_l) + sigma xi_l,
l = 1..L, with z, z', xi independent standard normals;
    H_hat(s) = -(1/L) sum_l log((1/M) sum_j N(a_l; mu_j, sigma^2 I)).
It estimates the entropy of pi(.|s) * N(0, sigma^2 I), the policy smoothed by the kernel, which
is finite even when pi(.|s) is degenerate (an implicit policy with latent_dim < act_dim). For
finite M it is biased upwards (a KDE of M points under-estimates the density); the bias against
the closed form, as sigma -> 0 and as M, L grow, is measured in tests/test_entropy.py.

The kernel width (`BANDWIDTHS`): 'fixed' is sigma for every state (our reading of the paper, which
does not give it). For a policy much broader than sigma the M centres lie far apart against the
kernel and the bias grows large (docs/algorithm.md#entropy-estimator). 'silverman' widens the kernel per state and
dimension to Silverman's rule on the M centres where that is larger than sigma, h = max(sigma,
std (4 / ((d + 2) M))^(1 / (d + 4))): it then estimates the entropy of pi * N(0, diag h^2), a
smoother policy, with far less bias; for policies narrower than about 1.4 sigma it is 'fixed'.

The estimator (`ESTIMATORS`): 'plug-in' is the paper's, above. 'knn' (not in the paper) is the
Kozachenko-Leonenko nearest-neighbour estimator on the same M + L policy samples, unsmoothed:
    H_hat(s) = psi(N) - psi(1) + log c_d + (d / N) sum_i log r_i,
with N = M + L, r_i the distance from sample i to its nearest neighbour and c_d the volume of the
unit d-ball. It estimates the entropy of pi(.|s) itself, with no kernel and no width to choose,
and is nearly unbiased on smooth densities even at small N (docs/algorithm.md#entropy-estimator).
Distances are floored at `KNN_FLOOR` (on the unit box), so a collapsed policy reads a finite
d log(KNN_FLOOR) + const instead of minus infinity. Its one blind spot at small N: a policy whose widths
differ across dimensions reads too high, because nearest neighbours are then mostly far apart along
the broad dimensions.
'knn-whitened' (not in the paper) divides each dimension by its sample std first and adds the log
stds back: it moves with a dimension's scale exactly as the entropy does, so its bias is the same on
every Gaussian with independent coordinates, and `calibrated_entropy_target` removes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from wppg.noise import standard_normal

BANDWIDTHS = ("fixed", "silverman")
ESTIMATORS = ("plug-in", "knn", "knn-whitened")
KNN_FLOOR = 1e-4


def silverman_bandwidth(a: jnp.ndarray, floor: float | jnp.ndarray = 1e-3) -> jnp.ndarray:
    """Per-state, per-dimension kernel width of Silverman's rule, h = std * (4 / ((d + 2) K))^(1 / (d + 4)),
    from samples a [B, K, d]; at least `floor` so a collapsed sample set still has a finite width."""
    k, d = a.shape[-2], a.shape[-1]
    std = jnp.std(a, axis=-2)
    return jnp.maximum(std * (4.0 / ((d + 2) * k)) ** (1.0 / (d + 4)), floor)


def kernel_width(bandwidth: str, centres: jnp.ndarray, sigma: float) -> float | jnp.ndarray:
    """The estimator's kernel width for centres [..., M, d] on the unit box: sigma ('fixed') or
    max(sigma, Silverman's h) per state and dimension, [..., d] ('silverman')."""
    if bandwidth == "fixed":
        return sigma
    if bandwidth == "silverman":
        return jax.lax.stop_gradient(silverman_bandwidth(centres, floor=sigma))
    raise ValueError(f"unknown entropy bandwidth {bandwidth!r}; expected one of {BANDWIDTHS}")


def pairwise_sq_distances(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Squared distances [..., n, m] between x [..., n, d] and y [..., m, d], summed one coordinate at a
    time: the same sum as reducing a [..., n, m, d] difference over its last axis, but every pass runs
    over m in the innermost dimension instead of over d (often 1-6), which XLA:CPU vectorises about 7x
    better."""
    return sum((x[..., :, None, i] - y[..., None, :, i]) ** 2 for i in range(x.shape[-1]))


def mixture_entropy(centres: jnp.ndarray, baselines: jnp.ndarray, sigma: float | jnp.ndarray) -> jnp.ndarray:
    """H_hat from centres [..., M, d] and (already noised) baselines [..., L, d]; returns [...].
    `sigma`: a scalar, or a width per state and dimension [..., d] (the kernel N(0, diag sigma^2))."""
    d = centres.shape[-1]
    m = centres.shape[-2]
    if isinstance(sigma, float | int):
        sq = pairwise_sq_distances(baselines, centres)  # [..., L, M]
        log_kernel = -sq / (2 * sigma**2) - 0.5 * d * math.log(2 * math.pi * sigma**2)
    else:
        s = jnp.broadcast_to(sigma, (*centres.shape[:-2], d))
        sq = pairwise_sq_distances(baselines / s[..., None, :], centres / s[..., None, :])
        log_norm = jnp.sum(jnp.log(s), axis=-1)[..., None, None] + 0.5 * d * math.log(2 * math.pi)
        log_kernel = -sq / 2 - log_norm
    log_mixture = jax.scipy.special.logsumexp(log_kernel, axis=-1) - math.log(m)
    return -jnp.mean(log_mixture, axis=-1)


def knn_entropy(samples: jnp.ndarray, floor: float = KNN_FLOOR) -> jnp.ndarray:
    """Kozachenko-Leonenko entropy estimate (first neighbour) from i.i.d. samples [..., N, d]; returns [...].
    Nearest-neighbour distances below `floor` count as `floor` (see the module docstring)."""
    n, d = samples.shape[-2], samples.shape[-1]
    sq = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, pairwise_sq_distances(samples, samples))
    log_r = 0.5 * jnp.log(jnp.maximum(jnp.min(sq, axis=-1), floor**2))
    log_ball = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1.0)
    return digamma(float(n)) - digamma(1.0) + log_ball + d * jnp.mean(log_r, axis=-1)


def whitened_knn_entropy(samples: jnp.ndarray, floor: float = KNN_FLOOR) -> jnp.ndarray:
    """`knn_entropy` of the samples [..., N, d] with each dimension divided by its sample std over the N
    samples (at least `floor`), plus the sum of the log stds; returns [...]. Scaling one dimension of the
    samples by c moves the estimate by log c, as it moves the entropy, so the estimator's bias is the same
    for every Gaussian with independent coordinates, however unequal their widths: the bias on the
    isotropic one, which `calibrated_entropy_target` removes (see the module docstring)."""
    std = jnp.maximum(jnp.std(samples, axis=-2, keepdims=True), floor)
    return knn_entropy(samples / std, floor) + jnp.sum(jnp.log(std[..., 0, :]), axis=-1)


def entropy_from_samples(
    estimator: str,
    centres: jnp.ndarray,
    baselines: jnp.ndarray,
    key: jax.Array,
    scale: jnp.ndarray,
    sigma: float,
    bandwidth: str = "fixed",
) -> jnp.ndarray:
    """Entropy estimate per state in env units by `estimator` (`ESTIMATORS`), from policy samples
    centres [B, M, d] and baselines [B, L, d], drawn independently of each other (each set i.i.d.
    from pi(.|s)).

    Both estimators work on normalised actions a / scale (the box's bias cancels in differences) and
    convert back to env units by adding sum(log scale) (entropy of an affine map). 'plug-in': the
    mixture on the M centres, `sigma` in units of the half-width of the action box, `key` drawing the
    kernel noise of the baselines, `bandwidth` 'fixed' (sigma) or 'silverman' (see the module
    docstring). 'knn': `knn_entropy` on all M + L samples, 'knn-whitened': `whitened_knn_entropy` on them;
    for both, `key`, `sigma` and `bandwidth` are unused.
    """
    if estimator in ("knn", "knn-whitened"):
        knn = knn_entropy if estimator == "knn" else whitened_knn_entropy
        return knn(jnp.concatenate([centres, baselines], axis=-2) / scale) + jnp.sum(jnp.log(scale))
    if estimator != "plug-in":
        raise ValueError(f"unknown entropy estimator {estimator!r}; expected one of {ESTIMATORS}")
    centres = centres / scale
    h = kernel_width(bandwidth, centres, sigma)
    per_state = h if isinstance(h, float | int) else h[..., None, :]  # [..., d] -> one width per baseline row
    baselines = baselines / scale + per_state * standard_normal(key, baselines.shape)
    return mixture_entropy(centres, baselines, h) + jnp.sum(jnp.log(scale))


def plug_in_entropy(
    sample: Callable[[jax.Array, int], jnp.ndarray],
    key: jax.Array,
    scale: jnp.ndarray,
    sigma: float,
    m: int,
    l: int,
    bandwidth: str = "fixed",
) -> jnp.ndarray:
    """Entropy estimate per state of the policy `sample(key, n) -> actions [B, n, d]`, drawing M
    centres and L baselines (see `entropy_from_samples`)."""
    k_centres, k_baselines, k_noise = jax.random.split(key, 3)
    centres, baselines = sample(k_centres, m), sample(k_baselines, l)
    return entropy_from_samples("plug-in", centres, baselines, k_noise, scale, sigma, bandwidth)


def calibrated_entropy_target(
    target: float,
    dim: int,
    sigma: float,
    m: int,
    l: int,
    n_states: int = 4096,
    bandwidth: str = "fixed",
    estimator: str = "plug-in",
) -> float:
    """What the entropy estimator `estimator` (on the unit box; plug-in: kernel width `sigma` and rule
    `bandwidth`; M = m, L = l) reads, on average, for a policy of true entropy `target` nats: its mean over
    `n_states` independent draws on the isotropic Gaussian of that entropy, std
    s = exp(target / dim) / sqrt(2 pi e).

    The plug-in estimator measures pi * N(0, sigma^2 I), which has more entropy than pi (at least that
    of the kernel alone), and a mixture of finitely many centres adds an upward bias; comparing the
    estimate with this number rather than with `target` removes both for Gaussian-like policies
    (for 'knn', whose bias is small, it removes what there is).
    The tanh squashing is ignored (it matters only for spreads near the box's half-width). The
    draws use a fixed key, so the number is a deterministic function of its arguments.
    """
    s = math.exp(target / dim) / math.sqrt(2 * math.pi * math.e)
    k_c, k_b, k_n = jax.random.split(jax.random.PRNGKey(0), 3)
    centres = s * standard_normal(k_c, (n_states, m, dim))
    baselines = s * standard_normal(k_b, (n_states, l, dim))
    return float(jnp.mean(entropy_from_samples(estimator, centres, baselines, k_n, jnp.ones(dim), sigma, bandwidth)))
