"""Checkpoints: exact resume, save/load round trips, atomic writes, the run-directory layout."""

from __future__ import annotations

import csv
import io
import json

import jax
import numpy as np
import pytest

import wppg
from wppg import checkpoint as ckpt
from wppg.agent import Agent, make_agent
from wppg.replay import FIELDS

N = 150
"""Steps before the save. Pendulum episodes last 200 steps, so the save falls mid-episode and the
resumed half crosses an episode end (a reset that draws from the restored env RNG); with
learning_starts=50 there are gradient steps both before and after the save."""


def _state_leaves(agent: Agent) -> list[tuple[str, np.ndarray]]:
    leaves = jax.tree_util.tree_leaves_with_path(agent.trainer.state)
    return [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in leaves]


def assert_same_training_state(expected: Agent, got: Agent) -> None:
    """Every leaf of the agent state (actor/critic/target parameters, optimiser states, extra,
    step), the replay buffer, the RNGs and the counters are bit-identical."""
    exp, new = _state_leaves(expected), _state_leaves(got)
    assert [p for p, _ in exp] == [p for p, _ in new], "the agent states have different structures"
    differ = [p for (p, a), (_, b) in zip(exp, new) if a.dtype != b.dtype or not np.array_equal(a, b)]
    assert not differ, f"{len(differ)} of {len(exp)} state leaves differ after resume, e.g. {differ[:6]}"
    assert got.num_timesteps == expected.num_timesteps
    assert got.trainer.iterations == expected.trainer.iterations
    eb, gb = expected.trainer.buffer, got.trainer.buffer
    assert (gb.size, gb.ptr) == (eb.size, eb.ptr)
    for name in FIELDS:
        assert np.array_equal(gb.data[name][: gb.size], eb.data[name][: eb.size]), f"replay buffer field {name} differs"
    assert np.array_equal(np.asarray(got.trainer.key), np.asarray(expected.trainer.key)), "the JAX training key differs"
    assert got.trainer.np_rng.bit_generator.state == expected.trainer.np_rng.bit_generator.state, (
        "the NumPy RNG differs"
    )
    assert np.array_equal(got.trainer.pool.obs, expected.trainer.pool.obs), "the envs' current observations differ"


def _check_exact_resume(variant: str, env_id: str, tiny, tmp_path, seed: int = 0) -> None:
    hyper = tiny(variant)
    straight = make_agent(variant, env_id, seed=seed, progress=False, **hyper).learn(2 * N)

    first = make_agent(variant, env_id, seed=seed, progress=False, **hyper).learn(N)
    assert int(first.trainer.state.step) > 0, (
        "no gradient step before the save: the test would not cover optimiser state"
    )
    assert first.trainer.pool.ep_length[0] > 0, "the save is not mid-episode: the test would not cover env snapshots"
    path = first.save(tmp_path / "half.npz")
    del first

    resumed = type(straight).load(path, progress=False)
    assert resumed.num_timesteps == N
    resumed.learn(N)

    assert straight.num_timesteps == resumed.num_timesteps == 2 * N
    assert int(resumed.trainer.state.step) == int(straight.trainer.state.step) > N
    assert_same_training_state(straight, resumed)


@pytest.mark.parametrize("variant", ["wppg"] + [pytest.param(v, marks=pytest.mark.full) for v in ("wppg-i", "sac")])
def test_exact_resume_pendulum(variant, tiny, tmp_path):
    """learn(2N) == learn(N); save; load; learn(N), bit for bit, for each algorithm."""
    _check_exact_resume(variant, "Pendulum-v1", tiny, tmp_path)


def test_exact_resume_with_auto_tau(tiny, tmp_path):
    """The same with a learned temperature (tau='auto', in the agent state) and the 'ot' projection."""
    _check_exact_resume("wppg-i", "Pendulum-v1", lambda v: tiny(v, tau="auto", coupling="ot"), tmp_path)


def test_exact_resume_mujoco(tiny, tmp_path):
    """The same on a MuJoCo env, whose physics state is not pickled with the env (see envs.snapshot)."""
    pytest.importorskip("mujoco")
    _check_exact_resume("sac", "InvertedPendulum-v5", tiny, tmp_path)


@pytest.mark.parametrize("variant", ["wppg", "sac"])
def test_save_load_untrained_agent(variant, tiny, tmp_path):
    """The smallest round trip: an agent that never trained (fresh optimiser states, no envs yet)."""
    agent = make_agent(variant, "Pendulum-v1", seed=1, progress=False, **tiny(variant))
    path = agent.save(tmp_path / "fresh.npz")
    loaded = Agent.load(path, progress=False)
    assert type(loaded) is type(agent)
    assert loaded.algo_config == agent.algo_config
    assert loaded.train_config == agent.train_config
    exp, got = _state_leaves(agent), _state_leaves(loaded)
    assert [p for p, _ in got] == [p for p, _ in exp]
    differ = [p for (p, a), (_, b) in zip(exp, got) if not np.array_equal(a, b)]
    assert not differ, f"state leaves differ after a save/load round trip: {differ[:6]}"


