"""PPO: GAE, the clipped losses, the normalisers, the on-policy trainer, exact resume, errors."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.wrappers.utils import RunningMeanStd

import wppg
from wppg import checkpoint as ckpt
from wppg.agent import Agent
from wppg.algorithms import ConfigError, PPOConfig
from wppg.algorithms.ppo import (
    PPOAlgorithm,
    Rollout,
    RunningStats,
    clipped_surrogate,
    clipped_value_loss,
    gae,
    gaussian_log_prob,
    next_state_values,
    normalize_obs,
    scale_rewards,
)
from wppg.envs import ActionBounds, ActionSpaceError
from wppg.logger import read_csv

# Rollouts of 64 steps in 4 minibatches of 16, 2 epochs: 8 gradient steps per update.
TINY = {
    "n_steps": 64,
    "n_epochs": 2,
    "n_minibatches": 4,
    "hidden": (32, 32),
    "eval_episodes": 1,
    "eval_every": 10**6,
    "checkpoint_every": 0,
    "log_every": 10**6,
}


# --- GAE ------------------------------------------------------------------------------------------
def reference_gae(rewards, values, last_value, final_value, terminated, truncated, gamma, lam):
    """Plain loops over envs and steps, episode by episode: a terminated episode has no value
    after its end, a truncated one the value of its true final observation."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        for t in reversed(range(T)):
            if terminated[t, n]:
                next_value, next_adv = 0.0, 0.0
            elif truncated[t, n]:
                next_value, next_adv = final_value[t, n], 0.0
            elif t == T - 1:
                next_value, next_adv = last_value[n], 0.0
            else:
                next_value, next_adv = values[t + 1, n], adv[t + 1, n]
            delta = rewards[t, n] + gamma * next_value - values[t, n]
            adv[t, n] = delta + gamma * lam * next_adv
    return adv


@pytest.mark.parametrize("lam", [0.95, 1.0, 0.0])
def test_gae_matches_reference_loop(lam):
    rng = np.random.default_rng(0)
    T, N, gamma = 13, 3, 0.9
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    last_value = rng.normal(size=N)
    end = rng.uniform(size=(T, N))
    terminated = (end < 0.15).astype(np.float32)
    truncated = ((end >= 0.15) & (end < 0.3)).astype(np.float32)
    truncated[-1, 0], terminated[-1, 0] = 1.0, 0.0  # an episode cut by the time limit at the rollout's end
    assert terminated.sum() >= 3 and truncated.sum() >= 3
    dones = np.maximum(terminated, truncated)
    # EnvPool gives the true final observation; its value is only stored at truncations.
    final_value = np.where(truncated > 0, rng.normal(size=(T, N)), 0.0)

    expected = reference_gae(rewards, values, last_value, final_value, terminated, truncated, gamma, lam)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    next_values = next_state_values(f32(values), f32(last_value), f32(final_value), f32(dones))
    adv, returns = gae(f32(rewards), f32(values), next_values, f32(terminated), f32(dones), gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-5, atol=1e-5)
    # the control: treating truncations as terminations changes the advantages there
    wrong = reference_gae(rewards, values, last_value, final_value, dones, np.zeros_like(dones), gamma, lam)
    assert not np.allclose(wrong, expected)


