"""Custom envs: the example of docs/guide/custom-env.md on the command line (`--env module:Id` and
`module:Class` with the working directory importable, `--env` on eval, resume and export), a
SyncVectorEnv as the env, loading that never imports a module named by a run's files, and a DMC
task through shimmy."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import wppg
from wppg.algorithms import ConfigError
from wppg.checkpoint import CheckpointError
from wppg.envs import describe_env, import_env

DOC = Path(__file__).resolve().parents[1] / "docs" / "guide" / "custom-env.md"
TINY = dict(hidden=(16, 16), batch_size=16, learning_starts=40, eval_episodes=1, eval_every=10**6, progress=False)
FLAGS = ["--batch-size", "16", "--learning-starts", "40", "--eval-episodes", "1", "--eval-every", "1000000",
         "--checkpoint-every", "0", "--hidden", "16", "16", "--no-progress"]  # fmt: skip


def doc_module() -> str:
    """The `pointenv.py` of the guide: its first python block."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]


@pytest.fixture
def pointenv_dir(tmp_path, monkeypatch):
    """A working directory holding the guide's pointenv.py (not importable before `--env` names it);
    sys.path, sys.modules and Gymnasium's registry are restored afterwards."""
    (tmp_path / "pointenv.py").write_text(doc_module())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    sys.modules.pop("pointenv", None)
    gym.registry.pop("PointReach-v0", None)


def test_import_env_reads_module_id_and_module_class(pointenv_dir):
    assert import_env("Pendulum-v1") == "Pendulum-v1"
    assert import_env("pointenv:PointReach-v0") == "PointReach-v0"
    assert str(pointenv_dir) in sys.path  # the working directory, put there because a module was named
    cls = import_env("pointenv:PointReach")
    assert isinstance(cls(), gym.Env)
    with pytest.raises(ValueError, match="cannot import 'nosuchmodule'"):
        import_env("nosuchmodule:X-v0")
    with pytest.raises(ValueError, match="no env class or factory 'Nope'"):
        import_env("pointenv:Nope")
    # A "module:Id" string is stored as its id: loading the run will not import the module.
    assert describe_env("pointenv:PointReach-v0").env_id == "PointReach-v0"


def test_the_guides_cli_commands(pointenv_dir, run_cli):
    out = pointenv_dir / "runs" / "point"
    code, stdout, stderr = run_cli(
        ["train", "--algo", "sac", "--env", "pointenv:PointReach-v0", "--total-steps", "100", "--out", str(out), *FLAGS]
    )
    assert code == 0, stderr
    assert stdout.splitlines()[0] == f"wppg train: sac on pointenv:PointReach-v0, device cpu, out {out}"
    assert stdout.strip().splitlines()[-1].startswith("done: 100 env steps; eval return ")
    assert json.loads((out / "config.json").read_text())["env_id"] == "PointReach-v0"

    # A fresh process would not know PointReach-v0: eval, resume and export say to pass --env.
    gym.registry.pop("PointReach-v0")
    sys.modules.pop("pointenv")
    code, _, stderr = run_cli(["eval", str(out), "--episodes", "1"])
    assert code == 2 and "not registered" in stderr and "--env module:Id" in stderr
    assert "pointenv" not in sys.modules

    code, stdout, stderr = run_cli(["eval", str(out), "--episodes", "1", "--env", "pointenv:PointReach-v0"])
    assert code == 0, stderr
    code, stdout, stderr = run_cli(["resume", str(out), "--total-steps", "150", "--env", "pointenv:PointReach-v0"])
    assert code == 0, stderr
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 150
    code, stdout, stderr = run_cli(["export", str(out), "--env", "pointenv:PointReach-v0", "--out", "p.npz"])
    assert code == 0, stderr
    assert np.load(pointenv_dir / "p.npz")["W0"].shape == (2, 16)

    # module:Class: the run has no env id, so eval needs --env.
    out2 = pointenv_dir / "runs" / "point-class"
    code, _, stderr = run_cli(
        ["train", "--algo", "sac", "--env", "pointenv:PointReach", "--total-steps", "60", "--out", str(out2), *FLAGS]
    )
    assert code == 0, stderr
    code, _, stderr = run_cli(["eval", str(out2), "--episodes", "1"])
    assert code == 2 and "without a registered id" in stderr
    code, _, stderr = run_cli(["eval", str(out2), "--episodes", "1", "--env", "pointenv:PointReach"])
    assert code == 0, stderr


def test_loading_never_imports_a_module_named_by_the_file(pointenv_dir, tmp_path):
    """A checkpoint whose env id names a module ("evil:...") is refused without importing it."""
    (pointenv_dir / "evil.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    agent = wppg.SAC("Pendulum-v1", seed=0, **TINY)
    agent.trainer.meta["env_id"] = "evil:Pendulum-v1"
    path = agent.save(tmp_path / "agent.npz")
    sys.path.insert(0, str(pointenv_dir))
    with pytest.raises(CheckpointError, match="pass env="):
        wppg.Agent.load(path)
    assert not (tmp_path / "imported").exists() and "evil" not in sys.modules
    assert wppg.Agent.load(path, env="Pendulum-v1").num_timesteps == 0


def test_a_sync_vector_env_stands_for_its_sub_envs():
    vec = gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync")
    agent = wppg.SAC(vec, seed=0, **TINY)
    assert agent.train_config.n_envs == 3
    agent.learn(60)
    assert agent.num_timesteps == 60 and agent.trainer.pool.envs[0] is vec.envs[0]
    with pytest.raises(ConfigError, match="n_envs=2 contradicts"):
        wppg.SAC(gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync"), n_envs=2, **TINY)


def test_an_async_vector_env_is_refused_with_the_fix():
    vec = gym.vector.AsyncVectorEnv.__new__(gym.vector.AsyncVectorEnv)  # no worker processes started
    with pytest.raises(TypeError, match="vectorization_mode='sync'"):
        wppg.SAC(vec, **TINY)


def test_a_dmc_task_trains_through_the_cli(tmp_path, run_cli):
    pytest.importorskip("dm_control")
    pytest.importorskip("shimmy")
    info = describe_env("dm_control/cartpole-swingup-v0")
    assert info.obs_dim == 5 and info.bounds.dim == 1  # position (3) and velocity (2), flattened
    out = tmp_path / "dmc"
    code, stdout, stderr = run_cli(
        ["train", "--algo", "sac", "--env", "dm_control/cartpole-swingup-v0", "--total-steps", "60", "--out", str(out),
         *FLAGS]
    )  # fmt: skip
    assert code == 0, stderr
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 60
