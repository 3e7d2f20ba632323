"""Paired by seed: the cheap default's WPPG-I runs (experiments/cheap-default/runs, or a campaign's
--out) against the mujoco-cpu suite's WPPG-I (preset "cpu") and SAC of the same seeds, on every env
both have: final return and mean of the last 5 evaluations (policy's mode), paired differences with
bootstrap CIs, and the probability of improvement (experiments/tools/paired.py); then the cost per env
step (speed_cost.json) and the returns at equal compute (the curves read at the env steps that each
configuration's measured cost buys in SAC's time).

    python experiments/cheap-default/compare.py [NEW_DIR]            # print, and write paired-*.json
    python experiments/cheap-default/compare.py --write-page         # also rewrite the results page's tables
    python experiments/cheap-default/compare.py --check              # exit 1 if the page's tables are stale

The results page (docs/results/cheap-default.md) holds `tables()` between its markers; tests/test_docs.py
checks that it is the generated one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from wppg.bench.report import RunRecord, mean_ci

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "tools"))
import paired  # noqa: E402

HERE = Path(__file__).resolve().parent
SUITE = ROOT / "experiments" / "mujoco-cpu" / "runs"
PAGE = ROOT / "docs" / "results" / "cheap-default.md"
START, END = "<!-- cheap-default-tables:start -->", "<!-- cheap-default-tables:end -->"
METRIC, LAST = "return_mode", 5


def _ci(values: list[float]) -> str:
    m, lo, hi = mean_ci(np.asarray(values, float))
    return f"{m:+.0f} [{lo:+.0f}, {hi:+.0f}]" if np.isfinite(lo) else f"{m:+.0f}"


def tables(new: Path = HERE / "runs") -> str:
    """Two Markdown tables: the returns of the paired seeds per env, and the paired statistics of the
    default against the `cpu` preset (difference with its CI, probability of improvement)."""
    _, cheap = paired.side(f"{new}:wppg-i")
    _, suite = paired.side(f"{SUITE}:wppg-i")
    _, sac = paired.side(f"{SUITE}:sac")
    vs_suite, vs_sac = paired.paired_table(suite, cheap, METRIC, LAST), paired.paired_table(sac, cheap, METRIC, LAST)
    if not vs_suite:
        raise FileNotFoundError(f"no finished WPPG-I run under {new} pairs with the suite's")
    lines = [
        "| env | seeds | final: default | final: `cpu` preset | final: SAC | last 5: default | last 5: `cpu` preset | last 5: SAC |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for env, t in vs_suite.items():
        s, sac_rows = t["stats"], {r["seed"]: r for r in vs_sac[env]["rows"]}
        seeds = ", ".join(str(r["seed"]) for r in t["rows"])
        sac_mean = {k: np.mean([sac_rows[r["seed"]][f"a_{k}"] for r in t["rows"]]) for k in ("final", "last")}
        lines.append(
            f"| {env} | {seeds} | {s['final']['mean_b']:.0f} | {s['final']['mean_a']:.0f} | {sac_mean['final']:.0f} "
            f"| {s['last']['mean_b']:.0f} | {s['last']['mean_a']:.0f} | {sac_mean['last']:.0f} |"
        )
    poi = paired.improvement(vs_suite)
    lines += [
        "",
        "| env | pairs | final: default - `cpu` [95% CI] | final: P(default > `cpu`) [95% CI] "
        "| last 5: default - `cpu` [95% CI] | last 5: P(default > `cpu`) [95% CI] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for env in [*vs_suite, "all envs"]:
        if env not in poi["final"]:
            continue
        cells = []
        for key in ("final", "last"):
            p = poi[key][env]
            diff = _ci([r[f"b_{key}"] - r[f"a_{key}"] for r in vs_suite[env]["rows"]]) if env in vs_suite else "-"
            ci = f" [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]" if p["ci"] else " (no CI)"
            cells += [diff, f"{p['p']:.2f}{ci}"]
        pairs = sum(poi["final"][env]["n"])
        lines.append(f"| {env} | {pairs} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", cost_table(), "", equal_compute_table(vs_suite, cheap, suite, sac)])


NAMES = {
    "sac": "SAC",
    "wppg": "WPPG, default",
    "wppg preset=cpu": 'WPPG, `preset="cpu"`',
    "wppg preset=gpu": 'WPPG, `preset="gpu"` (K = 32)',
    "wppg-i": "WPPG-I, default",
    "wppg-i preset=cpu": 'WPPG-I, `preset="cpu"`',
    "wppg-i preset=gpu": 'WPPG-I, `preset="gpu"` (K = 32)',
    "wpo": "WPO",
    "ppo": "PPO",
    "sbx-sac": "SBX SAC",
}


def cost_table(path: Path = HERE / "speed_cost.json") -> str:
    """The cost section of `wppg bench speed` (its --out JSON): ms per env step and x SAC's per round."""
    doc = json.loads(path.read_text())
    lines = [
        "| configuration | ms per env step (median) | x SAC's, per round | x SAC's, median | FLOP model, x SAC's |",
        "|---|---:|---|---:|---:|",
    ]
    for name, v in doc["cost"]["summary"].items():
        model = f"{v['model_ratio']:.2f}" if "model_ratio" in v else "-"
        rounds = " ".join(f"{x:.2f}" for x in v["ratios"])
        lines.append(
            f"| {NAMES.get(name, name)} | {v['median_ms_per_env_step']:.1f} | {rounds} | **{v['median_ratio']:.2f}** | {model} |"
        )
    return "\n".join(lines)


