"""WPPG and WPPG-I (arXiv 2603.02576): Wasserstein proximal policy gradient.

Per state, the proximal step pi_{k+1} = argmax E_pi[Q] + tau H(pi) - W2^2(pi, pi_k) / (2 eta) is
split into a transport step a -> a + eta grad_a Q(s, a) and a heat step a -> a + N(0, 2 tau eta I).
With a pushforward policy a = g_theta(s, eps), the particle targets are projected back onto the
family by least squares (by the energy distance with `coupling="energy"`); the entropy enters only
the critic, through a sample-based estimate (`entropy_estimator`: nearest-neighbour by default, the
paper's plug-in mixture with `preset="paper"`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from wppg.algorithms.base import (
    AgentState,
    OffPolicyAlgorithm,
    OffPolicyConfig,
    adam_step,
    grad_min_q,
    map_samples,
    min_q,
    require,
)
from wppg.coupling import BOUNDARIES, COUPLINGS, STEP_RULES, couple, projection_loss, step_size, target_box
from wppg.entropy import BANDWIDTHS, ESTIMATORS, calibrated_entropy_target, entropy_from_samples
from wppg.envs import ActionBounds
from wppg.policies import LATENT_INPUTS, make_policy, sample_latents

TAU_LOST = 1e-4
"""With tau='auto', a learned tau below TAU_LOST * tau_init while the entropy estimate is still above
its target: the entropy constraint is slack and tau is on its way to 0 (`row_warning`)."""
ACTOR_METRICS = ("actor_loss", "grad_a_q_norm", "eta_step")
"""The actor step's metrics (`WPPGAlgorithm.particle_step`)."""
TAU_USEFUL = 1e-2
"""A temperature whose entropy term matters (the learned tau on Walker2d, HalfCheetah, Ant: 0.002-0.2);
`row_warning` says how many steps tau would need to climb back to it."""


