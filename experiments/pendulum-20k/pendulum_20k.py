"""Pendulum-v1 at 20k env steps: wppg, wppg-i (cpu preset), SAC with fixed and self-tuned alpha.

    python experiments/pendulum-20k/pendulum_20k.py --seeds 0 1 2 --workers 2 --out runs/pendulum_20k

A thin wrapper over the benchmark harness: `wppg bench run experiments/pendulum-20k/spec.toml` (each
run in its own process pinned to one core; finished runs are skipped, interrupted ones resume),
then `wppg report` into experiments/pendulum-20k/report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wppg.cli import main as wppg

SPEC = Path(__file__).with_suffix(".toml")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/pendulum_20k"))
    p.add_argument("--report", type=Path, default=Path("experiments/pendulum-20k/report.md"))
    p.add_argument("--report-only", action="store_true", help="only aggregate the runs already in --out")
    args = p.parse_args()
    if not args.report_only:
        seeds = [str(s) for s in args.seeds]
        wppg(["bench", "run", str(SPEC), "--out", str(args.out), "--workers", str(args.workers), "--seeds", *seeds])
    return wppg(
        [
            "report",
            str(args.out),
            "--out",
            str(args.report),
            "--figures",
            str(args.report.parent / "figures" / "pendulum_20k"),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
