"""The replay buffer: same transitions and draws as storing each field apart, across wrap-around and checkpoints."""

import numpy as np

from wppg.replay import FIELDS, ReplayBuffer


def transitions(rng, n, obs_dim=3, act_dim=2):
    return {
        "obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminated": (rng.uniform(size=n) < 0.3).astype(np.float32),
    }


def test_buffer_draws_the_transitions_of_a_per_field_reference_across_wraparound():
    rng, cap = np.random.default_rng(0), 10
    buf, ref = ReplayBuffer(cap, 3, 2), {name: [] for name in FIELDS}
    for n in (4, 1, 7, 3):  # 15 transitions into 10 slots: the first 5 are overwritten
        t = transitions(rng, n)
        buf.add(**t)
        for name in FIELDS:
            ref[name].append(t[name])
    ref = {name: np.concatenate(v)[-cap:] for name, v in ref.items()}
    # The ring holds transitions 5..14, transition i in slot i % cap.
    order = np.arange(5, 15) % cap
    for name in FIELDS:
        np.testing.assert_array_equal(buf.data[name][order], ref[name])
    assert buf.size == cap and buf.ptr == 15 % cap
    batch = buf.sample(np.random.default_rng(1), 3, 4)
    idx = np.random.default_rng(1).integers(0, cap, size=(3, 4))
    for name in FIELDS:
        assert batch[name].shape == (3, 4, *ref[name].shape[1:])
        np.testing.assert_array_equal(batch[name], buf.data[name][idx])


def test_buffer_state_round_trip_is_exact_and_field_by_field():
    rng = np.random.default_rng(2)
    buf = ReplayBuffer(20, 3, 2)
    buf.add(**transitions(rng, 13))
    state = buf.state()
    assert set(state) == {*FIELDS, "ptr", "size"} and state["reward"].shape == (13,) and state["obs"].shape == (13, 3)
    other = ReplayBuffer(20, 3, 2)
    other.load_state(state)
    assert (other.ptr, other.size) == (buf.ptr, buf.size)
    a, b = buf.sample(np.random.default_rng(3), 2, 8), other.sample(np.random.default_rng(3), 2, 8)
    for name in FIELDS:
        np.testing.assert_array_equal(a[name], b[name])
