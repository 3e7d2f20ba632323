"""experiments/tools/untrained_vs_final.py: the untrained policy's evaluations are those up to learning_starts,
and a zero-action episode is played to its end."""

from __future__ import annotations

from pathlib import Path

import pytest

from wppg.bench.report import RunRecord


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("untrained_vs_final")


def _record(steps: list[int], returns: list[float]) -> RunRecord:
    return RunRecord(Path("."), "Ant-v5", "sac", 0, steps[-1], steps[-1], True, {"return_mode": returns[-1]},
                     curve={"step": steps, "return_mode": returns})  # fmt: skip


def test_untrained_is_the_best_evaluation_up_to_learning_starts_and_the_fall_the_lowest_after(script):
    record = _record([5000, 10000, 15000, 20000], [900.0, 920.0, 80.0, 500.0])
    assert script.untrained_and_after(record, 10000) == (920.0, 80.0)
    assert script.untrained_and_after(record, 0) is None  # no evaluation before learning starts
    assert script.untrained_and_after(record, 20000) is None  # none after


def test_zero_action_episodes_run_to_their_end(script):
    returns = script.zero_action_returns("Pendulum-v1", 2)
    assert len(returns) == 2
    # Pendulum's reward is at most 0 and an episode lasts 200 steps of at least -16.3 each
    assert all(-16.3 * 200 <= r <= 0 for r in returns)
    assert returns[0] != returns[1]  # different starting angles
