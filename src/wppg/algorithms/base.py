"""What every off-policy actor-critic here shares: config fields, state, twin critics, scan.

An algorithm subclasses `OffPolicyAlgorithm` and writes two pure functions of its paper:
`soft_value(state, next_obs, key)` (the bootstrap value, entropy term included) and
`actor_step(state, obs, key)` (the policy update). Everything else is here, once.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import flax
import jax
import jax.numpy as jnp
import optax

from wppg.config import check_field_types, require
from wppg.envs import ActionBounds
from wppg.networks import PRECISIONS, TwinQ
from wppg.noise import standard_normal


def with_key_split(update: Callable) -> Callable:
    """`update(state, input, key) -> (state, metrics)` as `(state, input, key) -> (state, metrics,
    next_key)` with `next_key, k = jax.random.split(key)` and `update(state, input, k)`: the
    trainers' key split then runs inside the update's compiled call (the same numbers as splitting
    outside, without an eager split of its own per update call)."""

    def keyed(state: Any, inputs: Any, key: jax.Array) -> tuple[Any, Any, jax.Array]:
        key, k = jax.random.split(key)
        state, metrics = update(state, inputs, k)
        return state, metrics, key

    return keyed


@dataclass(frozen=True)
class OffPolicyConfig:
    """Hyperparameters shared by the off-policy actor-critic algorithms (paper defaults)."""

    FIELDS_ADDED: ClassVar[dict[str, Any]] = {"precision": "float32"}
    """Fields added after runs were first saved, with the value that reproduces what the code did
    before: a saved config.json without the field is read as having it (the benchmark runner uses
    this to tell a run made under other defaults, `wppg.bench.runner.config_changes`)."""

    gamma: float = 0.99
    """Discount factor gamma."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    polyak: float = 0.005
    """Polyak averaging rate of the target critics (target <- (1 - polyak) target + polyak online)."""
    hidden: Sequence[int] = field(default=(256, 256))
    """Hidden widths of the ReLU MLPs of the policy and of each critic."""
    precision: str = "float32"
    """Hidden-to-hidden matrix products: 'float32' (default) or 'bf16' (bf16 operands, float32 accumulation;
    for hardware with bf16 units, slower elsewhere; runs in the two precisions differ). Not in the papers;
    docs/guide/scaling.md#precision."""

    def __post_init__(self) -> None:
        check_field_types(self)
        self.validate()

    def validate(self) -> None:
        require(0.0 <= self.gamma < 1.0, f"gamma must be in [0, 1), got {self.gamma}")
        require(self.actor_lr > 0, f"actor_lr must be > 0, got {self.actor_lr}")
        require(self.critic_lr > 0, f"critic_lr must be > 0, got {self.critic_lr}")
        require(0.0 < self.polyak <= 1.0, f"polyak must be in (0, 1], got {self.polyak}")
        require(
            len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
            f"hidden must be positive widths, got {self.hidden}",
        )
        require(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class Batch(flax.struct.PyTreeNode):
    obs: jnp.ndarray
    action: jnp.ndarray
    reward: jnp.ndarray
    next_obs: jnp.ndarray
    terminated: jnp.ndarray


class AgentState(flax.struct.PyTreeNode):
    """Everything an update changes. `extra` holds algorithm-specific pieces (SAC's temperature)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    actor_opt: Any
    critic_opt: Any
    extra: Any
    step: jnp.ndarray


def td_target(reward: jnp.ndarray, terminated: jnp.ndarray, gamma: float, next_value: jnp.ndarray) -> jnp.ndarray:
    """y = r + gamma (1 - terminated) V(s'). Truncated episodes have terminated = 0: they bootstrap."""
    return reward + gamma * (1.0 - terminated) * next_value


CHUNK_ROWS = 1024
"""Rows (states x samples) per chunk when a network runs on K samples per state, so that a chunk's
activations stay in cache between the matrix products; the arithmetic is that of one pass."""


def sample_chunks(batch: int, n_samples: int, rows: int = CHUNK_ROWS) -> int:
    """Number of chunks the n_samples per state are split into: the largest divisor of n_samples
    that keeps batch * samples-per-chunk <= rows (at least one sample per chunk)."""
    per = max(1, min(n_samples, rows // max(batch, 1)))
    while n_samples % per:
        per -= 1
    return n_samples // per


def map_samples(fn: Callable[[jnp.ndarray], jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    """fn over the sample axis of x [B, K, ...] in `sample_chunks` chunks (a `lax.map`), for an fn
    that maps [B, k, ...] to [B, k, ...]; the same values as fn(x), computed chunk by chunk."""
    b, k = x.shape[:2]
    c = sample_chunks(b, k)
    if c == 1:
        return fn(x)
    chunks = jnp.moveaxis(x.reshape(b, c, k // c, *x.shape[2:]), 1, 0)
    out = jax.lax.map(fn, chunks)
    return jnp.moveaxis(out, 0, 1).reshape(b, k, *out.shape[3:])


def min_q(critic: TwinQ, params: Any, obs: jnp.ndarray, actions: jnp.ndarray) -> jnp.ndarray:
    """min_j Q_j(s, a) for K actions per state: obs [B, D], actions [B, K, d] -> [B, K]."""
    return map_samples(lambda a: jnp.min(critic.apply(params, obs, a), axis=0), actions)


def grad_min_q(critic: TwinQ, params: Any, obs: jnp.ndarray, actions: jnp.ndarray) -> jnp.ndarray:
    """grad_a min_j Q_j(s, a) at K actions per state, [B, K, d]; each chunk's backward pass runs
    right after its forward pass, while its activations are still in cache."""

    def grad(a: jnp.ndarray) -> jnp.ndarray:
        return jax.grad(lambda a: jnp.sum(jnp.min(critic.apply(params, obs, a), axis=0)))(a)

    return map_samples(grad, actions)


class OffPolicyAlgorithm(abc.ABC):
    """Shared skeleton. Subclasses set `self.policy` in `__init__` and implement the two hooks."""

    name = "base"

    def __init__(self, config: OffPolicyConfig, obs_dim: int, bounds: ActionBounds):
        self.config = config
        self.obs_dim = obs_dim
        self.act_dim = bounds.dim
        self.bounds = bounds
        self.scale = jnp.asarray(bounds.scale)
        self.critic = TwinQ(config.hidden, config.precision)
        self.actor_tx = optax.adam(config.actor_lr)
        self.critic_tx = optax.adam(config.critic_lr)
        self.update = jax.jit(self._update)
        self.act = jax.jit(self._act, static_argnames="deterministic")
        self.explore_actions = jax.jit(self._explore)
        """`(actor_params, obs, key) -> (actions, next key)`, jitted: exploration after the warm-up,
        the key split inside the compiled call; a pure function, so it maps over seeds."""
        self._init_jit = jax.jit(self.fresh_state)

    @classmethod
    def build(cls, config: Any, obs_dim: int, bounds: ActionBounds, train: Any) -> OffPolicyAlgorithm:
        """The algorithm for a run (`wppg.algorithms.protocol.Algorithm.build`): the run's
        `TrainConfig` changes nothing off-policy."""
        return cls(config, obs_dim, bounds)

    # --- hooks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def soft_value(self, state: AgentState, next_obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, dict]:
        """Bootstrap value V(s') [B] from the target critics, with the algorithm's entropy term."""

    @abc.abstractmethod
    def actor_step(self, state: AgentState, obs: jnp.ndarray, key: jax.Array) -> tuple[AgentState, dict]:
        """One policy update on the states of a minibatch."""

    def init_extra(self) -> Any:
        return {}

    def row_warning(self, row: dict[str, float]) -> str | None:
        """None: nothing in the shared skeleton's metrics calls for a warning."""
        return None

    # --- shared machinery ------------------------------------------------------------------------
    def init(self, key: jax.Array) -> AgentState:
        """Fresh parameters and optimiser states, built in one compiled call (`fresh_state`): one
        XLA compilation (or a read of JAX's persistent cache) instead of one per initialiser."""
        return self._init_jit(key)

    def fresh_state(self, key: jax.Array) -> AgentState:
        """Fresh parameters and optimiser states (traced by `init`; a subclass extends this)."""
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim))
        actor_params = self.policy.init(k_actor, obs, jnp.zeros((1, 1, self.policy.latent_dim)))
        critic_params = self.critic.init(k_critic, obs, jnp.zeros((1, self.act_dim)))
        return AgentState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            actor_opt=self.actor_tx.init(actor_params),
            critic_opt=self.critic_tx.init(critic_params),
            extra=self.init_extra(),
            step=jnp.zeros((), jnp.int32),
        )

    def critic_step(self, state: AgentState, batch: Batch, key: jax.Array) -> tuple[AgentState, dict]:
        """Twin-critic regression on y = r + gamma (1 - terminated) V(s'), then Polyak targets."""
        next_v, info = self.soft_value(state, batch.next_obs, key)
        y = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, self.config.gamma, next_v))

        def loss_fn(params):
            q = self.critic.apply(params, batch.obs, batch.action)  # [2, B]
            return jnp.sum(jnp.mean((q - y) ** 2, axis=-1)), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic_params)
        critic_params, critic_opt = adam_step(self.critic_tx, grads, state.critic_opt, state.critic_params)
        target = optax.incremental_update(critic_params, state.target_critic_params, self.config.polyak)
        state = state.replace(critic_params=critic_params, critic_opt=critic_opt, target_critic_params=target)
        return state, {"critic_loss": loss, "q_mean": jnp.mean(q), **info}

    def gradient_step(self, state: AgentState, batch: Batch, key: jax.Array) -> tuple[AgentState, dict]:
        k_critic, k_actor = jax.random.split(key)
        state, critic_info = self.critic_step(state, batch, k_critic)
        state, actor_info = self.actor_step(state, batch.obs, k_actor)
        return state.replace(step=state.step + 1), {**critic_info, **actor_info}

    def _update(self, state: AgentState, batches: dict, key: jax.Array) -> tuple[AgentState, dict]:
        """Several gradient steps in one call: batches hold arrays [n_steps, batch_size, ...]."""
        n = batches["reward"].shape[0]

        def body(state, xs):
            batch, k = xs
            return self.gradient_step(state, Batch(**batch), k)

        state, metrics = jax.lax.scan(body, state, (batches, jax.random.split(key, n)))
        # A mean over the scanned steps stays non-finite if any step was, so one check suffices.
        return state, jax.tree.map(jnp.mean, metrics)

    def _act(self, actor_params: Any, obs: jnp.ndarray, key: jax.Array, deterministic: bool = False) -> jnp.ndarray:
        """Actions [B, d] for observations [B, D]; deterministic=True gives the mode (eps = 0)."""
        shape = (obs.shape[0], 1, self.policy.latent_dim)
        eps = jnp.zeros(shape) if deterministic else standard_normal(key, shape)
        return self.policy.apply(actor_params, obs, eps)[:, 0]

    def policy_params(self, state: AgentState) -> Any:
        """What `act` needs of the state: the policy's parameters."""
        return state.actor_params

    def explore(
        self, state: AgentState, obs: Any, key: jax.Array
    ) -> tuple[AgentState, dict[str, jax.Array], jax.Array]:
        """Exploration actions after the warm-up (`wppg.algorithms.protocol.Algorithm.explore`):
        acting changes no state; only the policy's parameters enter the compiled call."""
        actions, key = self.explore_actions(state.actor_params, obs, key)
        return state, {"action": actions}, key

    def _explore(self, actor_params: Any, obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, jax.Array]:
        """Exploration actions and the trainer's next key: the key split runs inside the same
        compiled call as the policy (one dispatch per env step), with the same numbers as splitting
        outside and calling `act`."""
        key, k = jax.random.split(key)
        return self._act(actor_params, obs, k), key


def adam_step(tx: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any) -> tuple[Any, Any]:
    """Apply one optimiser step; returns (params, opt_state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
