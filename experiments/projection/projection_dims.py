"""The projection's spread against the action dimension, with networks: WPPG-I (or WPPG) on a d-dimensional
quadratic bandit, r(a) = -|a - 0.3|^2 on [-1, 1]^d, at a fixed tau = 0.1, whose Gibbs policy is
N(0.3, tau / 2 I) (std 0.224 per dimension, hardly cut by the box). The network counterpart of
`experiments/projection/projection_model.py`: does a coupling pass the heat step's spread on in d dimensions?

    python experiments/projection/projection_dims.py --out experiments/projection/projection_dims.jsonl --dims 1 3 6 --couplings ot energy
    python experiments/projection/projection_dims.py --out experiments/projection/projection_dims.jsonl --dims 6 --policies gaussian
    python experiments/projection/projection_dims.py --table experiments/projection/projection_dims.jsonl

Each run trains through the public API (the `cpu` preset: K = 8; 2000 env steps, learning starts at
500, so 1500 gradient steps) and measures 4096 policy samples at the bandit's one state: the
geometric-mean std per dimension, exp(log det(Cov) / (2 d)), and `tau x` = (0.224 / std)^2, the factor
by which tau would have to exceed the Gibbs temperature for the policy to reach the Gibbs policy's
entropy. `--policies implicit` (WPPG-I, the default) or `gaussian` (WPPG, whose Gaussian's std is
the network's too). Rows are appended to --out; a finished row is skipped on a rerun (a row without
a `policy` field is WPPG-I's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np
from projection import train_on_bandit  # experiments/projection/projection.py, beside this script

from wppg.tasks import BanditEnv

TAU = 0.1
GIBBS_STD = (TAU / 2) ** 0.5
ENV_ID = "wppg-bench/BanditQuadraticND-v0"


class BanditQuadraticND(BanditEnv):
    """r(a) = -|a - 0.3|^2 on [-1, 1]^dim."""

    def __init__(self, dim: int = 1, reference_tau: float = TAU):
        self.action_dim = dim
        super().__init__(reference_tau)

    @staticmethod
    def reward(a: np.ndarray) -> np.ndarray:
        return -np.sum((a - 0.3) ** 2, axis=-1)


def run(dim: int, coupling: str, seed: int, steps: int, preset: str, policy: str = "implicit") -> dict:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=BanditQuadraticND)
    t0 = time.perf_counter()
    env = gym.make(ENV_ID, dim=dim)
    agent = train_on_bandit(env, policy, coupling, seed, steps, preset, TAU, learning_starts=min(500, steps // 4))
    params = agent.trainer.state.actor_params
    obs = np.zeros((4096, 1), np.float32)
    samples = np.asarray(agent.algorithm.act(params, obs, jax.random.PRNGKey(seed + 1), deterministic=False))
    cov = np.atleast_2d(np.cov(samples.T))
    std = float(np.exp(np.linalg.slogdet(cov)[1] / (2 * dim)))
    return {
        "dim": dim,
        "coupling": coupling,
        "policy": policy,
        "seed": seed,
        "steps": steps,
        "preset": preset,
        "std": std,
        "tau_factor": (GIBBS_STD / std) ** 2,
        "mean_error": float(np.abs(samples.mean(0) - 0.3).max()),
        "seconds": time.perf_counter() - t0,
    }


def read_rows(path: Path) -> list[dict]:
    """The rows of a results file; rows written before `--policies` existed are WPPG-I's."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"policy": "implicit", **r} for r in rows]


def table(path: Path) -> str:
    rows = read_rows(path)
    out = [
        f"Gibbs std {GIBBS_STD:.3f} per dimension (tau = {TAU}); `tau x` = (Gibbs std / std)^2",
        "",
        "| d | policy | coupling | preset | seed | env steps | std per dim | tau x | max mean error | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["dim"], r["policy"], r["coupling"], r["steps"], r["seed"])):
        out.append(
            f"| {r['dim']} | {r['policy']} | {r['coupling']} | {r['preset']} | {r['seed']} | {r['steps']} "
            f"| {r['std']:.3f} | {r['tau_factor']:.2f} | {r['mean_error']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path)
    p.add_argument("--dims", type=int, nargs="+", default=[1, 3, 6])
    p.add_argument("--couplings", nargs="+", default=["ot", "energy"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--policies", nargs="+", default=["implicit"], choices=["implicit", "gaussian"])
    args = p.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.out is None:
        p.error("--out or --table is required")
    done = set()
    if args.out.exists():
        done = {(r["dim"], r["policy"], r["coupling"], r["seed"], r["steps"], r["preset"]) for r in read_rows(args.out)}
    for dim in args.dims:
        for policy in args.policies:
            for coupling in args.couplings:
                for seed in args.seeds:
                    if (dim, policy, coupling, seed, args.steps, args.preset) in done:
                        continue
                    row = run(dim, coupling, seed, args.steps, args.preset, policy)
                    print(json.dumps(row), flush=True)
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
