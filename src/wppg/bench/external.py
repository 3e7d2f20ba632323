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
- Evaluation, exactly `Trainer.evaluate_and_log`: every `eval_every` env steps and at the end,
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

import dataclasses
import importlib
import importlib.metadata
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wppg.algorithms.base import require
from wppg.algorithms.ppo import PPOConfig
from wppg.algorithms.sac import SACConfig
from wppg.onpolicy import OFF_POLICY_FIELDS
from wppg.trainer import TrainConfig, peak_rss_mb

EXTERNAL_ALGOS: dict[str, tuple[str, str]] = {
    "sb3-sac": ("stable-baselines3", "stable_baselines3"),
    "sb3-ppo": ("stable-baselines3", "stable_baselines3"),
    "sbx-sac": ("sbx-rl", "sbx"),
}
"""External algorithm name -> (distribution name, import name) of its reference package."""

TRAIN_CSV_WINDOW = 20
"""Finished training episodes averaged into train.csv's train_return (as `Trainer.learn`)."""


@dataclass(frozen=True)
class ProtocolSettings:
    """Our evaluation and logging cadence (defaults and meaning: `TrainConfig`)."""

    eval_every: int = TrainConfig.eval_every
    eval_episodes: int = TrainConfig.eval_episodes
    log_every: int = TrainConfig.log_every


@dataclass(frozen=True)
class ReferenceSetup:
    """What `map_hyperparameters` resolves: the reference's constructor keywords (JSON-able;
    activation functions by name), our options that need wrappers, and the protocol."""

    algo: str
    kwargs: dict[str, Any]
    options: dict[str, Any]
    protocol: ProtocolSettings


_PROTOCOL_KEYS = {f.name for f in dataclasses.fields(ProtocolSettings)}
# Accepted for compatibility with our runs' hyperparameters, with no effect (see the docstring).
_IGNORED_KEYS = {"checkpoint_every"}


def map_hyperparameters(algo: str, hyperparameters: dict[str, Any]) -> ReferenceSetup:
    """Translate our hyperparameter names into the reference's settings; raise `ConfigError`
    on a key with no equivalent there or on an invalid value."""
    if algo not in EXTERNAL_ALGOS:
        raise ValueError(f"unknown external algorithm {algo!r}; choose one of {sorted(EXTERNAL_ALGOS)}")
    hp = dict(hyperparameters)
    for name in ("seed", "total_steps"):
        require(name not in hp, f"{name!r} is an argument of run_external, not a hyperparameter")
    require(hp.get("n_envs", 1) == 1, f"external runs step one env (n_envs = 1), got n_envs = {hp.get('n_envs')}")
    hp.pop("n_envs", None)
    if algo == "sb3-ppo":
        return _map_ppo(hp)
    return _map_sac(algo, hp)


_SAC_TRAIN_KEYS = {"learning_starts", "batch_size", "buffer_size", "utd", "train_freq"}


def _groups(algo: str) -> dict[str, set[str]]:
    """Our hyperparameter names each reference has an equivalent for, by where they go."""
    if algo == "sb3-ppo":
        return {"protocol": _PROTOCOL_KEYS, "off_policy": set(OFF_POLICY_FIELDS), "ppo": {f.name for f in dataclasses.fields(PPOConfig)}}
    return {"train": _SAC_TRAIN_KEYS | _PROTOCOL_KEYS, "sac": {f.name for f in dataclasses.fields(SACConfig)}}


def accepted_hyperparameters(algo: str) -> set[str]:
    """Every hyperparameter name `map_hyperparameters` accepts for this reference (what the bench
    spec checks names against, and what `--set` is applied to)."""
    if algo not in EXTERNAL_ALGOS:
        raise ValueError(f"unknown external algorithm {algo!r}; choose one of {sorted(EXTERNAL_ALGOS)}")
    return set().union(*_groups(algo).values()) | _IGNORED_KEYS | {"n_envs"}


def _split(algo: str, hp: dict[str, Any], groups: dict[str, set[str]]) -> dict[str, dict[str, Any]]:
    known = set().union(*groups.values()) | _IGNORED_KEYS
    unknown = sorted(set(hp) - known)
    require(
        not unknown,
        f"hyperparameter(s) {', '.join(unknown)} have no equivalent in {algo}; accepted: {', '.join(sorted(known))}",
    )
    return {g: {k: v for k, v in hp.items() if k in keys} for g, keys in groups.items()}


