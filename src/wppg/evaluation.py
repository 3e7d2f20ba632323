"""The evaluation protocol, once, for our trainers and for the external references.

An evaluation at env step `step` runs `eval_episodes` episodes on a separate env, once with
stochastic actions and once with the mode; episode i resets with seed `seed + 100000 + i`, and
stochastic actions draw from a stream of their own, derived from (seed + 1, evaluation index), so
that evaluating never changes the training run. Its record (`eval_row`) is the mean and standard
deviation of both returns. Evaluations happen every `eval_every` env steps and at the end of a
training call; train.csv gets a row every `log_every` env steps (`is_due`), with the mean return of
the last `TRAIN_RETURN_WINDOW` finished training episodes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from wppg.envs import check_output

__all__ = [
    "EVAL_MAX_EPISODE_STEPS", "EVAL_SEED_OFFSET", "TRAIN_RETURN_WINDOW", "episode_step_limit", "eval_key",
    "eval_reset_seed", "eval_row", "is_due", "run_episodes",
]  # fmt: skip

EVAL_SEED_OFFSET = 100_000
"""Evaluation episode i resets with seed `seed + EVAL_SEED_OFFSET + i`: apart from training's seeds."""

EVAL_MAX_EPISODE_STEPS = 10_000
"""Cap on the length of an evaluation episode when the env sets none (no TimeLimit wrapper, no
spec.max_episode_steps): an env that never terminates would otherwise hang the evaluation."""

TRAIN_RETURN_WINDOW = 20
"""Finished training episodes averaged into train.csv's train_return."""


def eval_reset_seed(seed: int, episode: int) -> int:
    """The reset seed of evaluation episode `episode` of a run with seed `seed`."""
    return seed + EVAL_SEED_OFFSET + episode


def eval_key(seed: int, n_evals: int) -> Any:
    """The JAX key of the stochastic actions of evaluation number `n_evals` (from 0)."""
    import jax

    return jax.random.fold_in(jax.random.PRNGKey(seed + 1), n_evals)


def is_due(step: int, every: int, stride: int = 1) -> bool:
    """Whether an action every `every` env steps falls on the last `stride` env steps up to `step`
    (`stride` = steps per iteration: the number of envs stepped in lock-step)."""
    return step % every < stride


def episode_step_limit(env: Any, default: int = EVAL_MAX_EPISODE_STEPS) -> int:
    """The env's own episode length limit (a TimeLimit wrapper or spec.max_episode_steps), else `default`."""
    layer: Any = env
    while layer is not None:
        limit = vars(layer).get("_max_episode_steps")
        if isinstance(limit, int) and limit > 0:
            return limit
        layer = getattr(layer, "env", None)
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps:
        return int(spec.max_episode_steps)
    return default


def run_episodes(
    policy: Callable[[np.ndarray], Any],
    env: Any,
    seed: int,
    episodes: int,
    limit: int,
    obs_shape: tuple[int, ...] | None = None,
    on_cut: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Returns of `episodes` evaluation episodes of `policy(obs) -> action` on `env`, reset with
    `eval_reset_seed`, each at most `limit` steps (`on_cut(limit)` when one is cut). With
    `obs_shape`, every observation and reward is checked (`wppg.envs.check_output`)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    returns = np.zeros(episodes)
    for i in range(episodes):
        obs, _ = env.reset(seed=eval_reset_seed(seed, i))
        if obs_shape is not None:
            obs = check_output(obs, 0.0, obs_shape, "the evaluation env's reset")[0]
        for t in range(1, limit + 1):
            obs, r, term, trunc, _ = env.step(policy(obs))
            if obs_shape is not None:
                obs, r = check_output(obs, r, obs_shape, f"the evaluation env at step {t} of episode {i}")
            returns[i] += r
            if term or trunc:
                break
        else:
            if on_cut is not None:
                on_cut(limit)
    return returns


def eval_row(step: int, stochastic: np.ndarray, mode: np.ndarray) -> dict[str, float]:
    """The record of one evaluation (eval.csv's row, summary.json's final_eval)."""
    return {
        "step": step,
        "return_stochastic": float(stochastic.mean()),
        "return_stochastic_std": float(stochastic.std()),
        "return_mode": float(mode.mean()),
        "return_mode_std": float(mode.std()),
    }


def warn_cut(limit: int) -> None:
    """The warning of an evaluation episode cut at `limit` steps (given once per trainer)."""
    warnings.warn(
        f"an evaluation episode was cut at {limit} steps: the env has no time limit (no TimeLimit "
        "wrapper, no spec.max_episode_steps); wrap it in gymnasium.wrappers.TimeLimit to choose one",
        stacklevel=4,
    )
