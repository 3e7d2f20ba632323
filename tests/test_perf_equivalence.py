"""The performance rewrites keep the math: same numbers to float tolerance, or the same
distribution where the random draws changed."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from wppg.algorithms import WPPGAlgorithm, WPPGConfig
from wppg.algorithms.base import grad_min_q, with_key_split
from wppg.coupling import couple, step_size
from wppg.entropy import entropy_from_samples, mixture_entropy
from wppg.envs import ActionBounds
from wppg.networks import MLP, StateSampleMLP
from wppg.noise import standard_normal
from wppg.policies import sample_latents

BOUNDS = ActionBounds(np.array([2.0, 1.0], np.float32), np.array([0.0, 0.5], np.float32))


def test_state_sample_mlp_equals_mlp_of_concatenation():
    """s W_s + y W_y + b per state and sample == [s, y] W + b with W = [W_s; W_y]."""
    net = StateSampleMLP((16, 8), 3)
    s = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    y = jax.random.normal(jax.random.PRNGKey(1), (5, 7, 2))
    params = net.init(jax.random.PRNGKey(2), s, y)["params"]
    mlp_params = {
        "Dense_0": {
            "kernel": jnp.concatenate([params["state_in"]["kernel"], params["sample_in"]["kernel"]]),
            "bias": params["state_in"]["bias"],
        },
        "Dense_1": params["Dense_0"],
        "Dense_2": params["Dense_1"],
    }
    concat = jnp.concatenate([jnp.broadcast_to(s[:, None], (5, 7, 4)), y], axis=-1)
    expected = MLP((16, 8), 3).apply({"params": mlp_params}, concat)
    np.testing.assert_allclose(net.apply({"params": params}, s, y), expected, rtol=1e-5, atol=1e-6)
    # one sample per state [B, Dy] gives the same as K = 1
    np.testing.assert_allclose(net.apply({"params": params}, s, y[:, 0]), expected[:, 0], rtol=1e-5, atol=1e-6)


def test_state_sample_mlp_init_matches_concatenated_lecun_normal():
    """Both first-layer blocks have the variance of a LeCun-normal layer of fan-in Ds + Dy."""
    s, y = jnp.zeros((1, 30)), jnp.zeros((1, 2))
    params = StateSampleMLP((512,), 1).init(jax.random.PRNGKey(0), s, y)["params"]
    ref = nn.Dense(512).init(jax.random.PRNGKey(1), jnp.zeros((1, 32)))["params"]["kernel"]
    for name in ("state_in", "sample_in"):
        np.testing.assert_allclose(float(jnp.std(params[name]["kernel"])), float(jnp.std(ref)), rtol=0.1)


def unfused_actor_update(algo, state, obs, key):
    """The actor step with the same draws, by the unfused path: a second forward inside the
    projection loss, one pass over all samples. Returns (loss, parameters after the Adam step)."""
    k_eps, k_xi = jax.random.split(key)
    eps = sample_latents(algo.policy, k_eps, obs.shape[0], algo.config.K)
    a0 = algo.policy.apply(state.actor_params, obs, eps)
    grad_q = grad_min_q(algo.critic, state.critic_params, obs, a0)
    c = algo.config
    eta = step_size(c.step_rule, a0, grad_q, c.eta)
    target = couple(c.coupling, a0, grad_q, eta, c.tau, k_xi, algo.scale, algo.box)
    loss, grads = jax.value_and_grad(algo.projection_loss)(state.actor_params, obs, eps, target)
    updates, _ = algo.actor_tx.update(grads, state.actor_opt, state.actor_params)
    return loss, jax.tree.map(lambda p, u: p + u, state.actor_params, updates)


@pytest.mark.parametrize(
    "policy, coupling, step_rule",
    [
        pytest.param("gaussian", "shared-latent", "explicit", marks=pytest.mark.full),
        pytest.param("implicit", "ot", "implicit", marks=pytest.mark.full),
        pytest.param("gaussian", "score", "explicit", marks=pytest.mark.full),
        pytest.param("implicit", "shared-latent", "explicit", marks=pytest.mark.full),
        ("implicit", "energy", "explicit"),
    ],
)
def test_actor_step_gradient_equals_projection_loss_gradient(policy, coupling, step_rule):
    """The VJP-reusing actor step applies exactly Adam(grad of the projection loss)."""
    config = WPPGConfig(policy=policy, hidden=(32, 32), K=4, tau=0.05, coupling=coupling, step_rule=step_rule)
    algo = WPPGAlgorithm(config, 3, BOUNDS)
    state = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    key = jax.random.PRNGKey(7)
    new, info = algo.actor_step(state, obs, key)
    loss, expected = unfused_actor_update(algo, state, obs, key)
    np.testing.assert_allclose(info["actor_loss"], loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new.actor_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "K, L, estimator",
    [
        (8, 8, "plug-in"),
        pytest.param(8, 4, "plug-in", marks=pytest.mark.full),
        pytest.param(4, 8, "plug-in", marks=pytest.mark.full),
        pytest.param(8, 8, "knn", marks=pytest.mark.full),
        (4, 8, "knn"),
    ],
)
def test_entropy_with_reused_bootstrap_samples_has_the_same_distribution(K, L, estimator):
    """H_hat(s') inside soft_value (baselines = bootstrap actions) against the estimator with its
    own independent draws, over 400 keys at one state: a two-sample KS test cannot tell them apart,
    while it does tell apart an estimator with a different number of centres."""
    cfg = WPPGConfig(policy="implicit", hidden=(32, 32), K=K, target_samples=K, entropy_M=4, entropy_L=L, tau=1.0,
                     entropy_estimator=estimator)  # fmt: skip
    algo = WPPGAlgorithm(cfg, 3, BOUNDS)
    state = algo.init(jax.random.PRNGKey(0))
    obs = jnp.array([[0.3, -0.2, 0.5]])

    def fused(key):
        _, info = algo.soft_value(state, obs, key)
        return info["entropy"]

    def separate(key, m, repeat=False):
        sample = lambda k, n: algo.policy.apply(state.actor_params, obs, sample_latents(algo.policy, k, 1, n))
        k_c, k_b, k_n = jax.random.split(key, 3)
        centres, baselines = sample(k_c, m), sample(k_c if repeat else k_b, L)
        return entropy_from_samples(estimator, centres, baselines, k_n, algo.scale, cfg.entropy_sigma)[0]

    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    a = np.asarray(jax.vmap(fused)(keys))
    b = np.asarray(jax.vmap(lambda k: separate(k, 4))(jax.random.split(jax.random.PRNGKey(2), 400)))
    # The power check: a real change. One centre for the plug-in; for knn (nearly unbiased, so the
    # number of samples barely moves it) the bug reuse could bring, baselines that repeat the centres.
    if estimator == "plug-in":
        c = np.asarray(jax.vmap(lambda k: separate(k, 1))(jax.random.split(jax.random.PRNGKey(3), 400)))
    else:
        c = np.asarray(jax.vmap(lambda k: separate(k, L, repeat=True))(jax.random.split(jax.random.PRNGKey(3), 400)))
    assert stats.ks_2samp(a, b).pvalue > 0.01
    assert stats.ks_2samp(a, c).pvalue < 1e-6  # the test has power against a real change


def test_update_compiles_once():
    """Repeated update calls with the trainer's fixed shapes reuse one compiled program."""
    algo = WPPGAlgorithm(WPPGConfig(hidden=(16,), K=2, entropy_M=2, entropy_L=2), 3, BOUNDS)
    state = algo.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    for i in range(3):
        batches = {
            "obs": rng.normal(size=(2, 8, 3)).astype(np.float32),
            "action": rng.uniform(-1, 1, (2, 8, 2)).astype(np.float32),
            "reward": rng.normal(size=(2, 8)).astype(np.float32),
            "next_obs": rng.normal(size=(2, 8, 3)).astype(np.float32),
            "terminated": np.zeros((2, 8), np.float32),
        }
        state, _ = algo.update(state, batches, jax.random.PRNGKey(i))
    assert algo.update._cache_size() == 1


def test_chunked_critic_passes_equal_one_pass():
    """min_q and grad_min_q chunk the K samples (`sample_chunks`); the values are those of one pass."""
    from wppg.algorithms.base import grad_min_q, min_q, sample_chunks

    algo = WPPGAlgorithm(WPPGConfig(hidden=(32, 32)), 3, BOUNDS)
    params = algo.init(jax.random.PRNGKey(0)).critic_params
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 3))
    a = jax.random.uniform(jax.random.PRNGKey(2), (64, 48, 2), minval=-1, maxval=1)
    assert sample_chunks(64, 48) == 3  # 16 samples x 64 states = 1024 rows per chunk
    one = jnp.min(algo.critic.apply(params, obs, a), axis=0)
    np.testing.assert_allclose(min_q(algo.critic, params, obs, a), one, rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda a: jnp.sum(jnp.min(algo.critic.apply(params, obs, a), axis=0)))(a)
    np.testing.assert_allclose(grad_min_q(algo.critic, params, obs, a), g, rtol=1e-5, atol=1e-6)


