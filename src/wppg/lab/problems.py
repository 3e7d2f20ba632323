"""Small entropy-regularised MDPs with continuous actions, and the named presets.

A problem has finitely many states and actions a in R^d (d = 1 or 2). The reward is
    r~(s, a) = r(s, a) - (beta / 2) ||a||^2,   r(s, a) = sum_m h_sm exp(-||a - c_sm||^2 / (2 w^2)),
a sum of Gaussian bumps (bounded, smooth, multimodal when there are several bumps). Transitions are
either smooth and stochastic, p(s'|s, a) = softmax_{s'}(B_ss' + kappa cos(omega_ss' . a + phi_ss')),
or deterministic and discontinuous in a ("sign": a_1 >= 0 sends the chain to state 0, a_1 < 0
keeps it where it is), which breaks the smoothness assumption of both papers.

Every function takes action points of shape (S, m, d): point j of row s is an action in state s.
Gradients are analytic, so grad_a Q can be evaluated anywhere, not only on the grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class ProblemConfig:
    """A problem instance; the presets below are named instances of it."""

    name: str = "custom"
    """Preset name (for labels only)."""
    n_states: int = 3
    """Number of states S."""
    dim: int = 1
    """Action dimension d (1 or 2)."""
    gamma: float = 0.9
    """Discount factor."""
    tau: float = 0.5
    """Entropy temperature."""
    beta: float = 1.0
    """Quadratic action penalty -(beta/2)||a||^2 in the reward (paper 2); 0 in the box setting."""
    bounded: bool = False
    """True: actions live in the box [-half_width, half_width]^d with reflecting walls (paper 1).
    False: actions in R^d, represented on a grid truncated at half_width (paper 2)."""
    half_width: float = 6.0
    """Box half-width, or the truncation half-width of the grid in the unbounded setting."""
    n_grid: int = 201
    """Grid points per axis."""
    n_bumps: int = 1
    """Gaussian bumps per state in r(s, .)."""
    bump_height: float = 1.0
    """Mean bump height."""
    bump_width: float = 0.7
    """Bump standard deviation w."""
    bump_spread: float = 1.5
    """Bump centres lie in [-bump_spread, bump_spread]^d."""
    bump_layout: Literal["random", "pair"] = "random"
    """'random': centres uniform, heights uniform in bump_height * [0.5, 1.5].
    'pair': two bumps at -/+ bump_spread (first axis) of heights bump_height and bump_height + 0.2."""
    transition: Literal["softmax", "sign"] = "softmax"
    """'softmax': smooth stochastic transitions; 'sign': deterministic, discontinuous in a."""
    kappa: float = 1.0
    """Strength of the action dependence of the softmax transition logits."""
    init_mean: float = 0.0
    """Initial policy: Gaussian with this mean (every coordinate, every state) ..."""
    init_std: float = 1.0
    """... and this standard deviation, restricted to the grid and normalised."""
    seed: int = 0
    """Seed of the random reward and transition parameters."""

    def replace(self, **changes: object) -> ProblemConfig:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Preset:
    """A named problem with its assumption checklist (True = met, False = violated)."""

    config: ProblemConfig
    summary: str
    assumptions: dict[str, bool]
    note: str = ""


class Problem:
    """Reward and transition functions of a ProblemConfig, with analytic action gradients."""

    def __init__(self, config: ProblemConfig):
        if config.dim not in (1, 2):
            raise ValueError("dim must be 1 or 2")
        self.config = config
        rng = np.random.default_rng(config.seed)
        s, d, m = config.n_states, config.dim, config.n_bumps
        if config.bump_layout == "pair":
            self.centres = np.zeros((s, 2, d))
            self.centres[:, 0, 0], self.centres[:, 1, 0] = -config.bump_spread, config.bump_spread
            self.heights = np.tile([config.bump_height, config.bump_height + 0.2], (s, 1))
        else:
            self.centres = rng.uniform(-config.bump_spread, config.bump_spread, size=(s, m, d))
            self.heights = config.bump_height * rng.uniform(0.5, 1.5, size=(s, m))
        self.logit_bias = rng.normal(size=(s, s))
        self.omega = rng.normal(size=(s, s, d))
        self.phase = rng.uniform(0.0, 2 * np.pi, size=(s, s))

    @property
    def n_states(self) -> int:
        return self.config.n_states

    def reward(self, a: np.ndarray) -> np.ndarray:
        """r~(s, a) for a of shape (S, m, d); returns (S, m)."""
        return self._bumps(a)[0] - 0.5 * self.config.beta * np.sum(a**2, axis=-1)

    def reward_grad(self, a: np.ndarray) -> np.ndarray:
        """grad_a r~(s, a); returns (S, m, d)."""
        return self._bumps(a)[1] - self.config.beta * a

    def _bumps(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = a[:, :, None, :] - self.centres[:, None, :, :]  # (S, m, M, d)
        w2 = self.config.bump_width**2
        g = self.heights[:, None, :] * np.exp(-0.5 * np.sum(diff**2, axis=-1) / w2)  # (S, m, M)
        return g.sum(axis=-1), -np.einsum("smk,smkd->smd", g, diff) / w2

    def transition(self, a: np.ndarray) -> np.ndarray:
        """p(s'|s, a); returns (S, m, S)."""
        if self.config.transition == "sign":
            return self._sign_transition(a)
        return self._softmax(a)[0]

    def transition_grad(self, a: np.ndarray) -> np.ndarray:
        """grad_a p(s'|s, a); returns (S, m, S, d). For 'sign' this is the a.e. gradient, zero:
        the Dirac mass of the jump at a_1 = 0 is invisible to any pointwise gradient."""
        if self.config.transition == "sign":
            return np.zeros(a.shape[:2] + (self.n_states, self.config.dim))
        p, dlogit = self._softmax(a)
        mean = np.einsum("smt,smtd->smd", p, dlogit)
        return p[..., None] * (dlogit - mean[:, :, None, :])

    def _softmax(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arg = np.einsum("smd,std->smt", a, self.omega) + self.phase[:, None, :]
        logits = self.logit_bias[:, None, :] + self.config.kappa * np.cos(arg)
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=-1, keepdims=True)
        dlogit = -self.config.kappa * np.sin(arg)[..., None] * self.omega[:, None, :, :]
        return p, dlogit

    def _sign_transition(self, a: np.ndarray) -> np.ndarray:
        n = self.n_states
        p = np.zeros(a.shape[:2] + (n,))
        right = a[..., 0] >= 0
        p[..., 0] += right
        p[np.arange(n), :, np.arange(n)] += ~right
        return p


PRESETS: dict[str, Preset] = {
    "gauss1d": Preset(
        ProblemConfig(
            name="gauss1d", n_states=3, dim=1, tau=0.5, beta=1.0, half_width=8.0, n_grid=321, n_bumps=1, bump_width=0.7
        ),
        "paper 2, d=1, unbounded actions, one bump per state (near-Gaussian optimum)",
        {
            "unbounded actions + beta penalty (paper 2)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": True,
            "LSI (useful constant)": True,
        },
    ),
    "bumps1d": Preset(
        ProblemConfig(
            name="bumps1d",
            n_states=5,
            dim=1,
            tau=0.3,
            beta=0.5,
            half_width=8.0,
            n_grid=401,
            n_bumps=3,
            bump_width=0.5,
            bump_spread=2.0,
            seed=1,
        ),
        "paper 2, d=1, unbounded actions, three bumps per state (multimodal optimum)",
        {
            "unbounded actions + beta penalty (paper 2)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": True,
            "LSI (useful constant)": True,
        },
        "LSI holds but its Holley-Stroock constant is small (multimodal).",
    ),
    "bumps2d": Preset(
        ProblemConfig(
            name="bumps2d",
            n_states=3,
            dim=2,
            tau=0.5,
            beta=1.0,
            half_width=4.5,
            n_grid=51,
            n_bumps=2,
            bump_width=0.7,
            bump_spread=1.2,
            init_std=1.0,
            seed=2,
        ),
        "paper 2, d=2, unbounded actions, two bumps per state",
        {
            "unbounded actions + beta penalty (paper 2)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": True,
            "LSI (useful constant)": True,
        },
    ),
    "box1d": Preset(
        ProblemConfig(
            name="box1d",
            n_states=4,
            dim=1,
            tau=0.2,
            beta=0.0,
            bounded=True,
            half_width=1.0,
            n_grid=201,
            n_bumps=2,
            bump_width=0.4,
            bump_spread=0.9,
            init_std=0.5,
            seed=3,
        ),
        "paper 1, d=1, box [-1, 1] with reflecting walls, two bumps per state",
        {
            "bounded actions (paper 1)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": True,
            "LSI (useful constant)": True,
        },
    ),
    "box2d": Preset(
        ProblemConfig(
            name="box2d",
            n_states=3,
            dim=2,
            tau=0.2,
            beta=0.0,
            bounded=True,
            half_width=1.0,
            n_grid=33,
            n_bumps=2,
            bump_width=0.6,
            bump_spread=0.7,
            kappa=0.5,
            init_std=0.5,
            seed=4,
        ),
        "paper 1, d=2, box [-1, 1]^2 with reflecting walls, two bumps per state",
        {
            "bounded actions (paper 1)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": True,
            "LSI (useful constant)": True,
        },
    ),
    "jump1d": Preset(
        ProblemConfig(
            name="jump1d",
            n_states=3,
            dim=1,
            tau=0.5,
            beta=1.0,
            half_width=8.0,
            n_grid=321,
            n_bumps=1,
            bump_width=0.7,
            transition="sign",
            seed=5,
        ),
        "VIOLATES smoothness: deterministic transitions, a_1 >= 0 jumps to state 0",
        {
            "unbounded actions + beta penalty (paper 2)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": False,
            "LSI (useful constant)": True,
        },
        "Q jumps at a = 0; the pointwise gradient misses the jump, so WPG converges to a wrong policy.",
    ),
    "cold1d": Preset(
        ProblemConfig(
            name="cold1d",
            n_states=3,
            dim=1,
            tau=0.04,
            beta=0.1,
            half_width=4.0,
            n_grid=801,
            bump_layout="pair",
            n_bumps=2,
            bump_width=0.3,
            bump_spread=1.5,
            init_mean=-1.5,
            init_std=0.3,
            seed=6,
        ),
        "VIOLATES a useful LSI: tiny tau on two separated modes, started in the worse mode",
        {
            "unbounded actions + beta penalty (paper 2)": True,
            "bounded reward r": True,
            "smooth stochastic transitions": True,
            "LSI (useful constant)": False,
        },
        "The LSI constant exp(-osc/tau) collapses; the flow is metastable in the worse mode.",
    ),
}


def make_problem(preset: str, **overrides: object) -> Problem:
    """Build a preset, optionally with some ProblemConfig fields changed."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return Problem(PRESETS[preset].config.replace(**overrides))
