"""W2 against closed forms, KL, and the rate / slope fits."""

import math

import numpy as np

from wppg.lab import Grid
from wppg.lab import diagnostics as dg


def _gauss(grid: Grid, mean, std):
    w = np.exp(-0.5 * np.sum((grid.nodes - np.asarray(mean)) ** 2, axis=1) / std**2)
    return w / w.sum()


def test_w2_1d_matches_gaussian_closed_form():
    grid = Grid(1, 10.0, 2000, bounded=False)
    for (m1, s1), (m2, s2) in [((0.3, 0.5), (-1.0, 1.2)), ((0.0, 1.0), (0.0, 0.2)), ((2.0, 0.7), (2.5, 0.7))]:
        got = dg.w2_1d(grid.edges, _gauss(grid, [m1], s1), _gauss(grid, [m2], s2))
        assert abs(got - math.hypot(m1 - m2, s1 - s2)) < 1e-4


def test_w2_1d_exact_for_piecewise_uniform_and_zero_for_equal():
    grid = Grid(1, 1.0, 4, bounded=True)  # cells [-1,-.5], [-.5,0], [0,.5], [.5,1]
    a = np.array([1.0, 0, 0, 0])
    b = np.array([0, 0, 0, 1.0])
    assert abs(dg.w2_1d(grid.edges, a, b) - 1.5) < 1e-12  # a translation by 1.5
    u = np.full(4, 0.25)
    assert dg.w2_1d(grid.edges, u, u) < 1e-12
    # uniform on [-1, 1] vs uniform on [-1, -0.5]: quantiles 2u - 1 vs u/2 - 1
    assert abs(dg.w2_1d(grid.edges, u, a) - math.sqrt(1.5**2 / 3)) < 1e-12


def test_w2_2d_matches_translation_distance():
    grid = Grid(2, 3.0, 24, bounded=False)
    a, b = _gauss(grid, [0.5, 0.0], 0.5), _gauss(grid, [0.0, 0.25], 0.5)
    got = dg.w2_policies(grid, a[None], b[None])[0]
    assert abs(got - math.hypot(0.5, 0.25)) < 0.02  # atoms on a grid of spacing 0.25


def test_kl_matches_gaussian_closed_form():
    grid = Grid(1, 16.0, 3200, bounded=False)
    a, b = _gauss(grid, [0.0], 1.0), _gauss(grid, [1.0], 2.0)
    closed = math.log(2.0) + (1.0 + 1.0) / (2 * 4.0) - 0.5
    assert abs(dg.kl(a[None], b[None])[0] - closed) < 1e-6


def test_fits_recover_known_rate_and_slope():
    k = np.arange(200)
    err = 3.0 * 0.9**k + 1e-14
    rho, k0, k1 = dg.fit_rate(err, 1e-10, 1.0)
    assert abs(rho - 0.9) < 1e-6 and k0 > 0 and k1 > k0
    x = np.logspace(-2, 0, 7)
    slope, pref = dg.fit_loglog(x, 0.5 * x**2)
    assert abs(slope - 2) < 1e-9 and abs(pref - 0.5) < 1e-9
