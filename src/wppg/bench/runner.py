"""The benchmark driver: prepare each run's directory, run the unfinished ones in parallel
worker processes (local backend) or Ray tasks, report progress, and summarise.

Layout of OUT: `bench_spec.json` (the resolved spec, its runs and the command; see `record_spec`), `machine.json`
(the driver's machine) and one directory per run, `OUT/<env>/<algo>/seed<k>/`, as written by
`wppg train`, plus `bench.json` (the run), `machine.json` (where it ran), `worker.log` and, if it
failed, `error.txt`. A second invocation skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wppg.bench.machine import describe_machine
from wppg.bench.outcomes import LOG_FILE, Outcome, Pending, Progress, finish
from wppg.bench.spec import Run, Spec, SpecError
from wppg.bench.worker import BOOT, RUN_FILE, read_json, run_state, worker_environment
from wppg.rundir import write_json

__all__ = [
    "EXPORT_SKIP",
    "LOG_FILE",
    "Outcome",
    "Pending",
    "Progress",
    "RunConflictError",
    "export_finished",
    "finish",
    "prepare",
    "run_local",
    "run_suite",
]


class RunConflictError(RuntimeError):
    """A run directory already holds a run with other settings than the spec asks for."""


def _normalised(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def resolved_configs(run: Run) -> dict[str, dict[str, Any]]:
    """The algorithm and training configs this version builds for `run` (as `wppg train` writes
    them to config.json): the spec's hyperparameters over the preset over the config defaults."""
    from wppg import registry
    from wppg.agent import split_hyperparameters
    from wppg.config import TrainConfig

    variant, kwargs = run.agent_arguments()
    kwargs = dict(kwargs)
    preset, seed = kwargs.pop("preset", None), kwargs.pop("seed")  # None: the backend's, as the agent
    entry = registry.get(variant)
    algo_kwargs, train_kwargs = split_hyperparameters(variant, {**entry.preset(preset), **kwargs})
    algo = entry.make_config(**algo_kwargs).to_dict()
    train = TrainConfig(**{**train_kwargs, "seed": seed}).to_dict()
    return _normalised({"algo_config": algo, "train_config": train})


def config_changes(saved: dict[str, Any], run: Run) -> dict[str, tuple[Any, Any]]:
    """Fields whose value in a run's saved config.json differs from what this version would use for
    `run` now (`resolved_configs`): a default changed since the run started. A field the saved config
    lacks was added later: it counts as its config class's `FIELDS_ADDED` value (what the code did
    before it existed), or not at all if the class names none. The step budget (which a later
    invocation may extend) does not count."""
    from wppg import registry

    now = resolved_configs(run)
    variant, _ = run.agent_arguments()
    added = {"algo_config": getattr(registry.get(variant).config_cls, "FIELDS_ADDED", {}), "train_config": {}}
    changed = {}
    for part in ("algo_config", "train_config"):
        given = saved.get(part)
        old = {**added[part], **(given if isinstance(given, dict) else {})}
        for k, v in now[part].items():
            if k in old and k != "total_steps" and _normalised(old[k]) != v:
                changed[k] = (old[k], v)
    return changed


def check_configs(spec: Spec) -> None:
    """Build the configs of every (algorithm, env) of `spec` as its runs would (the config
    dataclasses' own checks: types, ranges), so that a bad hyperparameter fails before any run;
    raises `SpecError` naming the algorithm and env."""
    from wppg.algorithms import ConfigError

    seen = set()
    for run in spec.runs():
        if run.external or (run.algo, run.env_id) in seen:
            continue
        seen.add((run.algo, run.env_id))
        try:
            resolved_configs(run)
        except (ConfigError, TypeError, ValueError) as e:
            raise SpecError(f"spec {spec.name!r}: {run.algo} on {run.env_id}: {e}") from None


