"""Run logging: CSV files (train.csv, eval.csv) and TensorBoard event files in a run directory."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from wppg.rundir import open_append, write_file


class RunLogger:
    """Appends rows keyed by env step. On resume, rows past the checkpoint's step are dropped so
    the logs match the restored state.

    Rows are written by column name: a key that first appears in a later row (train_return once an
    episode has ended) extends the header, and the earlier rows get an empty cell there."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        from tensorboardX import SummaryWriter

        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            for name in ("train.csv", "eval.csv"):
                _truncate(self.dir / name, resume_step)
        self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=resume_step)
        self._headers: dict[str, list[str]] = {}

    def _header(self, path: Path) -> list[str]:
        if not path.exists() or path.stat().st_size == 0:
            return []
        with open(path, newline="") as f:
            return next(csv.reader(f), [])

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append one row of `values` at `step` to <kind>.csv and to TensorBoard."""
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        path = self.dir / f"{kind}.csv"
        try:
            self._write_row(kind, path, row)
        except OSError as e:
            raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
        for k, v in values.items():
            self.tb.add_scalar(f"{kind}/{k}", float(v), step)

    def _write_row(self, kind: str, path: Path, row: dict[str, float]) -> None:
        if kind not in self._headers:
            self._headers[kind] = self._header(path)
        header = self._headers[kind]
        new_keys = [k for k in row if k not in header]
        if new_keys and header:
            header = header + new_keys
            with open(path, newline="") as f:
                old = list(csv.DictReader(f))
            _rewrite(path, header, old)
        elif new_keys:
            header = list(row)
            _rewrite(path, header, [])
        self._headers[kind] = header
        with open_append(path) as f:
            csv.DictWriter(f, fieldnames=header, restval="").writerow(row)

    def close(self) -> None:
        self.tb.close()


def _rewrite(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write `rows` under `header` atomically (a crash keeps the old file; a link is replaced, not followed)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=header, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_file(path, text.getvalue())


def _truncate(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and float(r[0]) <= last_step]
    text = io.StringIO(newline="")
    csv.writer(text).writerows(kept)
    write_file(path, text.getvalue())


def read_csv(path: str | Path) -> dict[str, list[float]]:
    """Columns of a run's CSV file as lists of floats (NaN where a row has no value)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # An empty cell (a column that started later in the run) reads as NaN.
    keys = rows[0].keys() if rows else []
    return {k: [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in rows] for k in keys}
