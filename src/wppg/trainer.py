"""The runs of the training engine: env -> buffer or rollout -> algorithm.update -> logs.

`BaseTrainer` holds what every run shares: the counters and RNGs, the evaluation (the protocol
of `wppg.evaluation`), the run logs and summary, the finite check and the checkpoint of the common
state (agent state, JAX key, NumPy generator, envs, counters). The order of things is the engine's
(`wppg.schedule.run`), for one run as for N vmapped seeds: a trainer is both one `wppg.schedule.Run`
and the `wppg.schedule.Engine` of that run alone. `Trainer` is the off-policy run (replay buffer,
random warm-up, `utd` gradient steps per env step); the on-policy run lives in `wppg.onpolicy`. A
trainer knows nothing of any one algorithm: it calls what `wppg.algorithms.protocol.Algorithm`
promises (`init`, `explore`, `update`, `act`), and checkpoints the whole run so that a resumed run
continues exactly where it stopped.
"""

from __future__ import annotations

import abc
import contextlib
import json
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from wppg import checkpoint as ckpt
from wppg import evaluation, schedule
from wppg._version import __version__
from wppg.algorithms.base import OffPolicyAlgorithm, with_key_split
from wppg.algorithms.protocol import Algorithm
from wppg.callbacks import BaseCallback
from wppg.config import TrainConfig
from wppg.diagnostics import STATES, make_policy_spread
from wppg.envs import EnvOutputError, EnvPool
from wppg.replay import ReplayBuffer
from wppg.rundir import write_json

# The protocol's cap on evaluation episodes (`wppg.evaluation`), read from this module at each
# evaluation so that a test can lower it here.
EVAL_MAX_EPISODE_STEPS = evaluation.EVAL_MAX_EPISODE_STEPS


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class TrainingDivergedError(FloatingPointError):
    """A loss became NaN or infinite; the offending state was not saved."""


