"""How the WPPG projection pairs the K current samples of a state with their particle targets.

The actor fits g_theta(s, eps_k) to a target y_k by least squares. Which target goes with which
latent eps_k is the coupling, and it decides whether the heat step survives the projection:

- `shared-latent` (the paper): y_k = a_k + eta grad_a Q(s, a_k) + xi_k with a_k = g(s, eps_k). The
  heat noise xi_k is independent of eps_k, so it cancels in expectation in the least-squares fit:
  the policy only follows grad_a Q and collapses to a deterministic map (docs/algorithms.md).
- `ot`: the same moved particles y_j, paired with the current samples a_k by an optimal assignment
  (minimal sum of squared distances over permutations). The pairing is the empirical W2-optimal
  coupling of the two point clouds, so the fit moves the policy towards the pushforward the
  particle step produced, spread included. Exact in 1-D (sort both); in d-D an auction algorithm
  with epsilon scaling (`auction_assignment`), within K * eps_final of the optimal cost.
- `score`: a deterministic heat step: y_k = a_k + eta (grad_a Q(s, a_k) - tau grad_a log rho_h(a_k)),
  with rho_h the Gaussian kernel density of the K samples (bandwidth `silverman_bandwidth`). The
  term -tau grad log rho_h is the velocity of the heat flow (the gradient of the same kind of
  plug-in entropy the critic uses), so no noise has to survive the regression.

Every rule sees all K samples of a state at once ([B, K, d] arrays).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from wppg.noise import standard_normal

COUPLINGS = ("shared-latent", "ot", "score")

AUCTION_EPS_FINAL = 1e-6
"""Final auction bid increment, relative to the largest pairwise benefit of a state: the assignment's
cost is within K * AUCTION_EPS_FINAL * scale of the optimum (float32 resolves about 1e-7)."""
AUCTION_START = 100.0
"""The first phase's bid increment is the benefit range over AUCTION_START (fewer rounds than a
coarser start on near-identity problems, measured on K = 8 and 32)."""
AUCTION_SCALING = 10.0
"""Epsilon-scaling factor between auction phases (each phase divides eps by it)."""
AUCTION_MAX_ITERS = 20_000
"""Safety cap on bidding rounds per state; a state that hits it keeps the identity pairing."""


def auction_assignment(benefit: jnp.ndarray) -> jnp.ndarray:
    """Assignment maximising sum_i benefit[i, perm[i]] for one K x K matrix; returns perm [K].

    Jacobi auction (Bertsekas 1988) with epsilon scaling: unassigned persons bid for their best
    object at price + (best value - second value) + eps; each object goes to its highest bidder.
    At termination every person is within eps of its best value (eps-complementary slackness), so
    the total benefit is within K * eps of the optimum. Prices carry over between phases, eps
    shrinks by AUCTION_SCALING from the benefit range down to AUCTION_EPS_FINAL times it. Runs
    under jit and vmap (a `lax.while_loop`).
    """
    k = benefit.shape[0]
    if k == 1:
        return jnp.zeros((1,), jnp.int32)
    spread = jnp.max(benefit) - jnp.min(benefit)
    scale = jnp.maximum(spread, 1e-30)
    eps_final = AUCTION_EPS_FINAL * scale
    persons = jnp.arange(k)

    def bid_round(carry):
        owner, prices, eps, it = carry  # owner[j]: person holding object j, or -1
        # Elementwise K x K comparisons instead of scatters and top_k: XLA:CPU runs them far faster.
        holds = jnp.any(owner[None, :] == persons[:, None], axis=1)
        values = benefit - prices[None, :]
        j1 = jnp.argmax(values, axis=1)
        first = jnp.arange(k)[None, :] == j1[:, None]
        v1 = jnp.max(values, axis=1)
        v2 = jnp.max(jnp.where(first, -jnp.inf, values), axis=1)
        bids = jnp.where(first & ~holds[:, None], (prices[j1] + (v1 - v2) + eps)[:, None], -jnp.inf)
        best = jnp.max(bids, axis=0)
        got = best > -jnp.inf
        owner = jnp.where(got, jnp.argmax(bids, axis=0), owner)
        prices = jnp.where(got, best, prices)
        # A finished phase (everyone holds an object) starts the next one with a smaller eps.
        next_phase = jnp.all(owner >= 0) & (eps > eps_final)
        owner = jnp.where(next_phase, -1, owner)
        eps = jnp.where(next_phase, jnp.maximum(eps / AUCTION_SCALING, eps_final), eps)
        return owner, prices, eps, it + 1

    def running(carry):
        owner, _, eps, it = carry
        return (~(jnp.all(owner >= 0) & (eps <= eps_final))) & (it < AUCTION_MAX_ITERS)

    init = (jnp.full(k, -1), jnp.zeros(k, benefit.dtype), jnp.maximum(scale / AUCTION_START, eps_final), 0)
    owner, _, _, _ = jax.lax.while_loop(running, bid_round, init)
    perm = jnp.argmax(owner[None, :] == persons[:, None], axis=1).astype(jnp.int32)
    return jnp.where(jnp.all(owner >= 0), perm, persons.astype(jnp.int32))


def ot_pair(a0: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Targets re-paired by an optimal assignment per state: returns y' [B, K, d] with y'_k = y_perm(k)
    where perm minimises sum_k ||a0_k - y_perm(k)||^2. Sorting in 1-D; auction in d-D."""
    if a0.shape[-1] == 1:
        # In 1-D the monotone (sorted-to-sorted) pairing is the optimal one.
        rank = jnp.argsort(jnp.argsort(a0[..., 0], axis=-1), axis=-1)
        y_sorted = jnp.sort(y[..., 0], axis=-1)
        return jnp.take_along_axis(y_sorted, rank, axis=-1)[..., None]
    # max sum 2 <a0_i, y_j> is min sum ||a0_i - y_j||^2 (the squared norms are constant).
    benefit = 2.0 * jnp.einsum("bkd,bjd->bkj", a0, y)
    perm = jax.vmap(auction_assignment)(benefit)
    return jnp.take_along_axis(y, perm[..., None], axis=1)


