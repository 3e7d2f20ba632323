"""PPO (Schulman et al. 2017): the clipped surrogate objective, for continuous actions.

The implementation details are those of the standard continuous-control PPO (OpenAI baselines
`ppo2`, CleanRL `ppo_continuous_action`): GAE(lambda), a clipped value loss, running observation
and reward normalisation, per-minibatch advantage normalisation, orthogonal initialisation, a
linearly annealed learning rate, global gradient clipping, a state-independent log-std and tanh
(64, 64) MLPs. PPO is on-policy: it learns from rollouts collected by
`wppg.onpolicy.OnPolicyTrainer`, not from the replay buffer of the off-policy algorithms.

One update, on a rollout of T steps of N envs:

    r_t      <- clip(r_t / std(discounted return), +-10)                  (reward scaling)
    delta_t   = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
    A_t       = delta_t + gamma lambda (1 - done_t) A_{t+1}               (GAE, reverse scan)
    then n_epochs passes over n_minibatches random minibatches of the T N transitions:
    L = E[max(-A rho, -A clip(rho, 1 - eps, 1 + eps))] + vf_coef L_V - ent_coef H,
    rho = pi(a|s) / pi_old(a|s), A normalised per minibatch, L_V the clipped value loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from wppg.algorithms.base import check_field_types, require
from wppg.envs import ActionBounds

NORM_EPS = 1e-8
"""Added to variances before dividing by their square root (gymnasium's normalisation wrappers)."""


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters. The defaults are the well-known continuous-control (MuJoCo) settings
    of baselines ppo2 and CleanRL ppo_continuous_action.

    Choices and deviations:
    - actions are drawn from the Gaussian N(mu(s), sigma) with no squashing and clipped to the
      env's bounds only when the env is stepped; the rollout stores the unclipped action, whose
      log-probability the ratio uses (as ppo2 and CleanRL do). Evaluation and `predict` return
      clipped actions; the mode is clip(mu(s));
    - a truncated episode (time limit) bootstraps from the value of its true final observation;
      a terminated one does not (CleanRL treats both as terminal);
    - the learning rate anneals linearly to 0 over `TrainConfig.total_steps` (set it to the run's
      length); past it the rate stays 0;
    - the running statistics are float32 (gymnasium's wrappers use float64);
    - no early stop on a target KL (CleanRL's default, target_kl=None).
    The off-policy `TrainConfig` fields (learning_starts, batch_size, buffer_size, utd,
    train_freq) do not apply: the on-policy trainer rejects values other than their defaults.
    """

    n_steps: int = 2048
    """Env steps per env in each rollout; the rollout holds n_steps * n_envs transitions (2048)."""
    n_epochs: int = 10
    """Passes over each rollout (10)."""
    n_minibatches: int = 32
    """Minibatches per pass; the minibatch size is n_steps * n_envs / n_minibatches (32, i.e. 64)."""
    gamma: float = 0.99
    """Discount factor gamma, for GAE and for the reward scaling's discounted return (0.99)."""
    gae_lambda: float = 0.95
    """GAE lambda (0.95)."""
    clip_coef: float = 0.2
    """Clip range eps of the probability ratio, and of the value change when clip_vloss (0.2)."""
    clip_vloss: bool = True
    """Clip the value loss: max((V - R)^2, (V_old + clip(V - V_old, +-clip_coef) - R)^2). Default on, as
    ppo2 and CleanRL (Stable-Baselines3: off)."""
    vf_coef: float = 0.5
    """Weight of the value loss (0.5)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (0.0)."""
    learning_rate: float = 3e-4
    """Adam learning rate, shared by policy and value networks (3e-4)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over TrainConfig.total_steps, constant within a rollout (on)."""
    max_grad_norm: float = 0.5
    """Global norm to which the gradient of all parameters is clipped (0.5)."""
    adam_eps: float = 1e-5
    """Adam epsilon (1e-5, as ppo2 and CleanRL; optax's default is 1e-8)."""
    norm_adv: bool = True
    """Normalise the advantages of each minibatch to mean 0, std 1 (on)."""
    norm_obs: bool = True
    """Normalise observations by running mean and variance, clipped to +-clip_obs (on)."""
    norm_reward: bool = True
    """Divide rewards by the running std of the discounted return, clipped to +-clip_reward (on)."""
    clip_obs: float = 10.0
    """Bound of the normalised observations (10)."""
    clip_reward: float = 10.0
    """Bound of the scaled rewards (10)."""
    hidden: Sequence[int] = field(default=(64, 64))
    """Hidden widths of the tanh MLPs of the policy mean and of the value function ((64, 64))."""
    init_log_std: float = 0.0
    """Initial value of the state-independent log-std of the Gaussian policy (0: sigma = 1)."""

    def __post_init__(self) -> None:
        check_field_types(self)
        self.validate()

    def validate(self) -> None:
        for name in ("n_steps", "n_epochs", "n_minibatches"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(0.0 <= self.gamma < 1.0, f"gamma must be in [0, 1), got {self.gamma}")
        require(0.0 <= self.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        for name in ("clip_coef", "learning_rate", "max_grad_norm", "adam_eps", "clip_obs", "clip_reward"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("vf_coef", "ent_coef"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(
            len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
            f"hidden must be positive widths, got {self.hidden}",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- running statistics ---------------------------------------------------------------------------
class RunningStats(flax.struct.PyTreeNode):
    """Running mean and (population) variance, merged batch by batch (Chan et al.'s parallel
    update), starting like gymnasium's RunningMeanStd: mean 0, var 1, count 1e-4."""

    mean: jnp.ndarray
    var: jnp.ndarray
    count: jnp.ndarray

    @classmethod
    def create(cls, shape: tuple[int, ...] = ()) -> RunningStats:
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, x: jnp.ndarray) -> RunningStats:
        """Merge a batch x [n, *shape]."""
        n = x.shape[0]
        batch_mean, batch_var = jnp.mean(x, axis=0), jnp.var(x, axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningStats(mean, m2 / total, total)


def normalize_obs(stats: RunningStats, obs: jnp.ndarray, clip: float) -> jnp.ndarray:
    """clip((obs - mean) / sqrt(var + 1e-8), -clip, clip)."""
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + NORM_EPS), -clip, clip)


def scale_rewards(
    ret_stats: RunningStats, ret: jnp.ndarray, rewards: jnp.ndarray, dones: jnp.ndarray, gamma: float, clip: float
) -> tuple[RunningStats, jnp.ndarray, jnp.ndarray]:
    """Reward scaling of ppo2's VecNormalize, step by step over a rollout [T, N].

    Per step: ret <- gamma ret + r; the statistics absorb ret; r is divided by sqrt(var(ret) + 1e-8)
    and clipped; ret restarts at 0 after an episode end. Returns (statistics, ret, scaled rewards).
    """

    def body(carry, x):
        stats, ret = carry
        r, done = x
        ret = gamma * ret + r
        stats = stats.update(ret)
        scaled = jnp.clip(r / jnp.sqrt(stats.var + NORM_EPS), -clip, clip)
        return (stats, jnp.where(done > 0, 0.0, ret)), scaled

    (ret_stats, ret), scaled = jax.lax.scan(body, (ret_stats, ret), (rewards, dones))
    return ret_stats, ret, scaled


# --- advantages ---------------------------------------------------------------------------------
def next_state_values(
    values: jnp.ndarray, last_value: jnp.ndarray, final_value: jnp.ndarray, dones: jnp.ndarray
) -> jnp.ndarray:
    """V(s_{t+1}) for each step of a rollout [T, N]: the next step's value within an episode,
    V(s_T) (`last_value` [N]) after the last step, and at an episode end the value of the true
    final observation (`final_value`; it only counts for a truncation, GAE masks terminations)."""
    following = jnp.concatenate([values[1:], last_value[None]], axis=0)
    return jnp.where(dones > 0, final_value, following)


def gae(
    rewards: jnp.ndarray,
    values: jnp.ndarray,
    next_values: jnp.ndarray,
    terminated: jnp.ndarray,
    dones: jnp.ndarray,
    gamma: float,
    lam: float,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generalised advantage estimation over arrays [T, N] (reverse lax.scan).

    delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t);
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}, done = terminated or truncated.
    Returns (advantages, value targets A + V)."""
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def body(next_adv, x):
        delta, done = x
        adv = delta + gamma * lam * (1.0 - done) * next_adv
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(values[0]), (deltas, dones), reverse=True)
    return adv, adv + values


# --- losses ---------------------------------------------------------------------------------------
def clipped_surrogate(ratio: jnp.ndarray, adv: jnp.ndarray, clip: float) -> jnp.ndarray:
    """The clipped policy loss E[max(-A rho, -A clip(rho, 1 - clip, 1 + clip))] (to minimise)."""
    return jnp.mean(jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1.0 - clip, 1.0 + clip)))


def clipped_value_loss(
    value: jnp.ndarray, old_value: jnp.ndarray, target: jnp.ndarray, clip: float | None
) -> jnp.ndarray:
    """0.5 E[max((V - R)^2, (V_old + clip(V - V_old, +-clip) - R)^2)]; plain 0.5 E[(V - R)^2] if clip is None."""
    loss = (value - target) ** 2
    if clip is not None:
        clipped = old_value + jnp.clip(value - old_value, -clip, clip)
        loss = jnp.maximum(loss, (clipped - target) ** 2)
    return 0.5 * jnp.mean(loss)


def gaussian_log_prob(action: jnp.ndarray, mean: jnp.ndarray, log_std: jnp.ndarray) -> jnp.ndarray:
    """log N(action; mean, diag(exp(log_std)^2)), summed over the last axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def gaussian_entropy(log_std: jnp.ndarray) -> jnp.ndarray:
    return jnp.sum(log_std + 0.5 * (1.0 + math.log(2 * math.pi)))


# --- networks and state ----------------------------------------------------------------------------
class TanhMLP(nn.Module):
    """tanh MLP with orthogonal initialisation: gain sqrt(2) on hidden layers, `out_gain` on the
    output layer (0.01 for the policy mean, 1.0 for the value), zero biases."""

    hidden: Sequence[int]
    out_dim: int
    out_gain: float

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.orthogonal(self.out_gain))(x)


class Rollout(flax.struct.PyTreeNode):
    """A rollout of T steps of N envs: arrays [T, N, ...], and the value of the state after it [N]."""

    obs: jnp.ndarray  # normalised observations the policy acted on
    action: jnp.ndarray  # unclipped Gaussian samples
    log_prob: jnp.ndarray
    value: jnp.ndarray
    reward: jnp.ndarray  # raw env rewards (scaled inside the update)
    terminated: jnp.ndarray
    done: jnp.ndarray  # terminated or truncated
    final_value: jnp.ndarray  # V(true final observation) at truncations, 0 elsewhere
    last_value: jnp.ndarray


class PPOState(flax.struct.PyTreeNode):
    """Everything training changes: parameters, optimiser, normalisation statistics, step count."""

    params: Any  # {"actor": mean network, "log_std": [d], "critic": value network}
    opt_state: Any
    obs_stats: RunningStats
    return_stats: RunningStats
    ret: jnp.ndarray  # the reward scaling's running discounted return of each env [N]
    step: jnp.ndarray  # gradient steps so far

    @property
    def actor_params(self) -> dict[str, Any]:
        """What acting needs (`PPOAlgorithm.policy_params`), named as an off-policy state names it."""
        return {"actor": self.params["actor"], "log_std": self.params["log_std"], "obs_stats": self.obs_stats}


class PPOAlgorithm:
    """PPO as pure functions: `init`, `explore` (act during a rollout), `value`, `update`, `act`.

    `n_envs` sizes the reward scaling's per-env return and the rollout; `total_steps` is the
    horizon of the learning-rate annealing.
    """

    name = "ppo"

    def __init__(
        self, config: PPOConfig, obs_dim: int, bounds: ActionBounds, n_envs: int = 1, total_steps: int = 1_000_000
    ):
        rollout_size = config.n_steps * n_envs
        require(
            rollout_size % config.n_minibatches == 0,
            f"n_minibatches ({config.n_minibatches}) must divide the rollout size n_steps * n_envs = {rollout_size}",
        )
        require(
            rollout_size // config.n_minibatches >= 2,
            f"n_minibatches ({config.n_minibatches}) leaves minibatches of one transition "
            f"(rollout size {rollout_size}); "
            "the per-minibatch advantage normalisation needs at least 2",
        )
        self.config = config
        self.obs_dim, self.act_dim, self.bounds = obs_dim, bounds.dim, bounds
        self.n_envs = n_envs
        self.low = jnp.asarray(bounds.bias - bounds.scale)
        self.high = jnp.asarray(bounds.bias + bounds.scale)
        self.actor = TanhMLP(config.hidden, self.act_dim, 0.01)
        self.critic = TanhMLP(config.hidden, 1, 1.0)
        self.tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.scale_by_adam(eps=config.adam_eps))
        self.grad_steps_per_update = config.n_epochs * config.n_minibatches
        self.n_iterations = max(1, total_steps // rollout_size)
        self.update = jax.jit(self._update)
        self.act = jax.jit(self._act, static_argnames="deterministic")
        self._explore = jax.jit(self._explore_fn)
        self._value = jax.jit(self._value_fn)
        self._init_jit = jax.jit(self.fresh_state)

    @classmethod
    def build(cls, config: PPOConfig, obs_dim: int, bounds: ActionBounds, train: Any) -> PPOAlgorithm:
        """The algorithm for a run: its rollout spans `train.n_envs` envs and its learning rate
        anneals over `train.total_steps`."""
        return cls(config, obs_dim, bounds, n_envs=train.n_envs, total_steps=train.total_steps)

    def row_warning(self, row: dict[str, float]) -> str | None:
        """None: PPO has no learned temperature or other metric that calls for a warning."""
        return None

    def init(self, key: jax.Array) -> PPOState:
        """A fresh state, built in one compiled call."""
        return self._init_jit(key)

    def fresh_state(self, key: jax.Array) -> PPOState:
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim))
        params = {
            "actor": self.actor.init(k_actor, obs),
            "log_std": jnp.full((self.act_dim,), self.config.init_log_std, jnp.float32),
            "critic": self.critic.init(k_critic, obs),
        }
        return PPOState(
            params=params,
            opt_state=self.tx.init(params),
            obs_stats=RunningStats.create((self.obs_dim,)),
            return_stats=RunningStats.create(),
            ret=jnp.zeros((self.n_envs,), jnp.float32),
            step=jnp.zeros((), jnp.int32),
        )

    # --- acting ------------------------------------------------------------------------------
    def _normalize(self, stats: RunningStats, obs: jnp.ndarray) -> jnp.ndarray:
        return normalize_obs(stats, obs, self.config.clip_obs) if self.config.norm_obs else obs

    def _explore_fn(self, params: Any, obs_stats: RunningStats, obs: jnp.ndarray, key: jax.Array):
        key, k = jax.random.split(key)
        if self.config.norm_obs:
            obs_stats = obs_stats.update(obs)
        x = self._normalize(obs_stats, obs)
        mean = self.actor.apply(params["actor"], x)
        action = mean + jnp.exp(params["log_std"]) * jax.random.normal(k, mean.shape)
        out = {
            "obs": x,
            "action": action,
            "log_prob": gaussian_log_prob(action, mean, params["log_std"]),
            "value": self.critic.apply(params["critic"], x)[:, 0],
        }
        return obs_stats, out, key

    def explore(
        self, state: PPOState, obs: jnp.ndarray, key: jax.Array
    ) -> tuple[PPOState, dict[str, jnp.ndarray], jax.Array]:
        """One rollout step for observations [N, D]: the statistics absorb obs, then the policy
        samples. Returns the new state; the normalised obs, unclipped actions, log-probs and values;
        and the trainer's next key (split inside the same compiled call: one dispatch per env step)."""
        obs_stats, out, key = self._explore(state.params, state.obs_stats, obs, key)
        return state.replace(obs_stats=obs_stats), out, key

    def policy_params(self, state: PPOState) -> dict[str, Any]:
        """What `act` needs: the mean network, the log-std and the frozen observation statistics."""
        return state.actor_params

    def _value_fn(self, params: Any, obs_stats: RunningStats, obs: jnp.ndarray) -> jnp.ndarray:
        return self.critic.apply(params["critic"], self._normalize(obs_stats, obs))[:, 0]

    def value(self, state: PPOState, obs: jnp.ndarray) -> jnp.ndarray:
        """V(s) [N] of raw observations [N, D], normalised with the current (frozen) statistics."""
        return self._value(state.params, state.obs_stats, obs)

    def _act(
        self, actor_params: dict[str, Any], obs: jnp.ndarray, key: jax.Array, deterministic: bool = False
    ) -> jnp.ndarray:
        """Env actions [B, d] for raw observations [B, D]: clip(mu) or a clipped Gaussian sample."""
        mean = self.actor.apply(actor_params["actor"], self._normalize(actor_params["obs_stats"], obs))
        if not deterministic:
            mean = mean + jnp.exp(actor_params["log_std"]) * jax.random.normal(key, mean.shape)
        return jnp.clip(mean, self.low, self.high)

    # --- learning ------------------------------------------------------------------------------
    def learning_rate(self, step: jnp.ndarray) -> jnp.ndarray:
        """lr (1 - k / n_iterations) during the k-th update (k from 0), floored at 0."""
        if not self.config.anneal_lr:
            return jnp.asarray(self.config.learning_rate)
        k = step // self.grad_steps_per_update
        return self.config.learning_rate * jnp.maximum(1.0 - k / self.n_iterations, 0.0)

    def loss(self, params: Any, mb: dict[str, jnp.ndarray]) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        """The PPO loss on one minibatch of flattened transitions."""
        c = self.config
        mean = self.actor.apply(params["actor"], mb["obs"])
        log_ratio = gaussian_log_prob(mb["action"], mean, params["log_std"]) - mb["log_prob"]
        ratio = jnp.exp(log_ratio)
        adv = mb["adv"]
        if c.norm_adv:
            adv = (adv - jnp.mean(adv)) / (jnp.std(adv, ddof=1) + NORM_EPS)
        policy_loss = clipped_surrogate(ratio, adv, c.clip_coef)
        value = self.critic.apply(params["critic"], mb["obs"])[:, 0]
        value_loss = clipped_value_loss(value, mb["value"], mb["returns"], c.clip_coef if c.clip_vloss else None)
        entropy = gaussian_entropy(params["log_std"])
        info = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            # the low-variance estimator E[(rho - 1) - log rho] of KL(pi_old || pi)
            "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
            "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > c.clip_coef).astype(jnp.float32)),
        }
        return policy_loss - c.ent_coef * entropy + c.vf_coef * value_loss, info

    def _update(self, state: PPOState, rollout: Rollout, key: jax.Array) -> tuple[PPOState, dict[str, jnp.ndarray]]:
        """Reward scaling, GAE, then n_epochs x n_minibatches gradient steps inside lax.scan."""
        c = self.config
        return_stats, ret, rewards = state.return_stats, state.ret, rollout.reward
        if c.norm_reward:
            return_stats, ret, rewards = scale_rewards(return_stats, ret, rewards, rollout.done, c.gamma, c.clip_reward)
        next_values = next_state_values(rollout.value, rollout.last_value, rollout.final_value, rollout.done)
        adv, returns = gae(rewards, rollout.value, next_values, rollout.terminated, rollout.done, c.gamma, c.gae_lambda)

        data = {
            "obs": rollout.obs,
            "action": rollout.action,
            "log_prob": rollout.log_prob,
            "value": rollout.value,
            "adv": adv,
            "returns": returns,
        }
        data = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data)
        size = data["adv"].shape[0]
        mb_size = size // c.n_minibatches
        lr = self.learning_rate(state.step)

        def minibatch_step(carry, mb):
            params, opt_state = carry
            grads, info = jax.grad(self.loss, has_aux=True)(params, mb)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
            return (params, opt_state), info

        def epoch(carry, k):
            perm = jax.random.permutation(k, size)
            minibatches = jax.tree.map(lambda x: x[perm].reshape((c.n_minibatches, mb_size) + x.shape[1:]), data)
            return jax.lax.scan(minibatch_step, carry, minibatches)

        (params, opt_state), info = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(key, c.n_epochs)
        )
        metrics = jax.tree.map(jnp.mean, info)
        metrics["learning_rate"] = lr
        metrics["explained_variance"] = 1.0 - jnp.var(returns - rollout.value) / (jnp.var(returns) + NORM_EPS)
        metrics["std"] = jnp.mean(jnp.exp(params["log_std"]))
        state = state.replace(
            params=params,
            opt_state=opt_state,
            return_stats=return_stats,
            ret=ret,
            step=state.step + self.grad_steps_per_update,
        )
        return state, metrics
