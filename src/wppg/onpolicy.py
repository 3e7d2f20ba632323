"""The on-policy loop (PPO): fill a rollout of n_steps per env with the current policy, update on
it, start the next one. Evaluation, logs, summary, finite check and checkpoints are those of
every trainer (`wppg.trainer.BaseTrainer`).

A rollout may be cut by the end of a training call: its filled part is checkpointed with the run,
and the next call (after a save and load, or not) goes on filling it, so training N steps,
saving, loading and training N more gives the same parameters as training 2N straight.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from wppg.algorithms.ppo import PPOAlgorithm, Rollout
from wppg.config import ConfigError, TrainConfig
from wppg.trainer import BaseTrainer

OFF_POLICY_FIELDS = ("learning_starts", "batch_size", "buffer_size", "utd", "train_freq")
"""TrainConfig fields without meaning on-policy; a value other than the default is rejected."""


class RolloutBuffer:
    """The steps of the current rollout, arrays [n_steps, n_envs, ...] on the host."""

    def __init__(self, n_steps: int, n_envs: int, obs_dim: int, act_dim: int):
        shape = (n_steps, n_envs)
        self.data = {
            "obs": np.zeros(shape + (obs_dim,), np.float32),
            "action": np.zeros(shape + (act_dim,), np.float32),
            "log_prob": np.zeros(shape, np.float32),
            "value": np.zeros(shape, np.float32),
            "reward": np.zeros(shape, np.float32),
            "terminated": np.zeros(shape, np.float32),
            "done": np.zeros(shape, np.float32),
            "final_value": np.zeros(shape, np.float32),
        }
        self.n_steps = n_steps
        self.ptr = 0

    @property
    def full(self) -> bool:
        return self.ptr == self.n_steps

    def add(self, **step: np.ndarray) -> None:
        """Store one step of every env (arrays with a leading axis n_envs)."""
        for name, arr in self.data.items():
            arr[self.ptr] = step[name]
        self.ptr += 1

    def state(self) -> dict[str, np.ndarray]:
        """The filled steps and the pointer (what a checkpoint stores)."""
        return {**{name: arr[: self.ptr] for name, arr in self.data.items()}, "ptr": np.asarray(self.ptr)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        ptr = int(state["ptr"])
        if not 0 <= ptr <= self.n_steps:
            raise ValueError(f"rollout pointer {ptr} outside [0, n_steps={self.n_steps}]")
        for name, arr in self.data.items():
            saved = np.asarray(state[name])
            if saved.shape != (ptr,) + arr.shape[1:] or saved.dtype != arr.dtype:
                raise ValueError(
                    f"rollout field {name} has shape {saved.shape} and dtype {saved.dtype} in the checkpoint, "
                    f"expected {(ptr,) + arr.shape[1:]} {arr.dtype}"
                )
            arr[:ptr] = saved
        self.ptr = ptr


class OnPolicyTrainer(BaseTrainer):
    """Runs an on-policy agent: an update each time the rollout is full, on the whole rollout.

    Env actions are the policy's Gaussian samples clipped to the action box; the rollout keeps the
    unclipped samples, whose log-probabilities the update's ratio needs. A truncated episode
    stores the value of its true final observation (the envs are reset by `EnvPool`, which
    returns that observation), so that GAE bootstraps through time limits.
    """

    def __init__(
        self,
        algo: PPOAlgorithm,
        config: TrainConfig,
        make_env: Callable[[], gym.Env],
        run_dir: str | Path | None = None,
        meta: dict[str, Any] | None = None,
        progress: bool = True,
    ):
        defaults = TrainConfig()
        for name in OFF_POLICY_FIELDS:
            if getattr(config, name) != getattr(defaults, name):
                raise ConfigError(
                    f"{name} does not apply to the on-policy {algo.name} (no replay buffer, no random warm-up, "
                    f"got {name}={getattr(config, name)}); its rollout is set by n_steps, n_epochs and n_minibatches"
                )
        if algo.n_envs != config.n_envs:
            raise ConfigError(
                f"n_envs ({config.n_envs}) differs from the {algo.n_envs} envs the algorithm was built for"
            )
        super().__init__(algo, config, make_env, run_dir, meta, progress)
        self.rollout = RolloutBuffer(algo.config.n_steps, config.n_envs, algo.obs_dim, algo.act_dim)
        self._low, self._high = algo.bounds.bias - algo.bounds.scale, algo.bounds.bias + algo.bounds.scale

    def check_target(self, until_step: int) -> None:
        if self.algo.config.anneal_lr and until_step > self.config.total_steps:
            warnings.warn(
                f"training to {until_step} env steps, past total_steps={self.config.total_steps}: the annealed "
                "learning rate is 0 there; set total_steps to the run's length (or anneal_lr=False)",
                stacklevel=5,
            )

    def env_step(self) -> list[tuple[float, int]]:
        self.state, out, self.key = self.algo.explore(self.state, self.pool.obs, self.key)
        out = jax.device_get(out)
        actions = np.clip(out["action"], self._low, self._high)
        with self.env_errors():
            next_obs, reward, terminated, truncated, finished = self.pool.step(actions)
        final_value = np.zeros_like(reward)
        cut = (truncated > 0) & (terminated == 0)
        if cut.any():
            final_value = np.where(cut, np.asarray(self.algo.value(self.state, next_obs)), 0.0).astype(np.float32)
        self.rollout.add(
            obs=out["obs"],
            action=out["action"],
            log_prob=out["log_prob"],
            value=out["value"],
            reward=reward,
            terminated=terminated,
            done=np.maximum(terminated, truncated),
            final_value=final_value,
        )
        return finished

    def update_due(self) -> bool:
        return self.rollout.full

    def update_input(self) -> Rollout:
        return Rollout(**self.rollout.data, last_value=self.algo.value(self.state, self.pool.obs))

    def grad_steps_per_update(self) -> int:
        return self.algo.grad_steps_per_update

    def after_update(self) -> None:
        self.rollout.ptr = 0

    def save_extra(self) -> dict[str, Any]:
        return {"rollout": self.rollout.state()}

    def load_extra(self, meta: dict[str, Any], tree: dict[str, Any]) -> None:
        self.rollout.load_state(tree["rollout"])
