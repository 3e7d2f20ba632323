"""The training schedule, once: what happens at which env step, for one run or N runs in lock-step.

`learn(engine, until_step)` drives an `Engine`, which holds one trainer (`wppg.trainer`: one seed)
or several (`wppg.multiseed`: N seeds whose acting and updates are vmapped), and owns everything
about the order of things: the run-directory locks, the stop on SIGINT / SIGTERM, the env steps
and update calls, the train.csv rows (every `log_every` env steps, from the logging windows of
each trainer), the evaluations (every `eval_every` env steps and at the end), the checkpoints
(every `checkpoint_every` env steps and at the end), the summary and its cost figures. An engine
says only how its trainers act and update; a change of cadence is made here, for both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from wppg.algorithms.base import require
from wppg.evaluation import is_due
from wppg.rundir import RunLock, check_writable

if TYPE_CHECKING:
    from wppg.trainer import BaseTrainer

__all__ = ["Engine", "TrainingInterrupted", "learn", "stop_on_signals"]


class TrainingInterrupted(KeyboardInterrupt):
    """`learn` stopped on SIGINT or SIGTERM at a consistent point, after writing a checkpoint
    (when it has a run directory); `signum` says which signal, `env_steps` where it stopped."""

    def __init__(self, message: str, signum: int, env_steps: int):
        super().__init__(message)
        self.signum, self.env_steps = signum, env_steps


class _StopRequest:
    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_StopRequest]:
    """While inside, SIGINT and SIGTERM only set `request.signum`: the loop finishes its env step
    and update, checkpoints, and stops. A second signal interrupts at once (KeyboardInterrupt).
    Outside the main thread signals cannot be caught, and nothing changes."""
    request = _StopRequest()
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


class Engine(Protocol):
    """How the trainers of one schedule act and learn. The trainers' counters, logging windows,
    evaluations and files are the schedule's to drive; an engine touches only their agent states,
    keys and data."""

    trainers: Sequence[BaseTrainer]
    """The runs, in lock-step (same config but the seed); the first one sets the cadence."""

    def begin(self) -> None:
        """Called once the trainers' envs and loggers exist, before the first env step."""

    def step_envs(self) -> list[list[tuple[float, int]]]:
        """One env step of every trainer (act, step, store); each trainer's finished episodes."""
        ...

    def update_due(self) -> bool:
        """Whether an update call follows the env step just taken."""
        ...

    def update_input(self) -> Any:
        """What the next update call consumes (drawn outside its timing)."""
        ...

    def update(self, inputs: Any) -> list[dict[str, float]]:
        """The update call (timed): each trainer's metrics; the new states are not kept yet."""
        ...

    def keep(self, metrics: list[dict[str, float]]) -> None:
        """Keep the new states, or raise `TrainingDivergedError` (a non-finite metric) and keep none."""

    def grad_steps_per_update(self) -> int:
        """Gradient steps of one update call, per trainer."""
        ...

    def policy_params(self, i: int) -> Any:
        """What trainer i's `algo.act` takes, from the current state."""
        ...

    def sync(self) -> None:
        """Make each trainer's `state` and `key` current (before evaluations and checkpoints)."""

    def extra_costs(self) -> dict[str, Any]:
        """Entries the engine adds to summary.json's cost figures."""
        ...


def learn(engine: Engine, until_step: int, progress: bool = True, label: str | None = None) -> dict[str, Any]:
    """Run the schedule until `until_step` env steps per trainer; returns the cost figures of the
    call (also written into each run directory's summary.json).

    Each run directory is locked against a second writer for the call (`wppg.rundir.RunLock`).
    SIGINT / SIGTERM stop the loop after the current env step and update: every trainer with a
    run directory is checkpointed at that consistent point and `TrainingInterrupted` (a
    KeyboardInterrupt) is raised.
    """
    trainers = list(engine.trainers)
    trainers[0]._before_learn(until_step)
    with contextlib.ExitStack() as locks:
        for t in trainers:
            t.target_steps = int(until_step)
            if t.run_dir is not None:
                locks.enter_context(RunLock(check_writable(t.run_dir)))
        return _run(engine, trainers, until_step, progress, label)


