"""WPG stationarity at pi*, convergence of WPG/SPI/PMD, the inexact-Q perturbation."""

import numpy as np
import pytest

from wppg.lab import GridMDP, QError, make_problem, pmd_step, spi_step, wpg_step


@pytest.fixture(scope="module")
def fine_gauss():
    return GridMDP(make_problem("gauss1d", n_grid=641))


def test_optimum_is_stationary_for_the_flow(fine_gauss):
    """One-step residual ||step(pi*) - pi*||_1 = o(eta): residual / eta -> 0 as eta -> 0, while
    for a policy that is not optimal residual / eta tends to a nonzero constant."""
    mdp = fine_gauss
    opt = mdp.optimum()
    other = np.roll(opt.w, 5, axis=1)
    ratio = lambda w, eta: np.abs(wpg_step(mdp, w, eta)[0] - w).sum(axis=1).max() / eta  # noqa: E731
    at_opt = [ratio(opt.w, eta) for eta in (0.04, 0.02, 0.01)]
    assert at_opt[1] < 0.6 * at_opt[0] and at_opt[2] < 0.6 * at_opt[1]
    assert at_opt[2] < 0.1
    away = [ratio(other, eta) for eta in (0.04, 0.01)]
    assert away[1] > 0.5 and away[1] > 0.9 * away[0]


def test_wpg_converges_linearly_on_gauss1d():
    """||V* - V^k||_inf falls by a factor 50 within 30 iterations at eta = 0.1 (the remaining
    ~1% is the O(eta) fixed-point bias, tested below)."""
    mdp = GridMDP(make_problem("gauss1d"))
    opt = mdp.optimum()
    w = mdp.initial_policy()
    g0 = np.max(np.abs(opt.V - mdp.evaluate(w).V))
    for k in range(30):
        w, info = wpg_step(mdp, w, 0.1)
        assert info["mass_error"] < 1e-12
    assert np.max(np.abs(opt.V - mdp.evaluate(w).V)) < g0 / 50


def test_wpg_bias_floor_shrinks_with_eta():
    mdp = GridMDP(make_problem("gauss1d", n_grid=241))
    opt = mdp.optimum()
    floors = []
    for eta, iters in ((0.1, 300), (0.05, 600)):
        w = mdp.initial_policy()
        for _ in range(iters):
            w, _ = wpg_step(mdp, w, eta)
        floors.append(np.max(np.abs(opt.V - mdp.evaluate(w).V)))
    assert floors[0] > 1e-3  # a real bias at eta = 0.1 ...
    assert floors[1] < 0.5 * floors[0]  # ... that at least halves with eta


@pytest.mark.parametrize("preset", ["box1d", "bumps1d"])
def test_spi_and_pmd_converge_to_the_grid_optimum(preset):
    mdp = GridMDP(make_problem(preset))
    opt = mdp.optimum()
    w_spi, w_pmd = mdp.initial_policy(), mdp.initial_policy()
    for _ in range(20):
        w_spi = spi_step(mdp, w_spi)
    for _ in range(60):
        w_pmd = pmd_step(mdp, w_pmd, 10.0)
    assert np.max(np.abs(opt.V - mdp.evaluate(w_spi).V)) < 1e-10
    assert np.max(np.abs(opt.V - mdp.evaluate(w_pmd).V)) < 1e-10


def test_q_error_has_stated_size_and_gradient():
    mdp = GridMDP(make_problem("bumps2d", n_grid=61))
    a = mdp.nodes_per_state()
    for mode in ("fixed", "random"):
        err = QError(eps=0.3, mode=mode, seed=1)
        sup = np.max(np.abs(err.value(a, k=4)), axis=1)
        assert np.all(sup <= 0.3 + 1e-12) and np.all(sup > 0.29)
        e = 1e-6
        fd = (err.value(a + e * np.array([0, 1.0]), 4) - err.value(a - e * np.array([0, 1.0]), 4)) / (2 * e)
        np.testing.assert_allclose(err.grad(a, 4)[..., 1], fd, atol=1e-8)
    fixed = QError(eps=1.0, mode="fixed")
    rand = QError(eps=1.0, mode="random")
    np.testing.assert_array_equal(fixed.value(a, 0), fixed.value(a, 7))
    assert np.max(np.abs(rand.value(a, 0) - rand.value(a, 7))) > 0.1


def test_inexact_wpg_moves_the_fixed_point_by_order_eps():
    mdp = GridMDP(make_problem("gauss1d", n_grid=161))
    finals = {}
    for eps in (0.0, 0.05, 0.1):
        w = mdp.initial_policy()
        for _ in range(250):
            w, _ = wpg_step(mdp, w, 0.1, QError(eps=eps))
        finals[eps] = w
    d1 = np.abs(finals[0.05] - finals[0.0]).sum(axis=1).max()
    d2 = np.abs(finals[0.1] - finals[0.0]).sum(axis=1).max()
    assert d1 > 1e-3 and 1.6 < d2 / d1 < 2.4  # linear response in eps
