"""The training engine, once: what happens at which env step, for one run or N runs in lock-step.

`run(engine, until_step)` drives an `Engine`: a single-seed trainer (`wppg.trainer.BaseTrainer` is
the engine of its one run) or N seeds whose acting and updates are vmapped
(`wppg.multiseed.MultiSeedTrainer`). It owns everything about the order of things: the
run-directory locks, the stop on SIGINT / SIGTERM, the env steps and update calls, the train.csv
rows (every `log_every` env steps, from the logging windows of each run), the evaluations (every
`eval_every` env steps and at the end), the checkpoints (every `checkpoint_every` env steps and at
the end), the summary and its cost figures. An engine says only how its runs act and update,
through the public hooks of `Engine`; each run offers the public hooks of `Run`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wppg.callbacks import BaseCallback
from wppg.config import TrainConfig, require
from wppg.evaluation import is_due
from wppg.rundir import RunLock, RunLockedError, check_writable

__all__ = ["Engine", "Run", "TrainingInterrupted", "run", "stop_on_signals"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM at a consistent point, after writing a checkpoint
    (when it has a run directory); `signum` says which signal, `env_steps` where it stopped."""

    def __init__(self, message: str, signum: int, env_steps: int):
        super().__init__(message)
        self.signum, self.env_steps = signum, env_steps


class StopRequest:
    """What `stop_on_signals` records: the first signal received, or None."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While inside, SIGINT and SIGTERM only set `request.signum`: the loop finishes its env step
    and update, checkpoints, and stops. A second signal interrupts at once (KeyboardInterrupt).
    Outside the main thread signals cannot be caught, and nothing changes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once, without a checkpoint")
        request.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Run(Protocol):
    """One run as the engine drives it (`wppg.trainer.BaseTrainer`): its counters, logging windows,
    evaluations and files are the schedule's to advance."""

    config: TrainConfig
    run_dir: Path | None
    env_steps: int
    iterations: int
    target_steps: int | None
    last_eval: dict[str, float]
    log_metrics: dict[str, list[float]]
    recent_returns: deque[float]

    def check_target(self, until_step: int) -> None:
        """Warn about a target the run's config makes pointless (before any file is touched)."""

    def in_warmup(self) -> bool:
        """Whether the next env step is one of the random warm-up (`learning_starts`)."""
        ...

    def open(self) -> None:
        """Make the envs and the run logger if they do not exist yet."""

    def log(self, kind: str, row: dict[str, float]) -> None:
        """Append a row to the run's `kind` log (train.csv, eval.csv) at the current env step."""

    def check_row(self, row: dict[str, float]) -> None:
        """Give the algorithm's warning about a train.csv row (once per run)."""

    def policy_spread(self, actor_params: Any) -> dict[str, float]:
        """The diagnostics of the policy's spread added to each train.csv row."""
        ...

    def evaluate_and_log(self) -> dict[str, float]:
        """Evaluate the current policy and log the eval.csv row."""
        ...

    def save(self, path: str | Path) -> Path:
        """Checkpoint the whole run."""
        ...

    def write_summary(self, costs: dict[str, Any]) -> None:
        """Write summary.json with these cost figures."""

    def flush(self) -> None:
        """Flush the run's logs to disk."""


class Engine(Protocol):
    """How the runs of one schedule act and learn. The runs' counters, logging windows,
    evaluations and files are the schedule's to drive; an engine touches only their agent states,
    keys and data."""

    @property
    def runs(self) -> Sequence[Run]:
        """The runs, in lock-step (same config but the seed); the first one sets the cadence."""
        ...

    def begin(self) -> None:
        """Called once the runs' envs and loggers exist, before the first env step."""

    def step_envs(self) -> list[list[tuple[float, int]]]:
        """One env step of every run (act, step, store); each run's finished episodes (return, length)."""
        ...

    def update_due(self) -> bool:
        """Whether an update call follows the env step just taken."""
        ...

    def update_input(self) -> Any:
        """What the next update call consumes (drawn outside its timing)."""
        ...

    def update(self, inputs: Any) -> list[dict[str, float]]:
        """The update call (timed): each run's metrics; the new states are not kept yet."""
        ...

    def keep(self, metrics: list[dict[str, float]]) -> None:
        """Keep the new states, or raise `TrainingDivergedError` (a non-finite metric) and keep none."""

    def grad_steps_per_update(self) -> int:
        """Gradient steps of one update call, per run."""
        ...

    def policy_params(self, i: int) -> Any:
        """What run i's `algo.act` takes, from the current state."""
        ...

    def sync(self) -> None:
        """Make each run's `state` and `key` current (before evaluations and checkpoints)."""

    def extra_costs(self) -> dict[str, Any]:
        """Entries the engine adds to summary.json's cost figures."""
        ...


_TRAINING: set[Path] = set()
"""The run directories that a `run` call of this process is writing now."""


