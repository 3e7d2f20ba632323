"""The configuration types of a run and their validation: `TrainConfig` (how the agent interacts
and learns), `ConfigError` and the field checks every config dataclass uses (`check_field_types`).

This module imports nothing else of the package, so that algorithms, trainers and the engine can
all depend on it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ConfigError", "TrainConfig", "check_field_types", "require"]


class ConfigError(ValueError):
    """An invalid hyperparameter; raised when the config is built, before any training."""


def require(condition: bool, message: str) -> None:
    """Raise `ConfigError(message)` unless `condition`."""
    if not condition:
        raise ConfigError(message)


class _Mismatch(Exception):
    """A value that does not fit a type annotation (internal to `check_field_types`)."""


def _coerce(value: Any, hint: Any) -> Any:
    """`value` as the annotation `hint` wants it (an integral float as int, an int as float), or
    `_Mismatch` with what was expected. Annotations it does not know are accepted as they are."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in sorted(args, key=lambda a: a is not type(value)):  # the exact type first
            try:
                return _coerce(value, arm)
            except _Mismatch:
                pass
        raise _Mismatch(" or ".join(_name(a) for a in args))
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch("None")
    if hint is bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        raise _Mismatch("a bool (True or False)")
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if real and math.isfinite(value) and float(value).is_integer():
            return int(value)  # 1e6 steps
        raise _Mismatch("an int")
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Mismatch("a finite float")
            return float(value)
        raise _Mismatch("a float")
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("a str")
    if origin in (Sequence, tuple, list, typing.Sequence) and args:
        item = args[0]
        expected = f"a sequence of {_name(item)}, e.g. (64, 64)"
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise _Mismatch(expected)
        try:
            return tuple(_coerce(x, item) for x in value)
        except _Mismatch:
            raise _Mismatch(expected) from None
    return value


def _name(hint: Any) -> str:
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


_HINTS: dict[type, dict[str, Any]] = {}


def check_field_types(config: Any) -> None:
    """Check (and normalise) every field of a config dataclass against its annotation, or raise
    `ConfigError` naming the field. Generic, so it covers fields added later: `int` refuses
    bools, strings and fractional floats; `float` accepts ints and refuses inf and NaN; `X | Y`
    accepts either; `Sequence[int]` wants a list or tuple of ints (not the string "64")."""
    cls = type(config)
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        try:
            fixed = _coerce(value, _HINTS[cls].get(f.name, Any))
        except _Mismatch as e:
            raise ConfigError(f"{f.name} must be {e}, got {value!r} ({type(value).__name__})") from None
        if fixed is not value:
            object.__setattr__(config, f.name, fixed)


@dataclass(frozen=True)
class TrainConfig:
    """How the agent interacts and learns (paper defaults where the paper gives them)."""

    total_steps: int = 1_000_000
    """The run's length in env steps, summed over the envs (paper: 1M): what `wppg train` trains to and
    PPO's learning rate anneals over. `Agent.learn(n)` trains n more env steps and does not read it."""
    learning_starts: int = 10_000
    """Env steps of uniform random actions before the first update (paper: 1e4)."""
    batch_size: int = 256
    """Minibatch size of each gradient step (paper: 256)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions (paper: 1e6)."""
    utd: int = 1
    """Update-to-data ratio: gradient steps per env step (paper: 1)."""
    train_freq: int = 1
    """Env steps (per env) between update calls; each call runs train_freq * n_envs * utd gradient
    steps inside one jitted lax.scan. Larger values amortise call overhead (same number of steps)."""
    n_envs: int = 1
    """Number of envs stepped in lock-step (paper: 1)."""
    eval_every: int = 10_000
    """Env steps between evaluations (also one at the end of each learn call, unless `eval_at_end=False`)."""
    eval_episodes: int = 10
    """Episodes per evaluation, run once with stochastic actions and once with the mode."""
    checkpoint_every: int = 50_000
    """Env steps between checkpoints of the whole run (also one at the end); 0 disables periodic ones."""
    log_every: int = 1_000
    """Env steps between rows of train.csv / TensorBoard scalars."""
    seed: int = 0
    """The one seed that drives parameters, latents, minibatches, envs and evaluation."""

    def __post_init__(self) -> None:
        check_field_types(self)
        require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        for name in (
            "total_steps",
            "batch_size",
            "buffer_size",
            "utd",
            "train_freq",
            "n_envs",
            "eval_every",
            "eval_episodes",
            "log_every",
        ):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.learning_starts >= 0, f"learning_starts must be >= 0, got {self.learning_starts}")
        require(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        require(
            self.batch_size <= self.buffer_size,
            f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
