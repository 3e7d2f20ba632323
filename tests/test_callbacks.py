"""Callbacks in the shape of SB3's (`wppg.callbacks`): hooks, stopping, the ready-made ones."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import wppg
from wppg import Agent
from wppg.callbacks import (
    BaseCallback,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from wppg.checkpoint import load as load_checkpoint
from wppg.logger import read_csv


def sac(tiny, run_dir=None, **overrides):
    return wppg.SAC("Pendulum-v1", seed=0, run_dir=run_dir, progress=False, **tiny("sac", **overrides))


class Recorder(BaseCallback):
    def __init__(self, stop_at: int | None = None):
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def _init_callback(self) -> None:
        self.events.append(("init", self.model.num_timesteps))

    def _on_training_start(self) -> None:
        self.events.append(("start", self.num_timesteps))

    def _on_step(self) -> bool:
        self.events.append(("step", self.num_timesteps))
        return self.stop_at is None or self.num_timesteps < self.stop_at

    def _on_evaluation(self, result: dict[str, float]) -> None:
        self.events.append(("eval", int(result["step"])))

    def _on_training_end(self) -> None:
        self.events.append(("end", self.num_timesteps))


def test_hooks_are_called_in_order(tiny):
    rec = Recorder()
    sac(tiny, eval_every=40).learn(100, callback=rec)
    kinds = [k for k, _ in rec.events]
    assert kinds[:2] == ["init", "start"] and kinds[-1] == "end"
    assert [s for k, s in rec.events if k == "step"] == list(range(1, 101)) and rec.n_calls == 100
    assert [s for k, s in rec.events if k == "eval"] == [40, 80, 100]  # periodic, then the end of the call
    assert rec.events.index(("eval", 40)) < rec.events.index(("step", 40))  # a step's hook sees its evaluation


def test_false_stops_training_cleanly_with_a_checkpoint(tiny, tmp_path):
    steps = []

    def f(locals_, globals_):
        steps.append(locals_["env_steps"])
        return len(steps) < 60

    agent = sac(tiny, run_dir=tmp_path / "run")
    agent.learn(200, callback=f)
    assert agent.num_timesteps == 60 and steps[-1] == 60
    meta, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz")
    assert meta["env_steps"] == 60 and meta["last_eval"]["step"] == 60
    assert (tmp_path / "run" / "summary.json").exists()
    assert read_csv(tmp_path / "run" / "eval.csv")["step"] == [60.0]


def test_none_continues_and_a_list_stops_when_one_says_so(tiny):
    agent = sac(tiny)
    agent.learn(60, callback=lambda locals_, globals_: None)
    assert agent.num_timesteps == 60
    first, second = Recorder(), Recorder(stop_at=75)
    agent.learn(50, callback=[first, second])
    assert agent.num_timesteps == 75 and first.n_calls == second.n_calls == 15
    with pytest.raises(TypeError, match="callback must be"):
        agent.learn(10, callback=3)


def test_eval_at_end_false_skips_the_final_evaluation(tiny, tmp_path):
    agent = sac(tiny, run_dir=tmp_path / "run", eval_every=40)
    agent.learn(60, eval_at_end=False)
    assert read_csv(tmp_path / "run" / "eval.csv")["step"] == [40.0]
    assert agent.trainer.last_eval["step"] == 40
    meta, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz")
    assert meta["env_steps"] == 60  # the checkpoint still ends the call


def test_eval_callback_keeps_the_best_and_changes_nothing_of_the_run(tiny, tmp_path):
    best_dir = tmp_path / "best"
    cb = EvalCallback(eval_freq=30, n_eval_episodes=1, best_model_save_path=best_dir)
    with_cb = sac(tiny).learn(90, callback=cb, eval_at_end=False)
    assert [s for s, _ in cb.evaluations] == [30, 60, 90]
    assert cb.best_mean_reward == max(r for _, r in cb.evaluations)
    assert Agent.load(best_dir / "best_model.npz", progress=False).num_timesteps in (30, 60, 90)
    without = sac(tiny).learn(90, eval_at_end=False)
    for a, b in zip(jax.tree.leaves(with_cb.trainer.state), jax.tree.leaves(without.trainer.state)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_callback_saves_every_save_freq_steps(tiny, tmp_path):
    sac(tiny).learn(65, callback=CheckpointCallback(save_freq=20, save_path=tmp_path / "ck"), eval_at_end=False)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == [f"wppg_model_{n}_steps.npz" for n in (20, 40, 60)]
    assert Agent.load(tmp_path / "ck" / "wppg_model_40_steps.npz", progress=False).num_timesteps == 40


def test_stop_on_reward_threshold_alone_and_on_new_best(tiny):
    agent = sac(tiny, eval_every=30)
    agent.learn(100, callback=StopTrainingOnRewardThreshold(reward_threshold=-1e9))
    assert agent.num_timesteps == 30  # the engine's first evaluation reaches it
    agent = sac(tiny, eval_every=30)
    agent.learn(100, callback=StopTrainingOnRewardThreshold(reward_threshold=1e9))
    assert agent.num_timesteps == 100
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1e9)
    agent = sac(tiny)
    agent.learn(100, callback=EvalCallback(eval_freq=20, n_eval_episodes=1, callback_on_new_best=stop))
    assert agent.num_timesteps == 20


@pytest.mark.parametrize("bad", [0, 1.7, True, -5])
def test_learn_refuses_what_is_not_a_positive_int(tiny, bad):
    with pytest.raises(ValueError, match="total_timesteps must be an int >= 1"):
        sac(tiny).learn(bad)
