"""WPPG and WPPG-I (arXiv 2603.02576): Wasserstein proximal policy gradient.

Per state, the proximal step pi_{k+1} = argmax E_pi[Q] + tau H(pi) - W2^2(pi, pi_k) / (2 eta) is
split into a transport step a -> a + eta grad_a Q(s, a) and a heat step a -> a + N(0, 2 tau eta I).
With a pushforward policy a = g_theta(s, eps), the particle targets are projected back onto the
family by least squares; the entropy enters only the critic, through the plug-in estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from wppg.algorithms.base import (
    AgentState,
    OffPolicyAlgorithm,
    OffPolicyConfig,
    adam_step,
    grad_min_q,
    map_samples,
    min_q,
    require,
    sample_chunks,
)
from wppg.entropy import plug_in_entropy_from_samples
from wppg.envs import ActionBounds
from wppg.noise import standard_normal
from wppg.policies import make_policy, sample_latents

COUPLINGS = ("shared-latent",)


@dataclass(frozen=True)
class WPPGConfig(OffPolicyConfig):
    """WPPG hyperparameters; defaults are the paper's (K=32, eta=0.1, tau=1e-4, ...).

    Choices the paper leaves open, and deviations:
    - the K bootstrap actions a'_k are drawn from the online policy (no target actor), as in SAC;
    - sigma, M, L of the entropy estimator are not given in the paper (see `entropy_sigma`);
    - the heat-step noise xi is independent of eps, so it cancels in expectation after the
      least-squares projection: its only effect on the learned policy is gradient noise.
    """

    policy: str = "gaussian"
    """Policy class: 'gaussian' (WPPG) or 'implicit' (WPPG-I)."""
    K: int = 32
    """Action samples per state, for the actor update and for the soft target (paper: 32)."""
    eta: float = 0.1
    """Wasserstein proximal step size eta (paper: 0.1)."""
    tau: float = 1e-4
    """Entropy temperature tau: heat-step variance 2 tau eta and critic entropy bonus (paper: 1e-4)."""
    latent_dim: int | None = None
    """WPPG-I latent dimension m; None means max(1, round(obs_dim / 3)) (paper's rule). Ignored by 'gaussian'."""
    entropy_sigma: float = 0.1
    """Kernel width of the plug-in entropy estimator, in half-widths of the action box (not in the paper).
    0.1 keeps the smoothing small against the spread of a policy over [-1, 1] while M = L = 16
    kernels still overlap (the estimator's bias is measured in tests/test_entropy.py)."""
    entropy_M: int = 16
    """Number of mixture centres M of the entropy estimator (not in the paper)."""
    entropy_L: int = 16
    """Number of baseline samples L of the entropy estimator (not in the paper)."""
    coupling: str = "shared-latent"
    """How current samples are paired with particle targets in the projection; only 'shared-latent'."""

    def validate(self) -> None:
        super().validate()
        require(self.policy in ("gaussian", "implicit"), f"policy must be 'gaussian' or 'implicit', got {self.policy!r}")
        require(self.K >= 1, f"K must be >= 1, got {self.K}")
        require(self.eta > 0, f"eta must be > 0, got {self.eta}")
        require(self.tau >= 0, f"tau must be >= 0, got {self.tau}")
        require(self.latent_dim is None or self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        require(self.entropy_sigma > 0, f"entropy_sigma must be > 0, got {self.entropy_sigma}")
        require(self.entropy_M >= 1 and self.entropy_L >= 1, f"entropy_M and entropy_L must be >= 1, got {self.entropy_M}, {self.entropy_L}")
        require(self.coupling in COUPLINGS, f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # K=8 and M=L=8 cut an update on two CPU cores by 3-5x against the paper's K=32, M=L=16
    # (docs/results/update_time.md) while still averaging the soft target and the actor
    # step over several samples per state. tau=1e-4 makes the entropy term small, so the noisier
    # entropy estimate (M=L=8) matters little to learning.
    "cpu": {"K": 8, "entropy_M": 8, "entropy_L": 8},
}


def couple(coupling: str, a0: jnp.ndarray, displacement: jnp.ndarray) -> jnp.ndarray:
    """Projection targets for the samples a0 = g_theta(s, eps), one per latent eps, [B, K, d].

    'shared-latent': the particle a0 = g(s, eps) moves to a0 + displacement and is matched with
    the same latent eps.
    """
    if coupling == "shared-latent":
        return a0 + displacement
    raise ValueError(f"unknown coupling {coupling!r}")


def entropy_regularised_value(q: jnp.ndarray, entropy: jnp.ndarray, tau: float) -> jnp.ndarray:
    """V(s') = (1/K) sum_k q[:, k] + tau * H_hat(s'), from min-over-twins values q [B, K]."""
    return jnp.mean(q, axis=-1) + tau * entropy


class WPPGAlgorithm(OffPolicyAlgorithm):
    name = "wppg"

    def __init__(self, config: WPPGConfig, obs_dim: int, bounds: ActionBounds):
        self.policy = make_policy(config.policy, obs_dim, bounds.dim, bounds.scale, bounds.bias, config.hidden, config.latent_dim)
        super().__init__(config, obs_dim, bounds)

    def sample_actions(self, actor_params: Any, obs: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
        """g_theta(s, eps) for latents [B, n, m]; an implicit policy's network runs per sample, so
        it runs chunk by chunk (`map_samples`), a Gaussian's runs once per state."""
        if self.config.policy == "implicit":
            return map_samples(lambda e: self.policy.apply(actor_params, obs, e), eps)
        return self.policy.apply(actor_params, obs, eps)

    def soft_value(self, state: AgentState, next_obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, dict]:
        """(1/K) sum_k min_j Qbar_j(s', a'_k) + tau H_hat(s'), with a'_k = g(s', eps_k).

        One policy call draws the K bootstrap actions and the M entropy centres together. The
        estimator's L baselines are the first L of the K bootstrap actions (plus fresh draws if
        L > K): they are i.i.d. from pi(.|s') and independent of the centres, which is all the
        estimator asks of them, so H_hat(s') has the same distribution as with separate draws
        (tests/test_perf_equivalence.py); only its correlation with the Q average is new, and
        that leaves the expected target unchanged.
        """
        c = self.config
        k_actions, k_noise = jax.random.split(key)
        n_reused = min(c.entropy_L, c.K)
        n = c.K + c.entropy_M + (c.entropy_L - n_reused)
        actions = self.sample_actions(state.actor_params, next_obs, sample_latents(self.policy, k_actions, next_obs.shape[0], n))
        next_actions, centres = actions[:, : c.K], actions[:, c.K : c.K + c.entropy_M]
        baselines = jnp.concatenate([actions[:, :n_reused], actions[:, c.K + c.entropy_M :]], axis=1)
        q = min_q(self.critic, state.target_critic_params, next_obs, next_actions)
        h = plug_in_entropy_from_samples(centres, baselines, k_noise, self.scale, c.entropy_sigma)
        return entropy_regularised_value(q, h, c.tau), {"entropy": jnp.mean(h)}

    def heat_noise(self, key: jax.Array, shape: tuple[int, ...]) -> jnp.ndarray:
        """The heat step's xi ~ N(0, 2 tau eta I)."""
        return jnp.sqrt(2.0 * self.config.tau * self.config.eta) * standard_normal(key, shape)

    def particle_displacement(self, critic_params: Any, obs: jnp.ndarray, a0: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Transport + heat: returns (eta grad_a min_j Q_j(s, a0) + xi, grad_a min_j Q_j), xi ~ N(0, 2 tau eta I)."""
        grad_q = grad_min_q(self.critic, critic_params, obs, a0)
        return self.config.eta * grad_q + self.heat_noise(key, a0.shape), grad_q

    def projection_loss(self, actor_params: Any, obs: jnp.ndarray, eps: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
        """mean over the B*K samples of ||g_theta(s, eps) - target||^2."""
        residual = self.policy.apply(actor_params, obs, eps) - target
        return jnp.mean(jnp.sum(residual**2, axis=-1))

    def actor_step(self, state: AgentState, obs: jnp.ndarray, key: jax.Array) -> tuple[AgentState, dict]:
        """Move K particles per state by transport + heat, then project them back onto g_theta.

        The projection's gradient is taken at the current parameters, where g_theta(s, eps) = a0
        and the residual is a0 - target = -displacement; so the forward pass that made a0 is
        reused through its VJP instead of being run a second time inside the loss (the result
        equals jax.grad(projection_loss), tests/test_perf_equivalence.py). An implicit policy's
        network runs per sample, so its whole step runs chunk by chunk over the K samples
        (`sample_chunks`), summing the chunks' gradients.
        """
        c = self.config
        b = obs.shape[0]
        k_eps, k_xi = jax.random.split(key)
        eps = sample_latents(self.policy, k_eps, b, c.K)
        xi = self.heat_noise(k_xi, (b, c.K, self.act_dim))
        n = b * c.K

        def fit(eps_c: jnp.ndarray, xi_c: jnp.ndarray):
            a0, pullback = jax.vjp(lambda p: self.policy.apply(p, obs, eps_c), state.actor_params)
            grad_q = grad_min_q(self.critic, state.critic_params, obs, a0)
            residual = jax.lax.stop_gradient(a0 - couple(c.coupling, a0, c.eta * grad_q + xi_c))
            (grads,) = pullback(2.0 * residual / n)
            return grads, (jnp.sum(residual**2), jnp.sum(jnp.linalg.norm(grad_q, axis=-1)))

        n_chunks = sample_chunks(b, c.K) if c.policy == "implicit" else 1
        if n_chunks == 1:
            grads, (sq, gq) = fit(eps, xi)
        else:

            def chunks(x):
                return jnp.moveaxis(x.reshape(b, n_chunks, c.K // n_chunks, x.shape[-1]), 1, 0)

            def body(total, xs):
                return jax.tree.map(jnp.add, total, fit(*xs)), None

            zero = (jax.tree.map(jnp.zeros_like, state.actor_params), (jnp.zeros(()), jnp.zeros(())))
            (grads, (sq, gq)), _ = jax.lax.scan(body, zero, (chunks(eps), chunks(xi)))
        actor_params, actor_opt = adam_step(self.actor_tx, grads, state.actor_opt, state.actor_params)
        info = {"actor_loss": sq / n, "grad_a_q_norm": gq / n}
        return state.replace(actor_params=actor_params, actor_opt=actor_opt), info