@contextlib.contextmanager
def _claim(run_dir: Path) -> Iterator[None]:
    """This run's hold on its directory within the process (the file lock is per process): a
    second run of this process on the same directory is refused, not let in."""
    path = run_dir.resolve()
    if path in _TRAINING:
        raise RunLockedError(
            f"{run_dir} is being written by another run of this process: two runs must not write one run "
            "directory; give each its own run_dir"
        )
    _TRAINING.add(path)
    try:
        yield
    finally:
        _TRAINING.discard(path)


def run(
    engine: Engine,
    until_step: int,
    progress: bool = True,
    label: str | None = None,
    callback: BaseCallback | None = None,
    eval_at_end: bool = True,
) -> dict[str, Any]:
    """Run the schedule until `until_step` env steps per run; returns the cost figures of the
    call (also written into each run directory's summary.json).

    Each run directory is locked against a second writer for the call (`wppg.rundir.RunLock`,
    and within the process, against a second run). `callback` (`wppg.callbacks`, already bound
    to its agent) is called at the start, after each env step, after each evaluation and at the
    end; a False from it ends the call at that step as if `until_step` were reached.
    `eval_at_end=False` skips the evaluation at the end of the call (the periodic ones still run).
    SIGINT / SIGTERM stop the loop after the current env step and update: every run with a run
    directory is checkpointed at that consistent point and `TrainingInterrupted` (a
    KeyboardInterrupt) is raised. A signal during the end of the call (final evaluation,
    checkpoint, summary) lets that end finish, then raises `TrainingInterrupted`.
    """
    runs = list(engine.runs)
    dirs = [r.run_dir for r in runs if r.run_dir is not None]
    shared = sorted({str(d) for d in dirs if [e.resolve() for e in dirs].count(d.resolve()) > 1})
    require(not shared, f"each run needs its own run directory; {', '.join(shared)} is given to several")
    runs[0].check_target(until_step)
    with contextlib.ExitStack() as locks:
        for r in runs:
            r.target_steps = int(until_step)
            if r.run_dir is not None:
                locks.enter_context(_claim(r.run_dir))
                locks.enter_context(RunLock(check_writable(r.run_dir)))
        return _loop(engine, runs, until_step, progress, label, callback, eval_at_end)


def _eval_str(r: Run) -> str:
    return f"{r.last_eval['return_mode']:.1f}" if r.last_eval else "-"


