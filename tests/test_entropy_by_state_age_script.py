"""experiments/tools/entropy_by_state_age.py: the buffer's rows in the order they were stored (also after the
ring wrapped), and the table of a tiny saved agent, oldest states first."""

from __future__ import annotations

import math

import numpy as np
import pytest

import wppg
from wppg.replay import ReplayBuffer


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("entropy_by_state_age")


def _filled(capacity: int, n: int) -> ReplayBuffer:
    """A buffer of one-dimensional observations 0, 1, ..., n - 1 added in that order."""
    buffer = ReplayBuffer(capacity, obs_dim=1, act_dim=1)
    for i in range(n):
        buffer.add(obs=[[i]], action=[[0.0]], reward=[0.0], next_obs=[[i]], terminated=[False])
    return buffer


@pytest.mark.parametrize("n", [3, 5, 12])
def test_rows_come_oldest_first_before_and_after_the_ring_wraps(script, n):
    buffer = _filled(5, n)
    stored = buffer.data["obs"][script.stored_in_order(buffer), 0]
    np.testing.assert_array_equal(stored, np.arange(max(0, n - 5), n))


@pytest.mark.full
def test_table_of_a_saved_agent_has_one_row_per_age_group_and_the_whole_buffer(script, saved_tiny_agent):
    loaded = wppg.Agent.load(saved_tiny_agent("wppg-i"), progress=False)
    rows = script.entropy_by_age(loaded, groups=3, states=4, samples=32)
    assert [r.label for r in rows] == ["0-40", "40-80", "80-120", "whole buffer"]
    assert all(np.isfinite([r.knn_small, r.knn_all, r.knn_whitened_small, r.bound, r.std]).all() for r in rows)
    # one state, one dimension: the bound is the Gaussian's entropy at the samples' variance
    obs = loaded.trainer.buffer.data["obs"][:1]
    *_, bound, _, spectrum = script.spread_on(loaded, obs, samples=32, small=16)
    assert bound == pytest.approx(0.5 * math.log(2 * math.pi * math.e * spectrum[0] ** 2), rel=1e-5)
    assert all(r.std > 0 for r in rows)  # a stochastic policy, sampled per state
    # one action dimension: the covariance's one eigenvalue is the variance (ddof 1 against the std's 0)
    assert all(len(r.spectrum) == 1 and r.spectrum[0] == pytest.approx(r.std, rel=0.05) for r in rows)
    assert script.temperature_target(loaded) == pytest.approx(float(loaded.trainer.algo.entropy_target))
    with pytest.raises(ValueError, match="at least"):
        script.entropy_by_age(loaded, groups=3, states=4, samples=8)
