"""Exact soft policy evaluation and the optimal policy of a problem on its action grid.

With the policy pi(.|s) given by cell masses w (density w / h^d), the grid MDP has rewards
R[s, i] = r~(s, a_i) and transitions P[s, i, s'] = p(s'|s, a_i) at the nodes a_i (midpoint rule).
Soft evaluation is one linear solve:
    r_pi(s) = sum_i w[s, i] (R[s, i] - tau log(w[s, i] / h^d)),   P_pi = sum_i w[s, i] P[s, i, :],
    V^pi = (I - gamma P_pi)^{-1} r_pi,   Q^pi(s, a) = r~(s, a) + gamma sum_s' p(s'|s, a) V^pi(s').
Q^pi is available at any action (not only nodes), which the transport step uses.
The optimum of the grid MDP is pi*(a_i|s) ∝ exp(Q*(s, a_i) / tau), found by soft value iteration
finished with soft policy iteration (quadratically convergent near the optimum) to machine
precision. It is the exact optimum over piecewise-constant policies on this grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

from wppg.lab.grid import Grid
from wppg.lab.problems import Problem


@dataclass(frozen=True)
class Evaluation:
    """Soft values of one policy: V (S,), Q at the nodes (S, N)."""

    V: np.ndarray
    Q: np.ndarray


@dataclass(frozen=True)
class Optimum:
    """The optimal soft values and policy of the grid MDP; w has shape (S, N)."""

    V: np.ndarray
    Q: np.ndarray
    w: np.ndarray
    iterations: int


class GridMDP:
    """A Problem tabulated on its grid (or on a given one)."""

    def __init__(self, problem: Problem, grid: Grid | None = None):
        cfg = problem.config
        self.problem = problem
        self.grid = grid or Grid(cfg.dim, cfg.half_width, cfg.n_grid, cfg.bounded)
        self.gamma, self.tau = cfg.gamma, cfg.tau
        nodes = self.nodes_per_state()
        self.R = problem.reward(nodes)  # (S, N)
        self.P = problem.transition(nodes)  # (S, N, S)
        self.log_vol = np.log(self.grid.vol)
        self.rho0 = np.full(problem.n_states, 1.0 / problem.n_states)
        self._optimum: Optimum | None = None

    @property
    def n_states(self) -> int:
        return self.problem.n_states

    def nodes_per_state(self) -> np.ndarray:
        """Grid nodes broadcast to every state, (S, N, d)."""
        return np.broadcast_to(self.grid.nodes, (self.n_states,) + self.grid.nodes.shape)

    def log_density(self, w: np.ndarray) -> np.ndarray:
        """log(w / h^d), with 0 where w = 0 (so that 0 log 0 = 0)."""
        return np.log(np.where(w > 0, w, 1.0)) - np.where(w > 0, self.log_vol, 0.0)

    def values_from(self, reward: np.ndarray, trans: np.ndarray) -> np.ndarray:
        """V = (I - gamma P_pi)^{-1} r_pi for a per-state soft reward (S,) and kernel (S, S)."""
        return np.linalg.solve(np.eye(self.n_states) - self.gamma * trans, reward)

    def evaluate(self, w: np.ndarray) -> Evaluation:
        """Exact soft evaluation of the grid policy w (S, N)."""
        r_pi = np.sum(w * (self.R - self.tau * self.log_density(w)), axis=1)
        V = self.values_from(r_pi, np.einsum("si,sit->st", w, self.P))
        return Evaluation(V, self.q_nodes(V))

    def q_nodes(self, V: np.ndarray) -> np.ndarray:
        """Q_V(s, a_i) = R + gamma P V at the nodes."""
        return self.R + self.gamma * self.P @ V

    def q_at(self, V: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Q_V(s, a) at arbitrary actions a (S, m, d)."""
        return self.problem.reward(a) + self.gamma * self.problem.transition(a) @ V

    def q_grad(self, V: np.ndarray, a: np.ndarray) -> np.ndarray:
        """grad_a Q_V(s, a) at arbitrary actions a (S, m, d), analytic."""
        dp = self.problem.transition_grad(a)  # (S, m, S, d)
        return self.problem.reward_grad(a) + self.gamma * np.einsum("smtd,t->smd", dp, V)

    def gibbs(self, Q: np.ndarray) -> np.ndarray:
        """Masses of the Gibbs policy ∝ exp(Q / tau) at the nodes."""
        return softmax(Q / self.tau, axis=1)

    def soft_bellman(self, V: np.ndarray) -> np.ndarray:
        """T*V(s) = tau log sum_i h^d exp(Q_V(s, a_i) / tau)."""
        return self.tau * (logsumexp(self.q_nodes(V) / self.tau, axis=1) + self.log_vol)

    def optimum(self, tol: float = 1e-13, max_iter: int = 10_000) -> Optimum:
        """Optimal values and policy (cached)."""
        if self._optimum is None:
            V = np.zeros(self.n_states)
            it = 0
            # Value iteration first (globally convergent), then policy iteration to polish.
            for it in range(1, max_iter + 1):
                V_new = self.soft_bellman(V)
                done = np.max(np.abs(V_new - V)) < 1e-6
                V = V_new
                if done:
                    break
            for _ in range(100):
                it += 1
                V_new = self.evaluate(self.gibbs(self.q_nodes(V))).V
                done = np.max(np.abs(V_new - V)) < tol
                V = V_new
                if done:
                    break
            Q = self.q_nodes(V)
            self._optimum = Optimum(V, Q, self.gibbs(Q), it)
        return self._optimum

    def initial_policy(self) -> np.ndarray:
        """Gaussian N(init_mean, init_std^2 I) on the grid, the same in every state."""
        cfg = self.problem.config
        logp = -0.5 * np.sum((self.grid.nodes - cfg.init_mean) ** 2, axis=1) / cfg.init_std**2
        w = softmax(logp)
        return np.tile(w, (self.n_states, 1))
