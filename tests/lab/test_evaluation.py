"""Exact soft evaluation, analytic gradients and the optimum of the grid MDP."""

import numpy as np
import pytest

from wppg.lab import GridMDP, make_problem


def _mc_values(mdp: GridMDP, w: np.ndarray, episodes: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """Monte Carlo soft returns from every start state: actions = nodes drawn from w, the
    entropy term -tau log pi(a|s) paid at the drawn action, next states drawn from P."""
    logd = mdp.log_density(w)
    cum_w, cum_p = np.cumsum(w, axis=1), np.cumsum(mdp.P, axis=2)
    out = np.zeros(mdp.n_states)
    for s0 in range(mdp.n_states):
        s = np.full(episodes, s0)
        total = np.zeros(episodes)
        for t in range(horizon):
            a = np.minimum((rng.random(episodes)[:, None] > cum_w[s]).sum(axis=1), w.shape[1] - 1)
            total += mdp.gamma**t * (mdp.R[s, a] - mdp.tau * logd[s, a])
            s = np.minimum((rng.random(episodes)[:, None] > cum_p[s, a]).sum(axis=1), mdp.n_states - 1)
        out[s0] = total.mean()
    return out


def test_exact_evaluation_matches_monte_carlo():
    mdp = GridMDP(make_problem("gauss1d", n_grid=41, half_width=5.0, gamma=0.8))
    w = mdp.initial_policy()
    rng = np.random.default_rng(0)
    exact = mdp.evaluate(w).V
    mc = _mc_values(mdp, w, episodes=4000, horizon=90, rng=rng)
    # Per-step soft reward has std ~ 1.5, so the return's standard error is ~ 1.5 / 0.6 / sqrt(4000).
    assert np.max(np.abs(mc - exact)) < 0.12
    # A wrong evaluation (entropy term dropped) is far off: the test can fail.
    no_entropy = mdp.values_from(np.sum(w * mdp.R, axis=1), np.einsum("si,sit->st", w, mdp.P))
    assert np.max(np.abs(mc - no_entropy)) > 1.0


@pytest.mark.parametrize("preset", ["bumps1d", "bumps2d", "box2d"])
def test_q_gradient_matches_finite_differences(preset):
    mdp = GridMDP(make_problem(preset, n_grid=15))
    V = np.linspace(1.0, 3.0, mdp.n_states)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(mdp.n_states, 7, mdp.grid.dim))
    e = 1e-6
    fd = np.stack(
        [
            (mdp.q_at(V, a + e * np.eye(mdp.grid.dim)[j]) - mdp.q_at(V, a - e * np.eye(mdp.grid.dim)[j])) / (2 * e)
            for j in range(mdp.grid.dim)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(mdp.q_grad(V, a), fd, atol=1e-7)


@pytest.mark.parametrize("preset", ["gauss1d", "box1d", "bumps2d"])
def test_optimum_is_fixed_point_of_soft_value_iteration(preset):
    mdp = GridMDP(make_problem(preset))
    opt = mdp.optimum()
    assert np.max(np.abs(mdp.soft_bellman(opt.V) - opt.V)) < 1e-10
    np.testing.assert_allclose(mdp.evaluate(opt.w).V, opt.V, atol=1e-10)
    # pi* is the Gibbs policy of Q*, and every other policy is worse in every state.
    np.testing.assert_allclose(opt.w, mdp.gibbs(opt.Q), atol=1e-14)
    rng = np.random.default_rng(2)
    for _ in range(3):
        w = opt.w * np.exp(0.3 * rng.normal(size=opt.w.shape))
        w /= w.sum(axis=1, keepdims=True)
        assert np.all(mdp.evaluate(w).V < opt.V - 1e-8)