# --- one trained agent with a run directory, shared by the tests below --------------------------
RUN_STEPS = 120


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny):
    """A WPPG agent trained for RUN_STEPS steps with a run directory (train.csv rows every 50 steps)."""
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    agent = wppg.WPPG("Pendulum-v1", seed=7, run_dir=run_dir, progress=False, **tiny("wppg", log_every=50))
    agent.learn(RUN_STEPS)
    return agent, run_dir


def test_run_dir_layout(run):
    agent, d = run
    for name in ("checkpoints/last.npz", "eval.csv", "train.csv", "summary.json"):
        assert (d / name).is_file(), f"learn() with run_dir did not write {name}"
    summary = json.loads((d / "summary.json").read_text())
    assert summary["env_steps"] == RUN_STEPS
    assert summary["variant"] == "wppg"
    assert summary["gradient_steps"] == int(agent.trainer.state.step) > 0
    with open(d / "eval.csv", newline="") as f:
        evals = list(csv.DictReader(f))
    assert [float(r["step"]) for r in evals] == [RUN_STEPS]  # eval_every is large: only the final one
    assert np.isfinite(float(evals[0]["return_mode"]))
    with open(d / "train.csv", newline="") as f:
        train = list(csv.DictReader(f))
    assert [float(r["step"]) for r in train] == [50, 100]
    assert "critic_loss" in train[0]
    meta, _ = ckpt.load(d / "checkpoints" / "last.npz")
    assert meta["env_steps"] == RUN_STEPS and meta["variant"] == "wppg"


def test_load_from_run_directory(run):
    agent, d = run
    loaded = Agent.load(d, progress=False)  # a directory: reads d/checkpoints/last.npz
    assert isinstance(loaded, wppg.WPPG)
    assert loaded.num_timesteps == RUN_STEPS
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])


def test_round_trip_keeps_predictions_and_buffer(run, tiny, tmp_path):
    agent, _ = run
    path = agent.save(tmp_path / "agent.npz")
    loaded = wppg.WPPG.load(path, progress=False)

    obs = np.random.default_rng(1).uniform(-1, 1, (16, 3)).astype(np.float32)
    mode = agent.predict(obs, deterministic=True)[0]
    # The check can fail: a fresh agent (same seed, untrained) acts differently.
    fresh = wppg.WPPG("Pendulum-v1", seed=7, progress=False, **tiny("wppg", log_every=50))
    assert not np.array_equal(fresh.predict(obs, deterministic=True)[0], mode)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], mode)
    # One observation runs at batch 1, whose matrix kernels may round differently from batch 16's.
    np.testing.assert_allclose(loaded.predict(obs[0], deterministic=True)[0], mode[0], rtol=1e-6, atol=1e-6)
    assert loaded.predict(obs[0])[0].shape == (1,)

    assert loaded.num_timesteps == agent.num_timesteps == RUN_STEPS
    assert loaded.algo_config == agent.algo_config and loaded.train_config == agent.train_config
    b, lb = agent.trainer.buffer, loaded.trainer.buffer
    assert lb.size == b.size == RUN_STEPS and lb.ptr == b.ptr
    for name in FIELDS:
        np.testing.assert_array_equal(lb.data[name][: lb.size], b.data[name][: b.size], err_msg=name)
    assert np.any(lb.data["reward"][: lb.size] != 0)


def test_save_is_atomic(run, tmp_path, monkeypatch):
    """A save that fails midway leaves the previous checkpoint intact and no temporary file."""
    agent, _ = run
    path = tmp_path / "ckpt.npz"
    agent.save(path)
    good = path.read_bytes()
    real_savez = np.savez

    def savez_crashing_midway(file, *args, **kwargs):
        buf = io.BytesIO()
        real_savez(buf, *args, **kwargs)
        file.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half of a valid archive ...
        raise OSError("simulated crash: disk full")  # ... then the writer dies

    monkeypatch.setattr(ckpt.np, "savez", savez_crashing_midway)
    with pytest.raises(OSError, match="disk full"):
        agent.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == good, "a failed save modified the existing checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"], "a failed save left files behind"
    meta, tree = ckpt.load(path)
    assert meta["env_steps"] == RUN_STEPS
    assert int(tree["buffer"]["size"]) == RUN_STEPS
