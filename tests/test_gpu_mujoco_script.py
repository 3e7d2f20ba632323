"""experiments/gpu-mujoco/gpu_mujoco.py at tiny sizes on the CPU: the vmapped K-sample WPPG-I path, its run
directories and result files. The one training call (two seeds, a few env steps) is almost all XLA
compilation, so it runs in a subprocess with XLA's CPU optimisation passes off, which halves it
(the numbers of a path check do not matter)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import wppg

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "gpu-mujoco" / "gpu_mujoco.py"
# The smallest run that still trains: 10 vmapped updates of two seeds, one final evaluation.
TINY_ARGS = ["--tiny", "--envs", "Hopper-v5", "--presets", "paper", "--seeds", "0", "1", "--steps", "60",
             "--learning-starts", "50", "--eval-every", "1000", "--K", "2", "--entropy-ml", "2", "--hidden", "8",
             "--batch-size", "8"]  # fmt: skip


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("gpu_mujoco")


def test_flags_give_the_papers_k_by_default_and_tiny_sizes_on_request(script):
    steps, hp = script.hyperparameters(script.parse_args([]))
    assert steps == 100_000 and "K" not in hp  # K: the preset's, the paper's 32
    assert hp["eval_every"] == 5000 and hp["eval_episodes"] == 10
    assert script.label("default", hp) == "wppg-i-K32" and script.label("paper", hp) == "wppg-i-paper-K32"
    steps, hp = script.hyperparameters(script.parse_args([*TINY_ARGS, "--tau", "auto"]))
    assert steps == 60 and (hp["K"], hp["entropy_M"], hp["entropy_L"], hp["hidden"]) == (2, 2, 2, (8,))
    assert hp["tau"] == "auto" and hp["learning_starts"] == 50 and script.label("default", hp) == "wppg-i-K2-auto-tau"
    assert script.hyperparameters(script.parse_args(["--tau", "0.01"]))[1]["tau"] == 0.01
    hp = script.hyperparameters(script.parse_args(["--precision", "bf16"]))[1]
    assert hp["precision"] == "bf16" and script.label("default", hp) == "wppg-i-K32-bf16"


@pytest.mark.skipif(jax.devices()[0].platform != "cpu", reason="refuses full sizes only without an accelerator")
def test_full_sizes_are_refused_on_a_cpu(script, tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert script.main(["--out", str(tmp_path)]) == 2
    assert "no accelerator" in err.getvalue() and not any(tmp_path.iterdir())


@pytest.mark.full
def test_tiny_vmapped_run_writes_runs_and_results(script, tmp_path):
    env = {
        **os.environ, "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        "PYTHONPATH": os.pathsep.join([str(Path(wppg.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), *TINY_ARGS], env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_mujoco.json").read_text())
    (rec,) = result["runs"]
    got = (rec["env"], rec["label"], rec["coupling"], rec["K"], rec["seeds"])
    assert got == ("Hopper-v5", "wppg-i-paper-K2", "shared-latent", 2, [0, 1])
    assert rec["env_steps_per_s_total"] == pytest.approx(2 * rec["env_steps_per_s_per_seed"]) and rec["wall_s"] > 0
    assert [r["seed"] for r in rec["runs"]] == [0, 1] and all(r["final_mode"] is not None for r in rec["runs"])
    for seed in (0, 1):  # ordinary run directories, labelled by the harness's name of the algorithm and K
        summary = json.loads((tmp_path / "Hopper-v5" / "wppg-i-paper-K2" / f"seed{seed}" / "summary.json").read_text())
        assert summary["bench_algo"] == "wppg-i-paper-K2" and summary["env_steps"] == 60
        assert summary["vmapped_seeds"] == [0, 1]
    assert "| Hopper-v5 | wppg-i-paper-K2 | shared-latent | 2 | 2 | 60 |" in (tmp_path / "gpu_mujoco.md").read_text()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # a second call does not overwrite finished runs unless told
        assert script.main(["--out", str(tmp_path), *TINY_ARGS]) == 2
    assert "--overwrite" in err.getvalue()
