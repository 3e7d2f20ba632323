"""The plug-in entropy estimator's bias on broad policies: its mean over many states for a policy
uniform on the unit box [-1, 1]^d (entropy d log 2), at kernel width sigma and M = L centres and
baselines, with the 'fixed' and the 'silverman' kernel width, against the entropy of the policy
smoothed by the fixed kernel (Monte Carlo, M = 4096).

    python benchmarks/entropy_bias.py [--dims 1 2] [--ms 8 16 32 256] [--sigma 0.1]

No network and no env: it calls `wppg.entropy.mixture_entropy` on exact uniform samples.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

from wppg.entropy import plug_in_entropy_from_samples


def mean_estimate(d: int, m: int, sigma: float, states: int, key: jax.Array, bandwidth: str = "fixed") -> float:
    k1, k2, k3 = jax.random.split(key, 3)
    centres = jax.random.uniform(k1, (states, m, d), minval=-1.0, maxval=1.0)
    baselines = jax.random.uniform(k2, (states, m, d), minval=-1.0, maxval=1.0)
    return float(jnp.mean(plug_in_entropy_from_samples(centres, baselines, k3, jnp.ones(d), sigma, bandwidth)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ms", type=int, nargs="+", default=[8, 16, 32, 256])
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--states", type=int, default=4096)
    args = p.parse_args()
    print("| d | M = L | estimate, fixed (nats) | estimate, silverman | smoothed entropy (M = 4096) | d log 2 |")
    print("|---|---|---|---|---|---|")
    key = jax.random.PRNGKey(0)
    for d in args.dims:
        reference = mean_estimate(d, 4096, args.sigma, 64, jax.random.fold_in(key, 10_000 + d))
        for m in args.ms:
            k = jax.random.fold_in(key, 100 * d + m)
            fixed = mean_estimate(d, m, args.sigma, args.states, k)
            wide = mean_estimate(d, m, args.sigma, args.states, k, "silverman")
            print(f"| {d} | {m} | {fixed:.2f} | {wide:.2f} | {reference:.2f} | {d * math.log(2):.2f} |")


if __name__ == "__main__":
    main()