def silverman_bandwidth(a: jnp.ndarray, floor: float | jnp.ndarray = 1e-3) -> jnp.ndarray:
    """Per-state, per-dimension kernel width of Silverman's rule, h = std * (4 / ((d + 2) K))^(1 / (d + 4)),
    from samples a [B, K, d]; at least `floor` so a collapsed sample set still has a finite score."""
    k, d = a.shape[-2], a.shape[-1]
    std = jnp.std(a, axis=-2)
    return jnp.maximum(std * (4.0 / ((d + 2) * k)) ** (1.0 / (d + 4)), floor)


def kernel_score(a: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
    """grad_a log rho_h at each sample, rho_h(x) = (1/K) sum_j N(x; a_j, diag(h^2)); a [B, K, d], h [B, d].

    grad log rho_h(a_k) = sum_j w_kj (a_j - a_k) / h^2 with w_k = softmax_j(-|(a_k - a_j) / h|^2 / 2).
    """
    z = a / h[:, None, :]
    sq = jnp.sum((z[:, :, None, :] - z[:, None, :, :]) ** 2, axis=-1)  # [B, K, K]
    w = jax.nn.softmax(-0.5 * sq, axis=-1)
    return (jnp.einsum("bkj,bjd->bkd", w, a) - a) / (h[:, None, :] ** 2)


def couple(
    coupling: str,
    a0: jnp.ndarray,
    grad_q: jnp.ndarray,
    eta: float | jnp.ndarray,
    tau: float | jnp.ndarray,
    key: jax.Array,
    scale: jnp.ndarray | float = 1.0,
) -> jnp.ndarray:
    """Projection targets, one per current sample a0 = g_theta(s, eps_k) [B, K, d] (env units).

    grad_q = grad_a min_j Q_j(s, a0); the particle step is a0 + eta grad_q + xi with
    xi ~ N(0, 2 tau eta I) ('shared-latent', 'ot') or its deterministic heat velocity ('score').
    `scale` is the half-width of the action box: the bandwidth's floor is relative to it.
    """
    if coupling == "score":
        h = silverman_bandwidth(a0, floor=1e-3 * jnp.asarray(scale))
        return a0 + eta * (grad_q - tau * kernel_score(a0, h))
    moved = a0 + eta * grad_q + jnp.sqrt(2.0 * tau * eta) * standard_normal(key, a0.shape)
    if coupling == "shared-latent":
        return moved
    if coupling == "ot":
        return ot_pair(a0, moved)
    raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")