class Alternating(gym.Env):
    """obs = [t / 10, episode parity]. Even episodes are truncated (time limit) at t = 4, odd ones
    terminate at t = 3."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.t / 10, self.episode % 2], np.float32)

    def step(self, action):
        self.t += 1
        odd = self.episode % 2 == 1
        return self._obs(), 1.0, odd and self.t == 3, (not odd) and self.t == 4, {}


def test_rollout_records_truncation_and_termination():
    """Through EnvPool: a truncation stores done = 1, terminated = 0 and the value of the true
    final observation (not of the reset one); a termination stores terminated = 1 and no value."""
    agent = wppg.PPO(Alternating, seed=0, progress=False, norm_obs=False, **{**TINY, "n_steps": 16})
    agent.learn(14)  # 14 < n_steps: no update yet, so the parameters are those that filled the rollout
    data, state = agent.trainer.rollout.data, agent.trainer.state
    assert agent.trainer.rollout.ptr == 14 and int(state.step) == 0
    ends = [3, 6, 10, 13]
    np.testing.assert_array_equal(np.flatnonzero(data["done"][:14, 0]), ends)
    np.testing.assert_array_equal(np.flatnonzero(data["terminated"][:14, 0]), [6, 13])
    v_final = float(agent.algorithm.value(state, np.array([[0.4, 0.0]], np.float32))[0])
    v_reset = float(agent.algorithm.value(state, np.array([[0.0, 1.0]], np.float32))[0])
    assert v_final != v_reset
    expected = np.zeros(14, np.float32)
    expected[[3, 10]] = v_final
    np.testing.assert_allclose(data["final_value"][:14, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(data["obs"][4, 0], [0.0, 1.0])  # the step after a truncation acts on the reset obs


# --- losses -----------------------------------------------------------------------------------------
def test_clipped_surrogate_hand_computed():
    ratio = jnp.array([0.5, 1.0, 1.5, 1.5, 0.7])
    adv = jnp.array([1.0, -2.0, 1.0, -1.0, -1.0])
    # per element max(-A r, -A clip(r, 0.8, 1.2)): -0.5, 2, -1.2, 1.5, 0.8
    np.testing.assert_allclose(clipped_surrogate(ratio, adv, 0.2), (-0.5 + 2.0 - 1.2 + 1.5 + 0.8) / 5, rtol=1e-6)
    # the gradient is -A / n where the unclipped term is the max, 0 where the clipped one is
    grad = jax.grad(clipped_surrogate)(ratio, adv, 0.2)
    np.testing.assert_allclose(grad, [-0.2, 0.4, 0.0, 0.2, 0.0], atol=1e-7)


def test_clipped_value_loss_hand_computed():
    value, old, target = jnp.array([1.0, 2.5]), jnp.array([0.5, 2.0]), jnp.array([0.0, 3.0])
    # element 0: max((1 - 0)^2, (0.7 - 0)^2) = 1; element 1: max((2.5 - 3)^2, (2.2 - 3)^2) = 0.64
    np.testing.assert_allclose(clipped_value_loss(value, old, target, 0.2), 0.5 * (1.0 + 0.64) / 2, rtol=1e-6)
    np.testing.assert_allclose(clipped_value_loss(value, old, target, None), 0.5 * (1.0 + 0.25) / 2, rtol=1e-6)


def test_gaussian_log_prob_matches_scipy():
    from scipy import stats

    a, mu, log_std = np.array([[0.3, -1.2]]), np.array([[0.1, 0.4]]), np.array([-0.5, 0.2])
    expected = stats.norm.logpdf(a, mu, np.exp(log_std)).sum()
    np.testing.assert_allclose(
        gaussian_log_prob(jnp.asarray(a), jnp.asarray(mu), jnp.asarray(log_std)), [expected], rtol=1e-5
    )


# --- normalisers ------------------------------------------------------------------------------------
def pooled(values: np.ndarray, prior_count: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of all values together with gymnasium's prior (mean 0, var 1, weight 1e-4)."""
    n = values.shape[0] + prior_count
    mean = values.sum(axis=0) / n
    var = (prior_count * (1.0 + mean**2) + ((values - mean) ** 2).sum(axis=0)) / n
    return mean, var


