"""The contract between a trainer and an algorithm (`Algorithm`): what `wppg.trainer` and
`wppg.onpolicy` call, with one `explore` signature for off- and on-policy algorithms.

Every method is a function of its arguments alone (the algorithm object holds only its config and
the jitted functions built from it), so one algorithm object can serve several seeds.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from wppg.config import TrainConfig
from wppg.envs import ActionBounds

__all__ = ["Algorithm", "ExploreOutput"]

ExploreOutput = dict[str, Any]
"""What `explore` returns besides the state and key: at least 'action' [n_envs, d] (before any
clipping to the action box); an on-policy algorithm adds what its rollout stores."""


@runtime_checkable
class Algorithm(Protocol):
    """What the trainers need of an algorithm."""

    name: str
    """The algorithm's name in run files (meta 'algo'); variants of one algorithm share it."""
    config: Any
    obs_dim: int
    act_dim: int
    bounds: ActionBounds

    @classmethod
    def build(cls, config: Any, obs_dim: int, bounds: ActionBounds, train: TrainConfig) -> Algorithm:
        """The algorithm for a run: its config, the env's spaces and the run's `TrainConfig`."""
        ...

    def init(self, key: jax.Array) -> Any:
        """A fresh training state (parameters, optimisers, anything else an update changes)."""
        ...

    def explore(self, state: Any, obs: np.ndarray, key: jax.Array) -> tuple[Any, ExploreOutput, jax.Array]:
        """Actions for training on observations [n_envs, D]: (state, output, next key). The state
        changes only where acting updates it (running observation statistics)."""
        ...

    def update(self, state: Any, inputs: Any, key: jax.Array) -> tuple[Any, Any]:
        """One update call on what the trainer hands it (minibatches, a rollout): (state, metrics),
        jitted whole, pure (the trainer splits its key inside its own compiled call around it)."""
        ...

    def policy_params(self, state: Any) -> Any:
        """The part of the state that `act` needs."""
        ...

    def act(self, params: Any, obs: Any, key: jax.Array, deterministic: bool = False) -> Any:
        """Env actions [B, d] for observations [B, D]; deterministic=True gives the mode."""
        ...

    def row_warning(self, row: dict[str, float]) -> str | None:
        """A warning about the run, read off one train.csv row (the means of the update metrics since
        the last row), or None; the trainer shows the first one of a run."""
        ...
