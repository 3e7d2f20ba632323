"""A trained policy's entropy on the states of its replay buffer, grouped by when they were stored:
does the policy hold its target entropy on the states it visits now, or only on average over the
buffer, which is where a learned temperature (SAC's alpha, WPPG's tau = "auto") measures it?

    python experiments/tools/entropy_by_state_age.py RUN_DIR_OR_CHECKPOINT [--groups 5] [--states 48] [--samples 256]

For each age group (env steps at which the states were stored) it draws `--samples` actions per state
with the policy's stochastic `act` and prints, on the unit box u = (a - bias) / scale (the scale
of the temperature's target): the nearest-neighbour entropy estimate (`wppg.entropy.knn_entropy`)
on batches of the training estimator's sample count (M + L for WPPG, 16 otherwise) and on all the
samples (less biased), the whitened one (`wppg.entropy.whitened_knn_entropy`) on batches of the
training count, the max-entropy bound, the per-state standard deviation, and the square roots of the
per-state covariance's eigenvalues, largest first (how the spread is shared among directions). The
last row draws `groups` x `states` states uniformly from the whole buffer, as the temperature's
update does.

The max-entropy bound is, per state, 1/2 log det(2 pi e C), C the covariance of the samples (each
eigenvalue at least KNN_FLOOR^2): no distribution with that covariance has more entropy than the
Gaussian, so an estimate above the bound reads the policy too high by at least the difference.

Works for every off-policy algorithm with a replay buffer (wppg, wppg-i, sac, wpo). The checkpoint
must hold its buffer (the trainer's checkpoints do). It loads the file without executing code from it.
"""

from __future__ import annotations

import argparse
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

import wppg
from wppg.entropy import KNN_FLOOR, knn_entropy, whitened_knn_entropy
from wppg.replay import ReplayBuffer


class AgeRow(NamedTuple):
    label: str
    knn_small: float
    knn_all: float
    knn_whitened_small: float
    bound: float
    """max-entropy bound: the entropy of the Gaussian with the samples' covariance, mean over states"""
    std: float
    spectrum: tuple[float, ...]
    """sqrt of the eigenvalues of the per-state covariance, largest first, mean over states"""


def stored_in_order(buffer: ReplayBuffer) -> np.ndarray:
    """Indices of the buffer's rows from the oldest stored transition to the newest."""
    return (buffer.ptr - buffer.size + np.arange(buffer.size)) % buffer.capacity


def estimator_samples(agent: wppg.Agent) -> int:
    """The training entropy estimator's sample count per state: M + L for WPPG, 16 for the others."""
    cfg = agent.trainer.algo.config
    return getattr(cfg, "entropy_M", 8) + getattr(cfg, "entropy_L", 8)


def policy_samples(agent: wppg.Agent, obs: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """`samples` stochastic actions per state of obs [S, D], [S, N, d]: in env units and on the unit box
    u = (a - bias) / scale."""
    bounds = agent.env_info.bounds
    a = agent.predict(np.repeat(obs, samples, axis=0))[0].reshape(len(obs), samples, -1)
    return a, (a - bounds.bias) / bounds.scale


def spread_on(
    agent: wppg.Agent, obs: np.ndarray, samples: int, small: int
) -> tuple[float, float, float, float, float, tuple[float, ...]]:
    """The fields of `AgeRow` after its label, means over states obs [S, D]: knn on batches of `small`
    samples, knn on all `samples`, whitened knn on batches of `small`, the max-entropy bound, per-state
    std, covariance spectrum."""
    _, u = policy_samples(agent, obs, samples)
    d = u.shape[-1]
    n = samples - samples % small
    batches = jnp.asarray(u[:, :n].reshape(len(obs), n // small, small, d))
    centred = u - u.mean(axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(np.einsum("snd,sne->sde", centred, centred) / (samples - 1))[:, ::-1]
    spectrum = tuple(float(v) for v in np.sqrt(np.maximum(eigenvalues, 0.0)).mean(axis=0))
    bound = 0.5 * np.sum(np.log(2 * math.pi * math.e * np.maximum(eigenvalues, KNN_FLOOR**2)), axis=-1)
    return (
        float(jnp.mean(knn_entropy(batches))),
        float(jnp.mean(knn_entropy(jnp.asarray(u)))),
        float(jnp.mean(whitened_knn_entropy(batches))),
        float(bound.mean()),
        float(u.std(axis=1).mean()),
        spectrum,
    )


def entropy_by_age(
    agent: wppg.Agent, groups: int = 5, states: int = 48, samples: int = 256, seed: int = 0
) -> list[AgeRow]:
    """One `AgeRow` per age group of the buffer's states, oldest first, then one for the whole buffer."""
    buffer = agent.trainer.buffer
    if buffer.size < groups:
        raise ValueError(f"the checkpoint's buffer holds {buffer.size} transitions, fewer than {groups} groups")
    small = estimator_samples(agent)
    if samples < 2 * small:
        raise ValueError(f"--samples must be at least {2 * small} (twice the training estimator's {small})")
    rng = np.random.default_rng(seed)
    order = stored_in_order(buffer)
    obs = buffer.data["obs"]
    first_step = agent.num_timesteps - buffer.size
    rows, lo = [], first_step
    for part in np.array_split(order, groups):
        hi = lo + len(part)
        picked = obs[rng.choice(part, size=min(states, len(part)), replace=False)]
        rows.append(AgeRow(f"{lo:,}-{hi:,}", *spread_on(agent, picked, samples, small)))
        lo = hi
    picked = obs[rng.choice(order, size=min(states * groups, buffer.size), replace=False)]
    rows.append(AgeRow("whole buffer", *spread_on(agent, picked, samples, small)))
    return rows


def temperature_target(agent: wppg.Agent) -> float | None:
    """What the temperature's update holds the training entropy estimate at (None for a fixed temperature)."""
    algo = agent.trainer.algo
    if getattr(algo, "entropy_target", None) is not None:
        return float(algo.entropy_target)
    if getattr(algo.config, "alpha", None) == "auto":
        return float(algo.target_entropy)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="a run directory or a checkpoint (.npz) that holds its replay buffer")
    p.add_argument("--groups", type=int, default=5, help="age groups of the buffer's states (5)")
    p.add_argument("--states", type=int, default=48, help="states drawn per group (48)")
    p.add_argument("--samples", type=int, default=256, help="actions drawn per state (256)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    agent = wppg.Agent.load(args.path, progress=False)
    rows = entropy_by_age(agent, args.groups, args.states, args.samples, args.seed)
    small = estimator_samples(agent)
    print(f"{agent.variant} after {agent.num_timesteps} env steps; entropy in nats on the unit box")
    print(
        f"| states stored at | knn, N = {small} | knn, N = {args.samples} | knn-whitened, N = {small} "
        "| max-entropy bound | std | sqrt eigenvalues of the covariance |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        spectrum = " ".join(f"{v:.3f}" for v in r.spectrum)
        print(
            f"| {r.label} | {r.knn_small:.2f} | {r.knn_all:.2f} | {r.knn_whitened_small:.2f} | {r.bound:.2f} "
            f"| {r.std:.3f} | {spectrum} |"
        )
    target = temperature_target(agent)
    if target is not None and math.isfinite(target):
        print(f"the temperature holds its training estimate at {target:.2f} on states drawn from the whole buffer")


if __name__ == "__main__":
    main()
