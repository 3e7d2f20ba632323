"""Trainer behaviour: truncation is not termination, determinism, random warm-up, predict."""

import json

import gymnasium as gym
import jax
import numpy as np
import pytest

import wppg
from wppg import checkpoint as ckpt

TINY = dict(hidden=(16, 16), batch_size=16, learning_starts=40, eval_every=10_000, eval_episodes=1, progress=False)
TINY_WPPG = dict(K=2, entropy_M=2, entropy_L=2)


class Cliff(gym.Env):
    """Terminates when the state reaches -1 or 1; time limit 30 steps (truncation)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = np.zeros(1, np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.x = np.clip(self.x + 0.5 * np.asarray(action, np.float32), -1, 1)
        terminated = bool(abs(self.x[0]) >= 1.0)
        return self.x.copy(), float(self.x[0]), terminated, False, {}


def test_truncation_bootstraps_and_final_obs_is_kept():
    agent = wppg.SAC("Pendulum-v1", seed=0, **TINY)
    agent.learn(260)
    buf = agent.trainer.buffer
    assert buf.size == 260
    # Pendulum never terminates; its 200-step time limit truncates, which must not stop bootstrapping.
    assert not buf.data["terminated"][:260].any()
    # The stored next_obs at the truncation is the true last observation, not the reset one.
    assert not np.allclose(buf.data["next_obs"][199], buf.data["obs"][200])
    np.testing.assert_allclose(buf.data["next_obs"][198], buf.data["obs"][199])


def test_termination_is_stored():
    agent = wppg.WPPG(lambda: gym.wrappers.TimeLimit(Cliff(), 30), seed=0, **TINY, **TINY_WPPG)
    agent.learn(200)
    buf = agent.trainer.buffer
    term = buf.data["terminated"][: buf.size].astype(bool)
    assert term.any()
    np.testing.assert_allclose(np.abs(buf.data["next_obs"][: buf.size][term, 0]), 1.0)
    assert np.all(np.abs(buf.data["next_obs"][: buf.size][~term, 0]) < 1.0)


@pytest.mark.parametrize(
    "cls,kw", [pytest.param(wppg.SAC, {}, marks=pytest.mark.full), (wppg.WPPG, {"policy": "implicit", **TINY_WPPG})]
)
def test_same_seed_same_parameters(cls, kw):
    a = cls("Pendulum-v1", seed=3, **TINY, **kw).learn(120)
    b = cls("Pendulum-v1", seed=3, **TINY, **kw).learn(120)
    c = cls("Pendulum-v1", seed=4, **TINY, **kw).learn(120)
    same = jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.trainer.state, b.trainer.state))
    assert all(same)
    diff = jax.tree.leaves(
        jax.tree.map(
            lambda x, y: bool(np.array_equal(x, y)), a.trainer.state.actor_params, c.trainer.state.actor_params
        )
    )
    assert not all(diff)


def test_warmup_actions_are_uniform_in_the_box():
    agent = wppg.SAC("MountainCarContinuous-v0", seed=0, **{**TINY, "learning_starts": 500})
    agent.learn(400)
    a = agent.trainer.buffer.data["action"][:400, 0]
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.5  # uniform on [-1, 1] has std 0.577


def test_predict_shapes_and_modes():
    agent = wppg.WPPG("Pendulum-v1", policy="implicit", seed=0, **TINY, **TINY_WPPG)
    obs = np.zeros(3, np.float32)
    assert agent.predict(obs)[0].shape == (1,)
    assert agent.predict(np.zeros((5, 3)))[0].shape == (5, 1)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])
    samples = agent.predict(np.zeros((64, 3)))[0]
    assert samples.std() > 0  # the implicit policy is stochastic through z
    with pytest.raises(ValueError, match="obs must have shape"):
        agent.predict(np.zeros(4))


def test_vectorised_envs_count_steps():
    agent = wppg.SAC("Pendulum-v1", seed=0, n_envs=3, **TINY)
    agent.learn(90)
    assert agent.num_timesteps == 90 and agent.trainer.buffer.size == 90
    # Updates start once 40 steps are stored: after each of the 17 iterations at steps 42..90,
    # n_envs * utd = 3 gradient steps.
    assert int(agent.trainer.state.step) == 17 * 3


def test_the_first_row_warning_of_a_run_is_shown_once(monkeypatch, tmp_path):
    # The trainer's side: each train.csv row goes to the algorithm's `row_warning` until one warns;
    # that one is shown and no later row is checked (the criterion itself: tests/test_updates.py).
    seen = []

    def row_warning(self, row):
        seen.append(row)
        return "the learned temperature tau fell" if len(seen) >= 2 else None

    monkeypatch.setattr(wppg.algorithms.WPPGAlgorithm, "row_warning", row_warning)
    run_dir = tmp_path / "run"
    agent = wppg.WPPG("Pendulum-v1", policy="implicit", seed=3, log_every=20, run_dir=run_dir, **TINY, **TINY_WPPG)
    with pytest.warns(UserWarning, match="wppg at env step 60: the learned temperature tau fell") as record:
        agent.learn(120)
    assert len(seen) == 2 and "tau" in seen[0], "rows at steps 40 (updates begin) and 60; none after the warning"
    assert len([w for w in record if "learned temperature" in str(w.message)]) == 1, "once per run, not per row"
    # Kept for the record: in summary.json, and in the checkpoint, so a resumed run's summary keeps it.
    expected = ["wppg at env step 60: the learned temperature tau fell"]
    assert json.loads((run_dir / "summary.json").read_text())["warnings"] == expected
    assert ckpt.load(run_dir)[0]["warnings"] == expected
