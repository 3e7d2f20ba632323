"""Policy updates on the grid: exact and inexact WPG/WPPG, and two KL-geometry baselines.

Each `*_step` maps cell masses w_k (S, N) to w_{k+1}. `make_update` wraps one into the uniform
signature `update(w, k) -> (w_next, info)` used by the experiments.

WPG/WPPG (paper 1's proximal step by operator splitting = paper 2's discrete WPG):
    transport  pi_{k+1/2} = (Id + eta grad_a Q^{pi_k}(s, .))_# pi_k     (transport.py)
    heat       pi_{k+1}   = pi_{k+1/2} * N(0, 2 tau eta I)               (Grid.heat)
Soft policy iteration:  pi_{k+1} ∝ exp(Q^{pi_k} / tau).
Policy mirror descent (KL proximal step on the regularised objective, Lan 2022 form):
    pi_{k+1} = argmax_pi eta (<Q^{pi_k}, pi> + tau H(pi)) - KL(pi || pi_k)
             ∝ pi_k^{1/(1 + eta tau)} exp(eta Q^{pi_k} / (1 + eta tau)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import softmax

from wppg.lab.evaluation import GridMDP
from wppg.lab.transport import pushforward_cdf, pushforward_semilagrangian

Update = Callable[[np.ndarray, int], tuple[np.ndarray, dict[str, float]]]


@dataclass(frozen=True)
class QError:
    """Controlled critic error: the update sees Q_eps(s, a) = Q(s, a) + eps e_k(s, a) with
    e_k(s, a) = cos(omega_s . a + phi_s,k), ||omega_s|| = freq. So sup_a |e_k| = 1 (the error has
    sup-norm exactly eps) and ||grad e_k|| <= freq."""

    eps: float = 0.0
    """Size of the error in sup-norm."""
    mode: Literal["fixed", "random"] = "fixed"
    """'fixed': the same perturbation every iteration (a biased critic); 'random': fresh phases
    phi_s,k each iteration (a noisy critic)."""
    freq: float = 1.0
    """Spatial frequency of the perturbation."""
    seed: int = 0
    """Seed of omega_s and of the phases."""

    def _params(self, n_states: int, dim: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        omega = rng.normal(size=(n_states, dim))
        omega *= self.freq / np.linalg.norm(omega, axis=1, keepdims=True)
        phase = rng.uniform(0, 2 * np.pi, n_states)
        if self.mode == "random":
            phase = np.random.default_rng([self.seed, k]).uniform(0, 2 * np.pi, n_states)
        return omega, phase

    def value(self, a: np.ndarray, k: int) -> np.ndarray:
        """eps e_k(s, a) for a (S, m, d)."""
        omega, phase = self._params(a.shape[0], a.shape[-1], k)
        return self.eps * np.cos(np.einsum("smd,sd->sm", a, omega) + phase[:, None])

    def grad(self, a: np.ndarray, k: int) -> np.ndarray:
        """eps grad_a e_k(s, a)."""
        omega, phase = self._params(a.shape[0], a.shape[-1], k)
        arg = np.einsum("smd,sd->sm", a, omega) + phase[:, None]
        return -self.eps * np.sin(arg)[..., None] * omega[:, None, :]


def wpg_step(
    mdp: GridMDP, w: np.ndarray, eta: float, q_error: QError | None = None, k: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """One exact (or, with q_error, inexact) WPG/WPPG step: transport, then heat."""
    grid, s = mdp.grid, mdp.n_states
    V = mdp.evaluate(w).V

    def velocity(a: np.ndarray) -> np.ndarray:
        g = mdp.q_grad(V, a)
        return g if q_error is None else g + q_error.grad(a, k)

    info: dict[str, float] = {}
    if grid.dim == 1:
        half, err, monotone = pushforward_cdf(grid, w, velocity, eta)
        info["monotone"] = float(monotone)
    else:
        half, err = pushforward_semilagrangian(grid, w.reshape((s,) + grid.shape), velocity, eta)
    new, leaked = grid.heat(half.reshape((s,) + grid.shape), 2 * mdp.tau * eta)
    new = new.reshape(s, -1)
    info["mass_error"] = float(np.max(err + np.abs(leaked)))
    return new / new.sum(axis=1, keepdims=True), info


def _q_seen(mdp: GridMDP, w: np.ndarray, q_error: QError | None, k: int) -> np.ndarray:
    Q = mdp.evaluate(w).Q
    return Q if q_error is None else Q + q_error.value(mdp.nodes_per_state(), k)


def spi_step(mdp: GridMDP, w: np.ndarray, q_error: QError | None = None, k: int = 0) -> np.ndarray:
    """Soft policy iteration: pi_{k+1} ∝ exp(Q^{pi_k} / tau)."""
    return mdp.gibbs(_q_seen(mdp, w, q_error, k))


def pmd_step(mdp: GridMDP, w: np.ndarray, eta: float, q_error: QError | None = None, k: int = 0) -> np.ndarray:
    """Policy mirror descent: pi_{k+1} ∝ pi_k^{1/(1 + eta tau)} exp(eta Q^{pi_k} / (1 + eta tau))."""
    Q = _q_seen(mdp, w, q_error, k)
    c = 1.0 + eta * mdp.tau
    logw = np.log(np.maximum(w, 1e-300))
    return softmax((logw + eta * Q) / c, axis=1)


def make_update(mdp: GridMDP, method: str, eta: float, q_error: QError | None = None) -> Update:
    """`update(w, k) -> (w_next, info)` for method in {'wpg', 'spi', 'pmd'}."""
    if method == "wpg":
        return lambda w, k: wpg_step(mdp, w, eta, q_error, k)
    if method == "spi":
        return lambda w, k: (spi_step(mdp, w, q_error, k), {})
    if method == "pmd":
        return lambda w, k: (pmd_step(mdp, w, eta, q_error, k), {})
    raise ValueError(f"unknown method {method!r}")
