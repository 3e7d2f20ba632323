"""Ray backend: each run is a Ray task asking for its CPUs (and GPUs); the task starts the same
worker process as the local backend.

Where the task's node sees the driver's OUT (a probe task checks once; `shared='yes'|'no'`
forces it), the worker writes into the run directory in place. Otherwise the task gets the run
directory's files (bench.json, and the checkpoint of an interrupted run), runs in a temporary
directory, and returns every file; the driver mirrors them into OUT/<env>/<algo>/seed<k>/.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from wppg.bench.outcomes import LOG_FILE, Outcome, Pending, Progress, finish
from wppg.bench.spec import BenchError, Run
from wppg.bench.worker import BOOT, worker_environment
from wppg.rundir import write_file

TOKEN_FILE = ".wppg-bench-token"


def pack(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by path relative to it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mirror(files: dict[str, bytes], folder: Path) -> None:
    """Make `folder` hold exactly `files` (what the task's copy of the run directory held at its end)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(folder.rglob("*"), reverse=True):
        rel = str(p.relative_to(folder))
        if p.is_file() and rel not in files:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)


def sees_token(token_path: str, token: str) -> bool:
    """Whether this process reads the driver's token file: the driver's OUT is shared with it."""
    try:
        return Path(token_path).read_text() == token
    except OSError:
        return False


def run_task(
    run_dict: dict[str, Any], run_dir: str, files: dict[str, bytes] | None, token_path: str, token: str
) -> dict[str, Any]:
    """The body of a run's Ray task: the worker process, in place (`files` None) or in a
    temporary copy of the run directory whose files come back in the result."""
    run = Run.from_dict(run_dict)
    tmp = None
    if files is None:
        if not sees_token(token_path, token):
            raise BenchError(
                f"the task on {platform.node()} does not see the driver's {token_path}: use --ray-shared no"
            )
        folder = Path(run_dir)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="wppg-bench-"))
        folder = tmp / "run"
        mirror(files, folder)
    try:
        with open(folder / LOG_FILE, "a") as log:
            rc = subprocess.run(
                [sys.executable, "-c", BOOT, str(folder)], env=worker_environment(run, None),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
            ).returncode  # fmt: skip
        return {"rc": rc, "node": platform.node(), "files": pack(folder) if tmp is not None else None}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _probe(token_path: str, token: str) -> bool:
    return sees_token(token_path, token)


def run_ray(
    pending: list[Pending],
    workers: int | None,
    progress: Progress,
    out: Path,
    *,
    address: str | None = None,
    shared: str = "auto",
) -> list[Outcome]:
    """Run the pending runs as Ray tasks (at most `workers` in flight); uses the Ray instance of
    this process if there is one, else connects to `address` (None: start a local one)."""
    try:
        import ray
    except ImportError as e:
        raise BenchError("the ray backend needs Ray: pip install -e '.[ray]'") from e
    if shared not in ("auto", "yes", "no"):
        raise ValueError(f"shared must be 'auto', 'yes' or 'no', got {shared!r}")
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    token_path, token = str((out / TOKEN_FILE).resolve()), uuid.uuid4().hex
    Path(token_path).write_text(token)
    if shared == "auto":
        in_place = bool(ray.get(ray.remote(num_cpus=0)(_probe).remote(token_path, token)))
    else:
        in_place = shared == "yes"
    task = ray.remote(run_task)
    queue = list(pending)
    futures: dict[Any, tuple[Pending, float]] = {}
    outcomes: list[Outcome] = []
    limit = workers or len(queue)
    try:
        while queue or futures:
            while queue and len(futures) < limit:
                p = queue.pop(0)
                files = None if in_place else pack(p.run_dir)
                options: dict[str, Any] = {"num_cpus": p.run.resources.cpus, "max_retries": 0}
                if p.run.resources.gpus:
                    options["num_gpus"] = p.run.resources.gpus
                ref = task.options(**options).remote(
                    p.run.to_dict(), str(p.run_dir.resolve()), files, token_path, token
                )
                futures[ref] = (p, time.perf_counter())
                progress.started(p, " (ray task" + (", in place)" if in_place else ", files returned to the driver)"))
            done, _ = ray.wait(list(futures), num_returns=1)
            for ref in done:
                p, t0 = futures.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task itself failed (node lost, worker crashed)
                    write_file(p.run_dir / "error.txt", f"the Ray task failed: {type(e).__name__}: {e}\n")
                    result = {"rc": -1, "files": None}
                if result.get("files") is not None:
                    mirror(result["files"], p.run_dir)
                o = finish(p, result["rc"], time.perf_counter() - t0)
                outcomes.append(o)
                progress.ended(o, p.run_dir)
    except KeyboardInterrupt:
        for ref in futures:
            ray.cancel(ref, force=True)
        raise
    finally:
        Path(token_path).unlink(missing_ok=True)
        if started_ray:
            ray.shutdown()
    return outcomes
