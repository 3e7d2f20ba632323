"""The plug-in mixture entropy estimator against closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wppg.entropy import mixture_entropy, plug_in_entropy


def gaussian_entropy(d: int, var: float) -> float:
    return 0.5 * d * math.log(2 * math.pi * math.e * var)


def gaussian_sampler(std: float, scale: float, d: int, batch: int):
    """A 'policy' whose actions are scale * N(0, std^2 I): its smoothed entropy is closed-form."""
    return lambda key, n: scale * std * jax.random.normal(key, (batch, n, d))


@pytest.mark.parametrize("d", [1, 2])
def test_estimates_smoothed_gaussian_entropy(d):
    std, sigma, scale = 0.3, 0.1, 2.0
    est = plug_in_entropy(
        gaussian_sampler(std, scale, d, 64), jax.random.PRNGKey(0), jnp.full((d,), scale), sigma, 1024, 256
    )
    # Entropy of (pi * N(0, sigma^2)) in normalised units, plus d log(scale) for the env units.
    truth = gaussian_entropy(d, std**2 + sigma**2) + d * math.log(scale)
    assert abs(float(jnp.mean(est)) - truth) < 0.02 * d


def test_bias_shrinks_as_m_and_l_grow():
    std, sigma, d = 0.3, 0.1, 2
    truth = gaussian_entropy(d, std**2 + sigma**2)
    bias = []
    for m in (4, 32, 512):
        est = plug_in_entropy(gaussian_sampler(std, 1.0, d, 256), jax.random.PRNGKey(1), jnp.ones(d), sigma, m, m)
        bias.append(float(jnp.mean(est)) - truth)
    # A kernel density of few centres under-estimates the density at fresh points: upward bias.
    assert bias[0] > bias[1] > abs(bias[2])
    assert bias[0] > 0.2 and abs(bias[2]) < 0.05


def test_bias_grows_as_sigma_shrinks_at_fixed_m():
    std, d, m = 0.3, 1, 16
    bias = []
    for sigma in (0.3, 0.1, 0.01):
        truth = gaussian_entropy(d, std**2 + sigma**2)
        est = plug_in_entropy(gaussian_sampler(std, 1.0, d, 512), jax.random.PRNGKey(2), jnp.ones(d), sigma, m, m)
        bias.append(float(jnp.mean(est)) - truth)
    assert bias[0] < bias[1] < bias[2]
    assert bias[2] > 1.0  # kernels no longer overlap: the estimate blows up


def test_degenerate_policy_gives_kernel_entropy():
    # A deterministic policy: all centres coincide, so H_hat is exactly the entropy of N(0, sigma^2 I).
    d, sigma = 3, 0.2
    centres = jnp.zeros((5, 8, d))
    baselines = sigma * jax.random.normal(jax.random.PRNGKey(3), (8, 4000, d))
    est = mixture_entropy(centres[:1].repeat(8, 0), baselines, sigma)
    # Monte Carlo error of the mean over 8 x 4000 baselines is about 0.007.
    assert abs(float(jnp.mean(est)) - gaussian_entropy(d, sigma**2)) < 0.03


def test_stable_for_far_apart_samples():
    # Log-sum-exp: kernels far from every centre must not underflow to log(0).
    centres = jnp.zeros((1, 4, 1))
    baselines = jnp.full((1, 2, 1), 50.0)
    est = mixture_entropy(centres, baselines, 0.01)
    assert np.isfinite(est).all()
    expected = 50.0**2 / (2 * 0.01**2) + 0.5 * math.log(2 * math.pi * 0.01**2)
    assert np.allclose(est, expected, rtol=1e-5)


# --- the 'silverman' kernel width ------------------------------------------------------------------
def test_per_dimension_width_matches_the_scalar_path_and_the_closed_form():
    from wppg.entropy import mixture_entropy

    key = jax.random.PRNGKey(0)
    c = jax.random.normal(key, (64, 8, 2))
    b = jax.random.normal(jax.random.PRNGKey(1), (64, 8, 2))
    np.testing.assert_allclose(mixture_entropy(c, b, jnp.full((64, 2), 0.3)), mixture_entropy(c, b, 0.3), rtol=1e-5)
    # One centre at 0 and baselines from N(0, diag h^2): the estimate is the Gaussian's entropy.
    h = jnp.array([0.05, 0.4])
    base = h * jax.random.normal(jax.random.PRNGKey(2), (1, 200_000, 2))
    exact = math.log(2 * math.pi * math.e) + float(jnp.sum(jnp.log(h)))
    assert float(mixture_entropy(jnp.zeros((1, 1, 2)), base, h[None])[0]) == pytest.approx(exact, abs=0.01)


def test_silverman_width_cuts_the_bias_on_broad_policies_and_leaves_narrow_ones_alone():
    from wppg.entropy import calibrated_entropy_target, entropy_from_samples

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    uniform_c = jax.random.uniform(k1, (2048, 8, 2), minval=-1, maxval=1)
    uniform_b = jax.random.uniform(k2, (2048, 8, 2), minval=-1, maxval=1)
    fixed = float(jnp.mean(entropy_from_samples("plug-in", uniform_c, uniform_b, k3, jnp.ones(2), 0.1, "fixed")))
    wide = float(jnp.mean(entropy_from_samples("plug-in", uniform_c, uniform_b, k3, jnp.ones(2), 0.1, "silverman")))
    # The uniform's entropy is log 4 = 1.39; smoothed by Silverman's h (about 0.41) about 2.
    assert fixed > 8.0 and 1.39 < wide < 3.0
    # A narrow policy (std 0.03: Silverman's h < sigma = 0.1): both rules give the same numbers.
    narrow_c, narrow_b = 0.05 * uniform_c, 0.05 * uniform_b
    np.testing.assert_allclose(
        entropy_from_samples("plug-in", narrow_c, narrow_b, k3, jnp.ones(2), 0.1, "fixed"),
        entropy_from_samples("plug-in", narrow_c, narrow_b, k3, jnp.ones(2), 0.1, "silverman"),
        rtol=1e-6,
    )
    assert calibrated_entropy_target(-1.0, 1, 0.1, 8, 8, bandwidth="silverman") == pytest.approx(
        calibrated_entropy_target(-1.0, 1, 0.1, 8, 8), abs=1e-3
    )


def test_entropy_bandwidth_is_validated():
    from wppg.algorithms import WPPGConfig

    with pytest.raises(ValueError, match="entropy_bandwidth"):
        WPPGConfig(entropy_bandwidth="scott").validate()


@pytest.mark.parametrize("d", [1, 2, 3])
def test_knn_estimator_is_nearly_unbiased_on_gaussians_and_the_uniform(d):
    """Kozachenko-Leonenko at N = 16 samples per state: within 0.12 nats of the closed form on an
    isotropic Gaussian (std 0.3) and above but within 0.4 nats of the uniform's d log 2 on the box
    (nearest neighbours at the boundary are farther away); the plug-in at M = L = 8 reads far more."""
    from wppg.entropy import entropy_from_samples, knn_entropy

    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    gauss = 0.3 * jax.random.normal(k1, (4096, 16, d))
    exact = 0.5 * d * math.log(2 * math.pi * math.e * 0.09)
    assert float(jnp.mean(knn_entropy(gauss))) == pytest.approx(exact, abs=0.12)
    uniform = jax.random.uniform(k2, (4096, 16, d), minval=-1, maxval=1)
    knn = float(jnp.mean(knn_entropy(uniform)))
    assert d * math.log(2) < knn < d * math.log(2) + 0.4
    # The dispatcher: the two halves as centres and baselines, on a box of half-width 2 (entropy + d log 2).
    scale = jnp.full(d, 2.0)
    both = entropy_from_samples("knn", 2 * uniform[:, :8], 2 * uniform[:, 8:], k1, scale, 0.1)
    np.testing.assert_allclose(both, knn_entropy(uniform) + d * math.log(2.0), rtol=1e-5, atol=1e-5)
    plug_in = float(jnp.mean(entropy_from_samples("plug-in", uniform[:, :8], uniform[:, 8:], k1, jnp.ones(d), 0.1)))
    assert plug_in > knn + 0.5 * d


def test_knn_estimator_closed_form_on_two_points_and_its_floor():
    """Two points at distance r in 1-D: H = psi(2) - psi(1) + log 2 + log r; a collapsed sample set reads the floor."""
    from wppg.entropy import KNN_FLOOR, knn_entropy

    r = 0.37
    expected = 1.0 + math.log(2.0) + math.log(r)  # psi(2) - psi(1) = 1; the unit 1-ball has length 2
    assert float(knn_entropy(jnp.array([[[0.1], [0.1 + r]]]))[0]) == pytest.approx(expected, rel=1e-5)
    # 16 coinciding points in 2-D: psi(16) - psi(1) + log(pi) + 2 log(floor), psi(16) - psi(1) = H_15.
    harmonic = sum(1.0 / i for i in range(1, 16))
    floor = harmonic + math.log(math.pi) + 2 * math.log(KNN_FLOOR)
    assert float(knn_entropy(jnp.zeros((1, 16, 2)))[0]) == pytest.approx(floor, rel=1e-5)


def test_entropy_estimator_is_validated():
    from wppg.algorithms import WPPGConfig

    with pytest.raises(ValueError, match="entropy_estimator"):
        WPPGConfig(entropy_estimator="histogram").validate()


def test_knn_reads_unequal_widths_too_high_and_the_whitened_knn_does_not():
    """A 6-D Gaussian with independent coordinates whose stds span a factor 30 (entropy -6, that of the
    'cpu' preset's target): at N = 16, 'knn' reads it more than 2 nats too high against what it reads
    on the isotropic Gaussian of the same entropy (the calibrated target); 'knn-whitened' reads both
    alike, and its calibrated target is the true entropy within 0.1 nats."""
    from wppg.entropy import calibrated_entropy_target, entropy_from_samples, whitened_knn_entropy

    d, entropy = 6, -6.0
    iso = math.exp(entropy / d) / math.sqrt(2 * math.pi * math.e)
    log_ratio = np.linspace(-0.5, 0.5, d) * math.log(30.0)
    stds = jnp.asarray(iso * np.exp(log_ratio - log_ratio.mean()))  # same product of stds: same entropy
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    centres, baselines = stds * jax.random.normal(k1, (4096, 8, d)), stds * jax.random.normal(k2, (4096, 8, d))

    def reads(estimator: str) -> float:
        return float(jnp.mean(entropy_from_samples(estimator, centres, baselines, k1, jnp.ones(d), 0.1)))

    assert reads("knn") > calibrated_entropy_target(entropy, d, 0.1, 8, 8, estimator="knn") + 2.0
    whitened_target = calibrated_entropy_target(entropy, d, 0.1, 8, 8, estimator="knn-whitened")
    assert reads("knn-whitened") == pytest.approx(whitened_target, abs=0.05)
    assert whitened_target == pytest.approx(entropy, abs=0.1)
    # Scaling one coordinate by c moves the estimate by exactly log c; a collapsed coordinate reads its floor.
    x = jax.random.normal(k2, (3, 16, 2))
    np.testing.assert_allclose(
        whitened_knn_entropy(x * jnp.array([1.0, 5.0])), whitened_knn_entropy(x) + math.log(5.0), atol=1e-4
    )
    assert float(whitened_knn_entropy(x.at[..., 1].set(0.0))[0]) < -8.0