def test_running_stats_match_numpy_and_gymnasium():
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=[5.0, -2.0, 0.0, 100.0], scale=[2.0, 0.5, 1.0, 10.0], size=(3, 4)) for _ in range(60)]
    stats, gym_rms = RunningStats.create((4,)), RunningMeanStd(shape=(4,))
    update = jax.jit(RunningStats.update)
    for i, b in enumerate(batches):
        stats = update(stats, jnp.asarray(b, jnp.float32))
        gym_rms.update(b)
        if i in (0, 9, 59):
            mean, var = pooled(np.concatenate(batches[: i + 1]))
            np.testing.assert_allclose(stats.mean, mean, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(stats.var, var, rtol=1e-4)
    np.testing.assert_allclose(stats.mean, gym_rms.mean, rtol=1e-5)
    np.testing.assert_allclose(stats.var, gym_rms.var, rtol=1e-4)
    np.testing.assert_allclose(stats.count, gym_rms.count, rtol=1e-6)
    x = jnp.asarray(batches[0], jnp.float32)
    expected = np.clip((batches[0] - gym_rms.mean) / np.sqrt(gym_rms.var + 1e-8), -10, 10)
    np.testing.assert_allclose(normalize_obs(stats, x, 10.0), expected, rtol=1e-4, atol=1e-5)
    far = normalize_obs(stats, jnp.full((1, 4), 1e6), 10.0)
    np.testing.assert_array_equal(far, 10.0)


def test_reward_scaling_matches_numpy_loop():
    rng = np.random.default_rng(2)
    T, N, gamma = 80, 2, 0.9
    rewards = rng.normal(1.0, 3.0, size=(T, N))
    dones = (rng.uniform(size=(T, N)) < 0.1).astype(np.float32)
    rewards[-1, 1] = 1e4  # a spike, about 12.6 std of the 160 returns seen: the clip at 10 must catch it
    seen, ret, expected = [], np.zeros(N), np.zeros((T, N))
    for t in range(T):
        ret = gamma * ret + rewards[t]
        seen.extend(ret)
        _, var = pooled(np.asarray(seen))
        expected[t] = np.clip(rewards[t] / np.sqrt(var + 1e-8), -10, 10)
        ret = np.where(dones[t] > 0, 0.0, ret)
    stats, got_ret, scaled = scale_rewards(
        RunningStats.create(), jnp.zeros(N), jnp.asarray(rewards, jnp.float32), jnp.asarray(dones), gamma, 10.0
    )
    np.testing.assert_allclose(scaled, expected, rtol=1e-4, atol=1e-6)
    assert scaled[-1, 1] == 10.0
    np.testing.assert_allclose(got_ret, ret, rtol=1e-5)
    np.testing.assert_allclose(stats.var, pooled(np.asarray(seen))[1], rtol=1e-4)


# --- the update --------------------------------------------------------------------------------------
def test_learning_rate_anneals_linearly_to_zero():
    cfg = PPOConfig(n_steps=64, n_epochs=2, n_minibatches=4, learning_rate=1e-3)
    algo = PPOAlgorithm(
        cfg, 3, ActionBounds(np.ones(1, np.float32), np.zeros(1, np.float32)), n_envs=2, total_steps=640
    )
    assert algo.n_iterations == 5 and algo.grad_steps_per_update == 8
    lrs = [float(algo.learning_rate(jnp.asarray(8 * k))) for k in range(7)]
    np.testing.assert_allclose(lrs, [1e-3, 8e-4, 6e-4, 4e-4, 2e-4, 0.0, 0.0], atol=1e-9)
    assert float(algo.learning_rate(jnp.asarray(15))) == pytest.approx(8e-4)  # constant within an update
    flat = PPOAlgorithm(
        PPOConfig(anneal_lr=False, learning_rate=1e-3), 3, ActionBounds(np.ones(1, np.float32), np.zeros(1, np.float32))
    )
    assert float(flat.learning_rate(jnp.asarray(10**6))) == pytest.approx(1e-3)


def test_update_moves_the_mean_towards_better_actions():
    """One-step episodes with reward -(a - 0.5)^2: an update raises the policy mean towards 0.5,
    and runs n_epochs * n_minibatches gradient steps."""
    cfg = PPOConfig(n_steps=128, n_epochs=8, n_minibatches=4, hidden=(16,), learning_rate=3e-3, norm_reward=False)
    bounds = ActionBounds(np.full(1, 2.0, np.float32), np.zeros(1, np.float32))
    algo = PPOAlgorithm(cfg, 2, bounds, n_envs=1, total_steps=10**6)
    state = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (128, 2))
    state, out, _ = algo.explore(state, obs, jax.random.PRNGKey(2))  # a batch of 128 states at once
    reward = -((out["action"][:, 0] - 0.5) ** 2)
    col = lambda x: x[:, None]  # T = 128 steps of one env
    ones = jnp.ones((128, 1))
    rollout = Rollout(
        obs=out["obs"][:, None], action=out["action"][:, None], log_prob=col(out["log_prob"]), value=col(out["value"]),
        reward=col(reward), terminated=ones, done=ones, final_value=0 * ones, last_value=jnp.zeros(1),
    )  # fmt: skip
    mean_before = float(algo.act(state.actor_params, obs, None, deterministic=True).mean())
    new_state, metrics = algo.update(state, rollout, jax.random.PRNGKey(3))
    mean_after = float(algo.act(new_state.actor_params, obs, None, deterministic=True).mean())
    assert abs(mean_before) < 0.01 and 0.03 < mean_after < 0.5, (mean_before, mean_after)
    assert int(new_state.step) == 32
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert 0.0 <= float(metrics["clip_fraction"]) <= 1.0 and float(metrics["approx_kl"]) >= 0.0
    again, _ = algo.update(state, rollout, jax.random.PRNGKey(3))  # pure: same inputs, same result
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), again, new_state)))


