"""Heat step against the analytic Gaussian convolution; pushforward schemes against exact maps."""

import numpy as np
import pytest

from wppg.lab import Grid
from wppg.lab.transport import pushforward_cdf, pushforward_semilagrangian


def _gauss_masses(grid: Grid, mean, std) -> np.ndarray:
    z = np.sum((grid.nodes - np.asarray(mean)) ** 2, axis=1) / std**2
    w = np.exp(-0.5 * z)
    return w / w.sum()


@pytest.mark.parametrize("dim,n", [(1, 400), (2, 120)])
def test_heat_step_matches_gaussian_convolution(dim, n):
    grid = Grid(dim, 6.0, n, bounded=False)
    mean = [0.3, -0.2][:dim]
    w = _gauss_masses(grid, mean, 0.5)
    out, leaked = grid.heat(w.reshape((1,) + grid.shape), 0.2)
    expected = _gauss_masses(grid, mean, np.sqrt(0.25 + 0.2))
    dens = lambda m: m.ravel() / grid.vol  # noqa: E731
    peak = dens(expected).max()
    assert np.max(np.abs(dens(out) - dens(expected))) < 0.4 * grid.h**2 * peak  # O(h^2) scheme
    assert abs(out.sum() - 1.0) < 1e-12 and abs(leaked[0]) < 1e-12
    # Without the heat step the error would be O(1): the comparison is not vacuous.
    assert np.max(np.abs(dens(w) - dens(expected))) > 0.1 * peak


def test_heat_step_adds_exact_variance_even_below_grid_spacing():
    grid = Grid(1, 5.0, 50, bounded=False)  # h = 0.2
    w = np.zeros((1, 50))
    w[0, 25] = 1.0
    var = 0.01  # sqrt(var) = h / 2
    out, _ = grid.heat(w, var)
    x = grid.nodes[:, 0] - grid.nodes[25, 0]
    assert abs(np.sum(out[0] * x**2) - var) < 1e-12


def test_heat_in_box_reflects_and_conserves_mass():
    grid = Grid(1, 1.0, 100, bounded=True)
    w = _gauss_masses(grid, [0.9], 0.05)[None]
    out, leaked = grid.heat(w, 0.01)
    assert abs(out.sum() - 1.0) < 1e-13 and leaked[0] == 0.0
    flat, _ = grid.heat(w, 100.0)  # long diffusion in a box: uniform
    np.testing.assert_allclose(flat[0], 1.0 / 100, rtol=1e-6)


def test_cdf_pushforward_of_affine_map_is_exact_gaussian():
    grid = Grid(1, 8.0, 800, bounded=False)
    m, s, k, b, eta = 0.5, 0.7, 2.0, 1.0, 0.2
    w = _gauss_masses(grid, [m], s)[None]
    out, err, monotone = pushforward_cdf(grid, w, lambda a: -k * a + b, eta)
    expected = _gauss_masses(grid, [(1 - eta * k) * m + eta * b], (1 - eta * k) * s)
    assert monotone and err[0] < 1e-14
    assert np.max(np.abs(out[0] - expected)) < 1e-4 * expected.max()


def test_semilagrangian_agrees_with_cdf_in_1d_and_is_exact_for_affine_2d():
    grid = Grid(1, 6.0, 600, bounded=False)
    w = _gauss_masses(grid, [0.2], 0.6)[None]
    vel = lambda a: np.sin(2 * a) - 0.5 * a  # noqa: E731  nonlinear, monotone map for eta=0.2
    a, _, _ = pushforward_cdf(grid, w, vel, 0.2)
    b, err = pushforward_semilagrangian(grid, w, vel, 0.2)
    assert np.max(np.abs(a - b)) < 1e-3 * a.max() and err[0] < 1e-6
    g2 = Grid(2, 5.0, 100, bounded=False)
    w2 = _gauss_masses(g2, [0.5, -0.5], 0.6).reshape((1,) + g2.shape)
    out, err2 = pushforward_semilagrangian(g2, w2, lambda x: -x, 0.25)
    expected = _gauss_masses(g2, [0.375, -0.375], 0.45).reshape(g2.shape)
    assert np.max(np.abs(out[0] - expected)) < 1e-3 * expected.max() and err2[0] < 1e-5


def test_transport_in_box_folds_mass_back():
    grid = Grid(1, 1.0, 200, bounded=True)
    w = _gauss_masses(grid, [0.8], 0.1)[None]
    out, err, _ = pushforward_cdf(grid, w, lambda a: np.ones_like(a), 0.5)  # push 0.5 to the right
    assert abs(out.sum() - 1.0) < 1e-13 and err[0] < 1e-13
    # All mass is still in the box, reflected: the mean moves left of the wall, not through it.
    assert np.sum(out[0] * grid.nodes[:, 0]) < 1.0
