"""The package's structure: one registry, the `python -m wppg` entry, no import cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import wppg
from wppg import registry
from wppg.agent import agent_class, make_agent
from wppg.algorithms.base import ConfigError
from wppg.algorithms.protocol import Algorithm

SRC = str(Path(wppg.__file__).resolve().parents[1])


def test_every_registered_algorithm_builds_through_make_agent():
    for name in registry.names():
        entry = registry.get(name)
        agent = make_agent(name, "Pendulum-v1", progress=False)
        assert agent.variant == name and type(agent) is agent_class(name)
        assert agent.trainer.meta["algo"] == entry.algo and isinstance(agent.algorithm, Algorithm)
        assert type(agent.trainer) is entry.trainer_cls
        assert all(getattr(agent.algo_config, k) == v for k, v in entry.fixed.items())


def test_unknown_names_fail_with_the_list():
    with pytest.raises(ConfigError, match="available: wppg, wppg-i"):
        make_agent("td4", "Pendulum-v1")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(registry.get("sac"))


def test_cli_choices_follow_the_registry():
    from wppg import cli

    assert list(cli.ALGO_CHOICES.__args__) == registry.names()


def test_python_dash_m_and_no_import_cycles():
    """`python -m wppg` runs the CLI; the bench backends and the trainer import without a cycle
    (each imported first in a fresh interpreter)."""
    out = subprocess.run([sys.executable, "-m", "wppg", "--help"], capture_output=True, text=True,
                         env={"PYTHONPATH": SRC}, check=True)  # fmt: skip
    assert "usage: wppg <command>" in out.stdout
    code = "import wppg.bench.ray_backend, wppg.trainer, wppg.multiseed, wppg.bench.external"
    subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": SRC}, check=True)
