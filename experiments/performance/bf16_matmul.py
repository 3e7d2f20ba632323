"""bf16 against fp32 matrix products on this machine, at the critic's shapes (8192 x 256 @ 256 x 256):
the check that decides whether a bf16 fast path can pay off here.

    python experiments/performance/bf16_matmul.py [ROUNDS]

Prints the CPU's bf16-related flags (amx_bf16, avx512_bf16; XLA:CPU has a fast bf16 dot only with
them) and, per round, the median time of a jitted fp32 product and of the same product with
bf16 inputs and fp32 accumulation (`preferred_element_type=float32`), and their ratio.
"""

import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from wppg.bench.speed import cpu_bf16_flags


def median_seconds(f, *args, reps: int = 10) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(
        f"cpu: {platform.processor() or platform.machine()}; bf16-related flags: {cpu_bf16_flags() or 'none'}; "
        f"jax {jax.__version__}"
    )
    m, k, n = 8192, 256, 256
    x = jax.random.normal(jax.random.PRNGKey(0), (m, k))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, n))
    fp32 = jax.jit(lambda a, b: a @ b)
    bf16 = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    flops = 2 * m * k * n
    for r in range(rounds):
        a, b = median_seconds(fp32, x, w), median_seconds(bf16, xb, wb)
        print(
            f"round {r}: fp32 {a * 1e3:.1f} ms ({flops / a / 1e9:.1f} GFLOP/s), bf16 inputs {b * 1e3:.1f} ms "
            f"({flops / b / 1e9:.1f} GFLOP/s): bf16 is {a / b:.2f}x the fp32 speed"
        )


if __name__ == "__main__":
    main()