def _map_sac(algo: str, hp: dict[str, Any]) -> ReferenceSetup:
    parts = _split(algo, hp, _groups(algo))
    tc = TrainConfig(**parts["train"])  # validates ranges and batch <= buffer
    sc = SACConfig(**parts["sac"])
    kwargs: dict[str, Any] = {
        "learning_rate": sc.actor_lr,
        "buffer_size": tc.buffer_size,
        "learning_starts": tc.learning_starts,
        "batch_size": tc.batch_size,
        "tau": sc.polyak,
        "gamma": sc.gamma,
        "train_freq": tc.train_freq,
        "gradient_steps": tc.train_freq * tc.utd,
        "ent_coef": f"auto_{sc.alpha}" if sc.autotune else float(sc.alpha),
        "target_entropy": "auto" if sc.target_entropy is None else float(sc.target_entropy),
        "policy_kwargs": {"net_arch": list(sc.hidden), "activation_fn": "relu", "n_critics": 2},
    }
    if algo == "sb3-sac":
        require(
            sc.actor_lr == sc.critic_lr == sc.alpha_lr,
            f"sb3-sac uses one learning rate for actor, critics and temperature; got actor_lr={sc.actor_lr}, "
            f"critic_lr={sc.critic_lr}, alpha_lr={sc.alpha_lr}",
        )
    else:
        require(
            sc.alpha_lr == sc.actor_lr,
            f"sbx-sac tunes the temperature with the actor's learning rate; got alpha_lr={sc.alpha_lr}, actor_lr={sc.actor_lr}",
        )
        kwargs["qf_learning_rate"] = sc.critic_lr
    protocol = ProtocolSettings(eval_every=tc.eval_every, eval_episodes=tc.eval_episodes, log_every=tc.log_every)
    return ReferenceSetup(algo, kwargs, {}, protocol)


def _map_ppo(hp: dict[str, Any]) -> ReferenceSetup:
    parts = _split("sb3-ppo", hp, _groups("sb3-ppo"))
    # As our on-policy trainer: the off-policy fields are accepted only at their defaults.
    TrainConfig(**parts["protocol"], **parts["off_policy"])
    for name, value in parts["off_policy"].items():
        require(value == getattr(TrainConfig, name), f"{name} has no meaning for sb3-ppo; leave it at its default {getattr(TrainConfig, name)}")
    c = PPOConfig(**parts["ppo"])
    require(
        c.n_steps % c.n_minibatches == 0 and c.n_steps // c.n_minibatches >= 2,
        f"n_steps ({c.n_steps}) must split into n_minibatches ({c.n_minibatches}) equal minibatches of >= 2 steps for sb3-ppo",
    )
    kwargs = {
        "learning_rate": c.learning_rate,
        "n_steps": c.n_steps,
        "batch_size": c.n_steps // c.n_minibatches,
        "n_epochs": c.n_epochs,
        "gamma": c.gamma,
        "gae_lambda": c.gae_lambda,
        "clip_range": c.clip_coef,
        # SB3's clipped value loss is the squared error of the clipped prediction, not the max
        # of clipped and unclipped errors.
        "clip_range_vf": c.clip_coef if c.clip_vloss else None,
        "normalize_advantage": c.norm_adv,
        "ent_coef": c.ent_coef,
        "vf_coef": c.vf_coef,
        "max_grad_norm": c.max_grad_norm,
        "policy_kwargs": {
            "net_arch": {"pi": list(c.hidden), "vf": list(c.hidden)},
            "activation_fn": "tanh",
            "ortho_init": True,
            "log_std_init": c.init_log_std,
            "optimizer_kwargs": {"eps": c.adam_eps},
        },
    }
    options = {
        "anneal_lr": c.anneal_lr,
        "norm_obs": c.norm_obs,
        "norm_reward": c.norm_reward,
        "clip_obs": c.clip_obs,
        "clip_reward": c.clip_reward,
    }
    return ReferenceSetup("sb3-ppo", kwargs, options, ProtocolSettings(**parts["protocol"]))


