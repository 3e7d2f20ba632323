"""The projection's finite-K bias in a model with no networks: a linear Gaussian policy a = m + S z
(z ~ N(0, I_d)) fitted by least squares, step after step, to the targets of each coupling on the
d-dimensional quadratic bandit r(a) = -|a - 0.3|^2 at tau = 0.1, eta = 0.1. The Gibbs policy
exp(r / tau) has std sqrt(tau / 2) = 0.224 in every dimension; the discrete particle step's own fixed
point is sqrt(tau / (2 (1 - eta))) = 0.236. Prints each coupling's stationary spread.

    python experiments/projection/projection_model.py                       # d = 1, K = 8 and 32
    python experiments/projection/projection_model.py --dims 1 3 6 8 --ks 8 16 32 --couplings ot energy

Each step draws K latents for each of 256 states, moves the samples with the library's own
`wppg.coupling.couple` (transport eta grad r, and heat noise of variance 2 tau eta or the kernel-score
velocity), pairs them by the coupling, fits (m, S) by least squares and moves (m, S) 2% of the way to
the fit (a slow learner, like a network under Adam). 'energy' has no closed-form fit: it takes one Adam
step (learning rate 3e-3) on the library's `projection_loss` instead. The spread is averaged over the
second half of the steps. `--speed` moves the reward's maximiser, 0.3 cos(speed t), so that the policy's mean lags
behind it and every particle step carries the whole cloud, as a critic's gradient does while it learns.

The spread is reported as the geometric-mean std per dimension, exp(log det(S S^T) / (2 d)), and as
`tau x`: the factor by which tau would have to exceed the Gibbs temperature for this coupling's policy
to reach the Gibbs policy's entropy, (0.224 / std)^2. In this model the spread scales with sqrt(tau)
(transport, noise and the pairing's geometry all do), so the factor does not depend on tau.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

from wppg.coupling import couple, projection_loss


def stationary_std(
    k: int,
    coupling: str,
    d: int = 1,
    eta: float = 0.1,
    tau: float = 0.1,
    steps: int = 4000,
    states: int = 256,
    seed: int = 0,
    speed: float = 0.0,
) -> float:
    """Geometric-mean std per dimension of the linear policy's stationary state under `coupling`."""

    def step(carry: tuple, inputs: tuple) -> tuple:
        m, s, opt = carry
        key, t = inputs
        k_z, k_xi = jax.random.split(key)
        z = jax.random.normal(k_z, (states, k, d))
        a = m + z @ s.T
        centre = 0.3 * jnp.cos(speed * t)  # the reward's maximiser; it moves when speed > 0
        y = couple(coupling, a, -2.0 * (a - centre), eta, tau, k_xi)
        if coupling == "energy":  # no closed-form fit: one Adam step on the library's loss
            grads = jax.grad(lambda p: projection_loss(coupling, p[0] + z @ p[1].T, y))((m, s))
            updates, opt = adam.update(grads, opt)
            m, s = optax.apply_updates((m, s), updates)
        else:
            zs, ys = z.reshape(-1, d), y.reshape(-1, d)
            zc, yc = zs - zs.mean(0), ys - ys.mean(0)
            s_fit = jnp.linalg.solve(zc.T @ zc, zc.T @ yc).T
            m_fit = ys.mean(0) - s_fit @ zs.mean(0)
            m, s = m + 0.02 * (m_fit - m), s + 0.02 * (s_fit - s)
        return (m, s, opt), jnp.linalg.slogdet(s)[1] / d

    adam = optax.adam(3e-3)
    init = (jnp.zeros(d), 0.3 * jnp.eye(d), adam.init((jnp.zeros(d), jnp.eye(d))))
    inputs = (jax.random.split(jax.random.key(seed), steps), jnp.arange(steps, dtype=jnp.float32))
    _, log_std = jax.jit(lambda xs: jax.lax.scan(step, init, xs))(inputs)
    return float(jnp.exp(jnp.mean(log_std[steps // 2 :])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[1], help="action dimensions d")
    p.add_argument("--ks", type=int, nargs="+", default=[8, 32], help="samples per state K")
    p.add_argument("--couplings", nargs="+", default=["shared-latent", "ot", "score", "energy"])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--speed", type=float, default=0.0, help="the maximiser moves as 0.3 cos(speed t)")
    args = p.parse_args()
    gibbs = (args.tau / 2) ** 0.5
    print(f"tau {args.tau}, speed {args.speed}: Gibbs std {gibbs:.3f} per dimension; 'tau x' = (Gibbs std / std)^2")
    for d in args.dims:
        for k in args.ks:
            row = {
                c: stationary_std(k, c, d=d, steps=args.steps, tau=args.tau, speed=args.speed) for c in args.couplings
            }
            cells = ", ".join(
                f"{c} {v:.3f}" + (f" (tau x {(gibbs / v) ** 2:.2f})" if v > 0.01 * gibbs else "")
                for c, v in row.items()
            )
            print(f"d = {d}, K = {k:2d}: {cells}", flush=True)


if __name__ == "__main__":
    main()
