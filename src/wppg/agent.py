"""The Stable-Baselines3-style API: `WPPG(env, ...).learn(n)`, `.predict(obs)`, `.save()`, `.load()`."""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wppg import checkpoint as ckpt
from wppg import registry
from wppg.callbacks import MaybeCallback, as_callback
from wppg.config import ConfigError, TrainConfig
from wppg.envs import DMC_PREFIX, EnvSpec, describe_env
from wppg.rundir import RunDirError
from wppg.trainer import BaseTrainer


def split_hyperparameters(variant: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword arguments into (algorithm config, TrainConfig) fields; unknown names fail."""
    algo_fields = registry.get(variant).config_fields()
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(kwargs) - algo_fields - train_fields)
    if unknown:
        raise TypeError(
            f"unknown hyperparameter(s) {unknown} for {variant}; valid: {sorted(algo_fields)} and "
            f"{sorted(train_fields)}"
        )
    return {k: v for k, v in kwargs.items() if k in algo_fields}, {k: v for k, v in kwargs.items() if k in train_fields}


_AGENT_CLASSES: dict[str, type[Agent]] = {}


class Agent:
    """An algorithm, its env and its training state. Use `WPPG`, `SAC`, `WPO` or `PPO`, or
    `Agent(env, variant=NAME)` for any algorithm of `wppg.registry`."""

    variant = "wppg"
    variants: tuple[str, ...] = ()
    """The registry names this class stands for (default: its `variant`); `make_agent` and
    `Agent.load` build these names with it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.variants or (cls.variant,):
            _AGENT_CLASSES[name] = cls

    def __init__(
        self,
        env: EnvSpec,
        *,
        variant: str | None = None,
        preset: str | None = None,
        seed: int = 0,
        run_dir: str | Path | None = None,
        progress: bool = True,
        overwrite: bool = False,
        **hyperparameters: Any,
    ):
        """`preset`: a named config of the algorithm (`wppg.registry.AlgorithmEntry.resolve_preset`), the
        hyperparameters given beside it winning; None (default): for WPPG / WPPG-I the backend's
        (`wppg.algorithms.wppg.backend_preset`: 'gpu' on a GPU or TPU, 'default' on a CPU), for the
        others none. The run records the preset it used (`self.preset`).

        `run_dir`: where the run writes its logs, checkpoint and summary (None: nothing is
        written). A directory that already holds a run is refused unless `overwrite=True`, which
        replaces it (continue a run with `Agent.load(path, run_dir=...)` instead)."""
        self.variant = variant or type(self).variant
        entry = registry.get(self.variant)
        self.preset = entry.resolve_preset(preset)
        algo_kwargs, train_kwargs = split_hyperparameters(
            self.variant, {**entry.preset(self.preset or "default"), **hyperparameters}
        )
        self.algo_config = entry.make_config(**algo_kwargs)
        self.env_info = describe_env(env)
        if self.env_info.n_envs is not None:  # a vector env: its sub-envs are the run's n_envs envs
            if train_kwargs.get("n_envs", self.env_info.n_envs) != self.env_info.n_envs:
                raise ConfigError(
                    f"n_envs={train_kwargs['n_envs']} contradicts the vector env's {self.env_info.n_envs} sub-envs"
                )
            train_kwargs["n_envs"] = self.env_info.n_envs
        self.train_config = TrainConfig(**{**train_kwargs, "seed": seed})
        self.algorithm = entry.algorithm_cls.build(
            self.algo_config, self.env_info.obs_dim, self.env_info.bounds, self.train_config
        )
        meta = {
            "algo": entry.algo,
            "variant": self.variant,
            "preset": self.preset,
            "algo_config": self.algo_config.to_dict(),
            "env_id": self.env_info.env_id,
        }
        if run_dir is not None and not overwrite and holds_run(run_dir):
            raise RunDirError(
                f"{run_dir} already holds a run: continue it with Agent.load({str(run_dir)!r}, run_dir=...), or "
                "pass overwrite=True to replace it"
            )
        self.trainer: BaseTrainer = entry.trainer_cls(
            self.algorithm, self.train_config, self.env_info.make, run_dir, meta, progress
        )
        self.trainer.fresh_logs = overwrite
        self._predict_key = jax.random.PRNGKey(seed + 2)

    @property
    def num_timesteps(self) -> int:
        """Env steps taken so far."""
        return self.trainer.env_steps

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        progress: bool | None = None,
        eval_at_end: bool = True,
    ) -> Agent:
        """Train `total_timesteps` more env steps (summed over the envs), as SB3's `learn` does;
        returns self. `TrainConfig.total_steps` (the run's planned length) is not read here.

        `callback`: a `wppg.callbacks.BaseCallback`, a list of them, or a function
        `f(locals, globals) -> bool` called after each env step; False stops training (see
        `wppg.callbacks`). `eval_at_end=False` skips the evaluation that ends the call (the
        periodic ones, every `eval_every` env steps, still run)."""
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, numbers.Integral)
            or total_timesteps < 1
        ):
            raise ValueError(f"total_timesteps must be an int >= 1, got {total_timesteps!r}")
        cb = as_callback(callback)
        if cb is not None:
            cb.init_callback(self)
        if progress is not None:
            self.trainer.progress = progress
        self.trainer.train_until(self.trainer.env_steps + int(total_timesteps), callback=cb, eval_at_end=eval_at_end)
        return self

    def evaluate(self, episodes: int = 10, deterministic: bool = True) -> np.ndarray:
        """Returns of `episodes` evaluation episodes on a fresh copy of the env."""
        return self.trainer.evaluate(episodes, deterministic, env=self.env_info.make())

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """`(action, None)` for one observation [obs_dim] or a batch [n, obs_dim], as SB3's `predict`
        (`action, _ = agent.predict(obs)`): the second item is the recurrent state, always None here;
        `state` and `episode_start` are accepted for SB3 compatibility and ignored. deterministic=True
        gives the mode (the latent at 0), False samples it."""
        obs = observation
        shape = f"({self.env_info.obs_dim},) or (n, {self.env_info.obs_dim})"
        try:
            obs = np.asarray(obs, np.float32) if obs is not None else None
        except (TypeError, ValueError) as e:
            raise ValueError(f"obs must be a numeric array of shape {shape}; got {type(obs).__name__} ({e})") from None
        if obs is None or obs.ndim not in (1, 2) or obs.shape[-1] != self.env_info.obs_dim:
            raise ValueError(f"obs must have shape {shape}; got {'None' if obs is None else obs.shape}")
        if not np.all(np.isfinite(obs)):
            bad = np.argwhere(~np.isfinite(obs))[:8].tolist()
            raise ValueError(f"obs holds NaN or infinite values (at {bad}): check the env or its wrappers")
        single = obs.ndim == 1
        self._predict_key, k = jax.random.split(self._predict_key)
        a = np.asarray(
            self.algorithm.act(self.policy_params(), obs[None] if single else obs, k, deterministic=deterministic)
        )
        return (a[0] if single else a), None

    def policy_params(self) -> Any:
        """The current policy parameters (a pytree of arrays): the `params` argument of the
        function that `policy` returns. A snapshot: training later does not change it."""
        return self.algorithm.policy_params(self.trainer.state)

    def policy(self, deterministic: bool = True, noise_input: bool = False) -> Callable[..., jax.Array]:
        """The policy as a pure jitted function of its parameters (`policy_params()`), for deployment:

        - deterministic=True: `f(params, obs) -> action`, the mode (the latent at 0);
        - deterministic=False: `f(params, obs, key) -> action`, a sample with a `jax.random` key;
        - noise_input=True (off-policy algorithms): `f(params, obs, noise) -> action` with the
          standard-normal latent given, noise [..., noise_dim] (WPPG-I's z, the Gaussian's eps).

        obs is [obs_dim] or [B, obs_dim]; actions lie in the env's action box. The function closes
        over nothing that training changes. See docs/guide/export.md.
        """
        algo = self.algorithm
        if noise_input:
            net = self._pushforward()

            def noise_fn(params: Any, obs: jax.Array, noise: jax.Array) -> jax.Array:
                obs, noise = jnp.asarray(obs, jnp.float32), jnp.asarray(noise, jnp.float32)
                if obs.ndim == 1:
                    return net.apply(params, obs[None], noise[None, None])[0, 0]
                return net.apply(params, obs, noise[:, None])[:, 0]

            return jax.jit(noise_fn)

        def act(params: Any, obs: jax.Array, key: jax.Array | None) -> jax.Array:
            obs = jnp.asarray(obs, jnp.float32)
            if obs.ndim == 1:
                return algo.act(params, obs[None], key, deterministic=deterministic)[0]
            return algo.act(params, obs, key, deterministic=deterministic)

        if deterministic:
            return jax.jit(lambda params, obs: act(params, obs, None))
        return jax.jit(act)

    @property
    def noise_dim(self) -> int:
        """Size of the standard-normal latent of the policy (`policy(noise_input=True)`)."""
        return int(self._pushforward().latent_dim)

    def _pushforward(self) -> Any:
        """The policy network g(s, noise) of an off-policy algorithm, or a ValueError naming the agent."""
        net = getattr(self.algorithm, "policy", None)
        if net is None or not hasattr(net, "latent_dim"):
            raise ValueError(f"{self.variant} has no pushforward policy g(s, noise): noise_input needs one")
        return net

    def save(self, path: str | Path) -> Path:
        """Save everything needed to resume exactly: parameters, optimisers, buffer, RNGs, envs."""
        if not isinstance(path, (str, os.PathLike)) or str(path) == "":
            raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r}")
        return self.trainer.save(path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: EnvSpec | None = None,
        run_dir: str | Path | None = None,
        progress: bool = True,
        trust: bool = False,
        overwrite: bool = False,
    ) -> Agent:
        """Load an agent saved by `save` (or a run directory).

        `run_dir`: where training goes on writing; the run's own directory continues it (its logs
        cut back to the checkpoint), another one that holds a run is refused unless `overwrite=True`.

        `env` is needed if it was trained on a user-supplied env without a registered id. When
        given, the agent trains and evaluates on `env` from then on (its spaces must be those of
        the checkpoint, or `CheckpointError`); the saved mid-episode state is written into copies
        of `env` when it is of the saved env's class, otherwise new episodes start (a warning).

        Loading runs no code from the file and imports no module it names: an env id with a module
        part (`module:Env-v1`) needs `env=` or `trust=True`. `trust=True` also allows unpickling a
        pickled env snapshot (written for envs whose state is not plain data): pass it only for files
        you trust, as unpickling can execute arbitrary code; without it such envs start new
        episodes, with a warning. See docs/guide/security.md.
        """
        meta = ckpt.read_header(path)
        variant = meta["variant"]
        if variant not in registry.REGISTRY:
            raise ckpt.CheckpointError(f"checkpoint {path} holds an unknown agent {variant!r}")
        agent_cls = agent_class(variant)
        if cls is not Agent and cls is not agent_cls:
            raise ckpt.CheckpointError(
                f"checkpoint {path} holds a {variant} agent, not {cls.variant}; load it with "
                f"wppg.{agent_cls.__name__}.load"
            )
        if env is None:
            env = _saved_env_id(meta.get("env_id"), path, trust)
        train = dict(meta["train_config"])
        if "seed" not in train:
            raise ckpt.CheckpointError(f"checkpoint {path} has an incomplete header (missing 'train_config.seed')")
        seed = train.pop("seed")
        algo_cfg = dict(meta["algo_config"])
        for k in registry.get(variant).fixed:
            algo_cfg.pop(k, None)
        # The recorded preset (a header without one: 'default'); the saved fields override its values.
        preset = meta.get("preset", "default")
        # Continuing the run in its own directory is a resume; another directory's run is replaced
        # only with overwrite=True.
        source = Path(path).resolve()
        resumes = run_dir is not None and Path(run_dir).resolve() in {source, *source.parents}
        try:
            agent = make_agent(
                variant, env, seed=seed, preset=preset, run_dir=run_dir, progress=progress,
                overwrite=overwrite or resumes, **train, **algo_cfg,
            )  # fmt: skip
        except TypeError as e:
            raise ckpt.CheckpointError(f"checkpoint {path} is incompatible with this version of wppg: {e}") from e
        except ConfigError as e:
            raise ckpt.CheckpointError(f"checkpoint {path} has a bad header: {e}") from e
        _, tree = ckpt.load(path, expect=_expected_arrays(agent.trainer, meta))
        agent.trainer.load_state(meta, tree, trust=trust)
        return agent