# --- the evaluation protocol ---------------------------------------------------------------------


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
        """Returns of `episodes` episodes, reset seeds seed + 100000 + i."""
        if self.env is None:
            self.env = self.make_env()
        returns = np.zeros(self.episodes)
        with self.rng_scope(self.n_evals):
            for i in range(self.episodes):
                obs, _ = self.env.reset(seed=self.seed + 100_000 + i)
                done = False
                while not done:
                    action, _ = self.model.predict(self.obs_transform(np.asarray(obs)), deterministic=deterministic)
                    obs, r, term, trunc, _ = self.env.step(action)
                    returns[i] += r
                    done = term or trunc
        return returns

    def evaluate_at(self, step: int) -> dict[str, float]:
        stoch, mode = self.evaluate(False), self.evaluate(True)
        self.n_evals += 1
        self.last_eval = {
            "step": step,
            "return_stochastic": float(stoch.mean()),
            "return_stochastic_std": float(stoch.std()),
            "return_mode": float(mode.mean()),
            "return_mode_std": float(mode.std()),
        }
        return self.last_eval


class ProtocolRecorder:
    """The cadence of `Trainer.learn`: a train.csv row every `log_every` env steps, an
    evaluation every `eval_every` env steps and one at the end, rows written by `RunLogger`."""

    def __init__(self, evaluator: ProtocolEvaluator, protocol: ProtocolSettings, logger: Any = None, gradient_steps: Callable[[], int] = lambda: 0):
        self.evaluator, self.protocol, self.logger = evaluator, protocol, logger
        self.gradient_steps = gradient_steps
        self.next_eval = protocol.eval_every
        self.recent: deque[float] = deque(maxlen=TRAIN_CSV_WINDOW)
        self.start_time = time.perf_counter()

    def on_env_step(self, step: int, finished_returns: Sequence[float]) -> None:
        """Count the training episodes that ended at this step and log a train.csv row; rows
        start once an episode has finished, so that every row (and so the CSV header, fixed by
        the first row) has train_return."""
        self.recent.extend(finished_returns)
        if step % self.protocol.log_every == 0 and self.logger is not None and self.recent:
            row = {
                "steps_per_s": step / max(time.perf_counter() - self.start_time, 1e-9),
                "train_return": float(np.mean(self.recent)),
                "gradient_steps": self.gradient_steps(),
            }
            self.logger.log("train", step, row)

    def maybe_evaluate(self, step: int) -> None:
        if step >= self.next_eval:
            self._evaluate(step)
            self.next_eval = (step // self.protocol.eval_every + 1) * self.protocol.eval_every

    def finish(self, step: int) -> dict[str, float]:
        if self.evaluator.last_eval.get("step") != step:
            self._evaluate(step)
        return self.evaluator.last_eval

    def _evaluate(self, step: int) -> None:
        row = self.evaluator.evaluate_at(step)
        if self.logger is not None:
            self.logger.log("eval", step, {k: v for k, v in row.items() if k != "step"})


# --- running the references ------------------------------------------------------------------------


def reference_version(algo: str) -> tuple[str, str]:
    """(package, version) of the algorithm's reference; ImportError with the install line if absent."""
    package, module = EXTERNAL_ALGOS[algo]
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{algo} needs the package {package!r}, which is not installed: pip install torch==2.13.0 (the CPU build) "
            f'and then pip install -e ".[external]" (see README, "External references")'
        ) from e
    return package, importlib.metadata.version(package)


def single_threaded() -> bool:
    """Whether this process was asked to use one core (OMP_NUM_THREADS=1 or pinned to one CPU)."""
    if os.environ.get("OMP_NUM_THREADS") == "1":
        return True
    return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == 1


def _pin_torch_threads() -> None:
    import torch

    if single_threaded():
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before torch's first parallel work
            pass


class _UpdateTimer:
    """Wraps `model.train` to record the update cost as `Trainer.learn` does."""

    def __init__(self, model: Any, steps_per_call: Callable[[int], int]):
        self.time, self.calls, self.steps, self.first_call_s = 0.0, 0, 0, 0.0
        train = model.train

        def timed(*args: Any, **kwargs: Any) -> None:
            before = model._n_updates
            t0 = time.perf_counter()
            train(*args, **kwargs)
            dt = time.perf_counter() - t0
            self.first_call_s = self.first_call_s or dt
            self.time += dt
            self.calls += 1
            self.steps += steps_per_call(model._n_updates - before)

        model.train = timed


