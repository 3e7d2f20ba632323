"""Environment construction, action-space checks and exact env snapshots for resume."""

from __future__ import annotations

import contextlib
import copy
import importlib
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

EnvSpec = str | gym.Env | Callable[[], gym.Env]


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
    if space.shape[0] == 0:
        raise ActionSpaceError(f"action space {space!r} has zero size: there is no action to learn.")
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ActionSpaceError(
            f"action space {space!r} is unbounded: the policies squash actions with tanh into the box, so "
            "every bound must be finite. Wrap the env with gymnasium.wrappers.RescaleAction or clip to finite bounds."
        )
    if np.any(high <= low):
        raise ActionSpaceError(f"action space {space!r} has high <= low in some dimension.")
    with np.errstate(over="ignore"):
        scale, bias = ((high - low) / 2).astype(np.float32), ((high + low) / 2).astype(np.float32)
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(bias)) and np.all(scale > 0)):
        raise ActionSpaceError(
            f"action space {space!r} has bounds beyond float32's range (the dtype actions are computed in): "
            "wrap the env with gymnasium.wrappers.RescaleAction to a smaller box."
        )
    obs_space = env.observation_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ActionSpaceError(
            f"observation space {obs_space!r} is not a flat Box: wrap the env with "
            "gymnasium.wrappers.FlattenObservation (Dict/Tuple) or provide vector observations."
        )
    if obs_space.shape[0] == 0:
        raise ActionSpaceError(f"observation space {obs_space!r} has zero size.")
    bounds = ActionBounds(scale=scale, bias=bias)
    return int(obs_space.shape[0]), bounds


@dataclass(frozen=True)
class EnvInfo:
    """What the rest of the package needs to know of an env: how to make copies, and its spaces."""

    make: Callable[[], gym.Env]
    env_id: str | None
    obs_dim: int
    bounds: ActionBounds
    n_envs: int | None = None
    """The number of sub-envs of a vector env given as the env (then `n_envs` of the run), else None."""


DMC_PREFIX = "dm_control/"
"""Gymnasium ids of the DeepMind Control Suite (through shimmy), e.g. dm_control/cheetah-run-v0."""


def make_env(env_id: str) -> gym.Env:
    """`gym.make(env_id)`; a DeepMind Control Suite id (`DMC_PREFIX`) is made through shimmy with
    its dict of state observations flattened into one Box (`pip install 'wppg[dmc]'`)."""
    if not env_id.startswith(DMC_PREFIX):
        return gym.make(env_id)
    try:
        import shimmy  # noqa: F401  (registers the dm_control/ ids)
    except ImportError as e:
        raise ValueError(f"{env_id} needs dm-control and shimmy: pip install 'wppg[dmc]'") from e
    env = gym.make(env_id)
    return gym.wrappers.FlattenObservation(env) if isinstance(env.observation_space, gym.spaces.Dict) else env


def _copies(envs: list[gym.Env]) -> Callable[[], gym.Env]:
    """A factory that hands out `envs` themselves first, then deep copies of the first one taken
    now, before training touches it."""
    template = copy.deepcopy(envs[0])
    first = list(reversed(envs))

    def make() -> gym.Env:
        return first.pop() if first else copy.deepcopy(template)

    return make