def prepare(run: Run, out: Path, command: str) -> tuple[str, Path]:
    """Check the run's directory against the spec and write its bench.json; returns its state."""
    run_dir = run.directory(out)
    existing = read_json(run_dir / RUN_FILE)
    if existing is not None:
        old = existing.get("run") if isinstance(existing.get("run"), dict) else {}
        if _normalised(old.get("hyperparameters")) != _normalised(run.hyperparameters):
            raise RunConflictError(
                f"{run_dir} holds a run with other hyperparameters ({old.get('hyperparameters')}) than the spec "
                f"asks for ({run.hyperparameters}): use another --out, or delete that run directory"
            )
    elif (run_dir / "config.json").exists():
        raise RunConflictError(
            f"{run_dir} holds a run that the harness did not start (no {RUN_FILE}): use another --out"
        )
    saved = read_json(run_dir / "config.json")
    if saved is not None and not run.external:
        changed = config_changes(saved, run)
        if changed:
            raise RunConflictError(
                f"{run_dir} holds a run made under other defaults than this version's: "
                + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in changed.items())
                + ". Its results would not be the spec's as this version runs it: use another --out, or move that run away"
            )
    state = run_state(run_dir, run.steps)
    if state != "finished":
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_FILE, {"run": run.to_dict(), "command": command})
    return state, run_dir


# --- local backend --------------------------------------------------------------------------------
def _pick_cores(usage: dict[int, int], n: int, others: dict[int, int] | None = None) -> list[int]:
    """The n least-used cores: each run gets its own while workers * cpus <= cores. `others` counts the
    runs of other drivers pinned to each core (`_other_workers_cores`); only `usage` records the pick."""
    others = others or {}
    chosen = sorted(usage, key=lambda c: (usage[c] + others.get(c, 0), c))[: min(n, len(usage))]
    for c in chosen:
        usage[c] += 1
    return sorted(chosen)


def _pick_free_cores(usage: dict[int, int], n: int, exclude: set[int]) -> list[int]:
    """`_pick_cores` counting the cores the workers of other drivers hold now (not the pids in `exclude`)."""
    return _pick_cores(usage, n, _other_workers_cores(exclude, set(usage)))