# --- agent, trainer, run directory ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ppo") / "run"
    agent = wppg.PPO(
        "Pendulum-v1", seed=0, run_dir=run_dir, progress=False, total_steps=300, **{**TINY, "log_every": 100}
    )
    agent.learn(300)
    return agent, run_dir


def test_smoke_run_writes_the_run_directory(trained):
    agent, d = trained
    for name in ("checkpoints/last.npz", "eval.csv", "train.csv", "summary.json"):
        assert (d / name).is_file(), name
    assert any((d / "tb").iterdir())
    summary = json.loads((d / "summary.json").read_text())
    keys = {
        "env_steps",
        "gradient_steps",
        "wall_time_s",
        "cpu_time_s",
        "steps_per_s",
        "update_time_s",
        "update_calls",
        "ms_per_gradient_step",
        "peak_rss_mb",
        "final_eval",
    }
    assert keys <= set(summary), keys - set(summary)
    # 300 steps = 4 full rollouts of 64 (8 gradient steps each) and 44 steps of the fifth
    assert summary["env_steps"] == 300 and summary["update_calls"] == 4 and summary["gradient_steps"] == 32
    assert summary["variant"] == "ppo" and agent.trainer.rollout.ptr == 44
    train = read_csv(d / "train.csv")
    assert train["step"] == [100, 200, 300]
    for name in ("policy_loss", "value_loss", "approx_kl", "entropy", "learning_rate"):
        assert np.all(np.isfinite(train[name])), name
    assert np.isfinite(summary["final_eval"]["return_mode"])


def test_predict_uses_the_frozen_observation_statistics(trained):
    agent, _ = trained
    stats = agent.trainer.state.obs_stats
    assert float(stats.count) == pytest.approx(300, abs=1e-3)
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    mode = agent.predict(obs, deterministic=True)[0]
    params = agent.trainer.state.params
    expected = np.clip(agent.algorithm.actor.apply(params["actor"], normalize_obs(stats, obs, 10.0)), -2.0, 2.0)
    np.testing.assert_allclose(mode, expected, rtol=1e-6)
    agent.evaluate(1)
    assert agent.trainer.state.obs_stats is stats  # acting outside training leaves them untouched
    unnormalised = np.clip(agent.algorithm.actor.apply(params["actor"], obs), -2.0, 2.0)
    assert not np.allclose(mode, unnormalised)
    samples = agent.predict(np.repeat(obs[:1], 256, axis=0))[0]
    assert samples.std() > 0 and samples.min() >= -2.0 and samples.max() <= 2.0