def _saved_env_id(env_id: str | None, path: str | Path, trust: bool) -> str:
    """The env id of a checkpoint's header, if it names an env registered in this process: an id
    with a module part (`module:Env-v1`) would import that module, so it needs `trust`."""
    import gymnasium as gym

    if env_id is None:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was trained on an env without a registered id: pass env= to load it "
            "(on the command line --env module:Class)"
        )
    if ":" in env_id and not trust:
        raise ckpt.CheckpointError(
            f"checkpoint {path} names the env {env_id!r}, whose module part loading would import: pass env= "
            "(or trust=True / --trust-checkpoint for a file you wrote). See docs/guide/security.md"
        )
    if ":" not in env_id and not env_id.startswith(DMC_PREFIX) and env_id not in gym.registry:
        raise ckpt.CheckpointError(
            f"checkpoint {path} names the env {env_id!r}, which is not registered: import the package that "
            "registers it, or pass env= (on the command line --env module:Id)"
        )
    return env_id


def _expected_arrays(trainer: BaseTrainer, meta: dict[str, Any]) -> dict[str, ckpt.Expect]:
    """The arrays a checkpoint of `trainer` may hold, with their shapes (`checkpoint.Expect`): the
    agent state and key exactly; a buffer's filled part up to its capacity; the env pool's arrays
    for the trainer's number of envs."""
    expect = ckpt.expect_tree({"agent": trainer.state, "key": np.asarray(trainer.key)})
    for prefix, saved in trainer.save_extra().items():
        full = getattr(getattr(trainer, prefix, None), "data", {})
        for k, e in ckpt.expect_tree(saved, f"{prefix}/").items():
            name = k.split("/", 1)[1]
            if name in full:
                e = ckpt.Expect(full[name].shape, full[name].dtype, leading_max=full[name].shape[0])
            expect[k] = e
    n, blob = trainer.config.n_envs, ckpt.Expect((ckpt.MAX_BLOB_BYTES,), np.dtype(np.uint8), ckpt.MAX_BLOB_BYTES)
    expect["pool/obs"] = ckpt.Expect((n, trainer.algo.obs_dim), np.dtype(np.float32))
    expect["pool/ep_return"] = ckpt.Expect((n,), np.dtype(np.float64))
    expect["pool/ep_length"] = ckpt.Expect((n,), np.dtype(np.int64))
    expect["pool/env_states"] = blob
    expect |= {f"pool/pickles/{i}": blob for i in range(n)}
    return expect


