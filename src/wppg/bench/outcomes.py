"""What the backends of the benchmark driver share: a run to start (`Pending`), how it ended
(`Outcome`, read back by `finish` from its directory) and the progress lines. A module of its own,
so that `wppg.bench.runner` and `wppg.bench.ray_backend` both import it and not each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wppg.bench.spec import Run
from wppg.bench.worker import ERROR_FILE, RC_IN_USE, read_json, run_state
from wppg.rundir import write_file

LOG_FILE = "worker.log"


@dataclass
class Outcome:
    """How one run of an invocation ended: finished, skipped (already finished) or failed."""

    run: Run
    status: str
    wall_s: float = 0.0
    final_eval: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class Pending:
    run: Run
    run_dir: Path
    state: str  # 'new' or 'resume'


def finish(p: Pending, rc: int, wall_s: float) -> Outcome:
    """Outcome of a run whose process exited with `rc`; a crash without error.txt gets one."""
    summary = read_json(p.run_dir / "summary.json") or {}
    if rc == 0 and run_state(p.run_dir, p.run.steps) == "finished":
        final = summary.get("final_eval")
        return Outcome(p.run, "finished", wall_s, final if isinstance(final, dict) else {})
    if rc == RC_IN_USE:  # another driver runs it now (two drivers on one --out): not a failure
        return Outcome(p.run, "skipped", wall_s, error="in use by another process (another driver on this --out)")
    error_path = p.run_dir / ERROR_FILE
    if not error_path.exists():
        log = p.run_dir / LOG_FILE
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        why = f"the worker process exited with code {rc}" + (" before reaching its budget" if rc == 0 else "")
        write_file(error_path, f"{why}; the end of {LOG_FILE}:\n\n{tail}")
    first = error_path.read_text(errors="replace").splitlines()
    return Outcome(p.run, "failed", wall_s, error=first[0] if first else "failed")


# --- progress output ------------------------------------------------------------------------------
def _fmt_eval(e: dict[str, Any]) -> str:
    if "return_mode" not in e:
        return "no evaluation"
    return f"return mode {e['return_mode']:.1f}, stochastic {e.get('return_stochastic', float('nan')):.1f}"


class Progress:
    """One line per started and per ended run, numbered over the runs this invocation starts."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.echo, self.count = total, echo, 0
        self.numbers: dict[str, int] = {}

    def started(self, p: Pending, where: str) -> None:
        self.count += 1
        self.numbers[p.run.name] = self.count
        what = "resuming" if p.state == "resume" else "starting"
        self.echo(f"[{self.count}/{self.total}] {what} {p.run.name}: {p.run.steps} steps{where}")

    def ended(self, o: Outcome, run_dir: Path) -> None:
        n = self.numbers.get(o.run.name, "?")
        if o.status == "skipped":
            self.echo(f"[{n}/{self.total}] skipped {o.run.name}: {o.error}")
        elif o.status == "finished":
            self.echo(f"[{n}/{self.total}] finished {o.run.name}: {_fmt_eval(o.final_eval)}; {o.wall_s:.0f} s")
        else:
            self.echo(
                f"[{n}/{self.total}] FAILED {o.run.name} after {o.wall_s:.0f} s: {o.error} (see {run_dir / ERROR_FILE})"
            )