def describe_env(env: EnvSpec) -> EnvInfo:
    """Check an env id, instance, factory or vector env and return a factory of fresh copies with its spaces.

    A user's instance is used as is for training (the first copy); later copies (the evaluation
    env) are deep copies of it taken before training touches it. A `gymnasium.vector.SyncVectorEnv`
    (`gym.make_vec(id, n, vectorization_mode="sync")`) gives its n sub-envs, stepped one by one as
    `n_envs` envs are (its own autoreset and vector wrappers are not used).
    """
    if isinstance(env, str):
        try:
            probe = make_env(env)
        except gym.error.Error as e:
            raise ValueError(f"cannot make env {env!r}: {e}") from e
        obs_dim, bounds = check_spaces(probe)
        # A "module:Id" string is stored as Id: loading a run never imports a module it names.
        env_id = probe.spec.id if probe.spec is not None and ":" in env else env
        probe.close()
        return EnvInfo(lambda: make_env(env), env_id, obs_dim, bounds)
    if isinstance(env, gym.vector.VectorEnv):
        subs = getattr(env, "envs", None)
        if not isinstance(env, gym.vector.SyncVectorEnv) or not subs:
            raise TypeError(
                f"a {type(env).__name__} is not supported: pass gym.make_vec(id, n, vectorization_mode='sync'), "
                "or the env id with n_envs=n"
            )
        obs_dim, bounds = check_spaces(subs[0])
        spec = getattr(subs[0], "spec", None)
        return EnvInfo(_copies(list(subs)), spec.id if spec is not None else None, obs_dim, bounds, len(subs))
    if isinstance(env, gym.Env):
        obs_dim, bounds = check_spaces(env)
        return EnvInfo(_copies([env]), env.spec.id if env.spec is not None else None, obs_dim, bounds)
    if callable(env):
        probe = env()
        obs_dim, bounds = check_spaces(probe)
        env_id = probe.spec.id if getattr(probe, "spec", None) is not None else None
        probe.close()
        return EnvInfo(env, env_id, obs_dim, bounds)
    raise TypeError(
        "env must be an env id string, a gymnasium.Env, a SyncVectorEnv or a zero-argument factory; "
        f"got {type(env).__name__}"
    )


def import_env(spec: str) -> EnvSpec:
    """The env of a command line's `--env`: an id as it is, or for `module:Id` / `module:Class` /
    `module:factory`, the module imported (the working directory first on sys.path) and then the
    id it registers, or the class or zero-argument factory. Only for a name the user typed: a run
    file's env id is never imported (`describe_env` stores `module:Id` as Id)."""
    if ":" not in spec:
        return spec
    module_name, name = spec.split(":", 1)
    if not module_name or not name:
        raise ValueError(f"--env {spec!r}: expected an env id, module:Id or module:Class")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"--env {spec!r}: cannot import {module_name!r} ({e}); run from the folder that holds it, or set PYTHONPATH"
        ) from e
    obj = getattr(module, name, None)
    if obj is not None and callable(obj):
        return obj
    if name in gym.registry:
        return name
    raise ValueError(f"--env {spec!r}: {module_name} has no env class or factory {name!r} and registers no such id")


def _mujoco_env(env: gym.Env) -> Any | None:
    unwrapped = env.unwrapped
    return (
        unwrapped
        if hasattr(unwrapped, "data") and hasattr(unwrapped, "model") and hasattr(unwrapped, "set_state")
        else None
    )


# --- data-only env snapshots -----------------------------------------------------------------------
# A checkpoint may come from anywhere, so restoring an env must not execute code from the file:
# the snapshot is a JSON tree of plain values (numbers, strings, NumPy arrays of numbers) that are
# written into the instance dicts of a freshly made env of the same wrapper chain. Pickle is kept
# only for envs whose state is not plain data, and is unpickled only when the caller trusts the file.


class EnvStateError(ValueError):
    """An env snapshot does not fit the env it is restored into, or cannot be restored safely."""


class _Opaque(Exception):
    """A value that is not plain data (internal to the encoder)."""


_NUMERIC_KINDS = "biuf"
_MUJOCO_HANDLED = ("model", "data", "mujoco_renderer")
"""Attributes of a MuJoCo env that the physics state (qpos, qvel, act, time) stands for."""


def _encode(v: Any) -> Any:
    """A JSON tree for a plain value; every container is tagged so decoding is unambiguous."""
    # NumPy scalars first: np.float64 is also a float, and must come back as np.float64.
    if isinstance(v, np.generic) and v.dtype.kind in _NUMERIC_KINDS:
        return {"scalar": [v.dtype.str, v.item()]}
    if isinstance(v, np.ndarray) and v.dtype.kind in _NUMERIC_KINDS:
        return {"ndarray": [v.dtype.str, list(v.shape), v.ravel().tolist()]}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return {type(v).__name__: [_encode(x) for x in v]}
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {"dict": {k: _encode(x) for k, x in v.items()}}
    raise _Opaque(type(v).__name__)


