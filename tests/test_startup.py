"""Start-up: each algorithm's initial state in one compiled call (the same values as built op by op),
and JAX's persistent compilation cache, on by default with an off switch."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import wppg
from wppg import compile_cache


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: wppg.SAC("Pendulum-v1", hidden=(16, 16), progress=False), marks=pytest.mark.full),
        lambda: wppg.WPPG("Pendulum-v1", policy="implicit", hidden=(16, 16), K=2, progress=False),
        pytest.param(lambda: wppg.WPO("Pendulum-v1", hidden=(16, 16), progress=False), marks=pytest.mark.full),
        lambda: wppg.PPO("Pendulum-v1", hidden=(16, 16), n_steps=64, n_minibatches=2, progress=False),
    ],
)
def test_init_in_one_call_equals_the_op_by_op_state(make):
    algo = make().algorithm
    key = jax.random.PRNGKey(3)
    jitted, eager = algo.init(key), algo.fresh_state(key)
    assert jax.tree.structure(jitted) == jax.tree.structure(eager)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_cache_dir_and_off_switch(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.DIR_ENV, str(tmp_path / "c"))
    assert compile_cache.default_dir() == tmp_path / "c"
    monkeypatch.delenv(compile_cache.DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_dir() == tmp_path / "wppg" / "jax"
    monkeypatch.setenv(compile_cache.OFF_ENV, "1")
    assert compile_cache.enable() is None
    monkeypatch.setenv(compile_cache.OFF_ENV, "0")
    if jax.config.jax_compilation_cache_dir:  # the test session's own cache (conftest.py) is left alone
        assert compile_cache.enable() is None


def _cache_dir_of_a_fresh_process(tmp_path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.OFF_ENV)}
    script = (
        "import jax, wppg; wppg.SAC('Pendulum-v1', hidden=(8,), progress=False); "
        "print(jax.config.jax_compilation_cache_dir)"
    )
    out = subprocess.run([sys.executable, "-c", script], env={**environ, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_importing_wppg_turns_the_cache_on_unless_told_not_to(tmp_path):
    cache = tmp_path / "cache"
    assert _cache_dir_of_a_fresh_process(tmp_path, **{compile_cache.DIR_ENV: str(cache)}) == str(cache)
    assert any(cache.iterdir())  # the agent's compilations were written
    off = _cache_dir_of_a_fresh_process(tmp_path, **{compile_cache.DIR_ENV: str(cache), compile_cache.OFF_ENV: "1"})
    assert off in ("None", "")


def test_the_warm_up_warning_names_what_exceeds_the_run():
    agent = wppg.SAC("Pendulum-v1", hidden=(8,), batch_size=16, learning_starts=500, eval_episodes=1, progress=False)
    with pytest.warns(UserWarning, match=r"^learning_starts \(500\) exceeds the 100 env steps"):
        agent.learn(100)
    agent = wppg.SAC("Pendulum-v1", hidden=(8,), batch_size=256, learning_starts=0, eval_episodes=1, progress=False)
    with pytest.warns(UserWarning, match=r"^batch_size \(256\) exceeds the 100 env steps"):
        agent.learn(100)


@pytest.mark.slow
def test_the_startup_benchmark_times_each_phase_in_a_fresh_process(tmp_path):
    from wppg.bench.startup import startup_section

    rows = startup_section("Pendulum-v1", ["sac"], log=lambda s: None)
    assert [r["cache"] for r in rows] == ["off", "cold", "warm"]
    for r in rows:
        for k in ("import_s", "construct_s", "load_s", "first_predict_s", "first_update_s"):
            assert r[k] > 0, (r["cache"], k)
