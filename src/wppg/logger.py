"""Run logging: CSV files (train.csv, eval.csv) and TensorBoard event files in a run directory."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends rows keyed by env step. On resume, rows past the checkpoint's step are dropped so
    the logs match the restored state."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        from tensorboardX import SummaryWriter

        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            for name in ("train.csv", "eval.csv"):
                _truncate(self.dir / name, resume_step)
        self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=resume_step)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        path = self.dir / f"{kind}.csv"
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        for k, v in values.items():
            self.tb.add_scalar(f"{kind}/{k}", float(v), step)

    def close(self) -> None:
        self.tb.close()


def _truncate(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and float(r[0]) <= last_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def read_csv(path: str | Path) -> dict[str, list[float]]:
    """Columns of a run's CSV file as lists of floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0].keys() if rows else [])}