def test_load_keeps_predictions_and_statistics(trained):
    agent, d = trained
    loaded = Agent.load(d, progress=False)
    assert isinstance(loaded, wppg.PPO) and loaded.num_timesteps == 300
    obs = np.random.default_rng(1).uniform(-1, 1, (8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(loaded.trainer.state.obs_stats.mean, agent.trainer.state.obs_stats.mean)
    assert loaded.trainer.rollout.ptr == 44
    with pytest.warns(UserWarning, match="past total_steps=300"):  # the annealed learning rate is 0 there
        loaded.learn(1)
    assert loaded.num_timesteps == 301 and loaded.trainer.rollout.ptr == 45
    with pytest.raises(ckpt.CheckpointError, match=r"holds a ppo agent, not sac"):
        wppg.SAC.load(d)


def _leaves(agent):
    return [
        (jax.tree_util.keystr(p), np.asarray(x)) for p, x in jax.tree_util.tree_leaves_with_path(agent.trainer.state)
    ]


def test_exact_resume(tmp_path):
    """learn(2N) == learn(N); save; load; learn(N), bit for bit. N = 150 falls inside a rollout
    (64 steps) and inside a Pendulum episode; the second half crosses a time-limit truncation."""
    n, hyper = 150, {**TINY, "total_steps": 300}
    straight = wppg.PPO("Pendulum-v1", seed=5, progress=False, **hyper).learn(2 * n)
    first = wppg.PPO("Pendulum-v1", seed=5, progress=False, **hyper).learn(n)
    assert first.trainer.rollout.ptr > 0 and first.trainer.pool.ep_length[0] > 0
    path = first.save(tmp_path / "half.npz")
    resumed = wppg.PPO.load(path, progress=False)
    resumed.learn(n)
    exp, got = _leaves(straight), _leaves(resumed)
    assert [p for p, _ in exp] == [p for p, _ in got]
    differ = [p for (p, a), (_, b) in zip(exp, got) if a.dtype != b.dtype or not np.array_equal(a, b)]
    assert not differ, f"state leaves differ after resume: {differ[:6]}"
    assert int(resumed.trainer.state.step) == int(straight.trainer.state.step) == 32
    for name, arr in straight.trainer.rollout.data.items():
        np.testing.assert_array_equal(resumed.trainer.rollout.data[name][:44], arr[:44], err_msg=name)
    assert np.array_equal(np.asarray(resumed.trainer.key), np.asarray(straight.trainer.key))
    assert np.array_equal(resumed.trainer.pool.obs, straight.trainer.pool.obs)
    # evaluation keys depend on the evaluation index (one more evaluation in the split run), so only
    # the mode return, with its fixed reset seeds, must agree
    assert resumed.trainer.last_eval["return_mode"] == straight.trainer.last_eval["return_mode"]
    # the control: the comparison can fail (resuming with a fresh policy ends elsewhere)
    fresh = wppg.PPO("Pendulum-v1", seed=6, progress=False, **hyper).learn(n)
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(_leaves(fresh), got))


def test_corrupt_rollout_in_checkpoint(trained, tmp_path):
    agent, _ = trained
    path = agent.save(tmp_path / "ppo.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["rollout/obs"] = arrays["rollout/obs"][:10]
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ckpt.CheckpointError, match="rollout field obs has shape"):
        Agent.load(tmp_path / "bad.npz", progress=False)


# --- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_steps": 0}, "n_steps"),
        ({"n_epochs": 0}, "n_epochs"),
        ({"n_minibatches": 0}, "n_minibatches"),
        ({"n_steps": 64, "n_minibatches": 3}, "n_minibatches"),
        ({"n_steps": 64, "n_minibatches": 64}, "n_minibatches"),
        ({"gamma": 1.0}, "gamma"),
        ({"gae_lambda": 1.5}, "gae_lambda"),
        ({"clip_coef": 0.0}, "clip_coef"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"vf_coef": -0.5}, "vf_coef"),
        ({"ent_coef": -0.01}, "ent_coef"),
        ({"clip_obs": 0.0}, "clip_obs"),
        ({"hidden": (32, 0)}, "hidden"),
        ({"learning_starts": 100}, "learning_starts"),
        ({"batch_size": 64}, "batch_size"),
        ({"buffer_size": 1000}, "buffer_size"),
        ({"utd": 2}, "utd"),
        ({"train_freq": 4}, "train_freq"),
        ({"n_envs": 0}, "n_envs"),
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
def test_invalid_hyperparameter(kwargs, field, tmp_path):
    """A ConfigError that starts with the field's name, before anything is written."""
    with pytest.raises(ConfigError) as err:
        wppg.PPO("Pendulum-v1", run_dir=tmp_path / "run", progress=False, **kwargs)
    assert re.match(rf"{field}\b", str(err.value)), str(err.value)
    assert not (tmp_path / "run").exists()


def test_unknown_keyword_and_action_space():
    with pytest.raises(TypeError, match=r"unknown hyperparameter.*'K'.*valid:.*'clip_coef'"):
        wppg.PPO("Pendulum-v1", progress=False, K=4)
    with pytest.raises(ActionSpaceError, match="Discrete"):
        wppg.PPO("CartPole-v1", progress=False)
