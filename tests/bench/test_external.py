"""External references (SB3 SAC/PPO, SBX SAC) under our protocol.

The key mapping, the evaluation adapter and the files run without the `external` extra; the
tiny training runs skip when stable-baselines3 / sbx are not installed.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from wppg.bench import external
from wppg.bench.external import (
    ProtocolEvaluator,
    ProtocolRecorder,
    ProtocolSettings,
    map_hyperparameters,
)
from wppg.config import ConfigError
from wppg.logger import RunLogger

EVAL_COLUMNS = ["step", "return_stochastic", "return_stochastic_std", "return_mode", "return_mode_std"]
# The keys `Trainer.learn` writes into summary.json (besides its meta).
SUMMARY_KEYS = {
    "algo", "variant", "env_id", "env_steps", "gradient_steps", "wall_time_s", "cpu_time_s", "steps_per_s",
    "update_time_s", "update_calls", "ms_per_gradient_step", "peak_rss_mb", "final_eval", "reference_package",
    "reference_version",
}  # fmt: skip


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# --- hyperparameter mapping ------------------------------------------------------------------------


def test_sac_defaults_are_ours():
    kw = map_hyperparameters("sb3-sac", {}).kwargs
    assert kw["learning_rate"] == 3e-4 and kw["gamma"] == 0.99 and kw["tau"] == 0.005
    assert kw["batch_size"] == 256 and kw["buffer_size"] == 1_000_000 and kw["learning_starts"] == 10_000
    assert kw["train_freq"] == 1 and kw["gradient_steps"] == 1
    assert kw["ent_coef"] == "auto_0.2" and kw["target_entropy"] == "auto"
    assert map_hyperparameters("sb3-sac", {"alpha_init": 0.5}).kwargs["ent_coef"] == "auto_0.5"
    assert kw["policy_kwargs"] == {"net_arch": [256, 256], "activation_fn": "relu", "n_critics": 2}
    assert "qf_learning_rate" not in kw


def test_sac_mapping_of_our_keys():
    setup = map_hyperparameters(
        "sbx-sac",
        {"utd": 2, "train_freq": 4, "critic_lr": 1e-3, "alpha": 0.05, "hidden": (32, 16),
         "polyak": 0.01, "gamma": 0.9, "eval_every": 500, "eval_episodes": 3, "log_every": 50, "checkpoint_every": 0},
    )  # fmt: skip
    kw = setup.kwargs
    assert kw["train_freq"] == 4 and kw["gradient_steps"] == 8
    assert kw["qf_learning_rate"] == 1e-3 and kw["learning_rate"] == 3e-4
    assert kw["ent_coef"] == 0.05 and isinstance(kw["ent_coef"], float)
    assert kw["tau"] == 0.01 and kw["gamma"] == 0.9 and kw["policy_kwargs"]["net_arch"] == [32, 16]
    assert setup.protocol == ProtocolSettings(eval_every=500, eval_episodes=3, log_every=50)
    assert map_hyperparameters("sb3-sac", {"target_entropy": -2.5}).kwargs["target_entropy"] == -2.5


def test_ppo_defaults_are_the_standard_ones():
    setup = map_hyperparameters("sb3-ppo", {"eval_every": 2048})
    kw = setup.kwargs
    assert kw["n_steps"] == 2048 and kw["batch_size"] == 64 and kw["n_epochs"] == 10
    assert kw["gae_lambda"] == 0.95 and kw["clip_range"] == kw["clip_range_vf"] == 0.2 and kw["normalize_advantage"]
    assert kw["ent_coef"] == 0.0 and kw["vf_coef"] == 0.5 and kw["max_grad_norm"] == 0.5 and kw["learning_rate"] == 3e-4
    pk = kw["policy_kwargs"]
    assert pk["net_arch"] == {"pi": [64, 64], "vf": [64, 64]} and pk["activation_fn"] == "tanh"
    assert pk["log_std_init"] == 0.0 and pk["optimizer_kwargs"] == {"eps": 1e-5} and pk["ortho_init"]
    assert setup.options == {
        "anneal_lr": True,
        "norm_obs": True,
        "norm_reward": True,
        "clip_obs": 10.0,
        "clip_reward": 10.0,
    }
    assert setup.protocol.eval_every == 2048
    off = map_hyperparameters("sb3-ppo", {"clip_vloss": False, "norm_obs": False, "learning_starts": 10_000})
    assert off.kwargs["clip_range_vf"] is None and off.options["norm_obs"] is False


@pytest.mark.parametrize(
    "algo, hp, match",
    [
        ("sb3-sac", {"K": 8}, "K have no equivalent in sb3-sac"),
        ("sbx-sac", {"eta": 0.1, "tau": 1e-4}, "eta, tau have no equivalent"),
        ("sb3-ppo", {"learning_starts": 100}, "learning_starts has no meaning for sb3-ppo"),
        ("sb3-ppo", {"alpha": 0.2}, "alpha have no equivalent in sb3-ppo"),
        ("sb3-ppo", {"n_steps": 100, "n_minibatches": 32}, "equal minibatches"),
        ("sb3-sac", {"critic_lr": 1e-3}, "one learning rate"),
        ("sbx-sac", {"alpha_lr": 1e-3}, "temperature with the actor's learning rate"),
        ("sb3-sac", {"batch_size": 512, "buffer_size": 256}, "must not exceed buffer_size"),
        ("sb3-sac", {"n_envs": 4}, "n_envs"),
        ("sb3-sac", {"seed": 3}, "argument of run_external"),
        ("sb3-ppo", {"eval_every": 0}, "eval_every must be >= 1"),
        ("sbx-sac", {"gamma": 1.0}, "gamma"),
    ],
)
def test_bad_hyperparameters_are_rejected(algo, hp, match):
    with pytest.raises(ConfigError, match=match):
        map_hyperparameters(algo, hp)


def test_unknown_algorithm_and_missing_package():
    with pytest.raises(ValueError, match="unknown external algorithm 'sb3-td3'"):
        map_hyperparameters("sb3-td3", {})
    with pytest.raises(ValueError, match="compares SAC implementations"):
        external.measure_speed("sb3-ppo", "Pendulum-v1", 10, 10, 1, 1)


def test_missing_reference_package_names_the_install(monkeypatch):
    monkeypatch.setitem(external.EXTERNAL_ALGOS, "nope-sac", ("no-such-dist", "wppg_no_such_module"))
    with pytest.raises(ImportError, match=r"no-such-dist.*\.\[external\]"):
        external.reference_version("nope-sac")


def test_single_threaded_follows_omp(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert external.single_threaded()


# --- the evaluation protocol on a fake model ----------------------------------------------------------


class SeedEnv(gym.Env):
    """Three steps per episode; reward = action + (reset seed mod 7); records its reset seeds."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seeds.append(seed)
        self.t, self.obs = 0, np.array([seed % 7], np.float32)
        return self.obs, {}

    def step(self, action):
        self.t += 1
        return self.obs, float(action[0] + self.obs[0]), False, self.t == 3, {}