def _run(
    engine: Engine, trainers: list[BaseTrainer], until_step: int, progress: bool, label: str | None
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    lead, c = trainers[0], trainers[0].config
    steps = {t.env_steps for t in trainers}
    require(len(steps) == 1, f"the seeds' runs are at different env steps {sorted(steps)}; they must be in lock-step")
    for t in trainers:
        t._open()
    engine.begin()
    start_steps, start_time, start_cpu = lead.env_steps, time.perf_counter(), time.process_time()
    update_time, update_calls, grad_steps_done = 0.0, 0, 0

    def sps() -> float:
        return (lead.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)

    def evals() -> str:
        return " ".join(t._eval_str() for t in trainers)

    bar = tqdm(
        total=until_step, initial=lead.env_steps, unit="step", disable=not progress, mininterval=1.0, dynamic_ncols=True
    )
    if label:
        bar.set_description(label)
    with stop_on_signals() as stop:
        try:
            while lead.env_steps < until_step and stop.signum is None:
                finished = engine.step_envs()
                for t, f in zip(trainers, finished):
                    t.recent_returns.extend(r for r, _ in f)
                    t.env_steps += c.n_envs
                    t.iterations += 1
                bar.update(c.n_envs)

                if engine.update_due():
                    inputs = engine.update_input()
                    t0 = time.perf_counter()
                    metrics = engine.update(inputs)
                    update_time += time.perf_counter() - t0
                    update_calls += 1
                    grad_steps_done += engine.grad_steps_per_update()
                    engine.keep(metrics)
                    for t, m in zip(trainers, metrics):
                        for name, v in m.items():
                            t.log_metrics.setdefault(name, []).append(v)

                if is_due(lead.env_steps, c.log_every, c.n_envs) and lead.log_metrics:
                    rate = sps()
                    for i, t in enumerate(trainers):
                        row = {name: float(np.mean(v)) for name, v in t.log_metrics.items()}
                        row.update(t.policy_spread(engine.policy_params(i)))
                        row["steps_per_s"] = rate
                        if t.recent_returns:
                            row["train_return"] = float(np.mean(t.recent_returns))
                        t._log("train", row)
                        t.check_row(row)
                        t.log_metrics.clear()
                    bar.set_postfix(sps=f"{rate:.0f}", eval=evals(), refresh=False)
                if is_due(lead.env_steps, c.eval_every, c.n_envs):
                    engine.sync()
                    for t in trainers:
                        t.evaluate_and_log()
                    bar.set_postfix(sps=f"{sps():.0f}", eval=evals())
                if c.checkpoint_every and is_due(lead.env_steps, c.checkpoint_every, c.n_envs):
                    _save_all(engine, trainers)
        finally:
            bar.close()
            engine.sync()
        if stop.signum is not None:
            _interrupted(engine, trainers, stop.signum)
    for t in trainers:
        if t.last_eval.get("step") != t.env_steps:
            t.evaluate_and_log()
    _save_all(engine, trainers)
    elapsed = time.perf_counter() - start_time
    costs = {
        "wall_time_s": elapsed,
        # The process's CPU time (all its threads) over the same span: unlike the wall time, it does not
        # grow while the process is stopped or waits for a core it shares with other work.
        "cpu_time_s": time.process_time() - start_cpu,
        # Per trainer: each advanced this many env steps per second of the shared wall time.
        "steps_per_s": (lead.env_steps - start_steps) / max(elapsed, 1e-9),
        # Cost figures of this learn call; the first update call includes compilation. One call
        # serves every trainer: per gradient step of one, its time is divided by their number.
        "update_time_s": update_time,
        "update_calls": update_calls,
        "ms_per_gradient_step": 1e3 * update_time / max(grad_steps_done * len(trainers), 1),
        **engine.extra_costs(),
    }
    for t in trainers:
        if t.run_dir is not None:
            t._write_summary(costs)
        if t.logger is not None:
            t.logger.tb.flush()
    return costs


def _save_all(engine: Engine, trainers: list[BaseTrainer]) -> list[Any]:
    """Checkpoint every trainer that has a run directory; returns the paths."""
    if not any(t.run_dir is not None for t in trainers):
        return []
    engine.sync()
    return [t.save(t.run_dir / "checkpoints" / "last.npz") for t in trainers if t.run_dir is not None]


def _interrupted(engine: Engine, trainers: list[BaseTrainer], signum: int) -> None:
    """Checkpoint (with run directories) and raise `TrainingInterrupted`."""
    name = signal.Signals(signum).name
    paths = _save_all(engine, trainers)
    for t in trainers:
        if t.logger is not None:
            t.logger.tb.flush()
    dirs = [t.run_dir for t in trainers if t.run_dir is not None]
    if len(trainers) == 1:
        if dirs:
            where = f"; checkpoint written to {paths[0]}, continue with `wppg resume {dirs[0]}`"
        else:
            where = "; the agent holds that state (save it with agent.save)"
    else:
        where = f"; checkpoints written in {' '.join(map(str, dirs))}" if dirs else ""
    steps = trainers[0].env_steps
    raise TrainingInterrupted(f"{name}: training stopped at env step {steps}{where}", signum, steps)
