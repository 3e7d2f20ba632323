"""Building and training the references (SB3 SAC and PPO, SBX SAC) under our protocol, writing
the files of one of our runs (see `wppg.bench.external`)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from wppg.algorithms.base import require
from wppg.bench.external.mapping import EXTERNAL_ALGOS, ReferenceSetup, map_hyperparameters
from wppg.bench.external.protocol import ProtocolEvaluator, ProtocolRecorder
from wppg.rundir import write_file, write_json
from wppg.trainer import peak_rss_mb


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
    from stable_baselines3.common.logger import Logger

    model, transform = _construct(setup, env_id, seed)
    # Without a logger of its own, every `learn` call leaves an empty SB3-<date> folder in the
    # system's temp dir; our protocol writes the run's files itself.
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model, transform


def _construct(setup: ReferenceSetup, env_id: str, seed: int) -> tuple[Any, Callable[[np.ndarray], np.ndarray] | None]:
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
        return SAC(
            "MlpPolicy", make_env(), policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0, **kwargs
        ), None
    lr = kwargs.pop("learning_rate")
    schedule = (lambda progress_remaining: lr * progress_remaining) if setup.options["anneal_lr"] else lr
    env: Any = DummyVecEnv([lambda: Monitor(make_env())])
    transform = None
    o = setup.options
    if o["norm_obs"] or o["norm_reward"]:
        env = VecNormalize(
            env,
            norm_obs=o["norm_obs"],
            norm_reward=o["norm_reward"],
            clip_obs=o["clip_obs"],
            clip_reward=o["clip_reward"],
            gamma=kwargs["gamma"],
        )
        transform = env.normalize_obs  # reads the running statistics without updating them
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=schedule,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
        **kwargs,
    )
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


def run_external(
    algo: str, env_id: str, seed: int, total_steps: int, run_dir: Path, hyperparameters: dict[str, Any]
) -> dict[str, Any]:
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
    write_file(run_dir / "config.json", json.dumps(config, indent=2, default=str))

    model, transform = _build(setup, env_id, seed)
    timer = _UpdateTimer(model, _gradient_steps_per_call(setup))
    logger = RunLogger(run_dir)
    evaluator = ProtocolEvaluator(
        model, describe_env(env_id).make, seed, setup.protocol.eval_episodes, transform, _rng_scope(algo, model, seed)
    )
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
        "cpu_time_s": time.process_time() - recorder.start_cpu,
        "steps_per_s": model.num_timesteps / max(elapsed, 1e-9),
        # As in `Trainer.learn`: the first update call includes SBX's compilation.
        "update_time_s": timer.time,
        "update_calls": timer.calls,
        "ms_per_gradient_step": 1e3 * timer.time / max(timer.steps, 1),
        "peak_rss_mb": peak_rss_mb(),
        "final_eval": final,
    }
    write_json(run_dir / "summary.json", summary)
    return summary