def test_chunked_implicit_actor_step_equals_one_pass():
    """With K * B above CHUNK_ROWS the implicit actor step runs chunk by chunk and sums the chunks'
    gradients: the same step as the unchunked projection gradient."""
    from wppg.algorithms.base import sample_chunks

    config = WPPGConfig(policy="implicit", hidden=(16,), K=8, tau=0.05, coupling="ot", latent_input="first")
    algo = WPPGAlgorithm(config, 3, BOUNDS)  # the paper's network runs per sample, chunk by chunk
    state = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (512, 3))
    assert sample_chunks(512, 8) == 4
    key = jax.random.PRNGKey(7)
    new, info = algo.actor_step(state, obs, key)
    loss, expected = unfused_actor_update(algo, state, obs, key)
    np.testing.assert_allclose(info["actor_loss"], loss, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(new.actor_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("d", [1, 3, 6, 17])
def test_mixture_entropy_per_coordinate_distances_equal_broadcast_reduction(d):
    """The estimator's squared distances, summed one coordinate at a time, give the entropy of the
    plain [B, L, M, d] broadcast-and-reduce formula."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(d))
    centres, baselines, sigma = (
        jax.random.uniform(k1, (8, 16, d), minval=-1),
        jax.random.uniform(k2, (8, 12, d), minval=-1),
        0.3,
    )
    sq = jnp.sum((baselines[:, :, None, :] - centres[:, None, :, :]) ** 2, axis=-1)
    log_kernel = -sq / (2 * sigma**2) - 0.5 * d * np.log(2 * np.pi * sigma**2)
    expected = -jnp.mean(jax.scipy.special.logsumexp(log_kernel, axis=-1) - np.log(16), axis=-1)
    np.testing.assert_allclose(mixture_entropy(centres, baselines, sigma), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(256, 32, 3), (64, 16, 1), (5, 7, 17), (3,)])
def test_standard_normal_drawn_flat_equals_jax_random_normal(shape):
    """The flat draw + reshape gives jax.random.normal's numbers, also under vmap over keys."""
    key = jax.random.PRNGKey(11)
    np.testing.assert_array_equal(standard_normal(key, shape), jax.random.normal(key, shape))
    keys = jax.random.split(key, 3)
    np.testing.assert_array_equal(
        jax.vmap(lambda k: standard_normal(k, shape))(keys), jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
    )


def test_keyed_update_equals_eager_split_then_update():
    """The trainers' update call (key split inside the compiled call) gives the numbers of
    splitting outside and calling `update`, and the same next key."""
    algo = WPPGAlgorithm(WPPGConfig(hidden=(16,), K=2, entropy_M=2, entropy_L=2), 3, BOUNDS)
    state = algo.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    batches = {"obs": rng.normal(size=(2, 8, 3)).astype(np.float32), "action": rng.uniform(-1, 1, (2, 8, 2)).astype(np.float32),
               "reward": rng.normal(size=(2, 8)).astype(np.float32), "next_obs": rng.normal(size=(2, 8, 3)).astype(np.float32),
               "terminated": np.zeros((2, 8), np.float32)}  # fmt: skip
    key = jax.random.PRNGKey(5)
    s1, m1, next_key = jax.jit(with_key_split(algo.update))(state, batches, key)
    expected_next, k = jax.random.split(key)
    s2, m2 = algo.update(state, batches, k)
    np.testing.assert_array_equal(next_key, expected_next)
    for a, b in zip(jax.tree.leaves((s1, m1)), jax.tree.leaves((s2, m2))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