def _decode(v: Any) -> Any:
    if not isinstance(v, dict):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise EnvStateError(f"unexpected value {v!r} in an env snapshot")
    if len(v) != 1:
        raise EnvStateError(f"malformed entry {sorted(v)} in an env snapshot")
    ((tag, x),) = v.items()
    if tag in ("ndarray", "scalar"):
        dtype = np.dtype(x[0])
        if dtype.kind not in _NUMERIC_KINDS:
            raise EnvStateError(f"dtype {dtype} is not allowed in an env snapshot")
        if tag == "scalar":
            return dtype.type(x[1])
        return np.asarray(x[2], dtype=dtype).reshape([int(n) for n in x[1]])
    if tag == "list":
        return [_decode(e) for e in x]
    if tag == "tuple":
        return tuple(_decode(e) for e in x)
    if tag == "dict":
        return {str(k): _decode(e) for k, e in x.items()}
    raise EnvStateError(f"unknown tag {tag!r} in an env snapshot")


def _layers(env: gym.Env) -> list[Any]:
    """The wrapper chain, outermost first, ending with the unwrapped env."""
    out, layer = [], env
    while True:
        out.append(layer)
        inner = getattr(layer, "env", None)
        if not isinstance(inner, gym.Env) or inner is layer:
            return out
        layer = inner


def _harmless(name: str, value: Any, is_mujoco: bool) -> bool:
    """Attributes that need not be stored: structure rebuilt by the env's constructor, the RNG
    (stored on its own) and MuJoCo's model and data (stored as the physics state)."""
    from gymnasium.envs.registration import EnvSpec

    if isinstance(value, (gym.Space, gym.Env, EnvSpec, np.random.Generator)):
        return True
    return is_mujoco and name in _MUJOCO_HANDLED


def _rng_state(rng: Any) -> dict[str, Any]:
    """The state of an env's RNG: a `np.random.Generator` (Gymnasium's), or the legacy
    `np.random.RandomState` some envs use (shimmy's DeepMind Control Suite envs)."""
    if isinstance(rng, np.random.RandomState):
        return rng.get_state(legacy=False)  # type: ignore[return-value]
    return rng.bit_generator.state


def _set_rng_state(rng: Any, state: dict[str, Any]) -> None:
    if isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state


def env_state(env: gym.Env) -> dict[str, Any]:
    """A data-only snapshot of an env mid-episode (JSON-serialisable, see `restore_env_state`).

    Holds the class of each wrapper, every plain-data attribute of each layer, the env's RNG state
    and, for MuJoCo envs, the physics state. `complete` is False when some attribute is not plain
    data (listed in `opaque`): the data alone may then not continue the episode exactly.
    """
    mj = _mujoco_env(env)
    layers, opaque = [], []
    for layer in _layers(env):
        attrs = {}
        for name, value in vars(layer).items():
            if name == "env" or _harmless(name, value, mj is not None and layer is env.unwrapped):
                continue
            try:
                attrs[name] = _encode(value)
            except _Opaque as e:
                opaque.append(f"{type(layer).__name__}.{name} ({e})")
        layers.append({"class": f"{type(layer).__module__}.{type(layer).__qualname__}", "attrs": attrs})
    state: dict[str, Any] = {
        "layers": layers,
        "np_random": _encode(_rng_state(env.unwrapped.np_random)),
        "complete": not opaque,
        "opaque": opaque,
    }
    if mj is not None:
        d = mj.data
        physics = {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "act": d.act.copy(), "time": float(d.time)}
        state["mujoco"] = _encode(physics)
    return state


def _kind(v: Any) -> str:
    """A value's kind for the snapshot's type check: numbers of any width are one kind."""
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(v, np.ndarray):
        return f"ndarray{v.ndim}"
    return type(v).__name__


