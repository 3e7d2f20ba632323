"""Does a run end above its own untrained policy? Per env and algorithm, for every finished run.

    python experiments/tools/untrained_vs_final.py runs/mujoco-cpu
    python experiments/tools/untrained_vs_final.py runs/mujoco-cpu --zero-action 3

No gradient step is taken before `learning_starts` (10k env steps on the MuJoCo suites), so the
evaluations up to it score the untrained policy. Per run it prints the best of those, the lowest
evaluation after learning starts and the final return (all with the policy's mode), and per algorithm
how many runs end above their untrained policy. With --zero-action N it also plays N episodes of each
env with the zero action (a policy that does nothing): on Ant that stands still and collects the
healthy reward, which a 100k-step run may never pass.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from wppg.bench.report import RunRecord, discover

KEY = "return_mode"


def untrained_and_after(record: RunRecord, learning_starts: int) -> tuple[float, float] | None:
    """(best evaluation at or before `learning_starts`, lowest after it); None without both."""
    steps, values = record.curve.get("step", []), record.curve.get(KEY, [])
    before = [v for s, v in zip(steps, values, strict=True) if s <= learning_starts]
    after = [v for s, v in zip(steps, values, strict=True) if s > learning_starts]
    if not before or not after:
        return None
    return float(max(before)), float(min(after))


def zero_action_returns(env_id: str, episodes: int) -> list[float]:
    """Returns of `episodes` episodes (seeds 0, 1, ...) played with the zero action."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for seed in range(episodes):
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, env.action_space.dtype))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run directories or outputs of `wppg bench run`")
    parser.add_argument(
        "--zero-action", type=int, default=0, metavar="N", help="also play N zero-action episodes per env"
    )
    args = parser.parse_args()

    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in discover(args.paths):
        if record.finished and record.seed is not None:
            groups[(record.env_id, record.algo)].append(record)
    for env_id in sorted({env for env, _ in groups}):
        if args.zero_action:
            zero = zero_action_returns(env_id, args.zero_action)
            print(f"{env_id}: zero action, {len(zero)} episodes: " + ", ".join(f"{r:.1f}" for r in zero))
        for (env, algo), records in sorted(groups.items()):
            if env != env_id:
                continue
            rows = []
            for record in records:
                starts = int((record.config.get("train_config") or {}).get("learning_starts", 0))
                pair = untrained_and_after(record, starts)
                if pair is not None:
                    rows.append((record.seed, *pair, float(record.final[KEY])))
            above = sum(final > untrained for _, untrained, _, final in rows)
            detail = "; ".join(f"seed {s}: {u:.0f} -> lowest {m:.0f} -> {f:.0f}" for s, u, m, f in rows)
            print(f"  {algo}: {above} of {len(rows)} end above their untrained policy ({detail})")


if __name__ == "__main__":
    main()