def last_evaluation(record: RunRecord, step: float) -> tuple[int, float]:
    """(env steps, return of the mode) of the run's last evaluation at or before `step`."""
    s, v = [(s, v) for s, v in zip(record.curve["step"], record.curve[METRIC], strict=True) if s <= step][-1]
    return int(s), float(v)


def equal_compute_table(
    vs_suite: dict, cheap: dict, suite: dict, sac: dict, path: Path = HERE / "speed_cost.json"
) -> str:
    """At the CPU time SAC's training loop spends on its budget, each WPPG-I configuration has taken
    budget / (its median cost ratio) env steps: the return there, mean over the paired seeds. The ratio
    is the cost run's (training loop only, evaluation left out), so this is the runs' curves read at
    the env steps that the measured cost buys, not a timed race."""
    summary = json.loads(path.read_text())["cost"]["summary"]
    sides = [("WPPG-I, default", cheap, summary["wppg-i"]["median_ratio"]),
             ('WPPG-I, `preset="cpu"`', suite, summary["wppg-i preset=cpu"]["median_ratio"])]  # fmt: skip
    head = " | ".join(f"{name}: env steps, return" for name, _, _ in sides)
    lines = [f"| env | seeds | SAC at its budget | {head} |", "|---|---|---:|" + "---:|" * len(sides)]
    for env, t in vs_suite.items():
        seeds = [r["seed"] for r in t["rows"]]
        budget = sac[(env, seeds[0])].budget
        cells = [f"{np.mean([sac[(env, s)].final[METRIC] for s in seeds]):.0f}"]
        for _, runs, ratio in sides:
            done, values = zip(*(last_evaluation(runs[(env, s)], budget / ratio) for s in seeds), strict=True)
            cells.append(f"{max(done) / 1e3:.0f}k, {np.mean(values):.0f}")
        lines.append(f"| {env} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_tables(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new", nargs="?", default=str(HERE / "runs"), help="the default's runs")
    p.add_argument("--write-page", action="store_true", help=f"rewrite the tables of {PAGE.name}")
    p.add_argument("--check", action="store_true", help="exit 1 if the page's tables are not the generated ones")
    args = p.parse_args(argv)
    generated, text = tables(Path(args.new)), PAGE.read_text()
    if args.check:
        if page_tables(text) != generated:
            print(f"stale tables in {PAGE}: run {__file__} --write-page", file=sys.stderr)
            return 1
        return 0
    for reference in ("wppg-i", "sac"):
        print(f"\n===== the default WPPG-I (B) against the suite's {reference} (A) =====")
        paired.main([f"{SUITE}:{reference}", f"{args.new}:wppg-i", "--json", str(HERE / f"paired-{reference}.json")])
    print(f"\n{generated}")
    if args.write_page:
        head, rest = text.split(START, 1)
        PAGE.write_text(f"{head}{START}\n{generated}\n{END}{rest.split(END, 1)[1]}")
        print(f"wrote the tables of {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
