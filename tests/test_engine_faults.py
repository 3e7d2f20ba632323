"""The engine's end of a run, run directories and locks under faults (issue 38: defects 3, 5, 6)."""

from __future__ import annotations

import os
import signal

import pytest

import wppg
from wppg import Agent
from wppg.checkpoint import load as load_checkpoint
from wppg.config import ConfigError
from wppg.logger import read_csv
from wppg.multiseed import MultiSeedTrainer
from wppg.rundir import RunDirError, RunLockedError
from wppg.schedule import TrainingInterrupted


def sac(tiny, run_dir=None, seed=0, **kw):
    return wppg.SAC("Pendulum-v1", seed=seed, run_dir=run_dir, progress=False, **tiny("sac"), **kw)


def final_evaluation_does(agent, action):
    """Make the evaluation at the end of the call (not the periodic ones) run `action` first."""
    original = agent.trainer.evaluate_and_log

    def evaluate_and_log():
        if agent.trainer.env_steps == agent.trainer.target_steps:
            action()
        return original()

    agent.trainer.evaluate_and_log = evaluate_and_log


# --- 3. a signal or a failure at the end of a run loses nothing -----------------------------------
def test_sigint_during_the_final_evaluation_lets_the_end_finish(tiny, tmp_path):
    agent = sac(tiny, tmp_path / "run")
    handler = signal.getsignal(signal.SIGINT)
    final_evaluation_does(agent, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt) as stopped:  # caught as such, so that a failure here stops no session
        agent.learn(80)
    assert isinstance(stopped.value, TrainingInterrupted) and "complete at env step 80" in str(stopped.value)
    meta, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz")
    assert meta["env_steps"] == 80 and meta["last_eval"]["step"] == 80
    assert (tmp_path / "run" / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # given back


def test_the_checkpoint_is_written_before_the_final_evaluation(tiny, tmp_path):
    agent = sac(tiny, tmp_path / "run")

    def fail():
        raise RuntimeError("the evaluation env broke")

    final_evaluation_does(agent, fail)
    with pytest.raises(RuntimeError, match="evaluation env broke"):
        agent.learn(80)
    meta, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz")
    assert meta["env_steps"] == 80


# --- 5. the API refuses a run directory that holds a run ------------------------------------------
def test_api_refuses_an_existing_run_unless_overwrite_or_resume(tiny, tmp_path):
    run = tmp_path / "run"
    sac(tiny, run).learn(60)
    before = (run / "checkpoints" / "last.npz").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run.*overwrite=True"):
        sac(tiny, run)
    assert (run / "checkpoints" / "last.npz").read_bytes() == before
    other = tmp_path / "other"
    sac(tiny, other).learn(60)
    with pytest.raises(RunDirError, match="already holds a run"):
        Agent.load(run / "checkpoints" / "last.npz", run_dir=other)
    resumed = Agent.load(run / "checkpoints" / "last.npz", run_dir=run, progress=False).learn(20)  # a resume
    assert resumed.num_timesteps == 80 and read_csv(run / "eval.csv")["step"] == [60.0, 80.0]
    sac(tiny, run, overwrite=True).learn(70)  # replaced: none of the old rows stay
    assert read_csv(run / "eval.csv")["step"] == [70.0]
    assert load_checkpoint(run / "checkpoints" / "last.npz")[0]["env_steps"] == 70


# --- 6. one run directory, one run ------------------------------------------------------------------
def test_two_seeds_in_one_run_dir_are_refused(tiny, tmp_path):
    agents = [sac(tiny, tmp_path / "run", seed=s) for s in (0, 1)]
    with pytest.raises(ConfigError, match="own run director"):
        MultiSeedTrainer(agents, progress=False)
    assert not (tmp_path / "run" / "eval.csv").exists()


@pytest.mark.filterwarnings("ignore:learning_starts")
def test_a_second_run_of_the_process_on_a_busy_run_dir_is_refused(tiny, tmp_path):
    first, second = sac(tiny, tmp_path / "run"), sac(tiny, tmp_path / "run", seed=1)
    with pytest.raises(RunLockedError, match="another run of this process"):
        first.learn(60, callback=lambda locals_, globals_: second.learn(10))
    first.learn(10)  # the claim ends with the call