@dataclass(frozen=True)
class WPPGConfig(OffPolicyConfig):
    """WPPG / WPPG-I hyperparameters. Defaults: the cheap configuration for a CPU; `preset='gpu'` gives
    the paper's sample counts and network (K = 32), `preset='paper'` the paper's algorithm exactly.

    Deviations from the paper, each a field below (experiments/findings.md): `K`, `target_samples`,
    `policy_delay`, `latent_input`, `entropy_M`, `entropy_L` (cost; experiments/cheap-default/notes.md),
    `coupling`, `entropy_estimator`, `boundary`, the floor of `latent_dim`, and `tau='auto'`.
    The bootstrap actions are drawn from the online policy (no target actor), as in SAC.
    """

    FIELDS_ADDED: ClassVar[dict[str, Any]] = {
        **OffPolicyConfig.FIELDS_ADDED,
        "coupling": "shared-latent",
        "entropy_estimator": "plug-in",
        "boundary": "none",
        "target_samples": None,
        "policy_delay": 1,
        "latent_input": "first",
    }

    policy: str = "gaussian"
    """Policy class: 'gaussian' (WPPG, a tanh-Gaussian) or 'implicit' (WPPG-I, a = tanh(f(s, z))).
    Default 'gaussian'."""
    K: int = 8
    """Action samples per state moved and projected by the actor step. Default 8 (paper: 32,
    `preset='gpu'`); valid: >= 1 (at 1 no spread can be fitted)."""
    target_samples: int | None = 1
    """Bootstrap actions per next state averaged in the soft target. Default 1 (as SAC); None: K (the
    paper's, `preset='gpu'`); valid: >= 1 or None."""
    policy_delay: int = 2
    """An actor step every `policy_delay`-th gradient step, a critic step every step (as TD3). Default 2
    (paper: 1, `preset='gpu'`); valid: >= 1."""
    latent_input: str = "last"
    """Where WPPG-I's latent z enters its network (`wppg.policies.LATENT_INPUTS`): 'last' (default; state
    features once per state, z at the last hidden layer) or 'first' (the paper's f([s, z]), `preset='gpu'`)."""
    eta: float = 0.1
    """Wasserstein proximal step size eta of the particle step. Default 0.1 (paper); valid: > 0."""
    tau: float | str = 1e-4
    """Entropy temperature: heat-step variance 2 tau eta and the critic's entropy bonus. Default 1e-4 (paper);
    valid: >= 0, or 'auto' (learned towards `target_entropy` from `tau_init`; not in the paper)."""
    tau_init: float = 0.2
    """Initial temperature when tau='auto'. Default 0.2 (as SAC's initial alpha); valid: > 0."""
    tau_lr: float = 3e-4
    """Adam learning rate of log tau when tau='auto'. Default 3e-4 (as SAC's alpha_lr); valid: > 0."""
    tau_min: float = 0.0
    """Floor of a learned tau, so that it can climb back within reach (experiments/findings.md, "Automatic
    temperature"). Default 0 (none); valid: [0, tau_init); ignored for a fixed tau."""
    target_entropy: float | None = None
    """Target entropy for tau='auto', in nats on the unit box (SAC's convention), compared through the
    configured estimator's calibration (`wppg.entropy.calibrated_entropy_target`). Default None: -dim(A)."""
    latent_dim: int | None = None
    """WPPG-I latent dimension m. Default None: max(dim(A), round(obs_dim / 3)), the paper's rule raised to
    dim(A) so the policy has a density; valid: >= 1. Ignored by 'gaussian'."""
    entropy_sigma: float = 0.1
    """Kernel width of the plug-in entropy estimator, in half-widths of the action box. Default 0.1 (not
    in the paper); valid: > 0."""
    entropy_bandwidth: str = "fixed"
    """Kernel width rule of the plug-in estimator (`wppg.entropy.BANDWIDTHS`): 'fixed' (default,
    `entropy_sigma`) or 'silverman' (per state, at least `entropy_sigma`; not in the paper)."""
    entropy_estimator: str = "knn"
    """Entropy estimator of the critic's bonus and of tau='auto' (`wppg.entropy.ESTIMATORS`): 'knn' (default;
    not in the paper), 'knn-whitened' or 'plug-in' (the paper's, `preset='paper'`); experiments/findings.md."""
    entropy_M: int = 8
    """Entropy estimator's samples: M centres (plug-in) or M of its M + L samples (knn). Default 8
    (`preset='gpu'`: 16; not in the paper); valid: >= 1."""
    entropy_L: int = 8
    """Entropy estimator's L baselines (plug-in) or the other L samples (knn), shared with the bootstrap
    actions. Default 8 (`preset='gpu'`: 16; not in the paper); valid: >= 1."""
    coupling: str = "energy"
    """How the projection fits g_theta(s, .) to the K moved particles (`wppg.coupling.COUPLINGS`): 'energy'
    (default; not in the paper), 'ot', 'score' or 'shared-latent' (the paper's, under which the policy
    collapses); experiments/findings.md, "The spread a pairing passes on"."""
    boundary: str = "reflect"
    """The particle step at the walls of the action box (`wppg.coupling.BOUNDARIES`): 'reflect' (default;
    transport projected, heat noise reflected; not in the paper) or 'none' (the paper's)."""
    step_rule: str = "explicit"
    """Step size of the particle step (`wppg.coupling.STEP_RULES`): 'explicit' (default, the paper's: eta)
    or 'implicit' (eta / (1 + eta kappa) per state, kappa the measured curvature of -Q; not in the paper)."""

    def validate(self) -> None:
        super().validate()
        require(
            self.policy in ("gaussian", "implicit"), f"policy must be 'gaussian' or 'implicit', got {self.policy!r}"
        )
        require(self.K >= 1, f"K must be >= 1, got {self.K}")
        require(
            self.target_samples is None or self.target_samples >= 1,
            f"target_samples must be >= 1 or None (K), got {self.target_samples}",
        )
        require(self.policy_delay >= 1, f"policy_delay must be >= 1, got {self.policy_delay}")
        require(
            self.latent_input in LATENT_INPUTS,
            f"latent_input must be one of {LATENT_INPUTS}, got {self.latent_input!r}",
        )
        require(self.eta > 0, f"eta must be > 0, got {self.eta}")
        if isinstance(self.tau, str):
            require(self.tau == "auto", f"tau must be a number >= 0 or 'auto', got {self.tau!r}")
        else:
            require(self.tau >= 0, f"tau must be >= 0 or 'auto', got {self.tau}")
        require(self.tau_init > 0, f"tau_init must be > 0, got {self.tau_init}")
        require(self.tau_lr > 0, f"tau_lr must be > 0, got {self.tau_lr}")
        require(
            0 <= self.tau_min < self.tau_init,
            f"tau_min must be >= 0 and below tau_init ({self.tau_init}), got {self.tau_min}",
        )
        require(self.latent_dim is None or self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        require(self.entropy_sigma > 0, f"entropy_sigma must be > 0, got {self.entropy_sigma}")
        require(
            self.entropy_M >= 1 and self.entropy_L >= 1,
            f"entropy_M and entropy_L must be >= 1, got {self.entropy_M}, {self.entropy_L}",
        )
        require(self.coupling in COUPLINGS, f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        require(
            self.entropy_bandwidth in BANDWIDTHS,
            f"entropy_bandwidth must be one of {BANDWIDTHS}, got {self.entropy_bandwidth!r}",
        )
        require(
            self.entropy_estimator in ESTIMATORS,
            f"entropy_estimator must be one of {ESTIMATORS}, got {self.entropy_estimator!r}",
        )
        require(self.step_rule in STEP_RULES, f"step_rule must be one of {STEP_RULES}, got {self.step_rule!r}")
        require(self.boundary in BOUNDARIES, f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")

    @property
    def auto_tau(self) -> bool:
        return self.tau == "auto"

    @property
    def n_target(self) -> int:
        """Bootstrap actions per next state: `target_samples`, or K when None."""
        return self.K if self.target_samples is None else self.target_samples


PAPER_COST: dict[str, Any] = {
    "K": 32,
    "target_samples": None,
    "policy_delay": 1,
    "latent_input": "first",
    "entropy_M": 16,
    "entropy_L": 16,
}
"""The paper's per-step cost: K = 32 samples for the actor step and the soft target, an actor step every
gradient step, the latent at the input of the implicit network (and M = L = 16 entropy samples)."""

PRESETS: dict[str, dict[str, Any]] = {
    # The library's defaults: the cheap configuration for a CPU (experiments/findings.md, "Cost").
    "default": {},
    # The paper's sample counts and network with the library's projection ('energy'), estimator ('knn')
    # and box ('reflect'): the defaults before the cheap configuration; what `backend_preset` picks on
    # a GPU or TPU.
    "gpu": dict(PAPER_COST),
    # The paper's algorithm exactly: its cost, shared-latent projection (the policy collapses,
    # experiments/findings.md) and the plug-in entropy estimator.
    "paper": {**PAPER_COST, "coupling": "shared-latent", "entropy_estimator": "plug-in", "boundary": "none"},
    # The earlier CPU preset, kept so that runs made with it (the mujoco-cpu suite) stay reproducible:
    # the paper's cost at K = 8 and M = L = 8.
    "cpu": {**PAPER_COST, "K": 8, "entropy_M": 8, "entropy_L": 8},
}


def backend_preset(backend: str | None = None) -> str:
    """The preset for a JAX backend (default: `jax.default_backend()`): 'gpu' on a GPU or TPU, where
    the paper's K = 32 costs little more than K = 8, else 'default' (the cheap configuration)."""
    backend = jax.default_backend() if backend is None else backend
    return "gpu" if backend in ("gpu", "cuda", "rocm", "tpu") else "default"


def entropy_regularised_value(q: jnp.ndarray, entropy: jnp.ndarray, tau: float | jnp.ndarray) -> jnp.ndarray:
    """V(s') = (1/K) sum_k q[:, k] + tau * H_hat(s'), from min-over-twins values q [B, K]."""
    return jnp.mean(q, axis=-1) + tau * entropy


class WPPGAlgorithm(OffPolicyAlgorithm):
    name = "wppg"

    def __init__(self, config: WPPGConfig, obs_dim: int, bounds: ActionBounds):
        self.policy = make_policy(
            config.policy,
            obs_dim,
            bounds.dim,
            bounds.scale,
            bounds.bias,
            config.hidden,
            config.latent_dim,
            config.precision,
            config.latent_input,
        )
        self.box = target_box(bounds.scale, bounds.bias) if config.boundary == "reflect" else None
        self.tau_tx = optax.adam(config.tau_lr)
        if config.auto_tau:
            target = -float(bounds.dim) if config.target_entropy is None else config.target_entropy
            # Compared with the estimate on the unit box (env-unit estimate minus sum log scale).
            self.entropy_target = calibrated_entropy_target(
                target,
                bounds.dim,
                config.entropy_sigma,
                config.entropy_M,
                config.entropy_L,
                bandwidth=config.entropy_bandwidth,
                estimator=config.entropy_estimator,
            ) + float(jnp.sum(jnp.log(jnp.asarray(bounds.scale))))
        super().__init__(config, obs_dim, bounds)

    def init_extra(self) -> dict:
        extra: dict[str, Any] = {}
        if self.config.auto_tau:
            log_tau = jnp.log(jnp.asarray(self.config.tau_init, jnp.float32))
            extra.update(log_tau=log_tau, tau_opt=self.tau_tx.init(log_tau))
        if self.config.policy_delay > 1:  # the last actor step's metrics, reported on the steps without one
            extra["actor_info"] = {k: jnp.zeros((), jnp.float32) for k in ACTOR_METRICS}
        return extra

    def temperature(self, state: AgentState) -> jnp.ndarray:
        """tau: the configured value, or the learned one when tau='auto'."""
        if self.config.auto_tau:
            return jnp.exp(state.extra["log_tau"])
        return jnp.asarray(self.config.tau, jnp.float32)

    def row_warning(self, row: dict[str, float]) -> str | None:
        """With tau='auto': a warning once tau has fallen below TAU_LOST * tau_init while the entropy
        estimate stays above its target. The constraint H_hat >= target is then slack and Adam lowers log tau
        by about tau_lr per step without end, so tau grows too small to answer if the entropy later falls
        below the target; measured on Hopper-v5 (experiments/findings.md, "Automatic temperature")."""
        if not self.config.auto_tau or "tau" not in row or "entropy" not in row:
            return None
        tau, entropy = row["tau"], row["entropy"]
        if tau >= TAU_LOST * self.config.tau_init or entropy <= self.entropy_target:
            return None
        back = math.log(TAU_USEFUL / max(tau, 1e-30)) / self.config.tau_lr
        return (
            f"the learned temperature tau fell to {tau:.1e} (tau_init {self.config.tau_init:g}) because the "
            f"entropy estimate ({entropy:.2f} nats) stays above its target ({self.entropy_target:.2f}): either the "
            "policy keeps that spread without an entropy term (the particle step's own) or the estimator reads it "
            "too high (the nearest-neighbour one does on policies of unequal widths; entropy_estimator='knn-whitened' "
            "less so), and tau keeps falling, so the run has almost none. Should the estimate later fall below the "
            f"target, tau needs about {back:,.0f} gradient steps to climb back to {TAU_USEFUL:g}, and more the "
            "longer this lasts. A floor keeps it within reach: "
            'tau_min=1e-4 (experiments/findings.md, "Automatic temperature")'
        )

    def sample_actions(self, actor_params: Any, obs: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
        """g_theta(s, eps) for latents [B, n, m]; the paper's implicit network runs per sample, so it
        runs chunk by chunk (`map_samples`); a Gaussian's runs once per state, and so do the layers of
        an implicit one with latent_input='last' before the latent enters."""
        if self.config.policy == "implicit" and self.config.latent_input == "first":
            return map_samples(lambda e: self.policy.apply(actor_params, obs, e), eps)
        return self.policy.apply(actor_params, obs, eps)

    def soft_value(self, state: AgentState, next_obs: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, dict]:
        """(1/K') sum_k min_j Qbar_j(s', a'_k) + tau H_hat(s'), with a'_k = g(s', eps_k), K' =
        `target_samples` (K when None).

        One policy call draws the K' bootstrap actions and the M entropy centres together. The
        estimator's L baselines are the first L of the K' bootstrap actions (plus fresh draws if
        L > K'): they are i.i.d. from pi(.|s') and independent of the centres, which is all the
        estimator asks of them, so H_hat(s') has the same distribution as with separate draws
        (tests/test_perf_equivalence.py); only its correlation with the Q average is new, and
        that leaves the expected target unchanged.
        """
        c, k = self.config, self.config.n_target
        k_actions, k_noise = jax.random.split(key)
        n_reused = min(c.entropy_L, k)
        n = k + c.entropy_M + (c.entropy_L - n_reused)
        actions = self.sample_actions(
            state.actor_params, next_obs, sample_latents(self.policy, k_actions, next_obs.shape[0], n)
        )
        next_actions, centres = actions[:, :k], actions[:, k : k + c.entropy_M]
        baselines = jnp.concatenate([actions[:, :n_reused], actions[:, k + c.entropy_M :]], axis=1)
        q = min_q(self.critic, state.target_critic_params, next_obs, next_actions)
        h = entropy_from_samples(
            c.entropy_estimator, centres, baselines, k_noise, self.scale, c.entropy_sigma, c.entropy_bandwidth
        )
        return entropy_regularised_value(q, h, self.temperature(state)), {"entropy": jnp.mean(h)}

    def projection_loss(
        self, actor_params: Any, obs: jnp.ndarray, eps: jnp.ndarray, target: jnp.ndarray
    ) -> jnp.ndarray:
        """The projection's loss (`wppg.coupling.projection_loss`) of g_theta(s, eps) against the targets."""
        return projection_loss(self.config.coupling, self.policy.apply(actor_params, obs, eps), target, self.scale)

    def actor_step(self, state: AgentState, obs: jnp.ndarray, key: jax.Array) -> tuple[AgentState, dict]:
        """`particle_step` on gradient steps 0, d, 2d, ... (d = `policy_delay`); on the others the
        policy is left as it is (a `lax.cond`: the skipped step computes nothing) and the metrics are
        the last actor step's."""
        d = self.config.policy_delay
        if d == 1:
            return self.particle_step(state, obs, key)

        def run(state: AgentState) -> tuple[AgentState, dict]:
            state, info = self.particle_step(state, obs, key)
            return state.replace(extra={**state.extra, "actor_info": info}), info

        return jax.lax.cond(state.step % d == 0, run, lambda s: (s, s.extra["actor_info"]), state)

    def particle_step(self, state: AgentState, obs: jnp.ndarray, key: jax.Array) -> tuple[AgentState, dict]:
        """Move K particles per state by transport + heat, pair them with the current samples
        (`coupling`), then project them back onto g_theta: least squares on the pairs, or ('energy') the
        mean by least squares and the centred law by the energy distance (`wppg.coupling.projection_loss`).

        All K samples of a state are drawn and moved before the pairing, which may match across
        them. The projection's gradient is taken at the current parameters, where g_theta(s, eps) = a0;
        so the forward pass that made a0 is reused through its VJP (the loss's gradient in a0,
        pulled back) instead of being run a second time inside the loss (the result equals
        jax.grad(projection_loss), tests/test_perf_equivalence.py). An implicit policy's network
        runs chunk by chunk over the K samples, forward and backward (`map_samples`).
        """
        c = self.config
        b = obs.shape[0]
        k_eps, k_xi = jax.random.split(key)
        eps = sample_latents(self.policy, k_eps, b, c.K)
        a0, pullback = jax.vjp(lambda p: self.sample_actions(p, obs, eps), state.actor_params)
        grad_q = grad_min_q(self.critic, state.critic_params, obs, a0)
        eta = step_size(c.step_rule, a0, grad_q, c.eta)
        target = couple(c.coupling, a0, grad_q, eta, self.temperature(state), k_xi, self.scale, self.box)
        loss, cotangent = jax.value_and_grad(lambda a: projection_loss(c.coupling, a, target, self.scale))(a0)
        (grads,) = pullback(cotangent)
        actor_params, actor_opt = adam_step(self.actor_tx, grads, state.actor_opt, state.actor_params)
        info = {
            "actor_loss": loss,
            "grad_a_q_norm": jnp.mean(jnp.linalg.norm(grad_q, axis=-1)),
            "eta_step": jnp.mean(eta),  # the mean particle step size (eta unless step_rule='implicit')
        }
        info = {k: jnp.asarray(info[k], jnp.float32) for k in ACTOR_METRICS}
        return state.replace(actor_params=actor_params, actor_opt=actor_opt), info

    def gradient_step(self, state: AgentState, batch: Any, key: jax.Array) -> tuple[AgentState, dict]:
        """The shared critic and actor steps, then (tau='auto') one Adam step on log tau with the
        loss log_tau * (H_hat - target): tau falls while the estimated entropy is above the target."""
        state, info = super().gradient_step(state, batch, key)
        info["tau"] = self.temperature(state)
        if not self.config.auto_tau:
            return state, info
        gap = jax.lax.stop_gradient(info["entropy"] - self.entropy_target)
        log_tau, tau_opt = adam_step(self.tau_tx, gap, state.extra["tau_opt"], state.extra["log_tau"])
        if self.config.tau_min > 0:
            log_tau = jnp.maximum(log_tau, jnp.log(jnp.float32(self.config.tau_min)))
        return state.replace(extra={**state.extra, "log_tau": log_tau, "tau_opt": tau_opt}), info