class WPPG(Agent):
    """WPPG (policy='gaussian') or WPPG-I (policy='implicit'). Hyperparameters: `WPPGConfig` and
    `TrainConfig` fields, for example `WPPG("Pendulum-v1", policy="implicit", K=8, eta=0.1)`.
    `preset=None` (default) picks the backend's preset ('gpu' on a GPU or TPU, else 'default'), `preset='cpu'`
    the published runs' configuration, `preset='paper'` the paper's exact algorithm (shared-latent
    projection); see `wppg.algorithms.wppg.PRESETS`."""

    variants = ("wppg", "wppg-i")

    def __init__(self, env: EnvSpec, policy: str | None = None, *, variant: str | None = None, **kwargs: Any):
        if variant is None:
            policy = policy or "gaussian"
            if policy not in ("gaussian", "implicit"):
                raise ConfigError(f"policy must be 'gaussian' or 'implicit', got {policy!r}")
            variant = "wppg-i" if policy == "implicit" else "wppg"
        elif policy is not None and policy != registry.get(variant).fixed.get("policy"):
            raise ConfigError(f"policy={policy!r} contradicts the agent {variant!r}")
        super().__init__(env, variant=variant, **kwargs)


class SAC(Agent):
    """SAC with a tanh-Gaussian policy; `alpha='auto'` (default) learns the temperature, a number fixes it (the
    WPPG paper's baseline); see `SACConfig`."""

    variant = "sac"


class WPO(Agent):
    """WPO (Pfau et al. 2025) with a tanh-Gaussian policy, the baseline of the WPPG paper; see `WPOConfig`."""

    variant = "wpo"


class PPO(Agent):
    """PPO (clipped surrogate, GAE, observation and reward normalisation), the on-policy baseline;
    hyperparameters: `PPOConfig` and the on-policy `TrainConfig` fields. Set `total_steps` to the
    run's length: the learning rate anneals to 0 over it."""

    variant = "ppo"


def holds_run(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a run (its config.json or checkpoint), as `wppg train` tells one."""
    d = Path(run_dir)
    return (d / "config.json").exists() or (d / "checkpoints" / "last.npz").exists()


def agent_class(variant: str) -> type[Agent]:
    """The public class that builds `variant` (`Agent` itself for a name without one)."""
    registry.get(variant)
    return _AGENT_CLASSES.get(variant, Agent)


def make_agent(variant: str, env: EnvSpec, **kwargs: Any) -> Agent:
    """Build an agent from its registry name ('wppg', 'wppg-i', 'sac', 'wpo', 'ppo', ...)."""
    return agent_class(variant)(env, variant=variant, **kwargs)
