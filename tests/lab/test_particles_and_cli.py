"""The plug-in entropy estimator, particle WPG, and the `wppg lab` command line."""

import math

import numpy as np
import pytest

from wppg.lab import GridMDP, make_problem
from wppg.lab import diagnostics as dg
from wppg.lab.cli import main
from wppg.lab.particles import ParticleConfig, initial_particles, mixture_entropy, particle_step, reflect_into_box


def test_plugin_entropy_estimates_smoothed_gaussian_entropy():
    rng = np.random.default_rng(0)
    s, sigma, d = 0.6, 0.2, 2
    x = s * rng.standard_normal((2, 1500, d))
    closed = 0.5 * d * math.log(2 * math.pi * math.e * (s**2 + sigma**2))
    est = mixture_entropy(x, sigma, rng)
    assert np.all(np.abs(est - closed) < 0.06)
    assert np.all(np.abs(mixture_entropy(x, 0.02, rng) - closed) > 0.15)  # wrong sigma, wrong target


def test_reflection_keeps_particles_in_box():
    x = np.array([[[1.3], [-2.6], [0.2], [5.1]]])
    np.testing.assert_allclose(reflect_into_box(x, 1.0)[0, :, 0], [0.7, 0.6, 0.2, 0.9])


def test_particle_wpg_approaches_the_optimum():
    mdp = GridMDP(make_problem("gauss1d", n_grid=161))
    cfg = ParticleConfig(n_particles=200, seed=3)
    rng = np.random.default_rng(cfg.seed)
    x = initial_particles(mdp, cfg, rng)
    opt = mdp.optimum()
    w2_start = dg.w2_particles(mdp.grid, x, opt.w).max()
    for k in range(80):
        x = particle_step(mdp, x, 0.1, cfg, rng, k=k)
    w2_end = dg.w2_particles(mdp.grid, x, opt.w).max()
    assert w2_end < 0.3 * w2_start and w2_end < 0.25


def test_cli_presets_and_a_tiny_experiment(tmp_path, capsys):
    assert main(["presets"]) == 0
    assert "cold1d" in capsys.readouterr().out
    assert main(["linear", "--out", str(tmp_path), "--presets", "gauss1d", "--max-iter", "15"]) == 0
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "linear.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        main(["no-such-experiment"])
