"""One preset behaviour for the API and `wppg train`: the registry resolves `preset` (None: the
backend's for WPPG / WPPG-I, none for the others) and refuses a preset the algorithm lacks."""

from __future__ import annotations

import json

import jax
import pytest

import wppg
from wppg import registry
from wppg.agent import Agent, make_agent
from wppg.algorithms import ConfigError


def see_backend(monkeypatch, backend: str) -> None:
    """Make `wppg.algorithms.wppg.backend_preset` see `backend` (it reads `jax.default_backend()`)."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)


def test_preset_none_follows_the_backend(monkeypatch):
    entry, sac = registry.get("wppg-i"), registry.get("sac")
    see_backend(monkeypatch, "cpu")
    assert entry.resolve_preset(None) == "default" and entry.preset(None) == {}
    see_backend(monkeypatch, "gpu")
    assert entry.resolve_preset(None) == "gpu" and entry.preset(None)["K"] == 32
    assert entry.resolve_preset("default") == "default" and entry.resolve_preset("cpu") == "cpu"  # explicit stays
    for backend in ("cpu", "gpu"):
        see_backend(monkeypatch, backend)
        assert sac.resolve_preset(None) is None and sac.preset(None) == {}


@pytest.mark.parametrize("variant", ["sac", "wpo", "ppo"])
def test_a_preset_the_algorithm_lacks_is_the_same_error_in_the_api_and_the_cli(variant, run_cli, tmp_path):
    with pytest.raises(ConfigError) as err:
        make_agent(variant, "Pendulum-v1", preset="gpu", progress=False)
    out = tmp_path / "run"
    code, _, stderr = run_cli(["train", "--algo", variant, "--preset=gpu", "--env", "Pendulum-v1", "--out", str(out)])
    assert code == 2 and stderr.strip() == f"wppg: error: {err.value}"
    assert not out.exists()
    assert f"{variant} has no presets" in str(err.value)


def test_the_agent_records_its_preset_and_load_keeps_it(monkeypatch, tiny, tmp_path):
    see_backend(monkeypatch, "cpu")
    agent = wppg.WPPG("Pendulum-v1", policy="implicit", progress=False, **tiny("wppg-i"))
    assert agent.preset == "default" and agent.trainer.meta["preset"] == "default"
    path = agent.save(tmp_path / "agent.npz")
    see_backend(monkeypatch, "gpu")  # loaded where the backend's preset is another: the recorded one holds
    loaded = Agent.load(path, progress=False)
    assert loaded.preset == "default" and loaded.algo_config == agent.algo_config
    sac = wppg.SAC("Pendulum-v1", preset="default", progress=False, **tiny("sac"))
    assert sac.preset is None and sac.trainer.meta["preset"] is None


def test_the_cli_default_preset_follows_the_backend(monkeypatch, run_cli):
    see_backend(monkeypatch, "gpu")
    code, stdout, _ = run_cli(["train", "--algo", "wppg-i", "--help"])
    flags = {line.split()[0]: line for line in stdout.splitlines() if line.startswith("  --")}
    assert code == 0 and flags["--preset"].endswith("(gpu)") and flags["--K"].endswith("(32)")
    code, stdout, _ = run_cli(["train", "--algo", "wppg-i", "--preset", "default", "--help"])
    assert "(8)" in [line for line in stdout.splitlines() if line.startswith("  --K ")][0]


def test_wppg_train_records_the_preset(run_cli, tmp_path, monkeypatch):
    see_backend(monkeypatch, "cpu")
    out = tmp_path / "run"
    argv = ["train", "--algo", "sac", "--env", "Pendulum-v1", "--out", str(out), "--total-steps", "60"]
    argv += ["--learning-starts", "50", "--batch-size", "16", "--hidden", "8", "--eval-episodes", "1", "--no-progress"]
    code, stdout, stderr = run_cli(argv)
    assert code == 0, stderr
    assert "preset" not in stdout.splitlines()[0] and json.loads((out / "config.json").read_text())["preset"] is None
