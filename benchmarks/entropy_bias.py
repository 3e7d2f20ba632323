"""The plug-in entropy estimator's bias on broad policies: its mean over many states for a policy
uniform on the unit box [-1, 1]^d (entropy d log 2), at kernel width sigma and M = L centres and
baselines, against the entropy of the kernel-smoothed policy it estimates (Monte Carlo, M = 4096).

    python benchmarks/entropy_bias.py [--dims 1 2] [--ms 8 16 32 256] [--sigma 0.1]

No network and no env: it calls `wppg.entropy.mixture_entropy` on exact uniform samples.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

from wppg.entropy import mixture_entropy


def mean_estimate(d: int, m: int, sigma: float, states: int, key: jax.Array) -> float:
    k1, k2, k3 = jax.random.split(key, 3)
    centres = jax.random.uniform(k1, (states, m, d), minval=-1.0, maxval=1.0)
    baselines = jax.random.uniform(k2, (states, m, d), minval=-1.0, maxval=1.0)
    baselines = baselines + sigma * jax.random.normal(k3, baselines.shape)
    return float(jnp.mean(mixture_entropy(centres, baselines, sigma)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ms", type=int, nargs="+", default=[8, 16, 32, 256])
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--states", type=int, default=4096)
    args = p.parse_args()
    print("| d | M = L | mean estimate (nats) | smoothed entropy (M = 4096) | uniform's entropy d log 2 |")
    print("|---|---|---|---|---|")
    key = jax.random.PRNGKey(0)
    for d in args.dims:
        reference = mean_estimate(d, 4096, args.sigma, 64, jax.random.fold_in(key, 10_000 + d))
        for m in args.ms:
            est = mean_estimate(d, m, args.sigma, args.states, jax.random.fold_in(key, 100 * d + m))
            print(f"| {d} | {m} | {est:.2f} | {reference:.2f} | {d * math.log(2):.2f} |")


if __name__ == "__main__":
    main()
