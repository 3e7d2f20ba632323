"""The command line, called in-process: `wppg.cli.main([...]) -> exit code`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from wppg import checkpoint as ckpt
from wppg.cli import main

TOTAL = 200
# The same tiny configuration as the `tiny` fixture of conftest.py (so the compiled update is shared).
TINY_FLAGS = [
    "--env", "Pendulum-v1",
    "--batch-size", "32",
    "--buffer-size", "5000",
    "--learning-starts", "50",
    "--eval-every", "1000000",
    "--eval-episodes", "1",
    "--log-every", "100",
    "--hidden", "32", "32",
    "--K", "2",
    "--entropy-M", "4",
    "--entropy-L", "4",
    "--seed", "0",
    "--no-progress",
]  # fmt: skip


def snapshot_dir(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_cli) -> Path:
    """`wppg train` of a tiny WPPG run of TOTAL steps; the tests below copy it before changing it."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code, stdout, stderr = run_cli(
        ["train", "--algo", "wppg", "--total-steps", str(TOTAL), "--out", str(out), *TINY_FLAGS]
    )
    assert code == 0, f"wppg train failed with {code}: {stderr}"
    lines = stdout.strip().splitlines()
    assert lines[0] == f"wppg train: wppg on Pendulum-v1, preset default, device cpu, out {out}"
    assert json.loads((out / "config.json").read_text())["preset"] == "default"  # None: the CPU backend's
    assert re.fullmatch(
        rf"done: {TOTAL} env steps; eval return -?[\d.]+ \+- 0\.0 \(mode\), -?[\d.]+ \+- 0\.0 \(stochastic\); "
        + re.escape(str(out / "summary.json")),
        lines[-1],
    ), lines[-1]
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_train_writes_the_run_directory(trained):
    for name in ("config.json", "train.csv", "eval.csv", "summary.json", "checkpoints/last.npz"):
        assert (trained / name).is_file(), f"wppg train did not write {name}"
    assert (trained / "tb").is_dir()
    config = json.loads((trained / "config.json").read_text())
    assert config["variant"] == "wppg" and config["env_id"] == "Pendulum-v1"
    assert config["algo_config"]["K"] == 2 and config["algo_config"]["hidden"] == [32, 32]
    assert config["train_config"]["total_steps"] == TOTAL and config["train_config"]["learning_starts"] == 50
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["env_steps"] == TOTAL
    assert summary["gradient_steps"] == TOTAL - 50 + 1
    meta, _ = ckpt.load(trained)
    assert meta["env_steps"] == TOTAL


def test_plot_writes_a_png(trained, tmp_path, run_cli):
    png = tmp_path / "figs" / "x.png"
    code, stdout, stderr = run_cli(["plot", str(trained), "--out", str(png)])
    assert code == 0, stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in stdout


def test_plot_accepts_a_multi_seed_folder(trained, tmp_path, run_cli):
    for seed in (0, 1):
        shutil.copytree(trained, tmp_path / "multi" / f"seed{seed}")
    png = tmp_path / "multi.png"
    code, _, stderr = run_cli(["plot", str(tmp_path / "multi"), "--out", str(png)])
    assert code == 0, stderr
    from wppg.plotting import expand_runs

    assert expand_runs([tmp_path / "multi"]) == [tmp_path / "multi" / "seed0", tmp_path / "multi" / "seed1"]


def test_plot_of_a_directory_without_runs_fails(tmp_path, run_cli):
    code, _, stderr = run_cli(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "eval.csv" in stderr
    assert not (tmp_path / "x.png").exists()


def test_eval_writes_eval_result(trained, tmp_path, run_cli):
    run = copy_run(trained, tmp_path)
    code, stdout, stderr = run_cli(["eval", str(run), "--episodes", "1"])
    assert code == 0, f"wppg eval failed with {code}: {stderr}"
    result = json.loads((run / "eval_result.json").read_text())
    assert result["env_steps"] == TOTAL
    for key in ("return_stochastic", "return_mode", "return_stochastic_std", "return_mode_std"):
        assert isinstance(result[key], float)
    assert result["return_mode_std"] == 0.0  # one episode
    assert "mode" in stdout and "stochastic" in stdout


def test_eval_of_a_missing_run_fails(tmp_path, run_cli):
    code, _, stderr = run_cli(["eval", str(tmp_path / "nope"), "--episodes", "1"])
    assert code == 2 and "no checkpoint at" in stderr


RESUMED = 300


@pytest.fixture(scope="module")
def resumed(trained, tmp_path_factory, run_cli) -> tuple[Path, int, str]:
    """The trained run copied, then `wppg resume DIR --total-steps RESUMED`."""
    run = copy_run(trained, tmp_path_factory.mktemp("resume"))
    code, _, stderr = run_cli(["resume", str(run), "--total-steps", str(RESUMED), "--no-progress"])
    return run, code, stderr


def test_resume_continues_to_the_new_total(resumed):
    run, code, stderr = resumed
    assert code == 0, f"wppg resume failed with {code}: {stderr}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == RESUMED
    assert summary["gradient_steps"] == RESUMED - 50 + 1
    meta, _ = ckpt.load(run)
    assert meta["env_steps"] == RESUMED
    steps = [float(line.split(",")[0]) for line in (run / "eval.csv").read_text().splitlines()[1:]]
    assert steps == [TOTAL, RESUMED]


def test_resume_keeps_every_transition_when_extending(resumed):
    """buffer_size is 5000, so after RESUMED steps the replay buffer must hold all of them: the
    run's original total_steps must not cap the buffer of the extended run."""
    run, code, stderr = resumed
    assert code == 0, f"wppg resume failed with {code}: {stderr}"
    _, tree = ckpt.load(run)
    assert int(tree["buffer"]["size"]) == RESUMED, (
        f"the resumed run's replay buffer holds {int(tree['buffer']['size'])} transitions after {RESUMED} env steps "
        f"(buffer_size=5000): its capacity stayed at the first run's total_steps ({TOTAL})"
    )


def test_resume_of_a_finished_run_is_a_no_op(trained, tmp_path, run_cli):
    run = copy_run(trained, tmp_path)
    before = snapshot_dir(run)
    code, stdout, stderr = run_cli(["resume", str(run), "--no-progress"])
    assert code == 0, f"wppg resume failed with {code}: {stderr}"
    assert "already at 200" in stdout
    assert snapshot_dir(run) == before


def test_train_refuses_an_existing_run(trained, tmp_path, run_cli):
    run = copy_run(trained, tmp_path)
    before = snapshot_dir(run)
    code, _, stderr = run_cli(["train", "--algo", "wppg", "--total-steps", "60", "--out", str(run), *TINY_FLAGS])
    assert code == 2
    assert "already holds a run" in stderr and "--overwrite" in stderr and "wppg resume" in stderr
    assert snapshot_dir(run) == before, "a refused train changed the existing run"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--algo", "wppg", "--K", "0"], "K must be >= 1"),
        (["--algo", "wppg-i", "--eta", "-1"], "eta must be > 0"),
        (["--algo", "sac", "--alpha", "0"], "alpha must be > 0"),
        (
            ["--algo", "sac", "--batch-size", "64", "--buffer-size", "32"],
            "batch_size (64) must not exceed buffer_size (32)",
        ),
    ],
    ids=["K", "eta", "alpha", "batch_size"],
)
def test_invalid_hyperparameter_exits_2(flags, message, tmp_path, run_cli):
    out = tmp_path / "run"
    code, _, stderr = run_cli(["train", "--env", "Pendulum-v1", "--out", str(out), *flags])
    assert code == 2
    assert message in " ".join(stderr.split()), stderr
    assert not out.exists(), "an invalid configuration still created the run directory"


