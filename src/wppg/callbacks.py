"""Callbacks in the shape of Stable-Baselines3's: act on training from outside the loop.

`agent.learn(n, callback=...)` takes a `BaseCallback`, a list of them, or a plain function
`f(locals, globals) -> bool` called after every env step. The engine (`wppg.schedule.run`) calls
`on_training_start` once the envs exist, `on_step` after each env step (and the update, log rows,
evaluation and checkpoint due at that step), `on_evaluation` after each of its own evaluations
(every `eval_every` env steps and at the end), and `on_training_end` once the run's files are
written. A hook that returns False stops training at that consistent point: the run ends as if its
target were reached (final evaluation unless `eval_at_end=False`, checkpoint when it has a run
directory, summary). Returning None continues (a plain function without a return statement keeps
training going, unlike in SB3).

A subclass overrides `_on_step` (and, if it needs them, `_init_callback`, `_on_training_start`,
`_on_evaluation`, `_on_training_end`), as in SB3. `self.model` is the agent, `self.num_timesteps`
its env steps, `self.n_calls` the number of `on_step` calls so far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BaseCallback",
    "CallbackList",
    "CheckpointCallback",
    "EvalCallback",
    "FunctionCallback",
    "MaybeCallback",
    "StopTrainingOnRewardThreshold",
    "as_callback",
]


class BaseCallback:
    """The base of every callback; each public hook returns whether training goes on."""

    def __init__(self, verbose: int = 0):
        self.verbose = verbose
        self.model: Any = None
        """The agent being trained (`wppg.Agent`), set by `init_callback`."""
        self.parent: BaseCallback | None = None
        """The callback that calls this one (an `EvalCallback`'s `callback_on_new_best`), or None."""
        self.n_calls = 0
        self.num_timesteps = 0
        self.locals: dict[str, Any] = {}
        self.globals: dict[str, Any] = {}

    # --- what the engine calls ------------------------------------------------------------------
    def init_callback(self, model: Any) -> None:
        """Bind the callback to the agent (called by `learn` before training starts)."""
        self.model = model
        self._init_callback()

    def on_training_start(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        self.locals, self.globals = locals_, globals_
        self.num_timesteps = self.model.num_timesteps
        self._on_training_start()

    def on_step(self) -> bool:
        """After each env step; False stops training."""
        self.n_calls += 1
        self.num_timesteps = self.model.num_timesteps
        return _goes_on(self._on_step())

    def on_evaluation(self, result: dict[str, float]) -> bool:
        """After each evaluation of the engine (eval.csv's row); False stops training."""
        self.num_timesteps = self.model.num_timesteps
        return _goes_on(self._on_evaluation(result))

    def on_training_end(self) -> None:
        self.num_timesteps = self.model.num_timesteps
        self._on_training_end()

    def update_locals(self, locals_: dict[str, Any]) -> None:
        """The engine's variables of the current step (`env_steps`, `finished`, `metrics`, ...)."""
        self.locals.update(locals_)

    # --- what a subclass overrides ------------------------------------------------------------------
    def _init_callback(self) -> None:
        pass

    def _on_training_start(self) -> None:
        pass

    def _on_step(self) -> bool | None:
        return True

    def _on_evaluation(self, result: dict[str, float]) -> bool | None:
        return True

    def _on_training_end(self) -> None:
        pass


def _goes_on(result: Any) -> bool:
    """A hook's answer: only an explicit False (or a false NumPy bool) stops training."""
    return result is None or bool(result)


class CallbackList(BaseCallback):
    """Several callbacks, called in order; training stops if any of them says so."""

    def __init__(self, callbacks: Sequence[BaseCallback]):
        super().__init__()
        self.callbacks = list(callbacks)

    def _init_callback(self) -> None:
        for c in self.callbacks:
            c.init_callback(self.model)

    def _on_training_start(self) -> None:
        for c in self.callbacks:
            c.on_training_start(self.locals, self.globals)

    def _on_step(self) -> bool:
        return all([c.on_step() for c in self.callbacks])  # every callback sees every step

    def _on_evaluation(self, result: dict[str, float]) -> bool:
        return all([c.on_evaluation(result) for c in self.callbacks])

    def _on_training_end(self) -> None:
        for c in self.callbacks:
            c.on_training_end()

    def update_locals(self, locals_: dict[str, Any]) -> None:
        super().update_locals(locals_)
        for c in self.callbacks:
            c.update_locals(locals_)


class FunctionCallback(BaseCallback):
    """A plain function `f(locals, globals) -> bool | None`, called after each env step (SB3's
    `ConvertCallback`); False stops training."""

    def __init__(self, fn: Callable[[dict[str, Any], dict[str, Any]], Any], verbose: int = 0):
        super().__init__(verbose)
        self.fn = fn

    def _on_step(self) -> Any:
        return self.fn(self.locals, self.globals)


MaybeCallback = BaseCallback | Callable[[dict[str, Any], dict[str, Any]], Any] | Sequence[BaseCallback] | None
"""What `learn(callback=...)` takes."""


def as_callback(callback: MaybeCallback) -> BaseCallback | None:
    """One `BaseCallback` for whatever `learn(callback=...)` was given, or None."""
    if callback is None or isinstance(callback, BaseCallback):
        return callback
    if isinstance(callback, (list, tuple)):
        return CallbackList([as_callback(c) for c in callback])
    if callable(callback):
        return FunctionCallback(callback)
    raise TypeError(
        f"callback must be a BaseCallback, a list of them or a function f(locals, globals) -> bool, got "
        f"{type(callback).__name__}"
    )


class EvalCallback(BaseCallback):
    """Evaluate the policy every `eval_freq` calls of `on_step` on a separate env and keep the best.

    Each evaluation runs `n_eval_episodes` episodes with the mode (`deterministic=True`) or with
    stochastic actions, by the protocol of `wppg.evaluation` (its own reset seeds and keys, so it
    never changes the training run); `last_mean_reward` and `best_mean_reward` hold the results,
    `evaluations` the (env step, mean return) pairs. A new best is saved to
    `best_model_save_path/best_model.npz` (when given) and calls `callback_on_new_best`;
    `callback_after_eval` is called after every evaluation. Either may stop training.
    `eval_env` defaults to a fresh copy of the agent's env.
    """

    def __init__(
        self,
        eval_env: Any = None,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 5,
        deterministic: bool = True,
        best_model_save_path: str | Path | None = None,
        callback_on_new_best: BaseCallback | None = None,
        callback_after_eval: BaseCallback | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if eval_freq < 1 or n_eval_episodes < 1:
            raise ValueError(f"eval_freq and n_eval_episodes must be >= 1, got {eval_freq} and {n_eval_episodes}")
        self.eval_env, self.eval_freq, self.n_eval_episodes = eval_env, int(eval_freq), int(n_eval_episodes)
        self.deterministic = deterministic
        self.best_model_save_path = Path(best_model_save_path) if best_model_save_path is not None else None
        self.callback_on_new_best, self.callback_after_eval = callback_on_new_best, callback_after_eval
        for c in (callback_on_new_best, callback_after_eval):
            if c is not None:
                c.parent = self
        self.best_mean_reward = -np.inf
        self.last_mean_reward = -np.inf
        self.evaluations: list[tuple[int, float]] = []

    def _init_callback(self) -> None:
        if self.best_model_save_path is not None:
            self.best_model_save_path.mkdir(parents=True, exist_ok=True)
        for c in (self.callback_on_new_best, self.callback_after_eval):
            if c is not None:
                c.init_callback(self.model)

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq:
            return True
        if self.eval_env is None:
            returns = self.model.evaluate(self.n_eval_episodes, self.deterministic)
        else:
            returns = self.model.trainer.evaluate(self.n_eval_episodes, self.deterministic, env=self.eval_env)
        self.last_mean_reward = float(np.mean(returns))
        self.evaluations.append((self.num_timesteps, self.last_mean_reward))
        if self.verbose:
            print(f"Eval num_timesteps={self.num_timesteps}, episode_reward={self.last_mean_reward:.2f}")
        go_on = True
        if self.last_mean_reward > self.best_mean_reward:
            self.best_mean_reward = self.last_mean_reward
            if self.best_model_save_path is not None:
                self.model.save(self.best_model_save_path / "best_model.npz")
            if self.callback_on_new_best is not None:
                go_on = self.callback_on_new_best.on_step()
        if self.callback_after_eval is not None:
            go_on = self.callback_after_eval.on_step() and go_on
        return go_on


class StopTrainingOnRewardThreshold(BaseCallback):
    """Stop training once the mean return reaches `reward_threshold`.

    As an `EvalCallback`'s `callback_on_new_best`, it reads that callback's best mean return (as in
    SB3); on its own, it reads the mode's mean return of each of the engine's evaluations
    (`return_mode` of eval.csv)."""

    def __init__(self, reward_threshold: float, verbose: int = 0):
        super().__init__(verbose)
        self.reward_threshold = float(reward_threshold)

    def _stop(self, value: float) -> bool:
        if value >= self.reward_threshold and self.verbose:
            print(f"Stopping training: the mean return {value:.2f} reached the threshold {self.reward_threshold:.2f}")
        return value < self.reward_threshold

    def _on_step(self) -> bool:
        best = getattr(self.parent, "best_mean_reward", None)
        return True if best is None else self._stop(float(best))

    def _on_evaluation(self, result: dict[str, float]) -> bool:
        return True if self.parent is not None else self._stop(float(result["return_mode"]))


class CheckpointCallback(BaseCallback):
    """Save the agent every `save_freq` calls of `on_step` to
    `save_path/{name_prefix}_{num_timesteps}_steps.npz` (a full checkpoint, as `agent.save`)."""

    def __init__(self, save_freq: int, save_path: str | Path, name_prefix: str = "wppg_model", verbose: int = 0):
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be >= 1, got {save_freq}")
        self.save_freq, self.save_path, self.name_prefix = int(save_freq), Path(save_path), name_prefix

    def _init_callback(self) -> None:
        self.save_path.mkdir(parents=True, exist_ok=True)

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            path = self.model.save(self.save_path / f"{self.name_prefix}_{self.num_timesteps}_steps.npz")
            if self.verbose:
                print(f"Saving model checkpoint to {path}")
        return True
