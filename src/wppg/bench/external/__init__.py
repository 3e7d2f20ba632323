"""Reference implementations (Stable-Baselines3 SAC and PPO, SBX SAC) trained with our settings
and evaluated with our protocol, so their numbers sit next to ours in one table.

`run_external(algo, env_id, seed, total_steps, run_dir, hyperparameters)` trains `sb3-sac`,
`sb3-ppo` or `sbx-sac` and writes the files of one of our runs (config.json, train.csv,
eval.csv, tb/, summary.json). What is matched:

- SAC: every field of `TrainConfig` / `SACConfig` that the reference has (gamma, learning
  rates, batch, buffer, Polyak rate, (256, 256) ReLU networks, twin critics, learning_starts of
  uniform random actions, `train_freq` env steps between update calls with
  `train_freq * utd` gradient steps each, temperature self-tuned towards -dim(A) starting at
  `alpha`, or fixed at `alpha`). SB3 has one learning rate for actor, critics and temperature,
  so `sb3-sac` needs actor_lr == critic_lr == alpha_lr; SBX has a separate critic rate but
  tunes the temperature with the actor's, so `sbx-sac` needs alpha_lr == actor_lr.
- PPO: every field of `PPOConfig` (the standard continuous-control settings: GAE, clipped
  value loss, observation and reward normalisation by SB3's VecNormalize, orthogonal
  initialisation, annealed learning rate, tanh (64, 64) networks); SB3's clipped value loss is
  the squared error of the clipped prediction rather than the max of clipped and unclipped.
- Evaluation, the protocol of `wppg.evaluation` (as `Trainer.evaluate_and_log`): every
  `eval_every` env steps and at the end,
  `eval_episodes` episodes on a separate env whose resets are seeded seed + 100000 + i, once
  with stochastic actions and once with the mode. Stochastic evaluation actions use their own
  RNG, seeded from (seed + 1, evaluation index), and the training RNG is restored afterwards,
  so evaluating never changes the training run. SAC is evaluated when the updates of all env
  steps so far are done (the start of SB3's next rollout), as our trainer does; PPO, whose
  policy only changes between rollouts, at the env step itself.

Keys of `hyperparameters` with no equivalent in the reference are rejected with a
`ConfigError` that names them. `checkpoint_every` is accepted and ignored: an external run
writes no checkpoint and cannot be resumed; an interrupted run starts over (its old
train.csv / eval.csv / summary.json / tb are deleted at the start).

The references live in the optional extra `external` (`pip install torch==2.13.0` first where
the CPU build of PyTorch is wanted, then `pip install -e ".[external]"`); this module imports
them only when a run starts.
"""

from __future__ import annotations

from typing import Any

from wppg.bench.external.mapping import (
    EXTERNAL_ALGOS,
    ProtocolSettings,
    ReferenceSetup,
    accepted_hyperparameters,
    map_hyperparameters,
)
from wppg.bench.external.protocol import Predictor, ProtocolEvaluator, ProtocolRecorder
from wppg.bench.external.references import reference_version, run_external, single_threaded

__all__ = [
    "EXTERNAL_ALGOS", "Predictor", "ProtocolEvaluator", "ProtocolRecorder", "ProtocolSettings", "ReferenceSetup",
    "accepted_hyperparameters", "map_hyperparameters", "measure_speed", "reference_version", "run_external",
    "single_threaded",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    # `measure_speed` lives with the speed benchmark, which imports this package: resolved on use.
    if name == "measure_speed":
        from wppg.bench.speed import measure_speed

        return measure_speed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
