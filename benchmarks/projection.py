"""The projection's coupling on the one-step bandits: does the learned policy hold the Gibbs policy?

For each bandit (wppg.tasks), coupling and seed, trains WPPG-I (or WPPG) through the public API
with tau = 0.1 and writes one JSON row per run (W2 to the Gibbs policy, policy std, mode masses,
seconds) to --out (appending; a finished row is skipped on a rerun, so the script resumes).

    python benchmarks/projection.py --out docs/results/projection.jsonl --seeds 0 1 2
    python benchmarks/projection.py --table docs/results/projection.jsonl   # markdown table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

TASKS = ("wppg/BanditQuadratic-v0", "wppg/BanditDoubleWell-v0", "wppg/BanditFourModes-v0")


def run(task: str, coupling: str, policy: str, seed: int, steps: int, preset: str, tau: float) -> dict:
    import wppg
    from wppg.tasks import policy_metrics

    t0 = time.perf_counter()
    agent = wppg.WPPG(task, policy=policy, preset=preset, seed=seed, tau=tau, coupling=coupling,
                      learning_starts=min(1000, steps // 4), eval_every=10**9, eval_episodes=1, progress=False)
    agent.learn(steps)
    env = agent.env_info.make()
    params = agent.trainer.state.actor_params
    m = policy_metrics(env, lambda obs, k: agent.algorithm.act(params, obs, k, deterministic=False), jax.random.PRNGKey(seed))
    return {"task": task, "coupling": coupling, "policy": policy, "seed": seed, "steps": steps, "preset": preset,
            "tau": tau, "seconds": time.perf_counter() - t0, **m}


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["policy"], r["preset"], r["steps"], r["coupling"]), []).append(r)
    out = ["| task | policy | preset | steps | coupling | seeds | W2 to Gibbs | policy std | smallest mode mass |",
           "|---|---|---|---|---|---|---|---|---|"]
    for (task, policy, preset, steps, coupling), rs in sorted(groups.items()):
        w2 = np.array([r["w2_to_gibbs"] for r in rs])
        std = np.array([r["policy_std"] for r in rs])
        mass = [min(r["mass_left"], 1 - r["mass_left"]) if "mass_left" in r else r.get("mode_min_mass") for r in rs]
        mass_s = "-" if mass[0] is None else f"{np.mean(mass):.2f} (min {np.min(mass):.2f})"
        out.append(f"| {task.split('/')[-1]} | {policy} | {preset} | {steps} | {coupling} | {len(rs)} | "
                   f"{w2.mean():.3f} (max {w2.max():.3f}) | {std.mean():.3f} | {mass_s} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path)
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--couplings", nargs="+", default=["shared-latent", "ot", "score"])
    p.add_argument("--policies", nargs="+", default=["implicit"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--tau", type=float, default=0.1)
    a = p.parse_args()
    if a.table:
        print(table(a.table))
        return
    done = set()
    if a.out.exists():
        for line in a.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["task"], r["coupling"], r["policy"], r["seed"], r["steps"], r["preset"], r["tau"]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for task in a.tasks:
        for policy in a.policies:
            for coupling in a.couplings:
                for seed in a.seeds:
                    if (task, coupling, policy, seed, a.steps, a.preset, a.tau) in done:
                        continue
                    row = run(task, coupling, policy, seed, a.steps, a.preset, a.tau)
                    print(json.dumps(row), flush=True)
                    with a.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
