"""Deployment: `predict`'s SB3 shape, `Agent.policy`, the ONNX export (checked in onnxruntime) and
the NumPy forward pass of docs/guide/export.md, each against the library's own actions."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import wppg
from wppg.export import ExportError, export_weights, numpy_policy, policy_weights

DOC = Path(__file__).resolve().parents[1] / "docs" / "guide" / "export.md"
TINY = dict(hidden=(32, 32), batch_size=32, learning_starts=50, eval_episodes=1, progress=False)


@pytest.fixture(scope="module")
def agents() -> dict[str, wppg.Agent]:
    """Untrained SAC, WPPG-I and WPPG agents on a 2-D action box that is not [-1, 1] (scale and bias matter)."""
    import gymnasium as gym

    def env():
        return gym.wrappers.RescaleAction(
            gym.make("wppg/BanditFourModes-v0"), np.array([-2.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32)
        )

    return {
        "sac": wppg.SAC(env, seed=1, **TINY),
        "wppg-i": wppg.WPPG(env, policy="implicit", seed=2, K=2, latent_dim=3, **TINY),
        "wppg": wppg.WPPG(env, seed=3, K=2, **TINY),
    }


def observations(agent: wppg.Agent, n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, agent.env_info.obs_dim)).astype(np.float32)


def test_predict_returns_an_action_and_no_state(agents):
    agent = agents["wppg-i"]
    obs = observations(agent)
    action, state = agent.predict(obs[0], deterministic=True)
    assert action.shape == (2,) and state is None  # SB3's `action, _ = model.predict(obs)`
    actions, state = agent.predict(obs, state=None, episode_start=np.ones(len(obs), bool))
    assert actions.shape == (len(obs), 2) and state is None


@pytest.mark.parametrize("variant", ["sac", "wppg-i", "wppg"])
def test_policy_is_a_pure_function_of_its_parameters(agents, variant):
    agent = agents[variant]
    obs = observations(agent)
    params = agent.policy_params()
    act = agent.policy(deterministic=True)
    np.testing.assert_allclose(act(params, obs), agent.predict(obs, deterministic=True)[0], atol=1e-6)
    np.testing.assert_allclose(act(params, obs[3]), agent.predict(obs[3], deterministic=True)[0], atol=1e-6)
    # Other parameters of the same architecture give other actions: nothing is closed over.
    other = jax.tree.map(lambda x: x * 1.5, params)
    assert not np.allclose(act(other, obs), act(params, obs))
    sample = agent.policy(deterministic=False)
    a, b = sample(params, obs, jax.random.PRNGKey(0)), sample(params, obs, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a, sample(params, obs, jax.random.PRNGKey(0)))
    assert not np.allclose(a, b)
    given = agent.policy(noise_input=True)
    zero = np.zeros((len(obs), agent.noise_dim), np.float32)
    np.testing.assert_allclose(given(params, obs, zero), act(params, obs), atol=1e-6)


@pytest.mark.parametrize("variant", ["sac", "wppg-i", "wppg"])
def test_numpy_forward_pass_matches_the_library(agents, variant, tmp_path):
    agent = agents[variant]
    obs = observations(agent)
    w = np.load(export_weights(agent, tmp_path / "p.npz"))  # plain arrays: no pickle
    params = agent.policy_params()
    np.testing.assert_allclose(numpy_policy(w, obs), agent.policy()(params, obs), atol=1e-5)
    noise = np.random.default_rng(1).standard_normal((len(obs), agent.noise_dim)).astype(np.float32)
    want = agent.policy(noise_input=True)(params, obs, noise)
    np.testing.assert_allclose(numpy_policy(w, obs, noise), want, atol=1e-5)


def test_the_docs_forward_pass_is_the_tested_one(agents):
    """docs/guide/export.md holds `numpy_policy` verbatim, runnable with NumPy alone."""
    text = DOC.read_text()
    assert inspect.getsource(numpy_policy) in text
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def numpy_policy" in b)
    namespace: dict = {}
    exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the repository's own docs
    agent = agents["wppg-i"]
    obs = observations(agent)
    w = policy_weights(agent)
    np.testing.assert_allclose(namespace["numpy_policy"](w, obs), agent.predict(obs, deterministic=True)[0], atol=1e-5)


def test_ppo_has_no_numpy_export_but_a_policy():
    agent = wppg.PPO("Pendulum-v1", seed=0, progress=False, n_steps=64, n_minibatches=2)
    obs = observations(agent)
    np.testing.assert_allclose(agent.policy()(agent.policy_params(), obs), agent.predict(obs, deterministic=True)[0])
    with pytest.raises(ExportError, match="ONNX"):
        policy_weights(agent)
    with pytest.raises(ValueError, match="noise_input"):
        agent.policy(noise_input=True)


def test_onnx_export_matches_the_library(agents, tmp_path):
    """The ONNX files of SAC and WPPG-I (the mode, and WPPG-I with the latent as an input) in
    onnxruntime give the library's actions to 1e-5."""
    pytest.importorskip("jax2onnx")
    ort = pytest.importorskip("onnxruntime")
    from wppg.export import export_onnx, onnx_difference

    for variant, noise_input in (("sac", False), ("wppg-i", False), ("wppg-i", True)):
        agent = agents[variant]
        path = export_onnx(agent, tmp_path / f"{variant}-{noise_input}.onnx", noise_input=noise_input)
        assert onnx_difference(agent, path) < 1e-5, (variant, noise_input)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        obs = observations(agent, n=5, seed=7)
        feeds = {"obs": obs}
        if noise_input:
            feeds["noise"] = np.zeros((5, agent.noise_dim), np.float32)
        got = sess.run(["action"], feeds)[0]
        np.testing.assert_allclose(got, agent.predict(obs, deterministic=True)[0], atol=1e-5)
