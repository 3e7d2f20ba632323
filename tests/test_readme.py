"""Every code block of README.md runs, and its results table is the one generated from the exported runs.

The blocks run as written except for the sizes in `TINY` (step counts, network widths, evaluation
episodes), each of which must occur in its block, so an edit of the README cannot slip past the test.
Blocks that install or run the whole test suite are listed in `NOT_RUN` with the reason.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import shlex
import sys
from pathlib import Path

import pytest

import wppg

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

SMALL = "batch_size=32, eval_episodes=1, hidden=(16, 16), seed=0)"
TINY = {
    "quickstart": {
        "learning_starts=1000, seed=0)": f"learning_starts=100, {SMALL}",
        "agent.learn(20_000)": "agent.learn(300)",
        "agent.learn(5_000)": "agent.learn(50)",
    },
    "custom-env": {
        "learning_starts=500, seed=0)": f"learning_starts=100, {SMALL}",
        "agent.learn(5_000)": "agent.learn(200)",
    },
    "cli": {
        "--total-steps 20000": "--total-steps 300 --learning-starts 100 --batch-size 32 --eval-episodes 1 "
        "--hidden 16 16",
        "--episodes 10": "--episodes 1",
    },
}
NOT_RUN = {
    "install": "creates a virtual environment and installs packages",
    "make": "`make demo` and `make test` install a venv and run the whole suite; CI runs them itself",
}

# Features of the SB3-style API merged from another branch: until they are here, the blocks that use
# them are expected to fail (strict, so the mark must go once they pass).
PREDICT_PENDING = "tuple" not in str(inspect.signature(wppg.Agent.predict).return_annotation)


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(README.read_text())]


def kind(lang: str, body: str) -> str:
    """Which of TINY / NOT_RUN a block is."""
    if lang == "bash" and "pip install" in body:
        return "install"
    if lang == "bash" and body.lstrip().startswith("make "):
        return "make"
    if lang == "bash" and body.lstrip().startswith("wppg "):
        return "cli"
    if lang == "python" and "class " in body and "gym.Env" in body:
        return "custom-env"
    if lang == "python" and ".predict(" in body:
        return "quickstart"
    return "unknown"


def shrink(name: str, body: str) -> str:
    for old, new in TINY[name].items():
        assert old in body, f"README block {name!r} no longer contains {old!r}: update TINY in {__file__}"
        body = body.replace(old, new)
    return body


def block(name: str) -> str:
    (body,) = [b for lang, b in blocks() if kind(lang, b) == name]
    return body


def test_every_block_is_run_or_listed():
    kinds = [kind(lang, body) for lang, body in blocks()]
    assert "unknown" not in kinds, f"a README block of no known kind: add it to TINY or NOT_RUN ({kinds})"
    assert set(kinds) == set(TINY) | set(NOT_RUN), kinds
    assert all(lang in ("python", "bash") for lang, _ in blocks())


@pytest.mark.xfail(PREDICT_PENDING, reason="pending merge: predict returning (action, None)", strict=True)
def test_quickstart_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "readme"}
    exec(compile(shrink("quickstart", block("quickstart")), "README.md:quickstart", "exec"), scope)
    assert (tmp_path / "pendulum.npz").exists()
    assert scope["action"].shape == (1,) and scope["agent"].num_timesteps == 350


def test_custom_env_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "readme"}
    exec(compile(shrink("custom-env", block("custom-env")), "README.md:custom-env", "exec"), scope)
    assert scope["agent"].num_timesteps == 200


def test_cli_block_runs(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    for line in shrink("cli", block("cli")).splitlines():
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "wppg"
        code, out, err = run_cli(argv[1:])
        assert code == 0, f"{line}\n{err[-2000:]}"
    assert (tmp_path / "runs/p0/summary.json").exists() and (tmp_path / "runs/p0/curve.png").exists()


def test_results_table_is_the_generated_one():
    """README.md and docs/results/mujoco-cpu.md hold the table readme_table.py makes from the runs."""
    path = ROOT / "experiments" / "tools" / "readme_table.py"
    spec = importlib.util.spec_from_file_location("readme_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("readme_table", module)
    spec.loader.exec_module(module)
    generated = module.table()
    for target in module.TARGETS:
        text = target.read_text()
        between = text.split(module.START, 1)[1].split(module.END, 1)[0].strip()
        assert between == generated, f"{target}: run python {path.relative_to(ROOT)}"
    assert "| Hopper-v5 | wppg-i |" in generated and "| Hopper-v5 | sac |" in generated