def _build(setup: ReferenceSetup, env_id: str, seed: int) -> tuple[Any, Callable[[np.ndarray], np.ndarray] | None]:
    """The reference model on a fresh training env; returns (model, evaluation obs transform)."""
    from wppg.envs import describe_env

    make_env = describe_env(env_id).make
    kwargs = json.loads(json.dumps(setup.kwargs))  # a copy the constructor may keep
    policy_kwargs = kwargs.pop("policy_kwargs")
    _pin_torch_threads()  # SBX too: its replay buffer is SB3's, in torch
    if setup.algo == "sbx-sac":
        import flax.linen as nn
        from sbx import SAC

        policy_kwargs["activation_fn"] = {"relu": nn.relu}[policy_kwargs["activation_fn"]]
        return SAC("MlpPolicy", make_env(), policy_kwargs=policy_kwargs, seed=seed, verbose=0, **kwargs), None
    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    policy_kwargs["activation_fn"] = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[policy_kwargs["activation_fn"]]
    if setup.algo == "sb3-sac":
        return SAC("MlpPolicy", make_env(), policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0, **kwargs), None
    lr = kwargs.pop("learning_rate")
    schedule = (lambda progress_remaining: lr * progress_remaining) if setup.options["anneal_lr"] else lr
    env: Any = DummyVecEnv([lambda: Monitor(make_env())])
    transform = None
    o = setup.options
    if o["norm_obs"] or o["norm_reward"]:
        env = VecNormalize(
            env, norm_obs=o["norm_obs"], norm_reward=o["norm_reward"], clip_obs=o["clip_obs"], clip_reward=o["clip_reward"], gamma=kwargs["gamma"]
        )
        transform = env.normalize_obs  # reads the running statistics without updating them
    model = PPO("MlpPolicy", env, learning_rate=schedule, policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0, **kwargs)
    return model, transform


def _rng_scope(algo: str, model: Any, seed: int) -> Callable[[int], Any]:
    """Evaluation-only RNG for stochastic actions, as `Trainer.evaluate` derives its key from
    (seed + 1, evaluation index); the training RNG state is put back afterwards."""
    if algo == "sbx-sac":
        import jax

        @contextmanager
        def sbx_scope(n_evals: int) -> Iterator[None]:
            policy = model.policy
            saved = policy.key, policy.noise_key
            policy.key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), n_evals)
            try:
                yield
            finally:
                policy.key, policy.noise_key = saved

        return sbx_scope
    import torch

    @contextmanager
    def torch_scope(n_evals: int) -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([seed + 1, n_evals]).generate_state(1)[0]))
            yield

    return torch_scope


def _gradient_steps_per_call(setup: ReferenceSetup) -> Callable[[int], int]:
    if setup.algo == "sb3-ppo":  # SB3 counts epochs; each epoch is n_minibatches optimiser steps
        per_epoch = setup.kwargs["n_steps"] // setup.kwargs["batch_size"]
        return lambda epochs: epochs * per_epoch
    return lambda n: n


def _callback(setup: ReferenceSetup, recorder: ProtocolRecorder) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    on_policy = setup.algo == "sb3-ppo"

    class ProtocolCallback(BaseCallback):
        def _on_rollout_start(self) -> None:
            if not on_policy:  # the updates of every env step so far are done
                recorder.maybe_evaluate(self.num_timesteps)

        def _on_step(self) -> bool:
            infos = self.locals.get("infos", [])  # Monitor reports a finished episode here
            recorder.on_env_step(self.num_timesteps, [info["episode"]["r"] for info in infos if "episode" in info])
            if on_policy:
                recorder.maybe_evaluate(self.num_timesteps)
            return True

    return ProtocolCallback()


