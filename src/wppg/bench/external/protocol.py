"""Our evaluation protocol (`wppg.evaluation`) for a model with SB3's `predict`, and the cadence
of `wppg.schedule` (train.csv rows, evaluations) for a reference's training loop."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np

from wppg import evaluation
from wppg.bench.external.mapping import ProtocolSettings


class Predictor(Protocol):
    """What the protocol needs of a model: SB3's `predict`."""

    def predict(self, observation: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, Any]: ...


class ProtocolEvaluator:
    """`Trainer.evaluate` / `evaluate_and_log` for any model with SB3's `predict`.

    `obs_transform` maps raw observations to the model's inputs (frozen normalisation
    statistics); `rng_scope(n_evals)` is a context manager in which stochastic actions draw from
    an evaluation RNG and after which the training RNG is as before.
    """

    def __init__(
        self,
        model: Predictor,
        make_env: Callable[[], Any],
        seed: int,
        episodes: int,
        obs_transform: Callable[[np.ndarray], np.ndarray] | None = None,
        rng_scope: Callable[[int], Any] | None = None,
    ):
        self.model, self.make_env, self.seed, self.episodes = model, make_env, seed, episodes
        self.obs_transform = obs_transform or (lambda obs: obs)
        self.rng_scope = rng_scope or (lambda n_evals: nullcontext())
        self.env: Any = None
        self.n_evals = 0
        self.last_eval: dict[str, float] = {}

    def evaluate(self, deterministic: bool) -> np.ndarray:
        """Returns of `episodes` episodes (`wppg.evaluation.run_episodes`)."""
        if self.env is None:
            self.env = self.make_env()

        def policy(obs: np.ndarray) -> Any:
            return self.model.predict(self.obs_transform(np.asarray(obs)), deterministic=deterministic)[0]

        limit = evaluation.episode_step_limit(self.env)
        with self.rng_scope(self.n_evals):
            return evaluation.run_episodes(
                policy, self.env, self.seed, self.episodes, limit, on_cut=evaluation.warn_cut
            )

    def evaluate_at(self, step: int) -> dict[str, float]:
        """One evaluation at env step `step`, stochastic then mode; its record (`eval_row`)."""
        stoch, mode = self.evaluate(False), self.evaluate(True)
        self.n_evals += 1
        self.last_eval = evaluation.eval_row(step, stoch, mode)
        return self.last_eval


class ProtocolRecorder:
    """The cadence of `wppg.evaluation` (as `Trainer.learn` keeps it): a train.csv row every
    `log_every` env steps, an evaluation every `eval_every` env steps and one at the end, rows
    written by `RunLogger`. A reference's callback may skip env steps (SAC evaluates at the start
    of a rollout), so an evaluation is due at the first step at or past each multiple."""

    def __init__(
        self,
        evaluator: ProtocolEvaluator,
        protocol: ProtocolSettings,
        logger: Any = None,
        gradient_steps: Callable[[], int] = lambda: 0,
    ):
        self.evaluator, self.protocol, self.logger = evaluator, protocol, logger
        self.gradient_steps = gradient_steps
        self.next_eval = protocol.eval_every
        self.recent: deque[float] = deque(maxlen=evaluation.TRAIN_RETURN_WINDOW)
        self.start_time, self.start_cpu = time.perf_counter(), time.process_time()

    def on_env_step(self, step: int, finished_returns: Sequence[float]) -> None:
        """Count the training episodes that ended at this step and log a train.csv row; rows
        start once an episode has finished, so that every row (and so the CSV header, fixed by
        the first row) has train_return."""
        self.recent.extend(finished_returns)
        if evaluation.is_due(step, self.protocol.log_every) and self.logger is not None and self.recent:
            row = {
                "steps_per_s": step / max(time.perf_counter() - self.start_time, 1e-9),
                "train_return": float(np.mean(self.recent)),
                "gradient_steps": self.gradient_steps(),
            }
            self.logger.log("train", step, row)

    def maybe_evaluate(self, step: int) -> None:
        """Evaluate if a multiple of `eval_every` was reached since the last evaluation."""
        if step >= self.next_eval:
            self._evaluate(step)
            self.next_eval = (step // self.protocol.eval_every + 1) * self.protocol.eval_every

    def finish(self, step: int) -> dict[str, float]:
        """The evaluation at the end (unless one just ran at `step`); returns it."""
        if self.evaluator.last_eval.get("step") != step:
            self._evaluate(step)
        return self.evaluator.last_eval

    def _evaluate(self, step: int) -> None:
        row = self.evaluator.evaluate_at(step)
        if self.logger is not None:
            self.logger.log("eval", step, {k: v for k, v in row.items() if k != "step"})
