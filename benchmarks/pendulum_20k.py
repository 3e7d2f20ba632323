"""Pendulum-v1 at 20k env steps: wppg, wppg-i (cpu preset), SAC with fixed and self-tuned alpha.

    python benchmarks/pendulum_20k.py --seeds 0 1 2 --workers 2 --out runs/pendulum_20k

Each run is one `wppg train` process (finished runs are skipped), pinned to one XLA thread so
that workers do not fight over the cores. Writes docs/results/pendulum_20k.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

COMMON = ["--env", "Pendulum-v1", "--total-steps", "20000", "--learning-starts", "1000", "--eval-every", "2000", "--eval-episodes", "10", "--no-progress"]
VARIANTS = {
    "sac-auto": ["--algo", "sac"],
    "sac-fixed": ["--algo", "sac", "--no-autotune", "--alpha", "0.2"],
    "wppg-i": ["--algo", "wppg-i", "--preset", "cpu"],
    "wppg": ["--algo", "wppg", "--preset", "cpu"],
}


def run(cmd: list[str], out: Path) -> None:
    if (out / "summary.json").exists():
        return
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", "OMP_NUM_THREADS": "1"}
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.log", "w") as log:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/pendulum_20k"))
    p.add_argument("--report", type=Path, default=Path("docs/results/pendulum_20k.md"))
    p.add_argument("--skip", nargs="*", default=[], help="run names (e.g. wppg_s0) not to start here")
    p.add_argument("--report-only", action="store_true", help="only aggregate the finished runs")
    args = p.parse_args()
    wppg = str(Path(sys.executable).with_name("wppg"))
    jobs = []
    # Seed-major order, cheapest variants first: an interrupted suite still covers every variant.
    for seed in args.seeds:
        for name, flags in VARIANTS.items():
            out = args.out / f"{name}_s{seed}"
            if out.name not in args.skip:
                jobs.append(([wppg, "train", *flags, *COMMON, "--seed", str(seed), "--out", str(out), "--overwrite"], out))
    if not args.report_only:
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda j: run(*j), jobs))
    lines = [
        "# Pendulum-v1, 20k env steps",
        "",
        f"Command: `python benchmarks/pendulum_20k.py --seeds {' '.join(map(str, args.seeds))} --workers {args.workers}`",
        "",
        "Protocol: learning_starts 1000, UTD 1, batch 256, evaluation every 2000 steps on 10 episodes",
        "(fixed reset seeds), final evaluation at 20k steps. WPPG variants use the `cpu` preset",
        "(K=8, entropy M=L=8, eta=0.1, tau=1e-4). SAC fixed: alpha=0.2; SAC auto: target entropy -1.",
        "",
        "| variant | K | seeds | final return, mode (mean [min, max]) | final return, stochastic (mean [min, max]) | wall time per run (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        done = [args.out / f"{name}_s{s}" / "summary.json" for s in args.seeds]
        runs = [json.loads(p.read_text()) for p in done if p.exists()]
        if not runs:
            lines.append(f"| {name} | - | 0 | not run | not run | - |")
            continue
        mode = np.array([r["final_eval"]["return_mode"] for r in runs])
        stoch = np.array([r["final_eval"]["return_stochastic"] for r in runs])
        k = runs[0].get("algo_config", {}).get("K", "-")
        wall = np.mean([r["wall_time_s"] for r in runs])
        lines.append(
            f"| {name} | {k} | {len(runs)} | {mode.mean():.1f} [{mode.min():.1f}, {mode.max():.1f}] | "
            f"{stoch.mean():.1f} [{stoch.min():.1f}, {stoch.max():.1f}] | {wall:.0f} |"
        )
    unfinished = []
    for name in VARIANTS:
        for s in args.seeds:
            d = args.out / f"{name}_s{s}"
            if not (d / "summary.json").exists() and (d / "eval.csv").exists():
                rows = (d / "eval.csv").read_text().strip().splitlines()
                if len(rows) > 1:
                    last = rows[-1].split(",")
                    unfinished.append(f"| {name} | {s} | {int(float(last[0]))} | {float(last[3]):.1f} | {float(last[1]):.1f} |")
    if unfinished:
        lines += [
            "",
            "Runs that had not reached 20k steps when this table was written (last evaluation):",
            "",
            "| variant | seed | env steps | return, mode | return, stochastic |",
            "|---|---|---|---|---|",
            *unfinished,
        ]
    missing = [f"{n}_s{s}" for n in VARIANTS for s in args.seeds if not (args.out / f"{n}_s{s}" / "eval.csv").exists()]
    if missing:
        lines += ["", f"Not started: {', '.join(missing)}."]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
