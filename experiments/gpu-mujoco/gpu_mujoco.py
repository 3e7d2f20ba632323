"""WPPG-I at the paper's K = 32 on MuJoCo with vmapped seeds on one accelerator: returns and env steps/s.

    python experiments/gpu-mujoco/gpu_mujoco.py --out runs/gpu_mujoco                      # Hopper + HalfCheetah, 5 seeds, 100k
    python experiments/gpu-mujoco/gpu_mujoco.py --out /tmp/g --tiny --envs Hopper-v5       # seconds, on a CPU: checks the path

For each env and preset (`default`: the library's WPPG-I with its default projection, 'energy'
('ot' before 2026-12-02); `paper`: the paper's shared-latent projection), all seeds train in one
process with their updates vmapped across seeds (`wppg.multiseed`), K = 32 and entropy M = L = 16
unless told otherwise. Every seed writes an ordinary run directory OUT/<env>/<label>/seed<k>/, labelled `wppg-i-K32` or
`wppg-i-paper-K32` (`-auto-tau` added with `--tau auto`, `-bf16` with `--precision bf16`): the
harness's names with K, so that `wppg report OUT runs/mujoco-cpu` keeps them apart from the
`mujoco-cpu` suite's K = 8 runs. The wall time, env steps/s (all seeds together and per seed), ms
per gradient step and returns (final and mean of the last 5 evaluations) go to OUT/gpu_mujoco.json
and OUT/gpu_mujoco.md.

Without an accelerator it refuses full-size runs (they take hours per seed on a CPU) unless
`--allow-cpu`; `--tiny` (small networks, K = 4, 300 env steps) runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PRESET_LABELS = {"default": "wppg-i", "paper": "wppg-i-paper"}
"""The benchmark harness's names of the presets' algorithms (run labels add K, see `label`)."""
LAST = 5
"""Evaluations averaged by the end-of-training return (as `wppg report`)."""
TINY: dict[str, Any] = {
    "steps": 300, "K": 4, "entropy_M": 4, "entropy_L": 4, "hidden": [16, 16], "batch_size": 16,
    "buffer_size": 1000, "learning_starts": 100, "eval_every": 100, "eval_episodes": 1, "log_every": 100,
}  # fmt: skip
"""Sizes of `--tiny`: a few seconds per env and preset on a CPU (most of it compilation)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/gpu_mujoco"), help="run directories and the result files")
    p.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    p.add_argument("--presets", nargs="+", choices=sorted(PRESET_LABELS), default=["default", "paper"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="trained together, vmapped")
    p.add_argument("--steps", type=int, default=None, help="env steps per seed (default 100000; --tiny: 300)")
    p.add_argument("--K", type=int, default=None, help="action samples per state (default: the paper's 32)")
    p.add_argument("--entropy-ml", type=int, default=None, help="entropy estimator M = L (default 16)")
    p.add_argument("--tau", default=None, help="temperature: a number or 'auto' (default: the preset's, 1e-4)")
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="layer widths (default 256 256)")
    p.add_argument(
        "--precision",
        choices=("float32", "bf16"),
        default=None,
        help="the networks' matrix products (default float32; bf16 uses a GPU's tensor cores, experiments/performance/notes.md)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-starts", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None, help="default 5000")
    p.add_argument("--eval-episodes", type=int, default=None, help="default 10")
    p.add_argument("--tiny", action="store_true", help="tiny networks and budgets (a check of the path, not a result)")
    p.add_argument("--allow-cpu", action="store_true", help="run full sizes even without an accelerator")
    p.add_argument("--overwrite", action="store_true", help="replace run directories that exist")
    p.add_argument("--progress", action="store_true", help="a progress bar per env and preset")
    return p.parse_args(argv)


