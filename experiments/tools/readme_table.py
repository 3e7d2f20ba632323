"""The README's results table, generated from exported runs (never typed by hand).

    python experiments/tools/readme_table.py            # rewrite the table between the markers (TARGETS)
    python experiments/tools/readme_table.py --check    # exit 1 if a target's table is not the generated one

One row per env and algorithm of `RUNS` (the mujoco-cpu campaign): the final evaluation return with the
policy's mode, mean and 95% percentile-bootstrap CI over seeds (`wppg.bench.report.mean_ci`, the report's
statistics), the seeds, the env steps, and the wall-clock seconds per 1000 env steps (the runs' mean, one
CPU core per run) with its ratio to SAC's on the same env. tests/test_readme.py checks the README against it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from wppg.bench.report import discover, mean_ci

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "experiments" / "mujoco-cpu" / "runs"
README = ROOT / "README.md"
TARGETS = (README, ROOT / "docs" / "results" / "mujoco-cpu.md")
"""The files that hold the table between the markers."""
ALGOS = ("sac", "wppg", "wppg-i", "wppg-i-paper")
"""The campaign's four configurations (its `-ot` labels are a handful of runs of a former default)."""
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def _ci(values: np.ndarray) -> str:
    m, lo, hi = mean_ci(values)
    return f"{m:.0f} [{lo:.0f}, {hi:.0f}]" if np.isfinite(lo) else f"{m:.0f}"


def table(runs: Path = RUNS) -> str:
    """The Markdown table of the finished runs under `runs`."""
    done = [r for r in discover([runs]) if r.finished and r.algo in ALGOS]
    if not done:
        raise FileNotFoundError(f"no finished runs of {', '.join(ALGOS)} under {runs}")
    lines = [
        "| env | algorithm | final return, mean [95% CI] | seeds | env steps | s per 1k env steps (x SAC) |",
        "|---|---|---|---|---|---|",
    ]
    for env in sorted({r.env_id for r in done}):
        cost: dict[str, float] = {}
        rows = []
        for algo in (a for a in ALGOS if any(r.env_id == env and r.algo == a for r in done)):
            mine = [r for r in done if r.env_id == env and r.algo == algo]
            returns = np.array([r.final["return_mode"] for r in mine], float)
            rates = [float(r.summary["steps_per_s"]) for r in mine if r.summary.get("steps_per_s")]
            cost[algo] = float(np.mean([1000.0 / v for v in rates])) if rates else float("nan")
            budget = max(r.budget or r.env_steps for r in mine)
            rows.append((algo, _ci(returns), len(mine), budget))
        for algo, ret, seeds, budget in rows:
            ratio = f" ({cost[algo] / cost['sac']:.1f}x)" if "sac" in cost and np.isfinite(cost[algo]) else ""
            lines.append(f"| {env} | {algo} | {ret} | {seeds} | {budget:,} | {cost[algo]:.1f}{ratio} |")
    return "\n".join(lines)


def replace_between_markers(text: str, new: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"the file lacks the markers {START} and {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{new}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a target's table differs from the generated one")
    args = p.parse_args(argv)
    generated, stale = table(), []
    for path in TARGETS:
        text = path.read_text()
        new = replace_between_markers(text, generated)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"stale results table in {', '.join(map(str, stale))}: run {__file__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
