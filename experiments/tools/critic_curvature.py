"""The shape of a trained critic in the action, on the states of its replay buffer, and what a particle
step does to the policy's samples there: does Q(s, .) curve down around the policy (a maximum the
samples gather at) or up in some direction (a saddle, which spreads them towards the walls)?

    python experiments/tools/critic_curvature.py RUN_DIR_OR_CHECKPOINT [...] [--states 256] [--samples 64] [--eta 0.1]

For each checkpoint it draws `--states` states from the buffer and `--samples` actions per state with
the policy's stochastic `act`, takes grad_a min_j Q_j at each, and fits per state the anisotropic
quadratic model grad = g - H (u - mean u) by least squares (u on the unit box, u = (a - bias) / scale).
It prints, as medians over states: the eigenvalues of the symmetric part of H, the curvature of -Q
(positive: Q curves down; negative: a convex direction); the share of states with a convex direction;
the ratio of the samples' spread after and before one transport step u + eta grad_u Q, kept in the box
(the heat step left out, i.e. the temperature at 0), and the share of states where it widens them;
the kurtosis of the samples along their first principal direction (3 for a Gaussian, about 1.8 for a
uniform spread, towards 1 for two clusters) and the share of states below 2 (two clusters, or mass
piled on two walls). The samples near the walls hold little spread, so single states give outliers:
read the medians.

Works for every off-policy algorithm with a twin critic and a replay buffer (wppg, wppg-i, sac). For
SAC the transport step is a probe of its critic's shape, not a step SAC takes. Loading executes no code
from the file.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from entropy_by_state_age import policy_samples  # experiments/tools/entropy_by_state_age.py, beside this script

import wppg
from wppg.algorithms.base import grad_min_q
from wppg.coupling import box_step, target_box


class Curvature(NamedTuple):
    steps: int
    temperature: float
    eigenvalues: tuple[float, ...]
    """medians over states of the eigenvalues of -Q's Hessian in u, smallest first"""
    convex_share: float
    spread_ratio: float
    widened_share: float
    kurtosis: float
    two_cluster_share: float


def hessian_spectrum(u: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Per state, the eigenvalues (smallest first) of the symmetric part of H in the least-squares fit
    grad_n = g - H (u_n - mean u) over the samples u, grad [S, N, d]: the curvature of -Q."""
    du = u - u.mean(axis=1, keepdims=True)
    dg = grad - grad.mean(axis=1, keepdims=True)
    hessian_t = np.linalg.pinv(du) @ -dg  # per state, the least-squares solution of du H^T = -dg
    return np.linalg.eigvalsh((hessian_t + np.swapaxes(hessian_t, 1, 2)) / 2)


def pc1_kurtosis(u: np.ndarray) -> np.ndarray:
    """Per state, the kurtosis of the samples u [S, N, d] along their first principal direction."""
    du = u - u.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(du, full_matrices=False)
    pc1 = np.einsum("snd,sd->sn", du, vt[:, 0])
    return np.mean(pc1**4, axis=1) / np.maximum(np.mean(pc1**2, axis=1) ** 2, 1e-24)


def temperature(agent: wppg.Agent) -> float:
    """WPPG's tau or SAC's alpha at the checkpoint (nan where the algorithm has neither)."""
    algo, state = agent.trainer.algo, agent.trainer.state
    if hasattr(algo, "temperature"):
        return float(algo.temperature(state))
    if "log_alpha" in state.extra:
        return float(np.exp(state.extra["log_alpha"]))
    return float("nan")


def measure(agent: wppg.Agent, states: int, samples: int, eta: float, seed: int = 0) -> Curvature:
    """The critic's curvature and the transport step's effect on `states` buffer states."""
    buffer, algo, state = agent.trainer.buffer, agent.trainer.algo, agent.trainer.state
    rng = np.random.default_rng(seed)
    obs = buffer.data["obs"][rng.choice(buffer.size, size=min(states, buffer.size), replace=False)]
    bounds = agent.env_info.bounds
    a, u = policy_samples(agent, obs, samples)
    grad_a = np.asarray(grad_min_q(algo.critic, state.critic_params, jnp.asarray(obs), jnp.asarray(a)))
    eig = hessian_spectrum(u, grad_a * bounds.scale)
    # WPPG's transport step with the heat left out (the particles kept in the box as with boundary='reflect')
    moved = np.asarray(box_step(jnp.asarray(a), eta * grad_a, 0.0, target_box(bounds.scale, bounds.bias)))
    moved_u = (moved - bounds.bias) / bounds.scale
    ratio = moved_u.std(axis=1).sum(-1) / np.maximum(u.std(axis=1).sum(-1), 1e-12)
    kurt = pc1_kurtosis(u)
    return Curvature(
        agent.num_timesteps,
        temperature(agent),
        tuple(float(v) for v in np.median(eig, axis=0)),
        float(np.mean(eig[:, 0] < 0)),
        float(np.median(ratio)),
        float(np.mean(ratio > 1)),
        float(np.median(kurt)),
        float(np.mean(kurt < 2)),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="run directories or checkpoints (.npz) that hold their replay buffer")
    p.add_argument("--states", type=int, default=256, help="states drawn from the buffer (256)")
    p.add_argument("--samples", type=int, default=64, help="actions drawn per state (64)")
    p.add_argument("--eta", type=float, default=0.1, help="the transport step's size (0.1, the paper's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(
        "| checkpoint | variant | env steps | temperature | -Hessian eigenvalues (medians) | states with a convex "
        "direction | spread after / before transport (median) | states widened | PC1 kurtosis (median) "
        "| states with kurtosis < 2 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.paths:
        agent = wppg.Agent.load(path, progress=False)
        c = measure(agent, args.states, args.samples, args.eta, args.seed)
        eig = " ".join(f"{v:.2f}" for v in c.eigenvalues)
        print(
            f"| {path} | {agent.variant} | {c.steps} | {c.temperature:.3g} | {eig} | {c.convex_share:.2f} "
            f"| {c.spread_ratio:.3f} | {c.widened_share:.2f} | {c.kurtosis:.2f} | {c.two_cluster_share:.2f} |"
        )


if __name__ == "__main__":
    main()