def restore_env_state(env: gym.Env, state: dict[str, Any]) -> gym.Env:
    """Write a snapshot of `env_state` into a fresh env of the same wrapper chain; no code from the
    snapshot runs (values are plain data, written into the layers' instance dicts only)."""
    try:
        layers = _layers(env)
        saved = state["layers"]
        got = [f"{type(x).__module__}.{type(x).__qualname__}" for x in layers]
        want = [s["class"] for s in saved]
        if got != want:
            raise EnvStateError(f"the env is {' > '.join(got)} but the snapshot is of {' > '.join(want)}")
        # A reset first gives every attribute the type the env uses, against which the snapshot's
        # values are checked; all of them are then overwritten (the RNG too).
        env.reset()
        for layer, s in zip(layers, saved):
            for name, value in s["attrs"].items():
                if not isinstance(name, str) or name.startswith("__") or name == "env":
                    raise EnvStateError(f"attribute name {name!r} is not allowed in an env snapshot")
                # The instance dict only: a snapshot never calls a property setter or __setattr__.
                declared = getattr(type(layer), name, None)
                if isinstance(declared, property):
                    continue
                if callable(declared) or callable(vars(layer).get(name)):
                    raise EnvStateError(f"attribute {name!r} of the snapshot would hide a method of the env")
                new = _decode(value)
                old = vars(layer).get(name)
                if old is not None and new is not None and _kind(old) != _kind(new):
                    got, want = type(new).__name__, type(old).__name__
                    raise EnvStateError(f"attribute {name!r} is a {got} in the snapshot, a {want} in the env")
                vars(layer)[name] = new
        _set_rng_state(env.unwrapped.np_random, _decode(state["np_random"]))
        if "mujoco" in state:
            import mujoco

            mj = _mujoco_env(env)
            if mj is None:
                raise EnvStateError("the snapshot holds a MuJoCo physics state but the env is not a MuJoCo env")
            s = _decode(state["mujoco"])
            mj.data.qpos[:] = s["qpos"]
            mj.data.qvel[:] = s["qvel"]
            mj.data.act[:] = s["act"]
            mj.data.time = s["time"]
            mujoco.mj_forward(mj.model, mj.data)
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise EnvStateError(f"malformed env snapshot ({type(e).__name__}: {e})") from e
    return env


def snapshot(env: gym.Env) -> bytes:
    """Pickle an env mid-episode (a trusted fallback to `env_state` for envs whose state is not
    plain data). Unpickling runs code named by the data: only `restore` files you trust."""
    extra: dict[str, Any] = {"np_random": _rng_state(env.unwrapped.np_random)}
    mj = _mujoco_env(env)
    if mj is not None:
        d = mj.data
        extra["mujoco"] = {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "act": d.act.copy(), "time": float(d.time)}
    return pickle.dumps((env, extra))


def restore(blob: bytes) -> gym.Env:
    """Inverse of `snapshot`. Executes code from `blob`: call it on trusted data only."""
    env, extra = pickle.loads(blob)  # the caller has checked that the data are trusted
    _set_rng_state(env.unwrapped.np_random, extra["np_random"])
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


class EnvOutputError(ValueError):
    """An env returned something the trainer cannot learn from (a non-finite or missing reward,
    an observation of the wrong shape or with NaN/inf)."""


def check_output(obs: Any, reward: Any, obs_shape: tuple[int, ...], where: str) -> tuple[np.ndarray, float]:
    """The observation as float32 and the reward as a float, or an `EnvOutputError` naming the
    field; values are checked after the cast to float32, the dtype they are stored in."""
    if reward is None:
        raise EnvOutputError(f"{where}: the reward is None")
    try:
        r = np.float32(reward)
    except (TypeError, ValueError) as e:
        raise EnvOutputError(f"{where}: the reward {reward!r} is not a number") from e
    if np.ndim(reward) != 0:
        raise EnvOutputError(f"{where}: the reward has shape {np.shape(reward)}, not a scalar")
    try:
        o = np.asarray(obs, np.float32)
    except (TypeError, ValueError) as e:
        raise EnvOutputError(f"{where}: the observation is not a numeric array ({e})") from e
    if o.shape != tuple(obs_shape):
        raise EnvOutputError(f"{where}: the observation has shape {o.shape}, the observation space {tuple(obs_shape)}")
    if not np.isfinite(r):
        overflow = " (it overflows float32, the dtype of the replay buffer)" if np.isfinite(float(reward)) else ""
        raise EnvOutputError(f"{where}: the reward is {reward!r}{overflow}")
    if not np.all(np.isfinite(o)):
        bad = np.flatnonzero(~np.isfinite(o))
        bad = bad[:8]
        raise EnvOutputError(f"{where}: the observation is non-finite at indices {bad.tolist()}: {o[bad].tolist()}")
    return o, float(reward)


