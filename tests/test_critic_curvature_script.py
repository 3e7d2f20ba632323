"""experiments/tools/critic_curvature.py: the Hessian fit and the kurtosis on closed forms, and one row for a
tiny saved WPPG-I and SAC agent."""

from __future__ import annotations

import numpy as np
import pytest

import wppg


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("critic_curvature")


def test_hessian_fit_recovers_a_saddle(script):
    rng = np.random.default_rng(0)
    h = np.array([[3.0, 1.0], [1.0, -2.0]])  # -Q's Hessian: curves down along one axis, up along the other
    u = rng.normal(size=(4, 32, 2))
    grad = 0.7 - np.einsum("de,sne->snd", h, u - u.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(script.hessian_spectrum(u, grad), np.tile(np.linalg.eigvalsh(h), (4, 1)), atol=1e-9)


def test_kurtosis_of_two_clusters_is_one_and_of_a_gaussian_about_three(script):
    rng = np.random.default_rng(1)
    two = np.concatenate([np.full((1, 50, 2), [-1.0, 0.5]), np.full((1, 50, 2), [1.0, -0.5])], axis=1)
    assert script.pc1_kurtosis(two)[0] == pytest.approx(1.0)
    assert script.pc1_kurtosis(rng.normal(size=(1, 20000, 3)) * [3.0, 1.0, 1.0])[0] == pytest.approx(3.0, abs=0.15)


@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.full) for v in ("wppg-i", "sac")])
def test_measure_of_a_saved_agent(script, saved_tiny_agent, variant):
    agent = wppg.Agent.load(saved_tiny_agent(variant), progress=False)
    c = script.measure(agent, states=8, samples=16, eta=0.1)
    assert c.steps == 120 and len(c.eigenvalues) == 1
    assert np.isfinite([c.temperature, c.spread_ratio, c.kurtosis, *c.eigenvalues]).all()
    assert c.temperature > 0
    assert 0.0 <= c.convex_share <= 1.0 and 0.0 <= c.widened_share <= 1.0