def hyperparameters(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """(env steps per seed, agent keywords other than the preset) from the flags."""
    base: dict[str, Any] = dict(TINY) if args.tiny else {"steps": 100_000}
    base.setdefault("eval_every", 5000)
    base.setdefault("eval_episodes", 10)
    base.setdefault("log_every", 1000)
    base["checkpoint_every"] = 10_000
    flags = {
        "steps": args.steps, "K": args.K, "hidden": args.hidden, "batch_size": args.batch_size,
        "learning_starts": args.learning_starts, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
        "precision": args.precision,
    }  # fmt: skip
    base.update({k: v for k, v in flags.items() if v is not None})
    if args.entropy_ml is not None:
        base["entropy_M"] = base["entropy_L"] = args.entropy_ml
    if args.tau is not None:
        base["tau"] = args.tau if args.tau == "auto" else float(args.tau)
    steps = int(base.pop("steps"))
    if "hidden" in base:
        base["hidden"] = tuple(base["hidden"])
    return steps, base


def last_mean(eval_csv: Path, key: str, n: int = LAST) -> float | None:
    """Mean of `key` over the last n evaluations of an eval.csv (a step logged twice counts once)."""
    from wppg.logger import read_csv

    if not eval_csv.exists():
        return None
    curve = read_csv(eval_csv)
    by_step = dict(zip(curve.get("step", []), curve.get(key, []), strict=False))
    kept = [by_step[s] for s in sorted(by_step)][-n:]
    return float(np.mean(kept)) if kept else None


def label(preset: str, hp: dict[str, Any]) -> str:
    """The runs' label in reports: the harness's name of the algorithm, K, a learned tau and bf16."""
    k = hp.get("K", 32)  # both presets keep the paper's K = 32
    tail = ("-auto-tau" if hp.get("tau") == "auto" else "") + ("-bf16" if hp.get("precision") == "bf16" else "")
    return f"{PRESET_LABELS[preset]}-K{k}" + tail


def run_one(env_id: str, preset: str, seeds: list[int], steps: int, hp: dict[str, Any], out: Path,
            *, progress: bool, command: str) -> dict[str, Any]:  # fmt: skip
    """Train the seeds of one env and preset together; the record of the JSON file."""
    from wppg.multiseed import make_seed_agents, train_agents

    name = label(preset, hp)
    run_root = out / env_id / name
    agents = make_seed_agents("wppg-i", env_id, seeds, run_root, preset=preset, total_steps=steps, **hp)
    for a in agents:  # the report labels the runs by these, like the harness's runs
        a.trainer.meta.update(bench_algo=name, bench_budget=steps)
    t0 = time.perf_counter()
    results = train_agents(agents, steps, progress=progress, command=command)
    wall = time.perf_counter() - t0
    summary = json.loads((Path(results[0]["run_dir"]) / "summary.json").read_text())
    per_seed = []
    for r in results:
        eval_csv = Path(r["run_dir"]) / "eval.csv"
        per_seed.append({
            "seed": r["seed"], "run_dir": r["run_dir"],
            "final_mode": r["final_eval"].get("return_mode"),
            "final_stochastic": r["final_eval"].get("return_stochastic"),
            f"last{LAST}_mode": last_mean(eval_csv, "return_mode"),
            f"last{LAST}_stochastic": last_mean(eval_csv, "return_stochastic"),
        })  # fmt: skip
    cfg = agents[0].algo_config
    return {
        "env": env_id, "label": name, "preset": preset, "coupling": cfg.coupling, "K": cfg.K,
        "entropy_M": cfg.entropy_M, "entropy_L": cfg.entropy_L, "tau": cfg.tau, "hidden": list(cfg.hidden),
        "precision": cfg.precision,
        "seeds": seeds, "steps_per_seed": steps,
        "wall_s": wall,  # compilation, evaluations and checkpoints included
        "env_steps_per_s_total": steps * len(seeds) / wall,
        "env_steps_per_s_per_seed": steps / wall,
        "ms_per_gradient_step": summary.get("ms_per_gradient_step"),  # per seed: vmapped call time / seeds
        "update_share": summary["update_time_s"] / summary["wall_time_s"] if summary.get("wall_time_s") else None,
        "runs": per_seed,
        "mean_final_mode": float(np.mean([r["final_mode"] for r in per_seed])),
        f"mean_last{LAST}_mode": float(np.mean([r[f"last{LAST}_mode"] for r in per_seed])),
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    """The result file in words: one row per env and preset."""
    lines = [
        "# WPPG-I on MuJoCo, vmapped seeds on one device",
        "",
        f"Device: {result['device']}; jax {result['jax']}. Command: `{result['command']}`.",
        "",
        (
            "Env steps/s: all seeds together, wall time of the whole run (compilation, evaluations and checkpoints "
            f"included). Returns: mode, mean over seeds of the final evaluation and of each run's last {LAST}."
        ),
        "",
        (
            "| env | runs | coupling | K | seeds | steps per seed | wall (s) | env steps/s | ms per gradient step "
            f"| final return | last {LAST} |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['env']} | {r['label']} | {r['coupling']} | {r['K']} | {len(r['seeds'])} | {r['steps_per_seed']:,} "
            f"| {r['wall_s']:.0f} | {r['env_steps_per_s_total']:.1f} | {r['ms_per_gradient_step'] or float('nan'):.2f} "
            f"| {r['mean_final_mode']:.1f} | {r[f'mean_last{LAST}_mode']:.1f} |"
        )
    lines += [
        "",
        f"Per-seed returns and run directories: {result['json']}. Tables with CIs: `wppg report {result['out']}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu" and not (args.tiny or args.allow_cpu):
        print("gpu_mujoco: no accelerator (JAX sees only the CPU); full sizes take hours per seed here. "
              "Use --tiny to check the path, or --allow-cpu to run anyway.", file=sys.stderr)  # fmt: skip
        return 2
    steps, hp = hyperparameters(args)
    args.out.mkdir(parents=True, exist_ok=True)
    for env_id in args.envs:
        for preset in args.presets:
            d = args.out / env_id / label(preset, hp)
            if d.exists():
                if not args.overwrite:
                    print(f"gpu_mujoco: {d} exists (pass --overwrite to replace it)", file=sys.stderr)
                    return 2
                shutil.rmtree(d)
    command = "python experiments/gpu-mujoco/gpu_mujoco.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {
        "device": f"{device.platform}: {getattr(device, 'device_kind', '?')} (x{jax.device_count()})",
        "jax": jax.__version__, "command": command, "out": str(args.out),
        "json": str(args.out / "gpu_mujoco.json"), "runs": [],
    }  # fmt: skip
    for env_id in args.envs:
        for preset in args.presets:
            rec = run_one(env_id, preset, list(args.seeds), steps, hp, args.out,
                          progress=args.progress, command=command)  # fmt: skip
            result["runs"].append(rec)
            sps, n = rec["env_steps_per_s_total"], len(args.seeds)
            print(f"{env_id} {rec['label']}: {sps:.1f} env steps/s over {n} seeds, "
                  f"final return {rec['mean_final_mode']:.1f}", flush=True)  # fmt: skip
            # Written after every env and preset, so a run stopped later keeps what is done.
            (args.out / "gpu_mujoco.json").write_text(json.dumps(result, indent=2))
            (args.out / "gpu_mujoco.md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