def _clear_run_dir(run_dir: Path) -> None:
    for name in ("train.csv", "eval.csv", "summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)


def run_external(algo: str, env_id: str, seed: int, total_steps: int, run_dir: Path, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Train the reference `algo` for `total_steps` env steps (PPO: rounded up to whole
    rollouts), evaluate it with our protocol and write our run files into `run_dir`; returns
    the summary. No checkpoints: a rerun starts over."""
    require(total_steps >= 1, f"total_steps must be >= 1, got {total_steps}")
    setup = map_hyperparameters(algo, hyperparameters)
    package, version = reference_version(algo)
    from wppg.envs import describe_env
    from wppg.logger import RunLogger

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _clear_run_dir(run_dir)
    config = {
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "total_steps": total_steps,
        "hyperparameters": hyperparameters,
        "reference_package": package,
        "reference_version": version,
        "reference_kwargs": setup.kwargs,
        "options": setup.options,
        "protocol": dataclasses.asdict(setup.protocol),
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))

    model, transform = _build(setup, env_id, seed)
    timer = _UpdateTimer(model, _gradient_steps_per_call(setup))
    logger = RunLogger(run_dir)
    evaluator = ProtocolEvaluator(model, describe_env(env_id).make, seed, setup.protocol.eval_episodes, transform, _rng_scope(algo, model, seed))
    recorder = ProtocolRecorder(evaluator, setup.protocol, logger, lambda: timer.steps)
    try:
        model.learn(total_steps, callback=_callback(setup, recorder), progress_bar=False)
        final = recorder.finish(model.num_timesteps)
    finally:
        logger.close()
    elapsed = time.perf_counter() - recorder.start_time
    summary = {
        "algo": algo,
        "variant": algo,
        "env_id": env_id,
        "seed": seed,
        "reference_package": package,
        "reference_version": version,
        "algo_config": setup.kwargs,
        "env_steps": int(model.num_timesteps),
        "gradient_steps": timer.steps,
        "wall_time_s": elapsed,
        "steps_per_s": model.num_timesteps / max(elapsed, 1e-9),
        # As in `Trainer.learn`: the first update call includes SBX's compilation.
        "update_time_s": timer.time,
        "update_calls": timer.calls,
        "ms_per_gradient_step": 1e3 * timer.time / max(timer.steps, 1),
        "peak_rss_mb": peak_rss_mb(),
        "final_eval": final,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def measure_speed(
    algo: str, env_id: str, total_steps: int, learning_starts: int, train_freq: int, gradient_steps: int, seed: int = 0
) -> dict[str, Any]:
    """Env steps/s of reference SAC training alone (no evaluation), timed over the `total_steps`
    env steps that follow `learning_starts` untimed steps of random actions; `train_freq` env
    steps between update calls of `gradient_steps` gradient steps. Defaults otherwise as
    `SACConfig` / `TrainConfig`. The timed span includes the first update call (SBX compiles
    there); `first_update_s` reports that call alone."""
    if algo not in ("sb3-sac", "sbx-sac"):
        raise ValueError(f"measure_speed compares SAC implementations: algo must be 'sb3-sac' or 'sbx-sac', got {algo!r}")
    require(total_steps >= 1 and train_freq >= 1 and gradient_steps >= 1, "total_steps, train_freq and gradient_steps must be >= 1")
    setup = map_hyperparameters(algo, {"learning_starts": learning_starts, "train_freq": train_freq})
    setup.kwargs["gradient_steps"] = gradient_steps
    package, version = reference_version(algo)
    from stable_baselines3.common.callbacks import BaseCallback

    model, _ = _build(setup, env_id, seed)
    timer = _UpdateTimer(model, lambda n: n)
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_training_start(self) -> None:
            if learning_starts == 0:
                marks["t0"], marks["cpu0"] = time.perf_counter(), time.process_time()

        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts:
                marks["t0"], marks["cpu0"] = time.perf_counter(), time.process_time()
            return True

    model.learn(learning_starts + total_steps, callback=Clock(), progress_bar=False)
    elapsed, cpu = time.perf_counter() - marks["t0"], time.process_time() - marks["cpu0"]
    timed_steps = int(model.num_timesteps) - learning_starts
    threads = None
    if algo == "sb3-sac":
        import torch

        threads = torch.get_num_threads()
    return {
        "algo": algo,
        "env_id": env_id,
        "reference_package": package,
        "reference_version": version,
        "learning_starts": learning_starts,
        "train_freq": train_freq,
        "gradient_steps_per_call": gradient_steps,
        "env_steps": timed_steps,
        "wall_time_s": elapsed,
        "steps_per_s": timed_steps / max(elapsed, 1e-9),
        # Per second of this process's CPU time: less sensitive to other processes on the core.
        "cpu_time_s": cpu,
        "steps_per_cpu_s": timed_steps / max(cpu, 1e-9),
        "update_time_s": timer.time,
        "update_calls": timer.calls,
        "gradient_steps": timer.steps,
        "ms_per_gradient_step": 1e3 * timer.time / max(timer.steps, 1),
        "first_update_s": timer.first_call_s,
        "torch_threads": threads,
    }
