"""Distances, theory constants and rate fits.

W2 between grid policies: in 1-D exactly, through the quantile functions of the two
piecewise-constant densities (both quantile functions are piecewise linear, so the integral
int_0^1 (F_a^{-1}(u) - F_b^{-1}(u))^2 du is computed in closed form between merged breakpoints).
In 2-D, with POT's exact network-simplex solver `ot.emd2` between the node masses (a policy is
treated as atoms at the nodes; this differs from the piecewise-constant W2 by O(h^2)).
"""

from __future__ import annotations

import math

import numpy as np
import ot

from wppg.lab.evaluation import GridMDP
from wppg.lab.grid import Grid


def _quantile_pieces(edges: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Quantile function values at u of the piecewise-constant density with cell masses w,
    evaluated on the cell that contains the open interval to the right (mid) of each u."""
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    cdf /= cdf[-1]
    mid = 0.5 * (u[:-1] + u[1:])
    cell = np.clip(np.searchsorted(cdf, mid, side="right") - 1, 0, len(w) - 1)
    h = edges[1] - edges[0]
    mass = np.maximum(w[cell] / w.sum(), 1e-300)
    # Clipping to the cell only guards against rounding when u-intervals are below machine eps.
    left = np.clip(edges[cell] + (u[:-1] - cdf[cell]) / mass * h, edges[cell], edges[cell + 1])
    right = np.clip(edges[cell] + (u[1:] - cdf[cell]) / mass * h, edges[cell], edges[cell + 1])
    return np.stack([left, right])


def w2_1d(edges: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Exact W2 between two piecewise-constant densities on the same 1-D cell edges."""
    ua = np.cumsum(a) / a.sum()
    ub = np.cumsum(b) / b.sum()
    u = np.unique(np.concatenate([[0.0, 1.0], np.clip(ua, 0, 1), np.clip(ub, 0, 1)]))
    qa = _quantile_pieces(edges, a, u)
    qb = _quantile_pieces(edges, b, u)
    d0, d1 = qa[0] - qb[0], qa[1] - qb[1]
    return math.sqrt(max(float(np.sum(np.diff(u) * (d0**2 + d0 * d1 + d1**2) / 3.0)), 0.0))


def w2_atoms(xa: np.ndarray, wa: np.ndarray, xb: np.ndarray, wb: np.ndarray, prune: float = 1e-12) -> float:
    """Exact W2 between two discrete measures (points (m, d), weights), by ot.emd2."""
    ka, kb = wa > prune, wb > prune
    wa, wb = wa[ka] / wa[ka].sum(), wb[kb] / wb[kb].sum()
    cost = ot.dist(xa[ka], xb[kb], metric="sqeuclidean")
    return math.sqrt(max(float(ot.emd2(wa, wb, cost, numItermax=10_000_000)), 0.0))


def w2_policies(grid: Grid, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-state W2 between grid policies a, b (S, N)."""
    if grid.dim == 1:
        return np.array([w2_1d(grid.edges, a[s], b[s]) for s in range(a.shape[0])])
    return np.array([w2_atoms(grid.nodes, a[s], grid.nodes, b[s]) for s in range(a.shape[0])])


def w2_particles(grid: Grid, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-state W2 between particles x (S, M, d) (equal weights) and grid policies b (S, N)."""
    out = []
    for s in range(x.shape[0]):
        m = x.shape[1]
        if grid.dim == 1:
            keep = b[s] > 1e-14
            out.append(
                math.sqrt(
                    float(
                        ot.emd2_1d(x[s, :, 0], grid.nodes[keep, 0], np.full(m, 1.0 / m), b[s, keep] / b[s, keep].sum())
                    )
                )
            )
        else:
            out.append(w2_atoms(x[s], np.full(m, 1.0 / m), grid.nodes, b[s]))
    return np.array(out)


def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-state KL(a || b) of grid masses (S, N); b > 0 wherever a > 0."""
    pos = a > 0
    ratio = np.where(pos, a, 1.0) / np.where(pos, b, 1.0)
    return np.sum(np.where(pos, a * np.log(ratio), 0.0), axis=1)


def lipschitz_grad_q(mdp: GridMDP, V: np.ndarray) -> float:
    """max over nodes of the spectral norm of Hess_a Q_V (central differences); the transport map
    a + eta grad Q is invertible for eta below its inverse."""
    a = mdp.nodes_per_state()
    d, e = mdp.grid.dim, 1e-5
    eye = np.eye(d)
    hess = np.stack(
        [(mdp.q_grad(V, a + e * eye[j]) - mdp.q_grad(V, a - e * eye[j])) / (2 * e) for j in range(d)], axis=-1
    )
    return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (hess + np.swapaxes(hess, -1, -2))))))


def lsi_constant(mdp: GridMDP, Q: np.ndarray) -> float:
    """Holley-Stroock LSI constant of the Gibbs policies ∝ exp(Q(s, .) / tau), min over states.

    Unbounded (paper 2): Q = -(beta/2)||a||^2 + U with osc(U) = 2 U_max, so
        alpha = (beta / tau) exp(-osc U / tau)   (paper 2's formula with U_max = osc U / 2).
    Box of side 2L (paper 1's setting; our inference, not a formula from the paper): the uniform
    law on the box has LSI constant pi^2 / (2L)^2 (tensorisation), and Q itself is the perturbation.
    The oscillation is measured on the grid.
    """
    cfg = mdp.problem.config
    if cfg.bounded:
        base, U = math.pi**2 / (2 * cfg.half_width) ** 2, Q
    else:
        base, U = cfg.beta / cfg.tau, Q + 0.5 * cfg.beta * np.sum(mdp.grid.nodes**2, axis=1)
    osc = np.max(U, axis=1) - np.min(U, axis=1)
    return float(base * np.min(np.exp(-osc / cfg.tau)))


def predicted_factor(alpha: float, tau: float, gamma: float, eta: float) -> float:
    """Paper 2's per-iteration contraction factor of ||V* - V^k||_inf: exp(-alpha tau (1-gamma) eta / 2)."""
    return math.exp(-0.5 * alpha * tau * (1 - gamma) * eta)


def fit_rate(err: np.ndarray, lo: float, hi: float) -> tuple[float, int, int]:
    """Least-squares fit of log err_k = c + k log(rho) over the iterations with lo < err_k < hi
    (the first contiguous run). Returns (rho, first k, last k); rho = nan if fewer than 3 points."""
    idx = np.nonzero((err > lo) & (err < hi))[0]
    breaks = np.nonzero(np.diff(idx) > 1)[0]
    ks = idx[: breaks[0] + 1] if len(breaks) else idx
    if len(ks) < 3:
        return float("nan"), -1, -1
    slope = np.polyfit(ks, np.log(err[ks]), 1)[0]
    return float(math.exp(slope)), int(ks[0]), int(ks[-1])


def fit_loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope p and prefactor c of y = c x^p by least squares in log-log."""
    p, logc = np.polyfit(np.log(x), np.log(y), 1)
    return float(p), float(math.exp(logc))
