"""The projection's coupling on the one-step bandits: does the learned policy hold the Gibbs policy?

For each bandit (wppg.tasks), coupling and seed, trains WPPG-I (or WPPG) through the public API
with tau = 0.1 and writes one JSON row per run (W2 to the Gibbs policy, policy std, mode masses,
seconds) to --out (appending; a finished row is skipped on a rerun, so the script resumes).

    python experiments/projection/projection.py --out experiments/projection/projection.jsonl --seeds 0 1 2
    python experiments/projection/projection.py --table experiments/projection/projection.jsonl   # markdown table
    python experiments/projection/projection.py --figure experiments/projection/projection.jsonl experiments/projection/projection.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

TASKS = ("wppg/BanditQuadratic-v0", "wppg/BanditDoubleWell-v0", "wppg/BanditFourModes-v0")


def train_on_bandit(
    env: Any, policy: str, coupling: str, seed: int, steps: int, preset: str, tau: float, learning_starts: int
) -> Any:
    """A WPPG agent trained `steps` env steps on a bandit (a Gymnasium id or env) through the public API,
    with no evaluation during training."""
    import wppg

    agent = wppg.WPPG(
        env,
        policy=policy,
        preset=preset,
        seed=seed,
        tau=tau,
        coupling=coupling,
        learning_starts=learning_starts,
        eval_every=10**9,
        eval_episodes=1,
        progress=False,
    )
    return agent.learn(steps)


def run(task: str, coupling: str, policy: str, seed: int, steps: int, preset: str, tau: float) -> dict:
    from wppg.tasks import policy_metrics

    t0 = time.perf_counter()
    agent = train_on_bandit(task, policy, coupling, seed, steps, preset, tau, learning_starts=min(1000, steps // 4))
    env = agent.env_info.make()
    params = agent.trainer.state.actor_params
    act = lambda obs, k: agent.algorithm.act(params, obs, k, deterministic=False)  # noqa: E731
    m = policy_metrics(env, act, jax.random.PRNGKey(seed))
    obs, _ = env.reset(seed=seed)
    samples = np.asarray(act(np.repeat(np.asarray(obs, np.float32)[None], 1000, 0), jax.random.PRNGKey(seed + 1)))
    return {
        "samples": np.round(samples, 4).tolist(),
        "task": task,
        "coupling": coupling,
        "policy": policy,
        "seed": seed,
        "steps": steps,
        "preset": preset,
        "tau": tau,
        "seconds": time.perf_counter() - t0,
        **m,
    }


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["policy"], r["preset"], r["steps"], r["coupling"]), []).append(r)
    out = [
        "| task | policy | preset | steps | coupling | seeds | W2 to Gibbs | policy std | smallest mode mass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, policy, preset, steps, coupling), rs in sorted(groups.items()):
        w2 = np.array([r["w2_to_gibbs"] for r in rs])
        std = np.array([r["policy_std"] for r in rs])
        mass = [min(r["mass_left"], 1 - r["mass_left"]) if "mass_left" in r else r.get("mode_min_mass") for r in rs]
        mass_s = "-" if mass[0] is None else f"{np.mean(mass):.2f} (min {np.min(mass):.2f})"
        out.append(
            f"| {task.split('/')[-1]} | {policy} | {preset} | {steps} | {coupling} | {len(rs)} | "
            f"{w2.mean():.3f} (max {w2.max():.3f}) | {std.mean():.3f} | {mass_s} |"
        )
    return "\n".join(out)


def figure(path: Path, out: Path) -> None:
    """Histograms of the learned policies' samples (the first seed of each task and coupling)
    against the Gibbs density, one panel per task and coupling."""
    import matplotlib

    matplotlib.use("Agg")
    import gymnasium as gym
    import matplotlib.pyplot as plt

    import wppg  # noqa: F401  (registers the tasks)

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "samples" in r]
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    couplings = [c for c in ("shared-latent", "ot", "score") if any(r["coupling"] == c for r in rows)]
    fig, axes = plt.subplots(
        len(tasks), len(couplings), figsize=(3.2 * len(couplings), 2.6 * len(tasks)), squeeze=False
    )
    for i, task in enumerate(tasks):
        grid = gym.make(task).unwrapped.gibbs(0.1)
        for j, coupling in enumerate(couplings):
            ax = axes[i, j]
            sel = sorted((r for r in rows if r["task"] == task and r["coupling"] == coupling), key=lambda r: r["seed"])
            if not sel:
                ax.axis("off")
                continue
            r = sel[0]
            x = np.asarray(r["samples"])
            if x.shape[-1] == 1:
                ax.hist(x[:, 0], bins=60, range=(-1, 1), density=True, alpha=0.6, label="policy")
                ax.plot(grid.axes[0], grid.density, "k", lw=1, label="Gibbs")
            else:
                ax.contour(grid.axes[0], grid.axes[1], grid.density.T, levels=5, colors="k", linewidths=0.6)
                ax.scatter(x[:400, 0], x[:400, 1], s=2, alpha=0.5)
                ax.set_xlim(-1, 1), ax.set_ylim(-1, 1)
            ax.set_title(f"{task.split('/')[-1].replace('-v0', '')}, {coupling}\nW2 {r['w2_to_gibbs']:.3f}", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path)
    p.add_argument("--figure", type=Path, nargs=2, metavar=("ROWS", "PNG"))
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
    if a.figure:
        figure(*a.figure)
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