class EnvPool:
    """N envs stepped in lock-step, with manual resets so the true final observation is kept.

    `step` returns the true next observations (for the replay buffer) and, separately, the
    observations to act on next (reset observations where an episode ended). Every observation
    and reward is checked (`check_output`): a NaN never reaches the replay buffer.
    """

    def __init__(self, envs: list[gym.Env], seed: int):
        self.envs = envs
        self.obs_shape = tuple(envs[0].observation_space.shape)
        self.obs = np.stack([self._reset(i, seed=seed + i) for i in range(len(envs))])
        self.ep_return = np.zeros(len(envs))
        self.ep_length = np.zeros(len(envs), dtype=np.int64)

    def _reset(self, i: int, seed: int | None = None) -> np.ndarray:
        obs = self.envs[i].reset(seed=seed)[0] if seed is not None else self.envs[i].reset()[0]
        return check_output(obs, 0.0, self.obs_shape, f"env {i}'s reset")[0]

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Step every env. Returns (next_obs, reward, terminated, truncated, finished episodes);
        raises `EnvOutputError` (nothing of the step is kept) on a bad observation or reward."""
        n = len(self.envs)
        next_obs = np.empty_like(self.obs)
        reward = np.empty(n, np.float32)
        terminated = np.empty(n, np.float32)
        truncated = np.empty(n, np.float32)
        outs = []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            where = f"env {i} at step {int(self.ep_length[i]) + 1} of its episode"
            next_obs[i], reward[i] = check_output(o, r, self.obs_shape, where)
            terminated[i], truncated[i] = term, trunc
            outs.append((term, trunc))
        finished = []
        for i, (term, trunc) in enumerate(outs):
            self.ep_return[i] += reward[i]
            self.ep_length[i] += 1
            if term or trunc:
                finished.append((float(self.ep_return[i]), int(self.ep_length[i])))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                self.obs[i] = self._reset(i)
            else:
                self.obs[i] = next_obs[i]
        return next_obs, reward, terminated, truncated, finished

    def state(self) -> dict[str, Any]:
        """Data-only env snapshots (`env_state`), plus pickles of the envs whose state is not plain data."""
        states = [env_state(e) for e in self.envs]
        pickles = {}
        for i, (e, s) in enumerate(zip(self.envs, states)):
            if not s["complete"]:
                # Not picklable either (a lambda in a wrapper): no snapshot, a resumed run starts new episodes.
                with contextlib.suppress(pickle.PicklingError, AttributeError, TypeError):
                    pickles[i] = snapshot(e)
        return {
            "env_states": states,
            "pickles": pickles,
            "obs": self.obs.copy(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], make_env: Callable[[], gym.Env], trust: bool = False) -> EnvPool:
        """Rebuild the pool from `state`: fresh envs from `make_env` with the data-only snapshots
        written in. A pickled snapshot (an env whose state is not plain data) is unpickled only with
        `trust=True`; otherwise `EnvStateError` is raised and
        the caller starts new episodes."""
        pool = cls.__new__(cls)
        n = len(state["obs"])
        states, pickles = state.get("env_states") or [None] * n, state.get("pickles") or {}
        envs = []
        for i in range(n):
            s = states[i]
            if s is not None and s.get("complete", False):
                envs.append(restore_env_state(make_env(), s))
            elif i in pickles:
                if not trust:
                    raise EnvStateError(
                        f"env {i}'s snapshot is a pickle, which can execute code when loaded; it was not "
                        "loaded (pass trust=True / --trust-checkpoint for a file you trust)"
                    )
                env, fresh = restore(pickles[i]), make_env()
                if type(env.unwrapped) is not type(fresh.unwrapped):
                    got, given = type(env.unwrapped).__name__, type(fresh.unwrapped).__name__
                    raise EnvStateError(f"the pickled env is a {got}, not the {given} given")
                fresh.close()
                envs.append(env)
            else:
                opaque = ", ".join((s or {}).get("opaque", [])) or "missing"
                raise EnvStateError(f"env {i}'s snapshot is incomplete ({opaque})")
        pool.envs = envs
        pool.obs_shape = tuple(envs[0].observation_space.shape)
        pool.obs = np.asarray(state["obs"], np.float32).copy()
        pool.ep_return = np.asarray(state["ep_return"], np.float64).copy()
        pool.ep_length = np.asarray(state["ep_length"], np.int64).copy()
        if pool.obs.shape != (n,) + pool.obs_shape:
            raise EnvStateError(f"the saved observations have shape {pool.obs.shape}, expected {(n,) + pool.obs_shape}")
        return pool
