"""WPO (Pfau et al., ICML 2025): Wasserstein policy optimization, a baseline for WPPG.

WPO projects the Wasserstein gradient flow of E_pi[Q] onto the policy parameters:

    Delta theta  ~  E_{s, a ~ pi}[ grad_theta (grad_a log pi_theta(a|s))^T grad_a Q(s, a) ],

with the actions held fixed, and for a diagonal Gaussian a natural-gradient rescaling (the
gradient into mu is scaled by sigma^2, into sigma by sigma^2 / 2). A decoupled KL penalty to a
periodically copied target policy (as in MPO) keeps each step small.

Our Gaussian is tanh-squashed, a = scale * tanh(u) + bias with u ~ N(mu(s), sigma(s)^2). WPO runs
in the pre-tanh variable u: the critic is read as Q(s, scale * tanh(u) + bias), the score is that
of N(u; mu, sigma^2), so the Gaussian natural-gradient scaling is exact, and the KL between two
squashed policies equals the KL between their pre-tanh Gaussians (tanh is a bijection).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wppg.algorithms.base import (
    AgentState,
    OffPolicyAlgorithm,
    OffPolicyConfig,
    adam_step,
    min_q,
    require,
)
from wppg.envs import ActionBounds
from wppg.policies import make_policy, sample_latents


@dataclass(frozen=True)
class WPOConfig(OffPolicyConfig):
    """WPO hyperparameters; defaults are those of the reference implementation in Acme.

    Deviations from Acme, so that WPO shares its critic, networks and trainer with WPPG and SAC:
    - the critic is the shared twin critic with 1-step TD targets and Polyak-averaged targets
      (Acme: one critic, 5-step returns, target critic copied every 100 steps); the bootstrap is
      still the expected SARSA mean over K target-policy actions, here of min(Q1, Q2);
    - the shared (256, 256) ReLU MLPs (Acme: LayerNorm MLPs, (256, 256, 256) policy and
      (512, 512, 256) critic) and the shared learning rate 3e-4 (Acme: 1e-4). Acme takes about
      0.125 gradient steps per env step (samples_per_insert 32, batch 256), the shared trainer 1;
      keeping 3e-4 makes WPO, WPPG and SAC differ only in their actor updates;
    - no gradient-norm clipping (Acme: 40), as for the other algorithms here;
    - the Gaussian is tanh-squashed and WPO runs in the pre-tanh variable (module docstring);
      Acme's Gaussian is unsquashed and its critic clips actions to the box;
    - action samples come from the passed key (Acme's learner uses a fixed key for them).
    """

    K: int = 20
    """Action samples per state for the policy gradient and for the expected SARSA bootstrap (Acme: 20)."""
    alpha_mean: float = math.log(2.0)
    """Multiplier of the KL penalty on the mean (Acme: softplus(0) = log 2, kept fixed)."""
    alpha_stddev: float = 1e4
    """Multiplier of the KL penalty on the standard deviation (Acme: softplus(1e4) = 1e4, kept fixed)."""
    epsilon_mean: float = 0.0025
    """KL bound of the mean, per action dimension (Acme: 0.0025). Used only with adapt_multipliers;
    otherwise the logged `kl_mean_rel` is the KL in units of it."""
    epsilon_stddev: float = 1e-6
    """KL bound of the standard deviation, per action dimension (Acme: 1e-6). Used only with
    adapt_multipliers; otherwise the logged `kl_stddev_rel` is the KL in units of it."""
    adapt_multipliers: bool = False
    """Tune the multipliers by dual descent towards the epsilon bounds (Acme's default keeps them
    fixed: dual loss scale 0, a soft KL penalty instead of a hard constraint)."""
    dual_lr: float = 1e-2
    """Adam learning rate of the multipliers' dual parameters when adapt_multipliers (Acme: 1e-2)."""
    target_period: int = 100
    """Gradient steps between hard copies of the online policy into the target policy (Acme: 100)."""

    def validate(self) -> None:
        super().validate()
        require(self.K >= 1, f"K must be >= 1, got {self.K}")
        require(self.alpha_mean > 0, f"alpha_mean must be > 0, got {self.alpha_mean}")
        require(self.alpha_stddev > 0, f"alpha_stddev must be > 0, got {self.alpha_stddev}")
        require(self.epsilon_mean > 0, f"epsilon_mean must be > 0, got {self.epsilon_mean}")
        require(self.epsilon_stddev > 0, f"epsilon_stddev must be > 0, got {self.epsilon_stddev}")
        require(self.dual_lr > 0, f"dual_lr must be > 0, got {self.dual_lr}")
        require(self.target_period >= 1, f"target_period must be >= 1, got {self.target_period}")


def natural_gradient_scale(x: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
    """x in the forward pass; its gradient multiplied by c (treated as a constant) in the backward pass."""
    c = jax.lax.stop_gradient(c)
    return c * x + jax.lax.stop_gradient((1.0 - c) * x)


def normal_log_prob(u: jnp.ndarray, mu: jnp.ndarray, sigma: jnp.ndarray) -> jnp.ndarray:
    """Elementwise log N(u; mu, sigma^2)."""
    return -0.5 * ((u - mu) / sigma) ** 2 - jnp.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def pre_tanh_q_grad(
    q_fn: Callable[[jnp.ndarray], jnp.ndarray], u: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Q(s, scale * tanh(u) + bias) [B, K] and its gradient in u [B, K, d], for q_fn: actions -> [B, K]."""

    def total(u):
        q = q_fn(scale * jnp.tanh(u) + bias)
        return jnp.sum(q), q

    grad_u, q = jax.grad(total, has_aux=True)(u)
    return jax.lax.stop_gradient(q), jax.lax.stop_gradient(grad_u)


def wpo_policy_loss(mu: jnp.ndarray, log_std: jnp.ndarray, u: jnp.ndarray, grad_u_q: jnp.ndarray) -> jnp.ndarray:
    """A loss whose gradient is minus the natural WPO direction.

    mu, log_std [B, d]: the online Gaussian; u [B, K, d]: fixed samples; grad_u_q [B, K, d]: grad_u Q.
    Returns -(1/B) sum_{b,k} (grad_u log N(u; mu, sigma^2))^T grad_u Q, where mu's gradient is scaled
    by sigma^2 and sigma's by sigma^2 / 2 (the inverse Fisher of N(mu, sigma^2) per dimension).
    Summed over the K samples, averaged over states, as in Acme (this sets its weight against the KL).
    """
    sigma = jnp.exp(log_std)
    mu_n = natural_gradient_scale(mu, sigma**2)[:, None, :]
    sigma_n = natural_gradient_scale(sigma, sigma**2 / 2.0)[:, None, :]
    u, grad_u_q = jax.lax.stop_gradient(u), jax.lax.stop_gradient(grad_u_q)
    score = jax.grad(lambda x: jnp.sum(normal_log_prob(x, mu_n, sigma_n)))(u)
    return -jnp.mean(jnp.sum(score * grad_u_q, axis=(1, 2)))


def normal_kl(mu_p: jnp.ndarray, sigma_p: jnp.ndarray, mu_q: jnp.ndarray, sigma_q: jnp.ndarray) -> jnp.ndarray:
    """Elementwise KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2))."""
    return jnp.log(sigma_q / sigma_p) + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2.0 * sigma_q**2) - 0.5


def decoupled_kl(
    mu: jnp.ndarray, log_std: jnp.ndarray, mu_target: jnp.ndarray, log_std_target: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(KL on the mean, KL on the std) per state and dimension, [B, d] each (Abdolmaleki et al. 2018):
    KL(pi_target || N(mu, sigma_target)) and KL(pi_target || N(mu_target, sigma))."""
    sigma, sigma_t = jnp.exp(log_std), jnp.exp(log_std_target)
    mu_t, sigma_t = jax.lax.stop_gradient(mu_target), jax.lax.stop_gradient(sigma_t)
    return normal_kl(mu_t, sigma_t, mu, sigma_t), normal_kl(mu_t, sigma_t, mu_t, sigma)


def inverse_softplus(x: float) -> float:
    """y with softplus(y) = x, for x > 0 (the multipliers are softplus of their dual parameters, as in Acme)."""
    return float(x + np.log(-np.expm1(-x)))


class WPOAlgorithm(OffPolicyAlgorithm):
    name = "wpo"

    def __init__(self, config: WPOConfig, obs_dim: int, bounds: ActionBounds):
        self.policy = make_policy(
            "gaussian", obs_dim, bounds.dim, bounds.scale, bounds.bias, config.hidden, precision=config.precision
        )
        self.dual_tx = optax.adam(config.dual_lr)
        self.bias = jnp.asarray(bounds.bias)
        super().__init__(config, obs_dim, bounds)

    def init_extra(self) -> dict:
        c, d = self.config, self.act_dim
        dual = jnp.stack(
            [jnp.full((d,), inverse_softplus(c.alpha_mean)), jnp.full((d,), inverse_softplus(c.alpha_stddev))]
        )
        return {"dual": dual, "dual_opt": self.dual_tx.init(dual)}

    def fresh_state(self, key: jax.Array) -> AgentState:
        """Fresh parameters; the target policy starts as a copy of the online one."""
        state = super().fresh_state(key)
        return state.replace(extra={**state.extra, "target_actor_params": state.actor_params})

    def stats(self, actor_params: Any, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Pre-tanh mean and log-std [B, d]."""
        return self.policy.apply(actor_params, obs, method=self.policy.stats)

    def soft_value(self, state: AgentState, next_obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, dict]:
        """Expected SARSA: (1/K) sum_k min_j Qbar_j(s', a'_k), a'_k ~ target policy; no entropy term."""
        eps = sample_latents(self.policy, key, next_obs.shape[0], self.config.K)
        next_actions = self.policy.apply(state.extra["target_actor_params"], next_obs, eps)
        return jnp.mean(min_q(self.critic, state.target_critic_params, next_obs, next_actions), axis=-1), {}

    def actor_step(self, state: AgentState, obs: jnp.ndarray, key: jax.Array) -> tuple[AgentState, dict]:
        """One Adam step on the natural WPO loss plus the decoupled KL penalty; then the target copy."""
        c = self.config
        mu, log_std = self.stats(state.actor_params, obs)
        eps = sample_latents(self.policy, key, obs.shape[0], c.K)
        u = jax.lax.stop_gradient(mu[:, None, :] + jnp.exp(log_std)[:, None, :] * eps)
        q, grad_u_q = pre_tanh_q_grad(
            lambda a: min_q(self.critic, state.critic_params, obs, a), u, self.scale, self.bias
        )
        mu_t, log_std_t = self.stats(state.extra["target_actor_params"], obs)
        alpha = jax.nn.softplus(state.extra["dual"])  # [2, d]: mean, stddev

        def loss_fn(params):
            mu, log_std = self.stats(params, obs)
            policy_loss = wpo_policy_loss(mu, log_std, u, grad_u_q)
            kl_mean, kl_std = (jnp.mean(kl, axis=0) for kl in decoupled_kl(mu, log_std, mu_t, log_std_t))
            penalty = jnp.sum(alpha[0] * kl_mean) + jnp.sum(alpha[1] * kl_std)
            return policy_loss + penalty, (policy_loss, kl_mean, kl_std)

        (_, (policy_loss, kl_mean, kl_std)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
        actor_params, actor_opt = adam_step(self.actor_tx, grads, state.actor_opt, state.actor_params)
        copy = (state.step + 1) % c.target_period == 0
        target = jax.tree.map(lambda o, t: jnp.where(copy, o, t), actor_params, state.extra["target_actor_params"])
        extra = {**state.extra, "target_actor_params": target}
        if c.adapt_multipliers:
            # Dual descent on alpha (eps - KL): alpha grows while the KL exceeds its bound.
            bounds = jnp.array([c.epsilon_mean, c.epsilon_stddev])[:, None]
            kl = jax.lax.stop_gradient(jnp.stack([kl_mean, kl_std]))
            g = jax.grad(lambda dual: jnp.sum(jax.nn.softplus(dual) * (bounds - kl)))(extra["dual"])
            extra["dual"], extra["dual_opt"] = adam_step(self.dual_tx, g, extra["dual_opt"], extra["dual"])
        info = {
            "actor_loss": policy_loss,
            "kl_mean_rel": jnp.mean(kl_mean) / c.epsilon_mean,
            "kl_stddev_rel": jnp.mean(kl_std) / c.epsilon_stddev,
            "alpha_mean": jnp.mean(alpha[0]),
            "alpha_stddev": jnp.mean(alpha[1]),
            "policy_std": jnp.mean(jnp.exp(log_std)),
            "q_policy": jnp.mean(q),
            "grad_u_q_norm": jnp.mean(jnp.linalg.norm(grad_u_q, axis=-1)),
        }
        return state.replace(actor_params=actor_params, actor_opt=actor_opt, extra=extra), info