class BaseTrainer(abc.ABC):
    """One run: its evaluation, logs, summary and checkpoints, and the engine of itself alone.

    A subclass supplies the interaction and what an update consumes, through the public hooks
    `env_step` (act, step the envs, store the data), `update_due`, `update_input` (the batch or
    rollout handed to `algo.update`), `grad_steps_per_update` and `after_update`; and, for its own
    checkpointed data, `save_extra` / `load_extra`.
    """

    def __init__(
        self,
        algo: Algorithm,
        config: TrainConfig,
        make_env: Callable[[], gym.Env],
        run_dir: str | Path | None = None,
        meta: dict[str, Any] | None = None,
        progress: bool = True,
    ):
        self.algo, self.config, self.make_env = algo, config, make_env
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.meta = dict(meta or {})
        self.progress = progress
        key = jax.random.PRNGKey(config.seed)
        init_key, self.key = jax.random.split(key)
        self.state = algo.init(init_key)
        self.np_rng = np.random.default_rng(config.seed)
        self.pool: EnvPool | None = None
        self.eval_env: gym.Env | None = None
        self.env_steps = 0
        self.iterations = 0
        self.n_evals = 0
        self.last_eval: dict[str, float] = {}
        self.logger = None
        self.target_steps: int | None = None
        """The env-step target of the current (or last) `learn` call; checkpointed, so that an
        interrupted `wppg resume --total-steps N` continues to N without the flag."""
        # The logging windows (metrics since the last train.csv row, returns of the last
        # episodes): checkpointed, so the rows after a resume are those of a straight run.
        self.log_metrics: dict[str, list[float]] = {}
        self.recent_returns: deque[float] = deque(maxlen=evaluation.TRAIN_RETURN_WINDOW)
        self._eval_cut_warned = False
        self.run_warnings: list[str] = []
        """The warnings about training the run has given (`check_row`): checkpointed, listed in summary.json."""
        self.label = ""
        """How errors name this run among others ('seed 3: '), empty for a run alone."""
        self.fresh_logs = False
        """Start the run directory's logs anew (drop the rows of a run it held) instead of appending."""
        self._spread = make_policy_spread(algo.act, algo.bounds)
        # The update call of one run: the algorithm's pure update with the key split inside the
        # same compiled call (one dispatch per update call).
        self._keyed_update = jax.jit(with_key_split(algo.update))
        self._new_state: Any = None

    # --- the hooks of a run ---------------------------------------------------------------------
    @abc.abstractmethod
    def env_step(self) -> list[tuple[float, int]]:
        """Act in every env of `self.pool` once and store the data; returns the finished episodes
        (return, length)."""

    @abc.abstractmethod
    def update_due(self) -> bool:
        """Whether an update call follows the env step just taken."""

    @abc.abstractmethod
    def update_input(self) -> Any:
        """What `algo.update(state, input, key)` consumes (drawn before the update's key is split)."""

    @abc.abstractmethod
    def grad_steps_per_update(self) -> int:
        """Gradient steps one update call takes (for the cost figures of summary.json)."""

    def after_update(self) -> None:
        """Called once an update's new state has been kept."""

    def _recent_obs(self) -> np.ndarray:
        """Observations the policy-spread diagnostics are measured on (`wppg.diagnostics`)."""
        return self.pool.obs

    def policy_spread(self, actor_params: Any) -> dict[str, float]:
        """`policy_std` and `policy_entropy` of the policy on `_recent_obs()` (see `wppg.diagnostics`);
        the key depends only on the run seed and the env step."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed + 3), self.env_steps)
        out = self._spread(actor_params, np.asarray(self._recent_obs(), np.float32), key)
        return {name: float(v) for name, v in jax.device_get(out).items()}

    def save_extra(self) -> dict[str, Any]:
        """Arrays of the subclass's own data (replay buffer, rollout) for the checkpoint."""
        return {}

    def load_extra(self, meta: dict[str, Any], tree: dict[str, Any]) -> None:
        """Inverse of `save_extra`."""

    # --- the engine of this run alone (`wppg.schedule.Engine`) -------------------------------------
    def train_until(
        self, until_step: int, callback: BaseCallback | None = None, eval_at_end: bool = True
    ) -> dict[str, Any]:
        """Interact and learn until `until_step` env steps in total (`Agent.learn(n)` counts n more
        instead); returns the cost figures of the call (those of summary.json).

        The schedule is `wppg.schedule.run`'s, with its `callback` and `eval_at_end`: with a run
        directory, the directory is locked against a second writer for the call
        (`wppg.rundir.RunLock`). SIGINT / SIGTERM stop the loop after the current env step and
        update: a checkpoint is written at that consistent point and `TrainingInterrupted` (a
        KeyboardInterrupt) is raised.
        """
        return schedule.run(self, until_step, self.progress, callback=callback, eval_at_end=eval_at_end)

    @property
    def runs(self) -> Sequence[BaseTrainer]:
        return [self]

    def begin(self) -> None:
        pass

    def step_envs(self) -> list[list[tuple[float, int]]]:
        return [self.env_step()]

    def update(self, inputs: Any) -> list[dict[str, float]]:
        self._new_state, metrics, self.key = self._keyed_update(self.state, inputs, self.key)
        return [{name: float(v) for name, v in jax.device_get(metrics).items()}]

    def keep(self, metrics: list[dict[str, float]]) -> None:
        self.check_finite(metrics[0])
        self.state, self._new_state = self._new_state, None
        self.after_update()

    def policy_params(self, i: int = 0) -> Any:
        return self.algo.policy_params(self.state)

    def sync(self) -> None:
        pass

    def extra_costs(self) -> dict[str, Any]:
        return {}

    # --- what the engine asks of a run (`wppg.schedule.Run`) -----------------------------------------
    def check_target(self, until_step: int) -> None:
        """Warn about a target this run's config makes pointless; nothing by default."""

    def in_warmup(self) -> bool:
        """Whether the next env step is one of a random warm-up; none by default."""
        return False

    def open(self) -> None:
        """The envs and the run logger, made on the first training call."""
        if self.pool is None:
            self.pool = EnvPool([self.make_env() for _ in range(self.config.n_envs)], seed=self.config.seed)
        if self.run_dir is not None and self.logger is None:
            from wppg.logger import RunLogger

            # Rows after the checkpoint's step are cut (a resume); a replaced run keeps none.
            resume_step = self.env_steps if self.env_steps else (0 if self.fresh_logs else None)
            self.logger = RunLogger(self.run_dir, resume_step=resume_step)

    @contextlib.contextmanager
    def env_errors(self) -> Iterator[None]:
        """An `EnvOutputError` of this trainer's envs, with the env step (and `label`) added."""
        try:
            yield
        except EnvOutputError as e:
            raise EnvOutputError(
                f"{self.label}{e}, at env step {self.env_steps + self.config.n_envs}; training stopped and nothing of "
                f"this step was stored{self._last_good()}"
            ) from None

    def _last_good(self) -> str:
        path = self.run_dir / "checkpoints" / "last.npz" if self.run_dir is not None else None
        return f"; the last good checkpoint is {path}" if path is not None and path.exists() else ""

    def write_summary(self, costs: dict[str, Any]) -> None:
        """summary.json: the run's meta, counters, cost figures of the last learn call, final eval."""
        summary = {
            **self.meta,
            "env_steps": self.env_steps,
            "gradient_steps": int(self.state.step),
            **costs,
            "peak_rss_mb": peak_rss_mb(),
            "final_eval": self.last_eval,
        }
        if self.run_warnings:
            summary["warnings"] = self.run_warnings
        metrics = self.task_metrics()
        if metrics is not None:
            summary["task_metrics"] = metrics
        write_json(self.run_dir / "summary.json", summary)

    def task_metrics(self) -> dict[str, float] | None:
        """`wppg.tasks.policy_metrics` of the current policy on a fresh env, from its own stream of
        the run seed (so a run and `wppg eval` of its checkpoint agree); None unless the env is one
        of `wppg.tasks`."""
        from wppg.tasks import is_task, policy_metrics

        # The eval env already exists after learn, so other envs cost one isinstance check.
        if not is_task(self.eval_env if self.eval_env is not None else self.meta.get("env_id")):
            return None
        env = self.make_env()
        params = self.algo.policy_params(self.state)
        try:
            return policy_metrics(
                env,
                lambda obs, k: self.algo.act(params, obs, k, deterministic=False),
                jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 3),
            )
        finally:
            env.close()

    def check_finite(self, metrics: dict[str, float]) -> None:
        """Raise `TrainingDivergedError` if a metric of the update just made is not finite."""
        bad = [name for name, v in metrics.items() if not np.isfinite(v)]
        if bad:
            where = self._last_good()
            raise TrainingDivergedError(
                f"non-finite {', '.join(bad)} ({', '.join(f'{b}={metrics[b]}' for b in bad)}) in the update at env "
                "step "
                f"{self.env_steps} (gradient step {int(self.state.step)}); training stopped and the diverged "
                f"parameters were not kept{where}. Try a smaller learning rate or eta, or check the env's rewards."
            )

    def check_row(self, row: dict[str, float]) -> None:
        """Show the algorithm's `row_warning` about a train.csv row, the first one of the run only."""
        if self.run_warnings:
            return
        message = self.algo.row_warning(row)
        if message is not None:
            self.run_warnings.append(f"{self.algo.name} at env step {self.env_steps}: {message}")
            warnings.warn(self.run_warnings[-1], stacklevel=2)

    def log(self, kind: str, row: dict[str, float]) -> None:
        """Append `row` to the run's `kind` log ('train', 'eval') at the current env step."""
        if self.logger is not None:
            self.logger.log(kind, self.env_steps, row)

    def flush(self) -> None:
        """Flush the TensorBoard events (the CSV logs are written row by row)."""
        if self.logger is not None:
            self.logger.tb.flush()

    # --- evaluation ----------------------------------------------------------------------------
    def evaluate(self, episodes: int, deterministic: bool, env: gym.Env | None = None) -> np.ndarray:
        """Returns of `episodes` episodes on a separate env, by the protocol of `wppg.evaluation`:
        reset seeds and action keys depend only on the run seed and the evaluation index, never on
        the training RNG streams."""
        if env is None:
            if self.eval_env is None:
                self.eval_env = self.make_env()
            env = self.eval_env
        key = evaluation.eval_key(self.config.seed, self.n_evals)
        params = self.algo.policy_params(self.state)

        def policy(obs: np.ndarray) -> np.ndarray:
            nonlocal key
            key, k = jax.random.split(key)
            return np.asarray(self.algo.act(params, obs[None], k, deterministic=deterministic))[0]

        limit = evaluation.episode_step_limit(env, EVAL_MAX_EPISODE_STEPS)
        return evaluation.run_episodes(policy, env, self.config.seed, episodes, limit, (self.algo.obs_dim,), self._cut)

    def _cut(self, limit: int) -> None:
        if not self._eval_cut_warned:
            self._eval_cut_warned = True
            evaluation.warn_cut(limit)

    def evaluate_and_log(self) -> dict[str, float]:
        """Evaluate with stochastic actions and with the mode; log the row to eval.csv."""
        n = self.config.eval_episodes
        stoch, mode = self.evaluate(n, False), self.evaluate(n, True)
        self.n_evals += 1
        self.last_eval = evaluation.eval_row(self.env_steps, stoch, mode)
        self.log("eval", {k: v for k, v in self.last_eval.items() if k != "step"})
        return self.last_eval

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Checkpoint the whole run atomically (see `checkpoint.save`)."""
        pool = self.pool.state() if self.pool is not None else None
        meta = {
            **self.meta,
            "wppg_version": __version__,
            "train_config": self.config.to_dict(),
            "spaces": self._spaces(),
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            "n_evals": self.n_evals,
            "last_eval": self.last_eval,
            "np_rng": self.np_rng.bit_generator.state,
            "has_envs": pool is not None,
            "target_steps": self.target_steps,
            "log_window": {"metrics": self.log_metrics, "returns": list(self.recent_returns)},
            "warnings": self.run_warnings,
        }
        tree: dict[str, Any] = {"agent": self.state, "key": np.asarray(self.key), **self.save_extra()}
        if pool is not None:
            tree["pool"] = {
                "obs": pool["obs"],
                "ep_return": pool["ep_return"],
                "ep_length": pool["ep_length"],
                # Data-only snapshots (JSON); pickles only of envs whose state is not plain data.
                "env_states": np.frombuffer(json.dumps(pool["env_states"]).encode(), np.uint8),
                "pickles": {str(i): np.frombuffer(b, np.uint8) for i, b in pool["pickles"].items()},
            }
        return ckpt.save(path, meta, tree)

    def _spaces(self) -> dict[str, Any]:
        b = self.algo.bounds
        low, high = (b.bias - b.scale).tolist(), (b.bias + b.scale).tolist()
        return {"obs_dim": int(self.algo.obs_dim), "action_low": low, "action_high": high}

    def load_state(self, meta: dict[str, Any], tree: dict[str, Any], trust: bool = False) -> None:
        """Restore everything `save` wrote (the trainer must be built from the same configs).

        Runs no code from the checkpoint: the envs are fresh envs of this trainer's `make_env`
        with the saved data-only state written in. A pickled env snapshot (an env whose state is
        not plain data) is unpickled only with `trust=True`;
        otherwise, or if the snapshot does not fit the env, the envs start new episodes with a
        warning (the resume is then not exact at that point)."""
        saved_spaces = meta.get("spaces")
        if saved_spaces is not None and saved_spaces != self._spaces():
            raise ckpt.CheckpointError(
                f"the env's spaces {self._spaces()} differ from those the checkpoint was trained on {saved_spaces}"
            )
        try:
            self.state = ckpt.restore_tree(self.state, tree["agent"], "agent state")
            key = np.asarray(tree["key"])
            if key.shape != self.key.shape or key.dtype != self.key.dtype:
                expected = f"{self.key.shape} {self.key.dtype}"
                raise ValueError(f"'key' has shape {key.shape} and dtype {key.dtype}, expected {expected}")
            self.key = jax.numpy.asarray(key)
            self.load_extra(meta, tree)
            self.np_rng.bit_generator.state = meta["np_rng"]
            self.env_steps, self.iterations = int(meta["env_steps"]), int(meta["iterations"])
            self.n_evals = int(meta["n_evals"])
            self.last_eval = meta["last_eval"]
            self.target_steps = meta.get("target_steps")
            self.run_warnings = [str(w) for w in meta.get("warnings") or []]
            window = meta.get("log_window") or {}
            self.log_metrics = {str(k): [float(x) for x in v] for k, v in window.get("metrics", {}).items()}
            returns = [float(x) for x in window.get("returns", [])]
            self.recent_returns = deque(returns, maxlen=self.recent_returns.maxlen)
            if meta.get("has_envs"):
                pool = dict(tree["pool"])
                obs, ep_return, ep_length = pool["obs"], pool["ep_return"], pool["ep_length"]
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ckpt.CheckpointError(f"checkpoint is incomplete or inconsistent: missing or bad {e}") from e
        self.pool = None
        if meta.get("has_envs"):
            try:
                states = json.loads(pool["env_states"].tobytes().decode()) if "env_states" in pool else None
                pickles = {int(i): b.tobytes() for i, b in (pool.get("pickles") or {}).items()}
                state = {"env_states": states, "pickles": pickles, "obs": obs}
                state |= {"ep_return": ep_return, "ep_length": ep_length}
                self.pool = EnvPool.from_state(state, self.make_env, trust=trust)
            except Exception as e:  # noqa: BLE001 -- whatever does not fit: restart the episodes
                warnings.warn(
                    f"could not restore the envs' mid-episode state ({e}); starting new episodes, so the resume is not "
                    "exact at this point",
                    stacklevel=2,
                )


class Trainer(BaseTrainer):
    """The off-policy loop: uniform random actions until `learning_starts`, then the policy; every
    `train_freq` env steps, `train_freq * n_envs * utd` gradient steps on minibatches drawn
    uniformly from the replay buffer."""

    def __init__(
        self,
        algo: OffPolicyAlgorithm,
        config: TrainConfig,
        make_env: Callable[[], gym.Env],
        run_dir: str | Path | None = None,
        meta: dict[str, Any] | None = None,
        progress: bool = True,
    ):
        super().__init__(algo, config, make_env, run_dir, meta, progress)
        self.buffer = ReplayBuffer(config.buffer_size, algo.obs_dim, algo.act_dim)
        self._low, self._high = algo.bounds.bias - algo.bounds.scale, algo.bounds.bias + algo.bounds.scale

    def check_target(self, until_step: int) -> None:
        c = self.config
        if self.env_steps < until_step < max(c.learning_starts, c.batch_size):
            limits = (("learning_starts", c.learning_starts), ("batch_size", c.batch_size))
            which = [f"{k} ({v})" for k, v in limits if v > until_step]
            warnings.warn(
                f"{' and '.join(which)} {'exceed' if len(which) > 1 else 'exceeds'} the {until_step} env steps of "
                "this run: it will take zero gradient steps; lower it or train longer",
                stacklevel=5,
            )

    def in_warmup(self) -> bool:
        """Whether the next env step takes uniform random actions (before `learning_starts`)."""
        return self.env_steps < self.config.learning_starts

    def random_actions(self) -> np.ndarray:
        """Uniform random actions [n_envs, d] in the action box, from the run's NumPy generator."""
        c = self.config
        return self.np_rng.uniform(self._low, self._high, size=(c.n_envs, self.algo.act_dim)).astype(np.float32)

    def env_step(self) -> list[tuple[float, int]]:
        if self.in_warmup():
            actions = self.random_actions()
        else:
            _, out, self.key = self.algo.explore(self.state, self.pool.obs, self.key)
            actions = np.asarray(out["action"])
        return self.step_with(actions)

    def step_with(self, actions: np.ndarray) -> list[tuple[float, int]]:
        """Step every env with `actions` [n_envs, d] and store the transitions; returns the finished
        episodes. Nothing of the step is stored if an env's output is bad (`EnvOutputError`)."""
        obs = self.pool.obs.copy()
        with self.env_errors():
            next_obs, reward, terminated, _, finished = self.pool.step(actions)
        self.buffer.add(obs=obs, action=actions, reward=reward, next_obs=next_obs, terminated=terminated)
        return finished

    def update_due(self) -> bool:
        c = self.config
        return (
            self.env_steps >= c.learning_starts
            and self.buffer.size >= c.batch_size
            and self.iterations % c.train_freq == 0
        )

    def update_input(self) -> dict[str, np.ndarray]:
        return self.buffer.sample(self.np_rng, self.grad_steps_per_update(), self.config.batch_size)

    def grad_steps_per_update(self) -> int:
        c = self.config
        return c.train_freq * c.n_envs * c.utd

    def _recent_obs(self) -> np.ndarray:
        n = min(STATES, self.buffer.size)
        return self.buffer.data["obs"][(self.buffer.ptr - 1 - np.arange(n)) % self.buffer.capacity]

    def save_extra(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state()}

    def load_extra(self, meta: dict[str, Any], tree: dict[str, Any]) -> None:
        self.buffer.load_state(tree["buffer"])