def _loop(
    engine: Engine,
    runs: list[Run],
    until_step: int,
    progress: bool,
    label: str | None,
    callback: BaseCallback | None,
    eval_at_end: bool,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    lead, c = runs[0], runs[0].config
    steps = {r.env_steps for r in runs}
    require(len(steps) == 1, f"the seeds' runs are at different env steps {sorted(steps)}; they must be in lock-step")
    for r in runs:
        r.open()
    engine.begin()
    start_steps, start_time, start_cpu = lead.env_steps, time.perf_counter(), time.process_time()
    update_time, update_calls, grad_steps_done = 0.0, 0, 0

    def sps() -> float:
        return (lead.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)

    def evals() -> str:
        return " ".join(_eval_str(r) for r in runs)

    bar = tqdm(
        total=until_step,
        initial=lead.env_steps,
        unit="step",
        disable=not progress,
        mininterval=1.0,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )
    if label:
        bar.set_description(label)
    eta = TimeEstimate(lead.env_steps, until_step, c.learning_starts if lead.in_warmup() else lead.env_steps)
    shown: dict[str, str] = {}

    def show(refresh: bool = True, **entries: str) -> None:
        shown.update(entries)
        bar.set_postfix_str(
            ", ".join([eta.text(lead.env_steps)] + [f"{k}={v}" for k, v in shown.items()]), refresh=refresh
        )

    show(refresh=False)
    stopped = False  # by the callback
    saved_at: int | None = None
    with stop_on_signals() as stop:
        if callback is not None:
            callback.on_training_start({"engine": engine, "runs": runs, "until_step": until_step}, globals())
        try:
            while lead.env_steps < until_step and stop.signum is None and not stopped:
                finished = engine.step_envs()
                for r, f in zip(runs, finished):
                    r.recent_returns.extend(ret for ret, _ in f)
                    r.env_steps += c.n_envs
                    r.iterations += 1
                bar.update(c.n_envs)
                if progress and eta.due():
                    show(refresh=False)

                metrics = None
                if engine.update_due():
                    inputs = engine.update_input()
                    t0 = time.perf_counter()
                    metrics = engine.update(inputs)
                    update_time += time.perf_counter() - t0
                    update_calls += 1
                    grad_steps_done += engine.grad_steps_per_update()
                    engine.keep(metrics)
                    for r, m in zip(runs, metrics):
                        for name, v in m.items():
                            r.log_metrics.setdefault(name, []).append(v)

                if is_due(lead.env_steps, c.log_every, c.n_envs) and lead.log_metrics:
                    rate = sps()
                    for i, r in enumerate(runs):
                        row = {name: float(np.mean(v)) for name, v in r.log_metrics.items()}
                        row.update(r.policy_spread(engine.policy_params(i)))
                        row["steps_per_s"] = rate
                        if r.recent_returns:
                            row["train_return"] = float(np.mean(r.recent_returns))
                        r.log("train", row)
                        r.check_row(row)
                        r.log_metrics.clear()
                    show(refresh=False, sps=f"{rate:.0f}", eval=evals())
                if is_due(lead.env_steps, c.eval_every, c.n_envs):
                    engine.sync()
                    for r in runs:
                        r.evaluate_and_log()
                    show(sps=f"{sps():.0f}", eval=evals())
                    if callback is not None and not callback.on_evaluation(lead.last_eval):
                        stopped = True
                if c.checkpoint_every and is_due(lead.env_steps, c.checkpoint_every, c.n_envs):
                    _save_all(engine, runs)
                    saved_at = lead.env_steps
                if callback is not None:
                    callback.update_locals({"env_steps": lead.env_steps, "finished": finished, "metrics": metrics})
                    if not callback.on_step():
                        stopped = True
        finally:
            bar.close()
            engine.sync()
        if stop.signum is not None:
            _interrupted(engine, runs, stop.signum)
        # The end of the call, under the same signal handler: a signal now lets it finish. The
        # checkpoint comes first, so that a failing evaluation loses nothing of the run.
        to_evaluate = [r for r in runs if eval_at_end and r.last_eval.get("step") != r.env_steps]
        if to_evaluate:
            if saved_at != lead.env_steps:
                _save_all(engine, runs)
            for r in to_evaluate:
                r.evaluate_and_log()
            if callback is not None:
                callback.on_evaluation(lead.last_eval)
        if to_evaluate or saved_at != lead.env_steps:
            _save_all(engine, runs)  # with the evaluation's counters
        elapsed = time.perf_counter() - start_time
        costs = {
            "wall_time_s": elapsed,
            # The process's CPU time (all its threads) over the same span: unlike the wall time, it does not
            # grow while the process is stopped or waits for a core it shares with other work.
            "cpu_time_s": time.process_time() - start_cpu,
            # Per run: each advanced this many env steps per second of the shared wall time.
            "steps_per_s": (lead.env_steps - start_steps) / max(elapsed, 1e-9),
            # Cost figures of this call; the first update call includes compilation. One call serves
            # every run: per gradient step of one, its time is divided by their number.
            "update_time_s": update_time,
            "update_calls": update_calls,
            "ms_per_gradient_step": 1e3 * update_time / max(grad_steps_done * len(runs), 1),
            **engine.extra_costs(),
        }
        for r in runs:
            if r.run_dir is not None:
                r.write_summary(costs)
            r.flush()
        if callback is not None:
            callback.on_training_end()
        if stop.signum is not None:
            name, at_step = signal.Signals(stop.signum).name, lead.env_steps
            raise TrainingInterrupted(
                f"{name} during the end of the run: it is complete at env step {at_step}, its checkpoint and "
                "summary written",
                stop.signum,
                at_step,
            )
    return costs


class TimeEstimate:
    """The progress bar's estimate of the time left, from the env steps/s measured since the random
    warm-up ended (its uniform actions and no updates run far faster than training); unknown ('?')
    until a second of training has been measured. A call that ends within the warm-up is timed
    by its own rate."""

    def __init__(self, steps: int, until_step: int, warmup_end: int, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        now = clock()
        self.until_step, self.warmup_end = until_step, warmup_end
        whole_call = steps >= warmup_end or until_step <= warmup_end
        self.since: tuple[int, float] | None = (steps, now) if whole_call else None
        self.last_shown = now

    def due(self) -> bool:
        """Whether a second has passed since the estimate was last shown."""
        now = self.clock()
        if now - self.last_shown < 1.0:
            return False
        self.last_shown = now
        return True

    def text(self, steps: int) -> str:
        now = self.clock()
        if self.since is None:
            if steps < self.warmup_end:
                return "eta ? (warm-up)"
            self.since = (steps, now)
        done, elapsed = steps - self.since[0], now - self.since[1]
        if done <= 0 or elapsed < 1.0:
            return "eta ?"
        rate = done / elapsed
        return f"eta {_clock(max(self.until_step - steps, 0) / rate)}, {rate:.1f} step/s"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _save_all(engine: Engine, runs: list[Run]) -> list[Path]:
    """Checkpoint every run that has a run directory; returns the paths."""
    if not any(r.run_dir is not None for r in runs):
        return []
    engine.sync()
    return [r.save(r.run_dir / "checkpoints" / "last.npz") for r in runs if r.run_dir is not None]


def _interrupted(engine: Engine, runs: list[Run], signum: int) -> None:
    """Checkpoint (with run directories) and raise `TrainingInterrupted`."""
    name = signal.Signals(signum).name
    paths = _save_all(engine, runs)
    for r in runs:
        r.flush()
    dirs = [r.run_dir for r in runs if r.run_dir is not None]
    if len(runs) == 1:
        if dirs:
            where = f"; checkpoint written to {paths[0]}, continue with `wppg resume {dirs[0]}`"
        else:
            where = "; the agent holds that state (save it with agent.save)"
    else:
        where = f"; checkpoints written in {' '.join(map(str, dirs))}" if dirs else ""
    steps = runs[0].env_steps
    raise TrainingInterrupted(f"{name}: training stopped at env step {steps}{where}", signum, steps)
