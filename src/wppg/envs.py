"""Environment construction, action-space checks and exact env snapshots for resume."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import gymnasium as gym
import numpy as np

EnvSpec = Union[str, gym.Env, Callable[[], gym.Env]]


class ActionSpaceError(ValueError):
    """The environment's action space cannot be handled by a pushforward policy."""


@dataclass(frozen=True)
class ActionBounds:
    """Affine map from the squashed policy output u in [-1, 1]^d to env actions: a = scale*u + bias."""

    scale: np.ndarray
    bias: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.scale.shape[0])


def check_spaces(env: gym.Env) -> tuple[int, ActionBounds]:
    """Validate the env's spaces; return (obs_dim, action bounds) or raise a clear error."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ActionSpaceError(
            f"action space {space!r} ({type(space).__name__}) is not supported: WPPG, WPPG-I and SAC "
            "need a continuous, bounded gymnasium.spaces.Box action space. For discrete actions use a "
            "discrete-action algorithm; for Dict/Tuple spaces flatten them into one Box "
            "(gymnasium.wrappers.FlattenObservation does this for observations; write a small action wrapper)."
        )
    if len(space.shape) != 1:
        raise ActionSpaceError(f"action space {space!r} must be one-dimensional (shape (d,)); got shape {space.shape}.")
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ActionSpaceError(
            f"action space {space!r} is unbounded: the policies squash actions with tanh into the box, so "
            "every bound must be finite. Wrap the env with gymnasium.wrappers.RescaleAction or clip to finite bounds."
        )
    if np.any(high <= low):
        raise ActionSpaceError(f"action space {space!r} has high <= low in some dimension.")
    obs_space = env.observation_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ActionSpaceError(
            f"observation space {obs_space!r} is not a flat Box: wrap the env with "
            "gymnasium.wrappers.FlattenObservation (Dict/Tuple) or provide vector observations."
        )
    bounds = ActionBounds(scale=((high - low) / 2).astype(np.float32), bias=((high + low) / 2).astype(np.float32))
    return int(obs_space.shape[0]), bounds


@dataclass(frozen=True)
class EnvInfo:
    """What the rest of the package needs to know of an env: how to make copies, and its spaces."""

    make: Callable[[], gym.Env]
    env_id: str | None
    obs_dim: int
    bounds: ActionBounds


def describe_env(env: EnvSpec) -> EnvInfo:
    """Check an env id, instance or factory and return a factory of fresh copies with its spaces.

    A user's instance is used as is for training (the first copy); later copies (the evaluation
    env) are deep copies of it taken before training touches it.
    """
    if isinstance(env, str):
        try:
            probe = gym.make(env)
        except gym.error.Error as e:
            raise ValueError(f"cannot make env {env!r}: {e}") from e
        obs_dim, bounds = check_spaces(probe)
        probe.close()
        return EnvInfo(lambda: gym.make(env), env, obs_dim, bounds)
    if isinstance(env, gym.Env):
        obs_dim, bounds = check_spaces(env)
        template = copy.deepcopy(env)
        first = [env]

        def make() -> gym.Env:
            return first.pop() if first else copy.deepcopy(template)

        return EnvInfo(make, env.spec.id if env.spec is not None else None, obs_dim, bounds)
    if callable(env):
        probe = env()
        obs_dim, bounds = check_spaces(probe)
        env_id = probe.spec.id if getattr(probe, "spec", None) is not None else None
        probe.close()
        return EnvInfo(env, env_id, obs_dim, bounds)
    raise TypeError(f"env must be an env id string, a gymnasium.Env or a zero-argument factory; got {type(env).__name__}")


def _mujoco_env(env: gym.Env) -> Any | None:
    unwrapped = env.unwrapped
    return unwrapped if hasattr(unwrapped, "data") and hasattr(unwrapped, "model") and hasattr(unwrapped, "set_state") else None


def snapshot(env: gym.Env) -> bytes:
    """Serialise an env mid-episode so that `restore` continues it exactly.

    Plain pickling loses MuJoCo physics (those envs re-create themselves from constructor
    arguments), so their physics state and RNG are stored alongside the wrapper chain.
    """
    extra: dict[str, Any] = {"np_random": env.unwrapped.np_random.bit_generator.state}
    mj = _mujoco_env(env)
    if mj is not None:
        d = mj.data
        extra["mujoco"] = {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "act": d.act.copy(), "time": float(d.time)}
    return pickle.dumps((env, extra))


def restore(blob: bytes) -> gym.Env:
    """Inverse of `snapshot`."""
    env, extra = pickle.loads(blob)
    env.unwrapped.np_random  # materialise the generator before overwriting its state
    env.unwrapped.np_random.bit_generator.state = extra["np_random"]
    if "mujoco" in extra:
        import mujoco

        mj = _mujoco_env(env)
        s = extra["mujoco"]
        mj.data.qpos[:] = s["qpos"]
        mj.data.qvel[:] = s["qvel"]
        mj.data.act[:] = s["act"]
        mj.data.time = s["time"]
        mujoco.mj_forward(mj.model, mj.data)
    return env


class EnvPool:
    """N envs stepped in lock-step, with manual resets so the true final observation is kept.

    `step` returns the true next observations (for the replay buffer) and, separately, the
    observations to act on next (reset observations where an episode ended).
    """

    def __init__(self, envs: list[gym.Env], seed: int):
        self.envs = envs
        self.obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
        self.ep_return = np.zeros(len(envs))
        self.ep_length = np.zeros(len(envs), dtype=np.int64)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Step every env. Returns (next_obs, reward, terminated, truncated, finished episodes)."""
        n = len(self.envs)
        next_obs = np.empty_like(self.obs)
        reward = np.empty(n, np.float32)
        terminated = np.empty(n, np.float32)
        truncated = np.empty(n, np.float32)
        finished = []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            next_obs[i], reward[i], terminated[i], truncated[i] = o, r, term, trunc
            self.ep_return[i] += r
            self.ep_length[i] += 1
            if term or trunc:
                finished.append((float(self.ep_return[i]), int(self.ep_length[i])))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                self.obs[i] = env.reset()[0]
            else:
                self.obs[i] = o
        return next_obs, reward, terminated, truncated, finished

    def state(self) -> dict[str, Any]:
        return {
            "envs": [snapshot(e) for e in self.envs],
            "obs": self.obs.copy(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "EnvPool":
        pool = cls.__new__(cls)
        pool.envs = [restore(b) for b in state["envs"]]
        pool.obs = np.asarray(state["obs"], np.float32).copy()
        pool.ep_return = np.asarray(state["ep_return"]).copy()
        pool.ep_length = np.asarray(state["ep_length"]).copy()
        return pool
