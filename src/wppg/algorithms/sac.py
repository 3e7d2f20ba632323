"""SAC (Haarnoja et al. 2018) with a tanh-Gaussian policy, fixed or learned temperature alpha (alpha='auto').

It shares the networks, twin critics, buffer and trainer with WPPG, so a WPPG-vs-SAC comparison
differs only in the actor update and in the entropy term of the soft target.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from wppg.algorithms.base import AgentState, OffPolicyAlgorithm, OffPolicyConfig, adam_step, min_q, require
from wppg.envs import ActionBounds
from wppg.policies import make_policy, sample_latents


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """SAC hyperparameters (shared fields as WPPG; the WPPG paper compares against fixed alpha).

    Convention: log pi is the log-density of the squashed action on the unit box u = (a - bias) / scale,
    as in Stable-Baselines3 / SBX, in all three places it enters: the soft target's entropy term, the
    actor loss and the temperature loss. So `target_entropy = -dim(A)` means what it means in SB3 on any
    box. The density of a in env units is lower by sum(log scale): the two agree on boxes of scale 1.
    """

    alpha: float | str = "auto"
    """Entropy temperature alpha. Default 'auto' (learned towards `target_entropy` from `alpha_init`, as SB3);
    valid: > 0 (fixed: the WPPG paper's SAC baseline), or 'auto'."""
    alpha_init: float = 0.2
    """Initial temperature when alpha='auto'. Default 0.2 (as SB3's `ent_coef='auto_0.2'`); valid: > 0."""
    target_entropy: float | None = None
    """Target policy entropy for alpha='auto', in nats on the unit box (as SB3); None means -act_dim."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha) when alpha='auto'. Default 3e-4; valid: > 0."""

    def validate(self) -> None:
        super().validate()
        if isinstance(self.alpha, str):
            require(self.alpha == "auto", f"alpha must be a number > 0 or 'auto', got {self.alpha!r}")
        else:
            require(self.alpha > 0, f"alpha must be > 0 or 'auto', got {self.alpha}")
        require(self.alpha_init > 0, f"alpha_init must be > 0, got {self.alpha_init}")
        require(self.alpha_lr > 0, f"alpha_lr must be > 0, got {self.alpha_lr}")

    @property
    def auto_alpha(self) -> bool:
        return self.alpha == "auto"


class SACAlgorithm(OffPolicyAlgorithm):
    name = "sac"

    def __init__(self, config: SACConfig, obs_dim: int, bounds: ActionBounds):
        self.policy = make_policy(
            "gaussian", obs_dim, bounds.dim, bounds.scale, bounds.bias, config.hidden, precision=config.precision
        )
        self.alpha_tx = optax.adam(config.alpha_lr)
        self.target_entropy = -float(bounds.dim) if config.target_entropy is None else config.target_entropy
        super().__init__(config, obs_dim, bounds)

    def init_extra(self) -> dict:
        alpha = self.config.alpha_init if self.config.auto_alpha else self.config.alpha
        log_alpha = jnp.log(jnp.asarray(alpha, jnp.float32))
        return {"log_alpha": log_alpha, "alpha_opt": self.alpha_tx.init(log_alpha)}

    def sample(self, actor_params, obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
        """One reparameterised action per state with its log-density on the unit box: [B, 1, d], [B, 1]."""
        eps = sample_latents(self.policy, key, obs.shape[0], 1)
        return self.policy.apply(actor_params, obs, eps, method=self.policy.sample_and_log_prob)

    def soft_value(self, state: AgentState, next_obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, dict]:
        """min_j Qbar_j(s', a') - alpha log pi(a'|s'), a' ~ pi(.|s')."""
        alpha = jnp.exp(state.extra["log_alpha"])
        a, log_p = self.sample(state.actor_params, next_obs, key)
        v = min_q(self.critic, state.target_critic_params, next_obs, a) - alpha * log_p
        return v[:, 0], {"entropy": -jnp.mean(log_p)}

    def actor_step(self, state: AgentState, obs: jnp.ndarray, key: jax.Array) -> tuple[AgentState, dict]:
        """Reparameterised policy loss E[alpha log pi - min Q], then the temperature step."""
        alpha = jnp.exp(state.extra["log_alpha"])

        def loss_fn(params):
            a, log_p = self.sample(params, obs, key)
            return jnp.mean(alpha * log_p - min_q(self.critic, state.critic_params, obs, a)), log_p

        (loss, log_p), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
        actor_params, actor_opt = adam_step(self.actor_tx, grads, state.actor_opt, state.actor_params)
        extra = state.extra
        if self.config.auto_alpha:
            gap = jax.lax.stop_gradient(jnp.mean(log_p) + self.target_entropy)
            g = jax.grad(lambda la: -la * gap)(extra["log_alpha"])
            log_alpha, alpha_opt = adam_step(self.alpha_tx, g, extra["alpha_opt"], extra["log_alpha"])
            extra = {"log_alpha": log_alpha, "alpha_opt": alpha_opt}
        info = {"actor_loss": loss, "alpha": alpha}
        return state.replace(actor_params=actor_params, actor_opt=actor_opt, extra=extra), info
