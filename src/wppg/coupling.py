"""How the WPPG projection pairs the K current samples of a state with their particle targets.

The actor fits g_theta(s, eps_k) to a target y_k by least squares. Which target goes with which
latent eps_k is the coupling, and it decides whether the heat step survives the projection:

- `shared-latent` (the paper): y_k = a_k + eta grad_a Q(s, a_k) + xi_k with a_k = g(s, eps_k). The
  heat noise xi_k is independent of eps_k, so it cancels in expectation in the least-squares fit:
  the policy only follows grad_a Q and collapses to a deterministic map (docs/algorithm.md#projection).
- `ot`: the same moved particles y_j, paired with the current samples a_k by an optimal assignment
  (minimal sum of squared distances over permutations). The pairing is the empirical W2-optimal
  coupling of the two point clouds, so the fit moves the policy towards the pushforward the
  particle step produced, spread included. Exact in 1-D (sort both) and in d-D (`assignment`, the
  Hungarian method, O(K^3) per state).
- `score`: a deterministic heat step: y_k = a_k + eta (grad_a Q(s, a_k) - tau grad_a log rho_h(a_k)),
  with rho_h the Gaussian kernel density of the K samples (bandwidth `silverman_bandwidth`). The
  term -tau grad log rho_h is the velocity of the heat flow (the gradient of the same kind of
  plug-in entropy the critic uses), so no noise has to survive the regression.

- `energy`: no pairing. The moved particles y_j (as for `ot`) are a sample of the law the particle
  step produced, and the actor fits the law of g_theta(s, .) to it: the mean by least squares, the
  centred law by the energy distance E|a - y| - E|a - a'| / 2 (`energy_distance`). The energy
  distance is zero only between equal laws and its U-statistic over K samples is unbiased; centring
  by the K-sample means leaves a small bias in the spread, far below the pairing rules', which pass
  the heat step on only through re-pairings, and those grow rare as dim(A) grows at fixed K
  (docs/algorithm.md#projection). Not in the paper.

Every rule sees all K samples of a state at once ([B, K, d] arrays). `projection_loss` is the fit's
loss for every rule.

The action box (`BOUNDARIES`, `box`): the policy's actions lie in a box, but a particle step can
leave it, and a target outside the box is one the squashed policy a = scale tanh(.) + bias can only
chase into saturation. With a box the step is the heat flow on the box, whose boundary condition is
no flux (Neumann): its particle form is Brownian motion reflected at the walls, and the reflected
Langevin dynamics dX = grad_a Q dt + sqrt(2 tau) dW has the Gibbs policy restricted to the box as
its invariant law. So the transport step is projected onto the box and the heat noise reflected
into it (`box_step`); 'score' targets are projected. The box is the action box shrunk by
`BOX_MARGIN` of its half-width, so that targets stay at finite pre-tanh values.

The step size of the particle step (`step_size`, `STEP_RULES`):

- `explicit` (the paper): eta for every state. It is an explicit Euler step of the Langevin
  dynamics, which overshoots where the curvature kappa of -Q in a exceeds 2 / eta: on a quadratic
  Q = -kappa |a - m|^2 / 2 the step maps a - m to (1 - eta kappa)(a - m).
- `implicit`: eta_s = eta / (1 + eta kappa_s) per state, kappa_s >= 0 the curvature estimated
  from the state's K particles (`curvature`). On the quadratic model this is the implicit
  (proximal) step a' = a + eta grad_a Q(a'), which is what the Wasserstein proximal (JKO) step is
  before its linearisation: it maps a - m to (a - m) / (1 + eta kappa), stable for any eta. The heat
  noise uses the same eta_s, so that the stationary variance is tau / kappa times
  (2 + 2x) / (2 + x) with x = eta kappa (explicit: 2 / (2 - x), and divergent for x >= 2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from wppg.entropy import silverman_bandwidth
from wppg.noise import standard_normal

COUPLINGS = ("shared-latent", "ot", "score", "energy")
STEP_RULES = ("explicit", "implicit")
BOUNDARIES = ("reflect", "none")
BOX_MARGIN = 1e-3
"""Targets stay this fraction of the half-width inside the action box (atanh(1 - 1e-3) = 3.8)."""

Box = tuple[jnp.ndarray, jnp.ndarray]
"""(lo, hi) of the targets, [d] each."""


def target_box(scale: jnp.ndarray, bias: jnp.ndarray) -> Box:
    """The box the targets are kept in: bias +- (1 - BOX_MARGIN) scale."""
    half = (1.0 - BOX_MARGIN) * jnp.asarray(scale)
    return jnp.asarray(bias) - half, jnp.asarray(bias) + half


def reflect(y: jnp.ndarray, box: Box) -> jnp.ndarray:
    """y folded into [lo, hi] by reflection at the walls, as often as needed (a point beyond a wall
    by x lands x inside it; the fold is periodic with period 2 (hi - lo))."""
    lo, hi = box
    width = hi - lo
    t = jnp.mod(y - lo, 2.0 * width)
    return lo + jnp.where(t > width, 2.0 * width - t, t)


def box_step(a0: jnp.ndarray, drift: jnp.ndarray, noise: jnp.ndarray | float, box: Box | None) -> jnp.ndarray:
    """The particle step a0 + drift + noise; with a box, the transport a0 + drift is projected onto it
    and the heat noise then reflected into it (the reflected Langevin step, module docstring)."""
    if box is None:
        return a0 + drift + noise
    return reflect(jnp.clip(a0 + drift, *box) + noise, box)


def curvature(a0: jnp.ndarray, grad_q: jnp.ndarray) -> jnp.ndarray:
    """Per-state curvature of -Q along the spread of the K particles, from a0 and grad_q [B, K, d]:
    the least-squares slope of the isotropic model grad_q_k = g - kappa (a0_k - mean a0),
    kappa = -sum_k <dg_k, da_k> / sum_k |da_k|^2 (deviations from the state's means). Returns [B];
    0 where the particles coincide (no spread to measure it on)."""
    da = a0 - jnp.mean(a0, axis=-2, keepdims=True)
    dg = grad_q - jnp.mean(grad_q, axis=-2, keepdims=True)
    num = -jnp.sum(dg * da, axis=(-2, -1))
    den = jnp.sum(da * da, axis=(-2, -1))
    return jnp.where(den > 1e-12, num / jnp.where(den > 1e-12, den, 1.0), 0.0)


def step_size(rule: str, a0: jnp.ndarray, grad_q: jnp.ndarray, eta: float) -> jnp.ndarray:
    """The particle step size per state, [B, 1, 1]: eta ('explicit') or eta / (1 + eta max(kappa, 0))
    ('implicit', kappa from `curvature`). Only concave directions (kappa > 0) shorten the step."""
    b = a0.shape[0]
    if rule == "explicit":
        return jnp.full((b, 1, 1), eta, a0.dtype)
    if rule == "implicit":
        kappa = jax.lax.stop_gradient(jnp.maximum(curvature(a0, grad_q), 0.0))
        return (eta / (1.0 + eta * kappa))[:, None, None]
    raise ValueError(f"unknown step rule {rule!r}; expected one of {STEP_RULES}")


def assignment(cost: jnp.ndarray) -> jnp.ndarray:
    """Exact minimum-cost assignment of one K x K matrix: perm [K] minimising sum_i cost[i, perm[i]].

    The shortest-augmenting-path (Hungarian) method with row and column potentials, O(K^3): rows
    enter one at a time, each by a Dijkstra search over reduced costs cost[i, j] - u[i] - v[j] >= 0
    from a virtual column, then the path is flipped. Written with `lax` loops so it runs under jit
    and vmap (a batch runs until its slowest state is done); exact up to float rounding
    (tests/test_coupling.py checks it against scipy's linear_sum_assignment). Its cost grows as K^3,
    and with the heat noise against the samples' spacing (more particles cross).
    """
    n = cost.shape[0]
    virtual = n  # the extra column every search starts from
    inf = jnp.asarray(jnp.inf, cost.dtype)

    def add_row(i: jnp.ndarray, carry: tuple) -> tuple:
        u, v, owner = carry  # potentials of rows [n] and columns [n + 1]; owner[j]: row of column j or -1
        owner = owner.at[virtual].set(i)

        def relax(c: tuple) -> tuple:
            j0, owner, u, v, dist, prev, done, done_rows = c
            done = done.at[j0].set(True)
            i0 = owner[j0]
            done_rows = done_rows.at[i0].set(True)
            reduced = jnp.concatenate([cost[i0] - u[i0] - v[:n], jnp.full(1, inf)])
            better = (~done) & (reduced < dist)
            dist = jnp.where(better, reduced, dist)
            prev = jnp.where(better, j0, prev)
            open_dist = jnp.where(done, inf, dist)
            j1 = jnp.argmin(open_dist)
            delta = open_dist[j1]
            u = u + jnp.where(done_rows, delta, 0.0)
            v = v - jnp.where(done, delta, 0.0)
            dist = jnp.where(done, dist, dist - delta)
            return j1, owner, u, v, dist, prev, done, done_rows

        start = (jnp.asarray(virtual), owner, u, v, jnp.full(n + 1, inf), jnp.full(n + 1, virtual),
                 jnp.zeros(n + 1, bool), jnp.zeros(n, bool))  # fmt: skip
        # Search until a free column is reached, then flip the path back to the virtual column.
        j0, owner, u, v, _, prev, _, _ = jax.lax.while_loop(lambda c: c[1][c[0]] != -1, relax, relax(start))

        def flip(c: tuple) -> tuple:
            j, owner = c
            return prev[j], owner.at[j].set(owner[prev[j]])

        _, owner = jax.lax.while_loop(lambda c: c[0] != virtual, flip, (j0, owner))
        return u, v, owner

    init = (jnp.zeros(n, cost.dtype), jnp.zeros(n + 1, cost.dtype), jnp.full(n + 1, -1))
    _, _, owner = jax.lax.fori_loop(0, n, add_row, init)
    return jnp.zeros(n, jnp.int32).at[owner[:n]].set(jnp.arange(n, dtype=jnp.int32))


def ot_pair(a0: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Targets re-paired by an optimal assignment per state: returns y' [B, K, d] with y'_k = y_perm(k)
    where perm minimises sum_k ||a0_k - y_perm(k)||^2. Sorting in 1-D; `assignment` in d-D."""
    if a0.shape[-1] == 1:
        # In 1-D the monotone (sorted-to-sorted) pairing is the optimal one.
        rank = jnp.argsort(jnp.argsort(a0[..., 0], axis=-1), axis=-1)
        y_sorted = jnp.sort(y[..., 0], axis=-1)
        return jnp.take_along_axis(y_sorted, rank, axis=-1)[..., None]
    cost = jnp.sum((a0[:, :, None, :] - y[:, None, :, :]) ** 2, axis=-1)
    perm = jax.vmap(assignment)(cost)
    return jnp.take_along_axis(y, perm[..., None], axis=1)


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
    box: Box | None = None,
) -> jnp.ndarray:
    """Projection targets, one per current sample a0 = g_theta(s, eps_k) [B, K, d] (env units).

    grad_q = grad_a min_j Q_j(s, a0); the particle step is a0 + eta grad_q + xi with
    xi ~ N(0, 2 tau eta I) ('shared-latent', 'ot') or its deterministic heat velocity ('score').
    `eta` is a scalar or per state ([B, 1, 1], from `step_size`).
    `scale` is the half-width of the action box: the bandwidth's floor is relative to it.
    `box` (`target_box`): keep the targets in it, transport projected and noise reflected
    (`box_step`); None: no boundary (the paper's).
    """
    if coupling == "score":
        h = silverman_bandwidth(a0, floor=1e-3 * jnp.asarray(scale))
        return box_step(a0, eta * (grad_q - tau * kernel_score(a0, h)), 0.0, box)
    noise = jnp.sqrt(2.0 * tau * eta) * standard_normal(key, a0.shape)
    moved = box_step(a0, eta * grad_q, noise, box)
    if coupling in ("shared-latent", "energy"):
        return moved
    if coupling == "ot":
        return ot_pair(a0, moved)
    raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")


def energy_distance(a: jnp.ndarray, y: jnp.ndarray, scale: jnp.ndarray | float = 1.0) -> jnp.ndarray:
    """Per state, the energy distance between the laws of the samples a [B, K, d] and the particles
    y [B, K, d], less its constant E|y - y'| / 2: (1/(K(K-1))) sum_{k != j} (|a_k - y_j| - |a_k - a_j| / 2).

    Pairs of the same index are left out: y_k was moved from a_k, so it is not independent of it, and
    over independent pairs the sum is an unbiased estimate. Returns [B]. Distances are smoothed by
    1e-6 of the box's half-width (`scale`), so their gradient is finite where two samples coincide.
    """
    k = a.shape[1]
    eps2 = (1e-6 * jnp.max(jnp.asarray(scale))) ** 2

    def dist(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
        return jnp.sqrt(jnp.sum((x[:, :, None, :] - w[:, None, :, :]) ** 2, axis=-1) + eps2)

    off = 1.0 - jnp.eye(k, dtype=a.dtype)
    return jnp.sum((dist(a, y) - 0.5 * dist(a, a)) * off, axis=(1, 2)) / (k * max(k - 1, 1))


def projection_loss(
    coupling: str, a: jnp.ndarray, target: jnp.ndarray, scale: jnp.ndarray | float = 1.0
) -> jnp.ndarray:
    """The projection's loss between the policy's samples a [B, K, d] and the targets of `couple`.

    Least squares for the pairing rules, the mean over the B K samples of |a_k - y_k|^2. For 'energy',
    per state, the squared distance between the samples' mean and the particles' mean plus the
    `energy_distance` between the centred samples and the centred particles, averaged over states: a law
    is its mean and its centred law, and fitting them apart keeps a transport step that moves a state's
    whole cloud far against its spread (a critic's gradient on locomotion) from swamping the spread's
    signal. The actor takes the loss's gradient in the current samples and pulls it back through g_theta.
    """
    target = jax.lax.stop_gradient(target)
    if coupling == "energy":
        a_mean, y_mean = jnp.mean(a, axis=1, keepdims=True), jnp.mean(target, axis=1, keepdims=True)
        mean_fit = jnp.mean(jnp.sum((a_mean - y_mean) ** 2, axis=-1))
        return mean_fit + jnp.mean(energy_distance(a - a_mean, target - y_mean, scale))
    return jnp.mean(jnp.sum((a - target) ** 2, axis=-1))
