"""The engine's progress bar: an estimate of the time left that the random warm-up does not skew."""

from __future__ import annotations

from wppg.schedule import TimeEstimate


def test_time_estimate_is_measured_after_the_warm_up():
    now = [0.0]
    eta = TimeEstimate(0, 1000, warmup_end=500, clock=lambda: now[0])
    now[0] = 1.0
    assert eta.text(400) == "eta ? (warm-up)"  # 400 steps/s of random actions say nothing of training
    now[0] = 2.0
    assert eta.text(500) == "eta ?"  # the warm-up ends: training is timed from here
    now[0] = 12.0
    assert eta.text(600) == "eta 00:40, 10.0 step/s"  # 100 steps in 10 s, 400 left


def test_a_call_within_the_warm_up_or_after_it_is_timed_from_its_start():
    now = [0.0]
    within = TimeEstimate(0, 400, warmup_end=500, clock=lambda: now[0])
    after = TimeEstimate(600, 4200, warmup_end=600, clock=lambda: now[0])
    now[0] = 10.0
    assert within.text(200) == "eta 00:10, 20.0 step/s"
    assert after.text(700) == "eta 05:50, 10.0 step/s"  # 3500 left