def _other_workers_cores(exclude: set[int], cores: set[int], proc: Path = Path("/proc")) -> dict[int, int]:
    """How many benchmark workers of other drivers (`python -c BOOT` processes of any `wppg bench run` on
    this machine; not the pids in `exclude`) are pinned to each of `cores`, read from `proc` (Linux; {}
    where there is none). A worker allowed on all of `cores` is not pinned and holds none. Without this,
    two drivers started side by side would both pin their first run to core 0."""
    count: dict[int, int] = {}
    if not proc.is_dir():
        return count
    marker = BOOT.encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes():
                continue
            status = (entry / "status").read_text()
        except OSError:  # it ended meanwhile, or is not ours to read
            continue
        allowed = next(
            (line.split(":", 1)[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list")), ""
        )
        pinned = set(_parse_cpu_list(allowed)) & cores
        if pinned != cores:
            for c in pinned:
                count[c] = count.get(c, 0) + 1
    return count


def _parse_cpu_list(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5] (the kernel's list format)."""
    cores: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cores += range(int(lo), int(hi) + 1)
        elif part.strip():
            cores.append(int(part))
    return cores


def _spawn_pinned(
    argv: list[str], env_for: Callable[[list[int]], dict[str, str]], log: Any, pick: Callable[[], list[int]] | None
) -> tuple[subprocess.Popen, list[int]]:
    """Start a worker pinned to the cores `pick()` returns (unpinned where `pick` is None). Drivers
    started side by side each see the others' workers in /proc (`_other_workers_cores`) only once
    those are pinned: so the pick, the start and the pinning happen under one lock shared by every
    driver on this machine, and the driver pins the new process itself before letting go of it
    (the worker's own pinning in BOOT comes too late for the next driver's pick), and it lets go only
    once the new process's command line shows in /proc (`_await_command_line`)."""
    with _cores_lock() if pick is not None else contextlib.nullcontext():
        mine = pick() if pick is not None else []
        proc = subprocess.Popen(argv, env=env_for(mine), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if mine and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(proc.pid, set(mine))
            except OSError:  # it ended already; its own pinning (BOOT) stands otherwise
                pass
            _await_command_line(proc, argv)
    return proc, mine


def _await_command_line(proc: subprocess.Popen, argv: list[str], timeout: float = 2.0) -> None:
    """Wait until /proc shows `argv` as `proc`'s command line (or it has ended, or `timeout` seconds).
    Popen returns once the exec has begun, but the kernel sets the new command line a little later:
    in that window /proc/<pid>/cmdline reads empty, and another driver's pick would not count this
    worker (`_other_workers_cores` recognises workers by their command line)."""
    entry = Path("/proc") / str(proc.pid) / "cmdline"
    want = b"".join(os.fsencode(a) + b"\0" for a in argv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if entry.read_bytes() == want:
                return
        except OSError:  # no /proc here, or the process ended meanwhile
            return
        time.sleep(0.001)


@contextlib.contextmanager
def _cores_lock() -> Iterator[None]:
    """An exclusive lock on a file in the temporary directory, shared by all drivers on this machine
    (none where fcntl is missing or the file cannot be opened, e.g. another user's)."""
    try:
        import fcntl

        f = open(Path(tempfile.gettempdir()) / "wppg-bench-cores.lock", "a")  # noqa: SIM115 -- closed below
    except (ImportError, OSError):
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def run_local(pending: list[Pending], workers: int, progress: Progress, pin: bool = True) -> list[Outcome]:
    """Run each pending run in its own `python -c BOOT` process, at most `workers` at a time, each
    pinned to `run.resources.cpus` cores of its own (shared only when workers exceed cores)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    usage = dict.fromkeys(cores, 0)
    queue = list(pending)
    active: dict[int, tuple[subprocess.Popen, Pending, float, list[int], Any]] = {}
    outcomes: list[Outcome] = []
    try:
        while queue or active:
            while queue and len(active) < workers:
                p = queue.pop(0)
                log = open(p.run_dir / LOG_FILE, "a")  # noqa: SIM115 -- closed when its process ends
                pick = functools.partial(_pick_free_cores, usage, p.run.resources.cpus, set(active))
                proc, mine = _spawn_pinned(
                    [sys.executable, "-c", BOOT, str(p.run_dir)],
                    functools.partial(worker_environment, p.run, driver=os.getpid()),
                    log,
                    pick if pin and usage else None,
                )
                active[proc.pid] = (proc, p, time.perf_counter(), mine, log)
                progress.started(
                    p, f" (pid {proc.pid}, cpu {','.join(map(str, mine))})" if mine else f" (pid {proc.pid})"
                )
            time.sleep(0.2)
            for pid in [pid for pid, a in active.items() if a[0].poll() is not None]:
                proc, p, t0, mine, log = active.pop(pid)
                log.close()
                for c in mine:
                    usage[c] -= 1
                o = finish(p, proc.returncode, time.perf_counter() - t0)
                outcomes.append(o)
                progress.ended(o, p.run_dir)
    except KeyboardInterrupt:
        for proc, *_ in active.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, *_ in active.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    return outcomes


# --- the driver -----------------------------------------------------------------------------------
def record_spec(out: Path, spec: Spec, runs: list[Run], command: str) -> None:
    """Write OUT/bench_spec.json: `spec`, `source` and `command` of this invocation, and `runs`. An
    invocation of the same spec file (same name and source) into an OUT that has a record keeps the
    earlier invocations' runs (a run of the same name takes this invocation's entry) and lists every
    invocation's command in `commands`, so a campaign run piecewise (--envs, --seeds) is recorded whole."""
    path = out / "bench_spec.json"
    record: dict[str, Any] = {"command": command, "commands": [command], "spec": spec.to_dict(), "source": spec.source}
    entries = [r.to_dict() for r in runs]
    old = read_json(path) or {}
    before = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    if old.get("source") == spec.source and before.get("name") == spec.name:
        replaced = {r.name for r in runs} | {None}  # None: an entry that no longer parses is dropped
        entries = [e for e in old.get("runs", []) if _entry_name(e) not in replaced] + entries
        record["commands"] = [*(old.get("commands") or [old.get("command", "")]), command]
    write_json(path, {**record, "runs": entries})


def _entry_name(entry: Any) -> str | None:
    """A recorded run's name, or None for an entry that is not a run."""
    try:
        return Run.from_dict(entry).name
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def run_suite(
    spec: Spec,
    out: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    ray_shared: str = "auto",
    command: str = "",
    echo: Callable[[str], None] = print,
) -> list[Outcome]:
    """Run every unfinished run of `spec` into `out`; returns the outcome of each run (finished,
    skipped or failed). A failed run is reported and leaves its error in its directory; the
    others go on."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}: use 'local' or 'ray'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = spec.runs()
    check_configs(spec)
    record_spec(out, spec, runs, command)
    write_json(out / "machine.json", describe_machine())

    start = time.perf_counter()
    outcomes: list[Outcome] = []
    pending: list[Pending] = []
    for run in runs:
        try:
            state, run_dir = prepare(run, out, command)
        except RunConflictError as e:
            outcomes.append(Outcome(run, "failed", error=str(e)))
            echo(f"FAILED {run.name}: {e}")
            continue
        if state == "finished":
            summary = read_json(run_dir / "summary.json") or {}
            final = summary.get("final_eval")
            outcomes.append(Outcome(run, "skipped", final_eval=final if isinstance(final, dict) else {}))
            echo(f"skipping {run.name}: finished ({summary.get('env_steps')} >= {run.steps} steps)")
        else:
            pending.append(Pending(run, run_dir, state))
    echo(f"bench {spec.name}: {len(runs)} runs, {len(runs) - len(pending)} already finished or refused, {len(pending)} to run "
         f"({backend} backend, {workers} worker{'s' if workers > 1 else ''}) into {out}")  # fmt: skip
    progress = Progress(len(pending), echo)
    if pending:
        if backend == "local":
            outcomes += run_local(pending, workers, progress)
        else:
            from wppg.bench.ray_backend import run_ray

            outcomes += run_ray(pending, workers, progress, out, address=address, shared=ray_shared)
    echo(summarise(outcomes, time.perf_counter() - start))
    return outcomes


def summarise(outcomes: list[Outcome], wall_s: float) -> str:
    """The closing lines: counts, wall time and the failed runs."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("finished", "skipped", "failed")}
    head = (
        f"bench: {len(outcomes)} runs: {count['finished']} finished now, {count['skipped']} already finished (skipped), "
        f"{count['failed']} failed; {wall_s:.0f} s"
    )
    lines = [head]
    lines += [f"  failed: {o.run.name}: {o.error}" for o in outcomes if o.status == "failed"]
    return "\n".join(lines)


# --- export ---------------------------------------------------------------------------------------
# What a finished run keeps when exported: everything but its checkpoints, TensorBoard events, the
# worker's console log and the lock (the bulk of a finished run's size).
EXPORT_SKIP = ("checkpoints", "tb", LOG_FILE, ".lock")


def export_finished(src: str | Path, dest: str | Path) -> list[Path]:
    """Copy the finished runs under `src` (directories with bench.json and a summary.json at their budget)
    to the same relative paths under `dest`, without `EXPORT_SKIP`, plus `src`'s bench_spec.json and
    machine.json; returns the runs copied. The copies are small enough to commit, `wppg report` reads them,
    and a `wppg bench run` into `dest` (or into a folder they are copied back to) skips them as finished,
    so a benchmark can be resumed or extended from them. Unfinished runs are left out."""
    import shutil

    from wppg.bench.spec import Run

    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise FileNotFoundError(f"no folder {src}")
    copied = []
    for bench_file in sorted(src.rglob(RUN_FILE)):
        run_dir = bench_file.parent
        info = read_json(bench_file) or {}
        try:
            steps = Run.from_dict(info["run"]).steps
        except (KeyError, TypeError, ValueError):
            continue
        if run_state(run_dir, steps) != "finished":
            continue
        target = dest / run_dir.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for item in run_dir.iterdir():
            if item.name in EXPORT_SKIP:
                continue
            if item.is_dir():
                shutil.copytree(item, target / item.name, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target / item.name)
        copied.append(target)
    for name in ("bench_spec.json", "machine.json"):
        if (src / name).is_file() and copied:
            shutil.copy2(src / name, dest / name)
    return copied
