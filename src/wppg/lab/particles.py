"""The particle form of WPG/WPPG, the bridge to the deep-RL code.

Each state carries N particles x (S, N, d), moved by
    x <- x + eta grad_a Q^{pi_k}(s, x) + sqrt(2 tau eta) xi,   xi ~ N(0, I),
reflected at the walls in the box. Q^{pi_k} comes from a plug-in evaluation of the particle
policy, as a critic would see it: the expected reward and transition kernel are particle
averages, and the entropy term is the paper's plug-in Gaussian-mixture estimator
    H_hat(s) = -(1/L) sum_l log((1/M) sum_j N(b_l; mu_j, sigma^2 I)),
with centres mu_j = the particles and baselines b_l = x_l + sigma xi_l scored against the *other*
particles (leave-one-out, so M = N - 1 and L = N). It estimates the entropy of pi * N(0, sigma^2 I).
For diagnostics that need a density (the value gap), the particles are smoothed by a Gaussian KDE
on the grid and evaluated exactly; that is the value of the smoothed policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from wppg.lab.evaluation import GridMDP
from wppg.lab.grid import Grid
from wppg.lab.updates import QError


@dataclass(frozen=True)
class ParticleConfig:
    """Particle variant settings."""

    n_particles: int = 256
    """Particles per state N."""
    sigma: float = 0.1
    """Kernel width of the plug-in entropy estimator."""
    kde_bandwidth: float = 0.0
    """Bandwidth of the KDE used for diagnostics; 0 = Silverman's rule per state."""
    seed: int = 0
    """Seed of the initial particles and of the noise."""


def mixture_entropy(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Leave-one-out plug-in entropy estimate per state for particles x (S, N, d)."""
    s, n, d = x.shape
    b = x + sigma * rng.standard_normal(x.shape)
    sq = np.sum((b[:, :, None, :] - x[:, None, :, :]) ** 2, axis=-1)  # (S, L, M)
    log_k = -0.5 * sq / sigma**2 - 0.5 * d * math.log(2 * math.pi * sigma**2)
    log_k[:, np.arange(n), np.arange(n)] = -np.inf
    return -np.mean(logsumexp(log_k, axis=-1) - math.log(n - 1), axis=-1)


def plugin_values(mdp: GridMDP, x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """V of the particle policy with particle averages and the plug-in entropy."""
    r_pi = mdp.problem.reward(x).mean(axis=1) + mdp.tau * mixture_entropy(x, sigma, rng)
    return mdp.values_from(r_pi, mdp.problem.transition(x).mean(axis=1))


def reflect_into_box(x: np.ndarray, half_width: float) -> np.ndarray:
    """Fold points into [-L, L]^d by repeated reflection at the walls."""
    y = np.mod(x + half_width, 4 * half_width)
    return np.where(y > 2 * half_width, 4 * half_width - y, y) - half_width


def particle_step(
    mdp: GridMDP,
    x: np.ndarray,
    eta: float,
    cfg: ParticleConfig,
    rng: np.random.Generator,
    q_error: QError | None = None,
    k: int = 0,
) -> np.ndarray:
    """One particle WPG step (transport with the plug-in Q, plus Gaussian noise)."""
    V = plugin_values(mdp, x, cfg.sigma, rng)
    g = mdp.q_grad(V, x)
    if q_error is not None:
        g = g + q_error.grad(x, k)
    x = x + eta * g + math.sqrt(2 * mdp.tau * eta) * rng.standard_normal(x.shape)
    return reflect_into_box(x, mdp.grid.half_width) if mdp.grid.bounded else x


def initial_particles(mdp: GridMDP, cfg: ParticleConfig, rng: np.random.Generator) -> np.ndarray:
    """Samples of the initial grid policy (node plus a uniform offset within its cell)."""
    w0 = mdp.initial_policy()
    grid = mdp.grid
    x = np.empty((mdp.n_states, cfg.n_particles, grid.dim))
    for s in range(mdp.n_states):
        idx = rng.choice(grid.size, size=cfg.n_particles, p=w0[s])
        x[s] = grid.nodes[idx] + grid.h * (rng.random((cfg.n_particles, grid.dim)) - 0.5)
    return x


def kde_policy(grid: Grid, x: np.ndarray, bandwidth: float = 0.0) -> np.ndarray:
    """Grid masses (S, N) of a Gaussian KDE of particles x (S, M, d)."""
    s, m, d = x.shape
    out = np.empty((s, grid.size))
    for i in range(s):
        bw = bandwidth or 1.06 * float(np.mean(np.std(x[i], axis=0))) * m ** (-1 / (4 + d))
        bw = max(bw, grid.h)
        sq = np.sum((grid.nodes[:, None, :] - x[i][None, :, :]) ** 2, axis=-1)
        logp = logsumexp(-0.5 * sq / bw**2, axis=1)
        out[i] = np.exp(logp - logp.max())
    return out / out.sum(axis=1, keepdims=True)