def test_unsupported_env_exits_2(tmp_path, run_cli):
    code, _, stderr = run_cli(["train", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2 and "NoSuchEnv-v0" in stderr


def test_help_lists_the_algorithm_flags(capsys):
    assert main(["train", "--algo", "sac", "--help"]) == 0
    sac_help = capsys.readouterr().out
    assert "--alpha " in sac_help and "--alpha-init" in sac_help and "--total-steps" in sac_help
    assert "autotune" not in sac_help
    assert "--eta" not in sac_help
    # Short: one line per flag, in three groups, every line within 120 characters.
    lines = sac_help.splitlines()
    assert len(lines) < 50 and max(map(len, lines)) <= 120
    assert {"run:", "training (wppg.TrainConfig):", "algorithm (wppg.SACConfig):"} <= set(lines)

    assert main(["train", "--algo", "wppg", "--help"]) == 0
    wppg_help = capsys.readouterr().out
    assert "--eta" in wppg_help and "--alpha " not in wppg_help

    with pytest.raises(SystemExit) as exit_info:  # tyro's full help
        main(["train", "--algo", "sac", "--help-all"])
    assert exit_info.value.code in (0, None)
    assert "--alpha-init" in capsys.readouterr().out


def test_usage_and_unknown_command(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "wppg train" in capsys.readouterr().out
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_train_without_out_does_not_use_the_working_directory(tmp_path, monkeypatch, run_cli):
    """--out is required (USAGE: `wppg train ... --out runs/x`). It must not default to the
    working directory, where --overwrite would delete everything (shutil.rmtree('.'))."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text("{}")  # the working directory looks like a run ...
    (tmp_path / "notes.txt").write_text("unrelated work")  # ... and holds other files
    try:
        code, _, stderr = run_cli(["train", "--algo", "wppg", "--total-steps", "1", "--overwrite", *TINY_FLAGS])
    except Exception as e:  # noqa: BLE001 - report what happened, then check the files
        code, stderr = e, ""
    assert (tmp_path / "notes.txt").exists(), (
        "`wppg train --overwrite` without --out deleted the working directory's files"
    )
    assert code == 2, f"train without --out should be a usage error (2), got {code!r}"
    assert "--out" in stderr


def test_conflicting_policy_flag_is_not_ignored(tmp_path, run_cli):
    """`--algo wppg --policy implicit` asks for two different policies: refuse it, or train WPPG-I,
    but never silently train the Gaussian policy."""
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        ["train", "--algo", "wppg", "--policy", "implicit", "--total-steps", "1", "--out", str(out), *TINY_FLAGS]
    )
    if code == 2:
        assert "policy" in stderr
    else:
        assert code == 0, stderr
        config = json.loads((out / "config.json").read_text())
        assert config["algo_config"]["policy"] == "implicit", (
            "--policy implicit was silently ignored: trained a Gaussian policy"
        )


def test_alpha_takes_a_number_or_auto():
    """`--alpha auto` learns SAC's temperature, `--alpha 0.2` fixes it (as `--tau` for WPPG)."""
    import tyro

    from wppg.algorithms import SACConfig
    from wppg.cli import _train_args_type

    def parsed(*flags):
        return tyro.cli(_train_args_type(SACConfig), args=["--env", "E", "--out", "o", *flags]).algorithm

    assert parsed().alpha == "auto" and parsed("--alpha", "auto", "--alpha-init", "0.5").alpha_init == 0.5
    assert parsed("--alpha", "0.2").alpha == 0.2