class FakeModel:
    """SB3's predict: 1.0 when stochastic, -0.5 for the mode; records what it was given."""

    def __init__(self):
        self.calls: list[tuple[float, bool]] = []

    def predict(self, observation, deterministic=False):
        self.calls.append((float(observation[0]), deterministic))
        return np.array([-0.5 if deterministic else 1.0], np.float32), None


def _expected(seed: int, episodes: int, action: float) -> np.ndarray:
    return np.array([3 * (action + (seed + 100_000 + i) % 7) for i in range(episodes)])


def test_evaluator_follows_the_trainer_protocol():
    env, model, scopes = SeedEnv(), FakeModel(), []

    class Scope:
        def __init__(self, n):
            scopes.append(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    ev = ProtocolEvaluator(model, lambda: env, seed=5, episodes=4, obs_transform=lambda o: 10 * o, rng_scope=Scope)
    row = ev.evaluate_at(step=1000)
    stoch, mode = _expected(5, 4, 1.0), _expected(5, 4, -0.5)
    assert row == {
        "step": 1000,
        "return_stochastic": pytest.approx(stoch.mean()),
        "return_stochastic_std": pytest.approx(stoch.std()),
        "return_mode": pytest.approx(mode.mean()),
        "return_mode_std": pytest.approx(mode.std()),
    }
    assert env.seeds == [5 + 100_000 + i for i in range(4)] * 2
    assert [d for _, d in model.calls] == [False] * 12 + [True] * 12
    assert model.calls[0][0] == 10 * ((5 + 100_000) % 7)  # the transform is applied
    ev.evaluate_at(step=2000)
    assert scopes == [0, 0, 1, 1] and ev.n_evals == 2


def test_recorder_writes_our_files(tmp_path):
    logger = RunLogger(tmp_path)
    ev = ProtocolEvaluator(FakeModel(), SeedEnv, seed=0, episodes=2)
    rec = ProtocolRecorder(
        ev, ProtocolSettings(eval_every=10, eval_episodes=2, log_every=5), logger, gradient_steps=lambda: 7
    )
    for step in range(1, 26):
        rec.on_env_step(step, range(30) if step == 8 else [])  # a window of the last 20 is averaged
        rec.maybe_evaluate(step)
    rec.finish(25)
    rec.finish(25)  # no second evaluation at the same step
    logger.close()
    columns, rows = _rows(tmp_path / "eval.csv")
    assert columns == EVAL_COLUMNS and [int(r["step"]) for r in rows] == [10, 20, 25]
    assert float(rows[0]["return_mode"]) == pytest.approx(_expected(0, 2, -0.5).mean())
    columns, rows = _rows(tmp_path / "train.csv")
    assert columns == ["step", "steps_per_s", "train_return", "gradient_steps"]
    assert [int(r["step"]) for r in rows] == [10, 15, 20, 25]  # rows start once an episode finished
    assert float(rows[0]["train_return"]) == pytest.approx(np.mean(range(10, 30)))
    assert float(rows[0]["gradient_steps"]) == 7 and float(rows[0]["steps_per_s"]) > 0


# --- tiny runs of the references (need the `external` extra) --------------------------------------------

TINY_SAC = {
    "learning_starts": 100,
    "batch_size": 32,
    "buffer_size": 1000,
    "hidden": (32, 32),
    "eval_episodes": 1,
    "log_every": 100,
}
TINY_PPO = {"n_steps": 64, "n_minibatches": 2, "n_epochs": 2, "hidden": (32, 32), "eval_episodes": 1, "log_every": 100}


@pytest.mark.parametrize(
    "algo, module, hp, env_steps, gradient_steps, update_calls",
    [
        ("sb3-sac", "stable_baselines3", TINY_SAC, 200, 100, 100),  # updates after step 100
        ("sbx-sac", "sbx", {**TINY_SAC, "train_freq": 10}, 200, 100, 10),  # fewer calls: SBX's cost is per call
        ("sb3-ppo", "stable_baselines3", TINY_PPO, 256, 16, 4),  # 4 rollouts x 2 epochs x 2 minibatches
    ],
)
def test_reference_run_files_and_eval_isolation(
    tmp_path, monkeypatch, algo, module, hp, env_steps, gradient_steps, update_calls
):
    pytest.importorskip(module)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    summary = external.run_external(algo, "Pendulum-v1", 0, 200, tmp_path / "a", {**hp, "eval_every": 100})
    assert SUMMARY_KEYS <= set(summary)
    assert summary["env_steps"] == env_steps and summary["gradient_steps"] == gradient_steps
    assert summary["update_calls"] == update_calls and summary["update_time_s"] > 0
    assert summary["reference_package"] == external.EXTERNAL_ALGOS[algo][0]
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == summary
    assert json.loads((tmp_path / "a" / "config.json").read_text())["reference_kwargs"]["policy_kwargs"]["net_arch"]
    columns, rows = _rows(tmp_path / "a" / "eval.csv")
    expected_steps = [100, 200] + ([env_steps] if env_steps != 200 else [])
    assert columns == EVAL_COLUMNS and [int(r["step"]) for r in rows] == expected_steps
    assert summary["final_eval"]["step"] == env_steps
    assert float(rows[-1]["return_mode"]) == pytest.approx(summary["final_eval"]["return_mode"])
    columns, _ = _rows(tmp_path / "a" / "train.csv")
    assert columns[:3] == ["step", "steps_per_s", "train_return"]
    # Evaluating (stochastic actions included) must not touch the training RNGs: a run without
    # intermediate evaluations ends with the same policy, so the same mode return.
    quiet = external.run_external(algo, "Pendulum-v1", 0, 200, tmp_path / "b", {**hp, "eval_every": 10**6})
    assert quiet["final_eval"]["return_mode"] == summary["final_eval"]["return_mode"]
    _, rows = _rows(tmp_path / "b" / "eval.csv")
    assert [int(r["step"]) for r in rows] == [env_steps]
    assert not list(system_tmp.glob("SB3-*")), "SB3's default logger left a folder in the system's temp dir"


def test_rerun_starts_over(tmp_path):
    pytest.importorskip("stable_baselines3")
    hp = {**TINY_PPO, "eval_every": 10**6}
    external.run_external("sb3-ppo", "Pendulum-v1", 1, 64, tmp_path, hp)
    external.run_external("sb3-ppo", "Pendulum-v1", 1, 64, tmp_path, hp)
    _, rows = _rows(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in rows] == [64]


def test_measure_speed_counts_only_the_timed_steps():
    pytest.importorskip("stable_baselines3")
    r = external.measure_speed(
        "sb3-sac", "Pendulum-v1", total_steps=50, learning_starts=50, train_freq=5, gradient_steps=5
    )
    assert r["env_steps"] == 50 and r["update_calls"] == 10 and r["gradient_steps"] == 50
    assert r["steps_per_s"] > 0 and r["steps_per_cpu_s"] > 0 and 0 < r["update_time_s"] <= r["wall_time_s"]
