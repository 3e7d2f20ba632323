"""`wppg report` on synthetic run directories with known numbers: per-env means and bootstrap
CIs, min-max normalisation, IQM and probability of improvement against direct numpy / scipy /
rliable computations, costs, and unfinished runs kept out of every table."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from wppg.cli import main

# final mode returns by env, algorithm and seed (stochastic = mode - 1)
FINALS = {
    "EnvA-v0": {"x": [10.0, 20.0, 30.0], "y": [0.0, 5.0, 10.0], "z": [15.0, 15.0]},
    "EnvB-v0": {"x": [100.0, 300.0], "y": [200.0, 250.0, 400.0]},
}
BUDGET = 1000


def write_run(root: Path, env: str, algo: str, seed: int, final: float, *, steps: int = BUDGET, summary: bool = True,
              costs: bool = True, error: str | None = None, bench: bool = True) -> Path:  # fmt: skip
    d = root / env / algo / f"seed{seed}"
    d.mkdir(parents=True)
    if bench:
        run = {"env_id": env, "algo": algo, "seed": seed, "steps": BUDGET, "hyperparameters": {"eval_episodes": 4}, "resources": {"cpus": 1, "gpus": 0}}
        (d / "bench.json").write_text(json.dumps({"run": run, "command": "wppg bench run test.toml --out runs"}))
    config = {"variant": "sac" if algo.startswith("sac") else algo, "env_id": env, "algo_config": {"autotune": algo != "sac-fixed"},
              "train_config": {"seed": seed, "total_steps": BUDGET, "eval_episodes": 4, "eval_every": 500}}  # fmt: skip
    (d / "config.json").write_text(json.dumps(config))
    rows = [(500, final / 2), (steps, final)] if steps > 500 else [(steps, final)]
    lines = ["step,return_stochastic,return_stochastic_std,return_mode,return_mode_std"]
    lines += [f"{s},{v - 1},0.0,{v},0.0" for s, v in rows]
    (d / "eval.csv").write_text("\n".join(lines) + "\n")
    if summary:
        s = {**config, "env_steps": steps, "final_eval": {"step": steps, "return_mode": final, "return_stochastic": final - 1}}
        if costs:
            s.update(steps_per_s=200.0 + seed, wall_time_s=steps / (200.0 + seed), update_time_s=2.0, update_calls=400, ms_per_gradient_step=5.0, peak_rss_mb=700.0 + seed)
        (d / "summary.json").write_text(json.dumps(s))
    if error:
        (d / "error.txt").write_text(error + "\n\ntraceback...")
    return d


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for env, by_algo in FINALS.items():
        for algo, values in by_algo.items():
            for seed, v in enumerate(values):
                write_run(root, env, algo, seed, v, costs=not (algo == "y" and env == "EnvB-v0"))
    # not finished: enormous returns that would show in any mean they entered
    write_run(root, "EnvA-v0", "x", 7, 1e6, steps=600, summary=False)
    write_run(root, "EnvA-v0", "y", 8, 1e6, steps=700, summary=True)  # summary below its budget (an extended run)
    write_run(root, "EnvB-v0", "x", 9, 1e6, steps=300, summary=False, error="ConfigError: alpha must be > 0, got -1.0")
    (root / "EnvA-v0" / "x" / "seed7" / "machine.json").write_text(json.dumps({"cpu_model": "TestCPU 9000", "cpu_count": 2}))
    # a `wppg train` run without bench.json: its label comes from config.json (sac with autotune off)
    plain = write_run(root / "plain", "EnvC-v0", "sac-fixed", 0, 1.0, bench=False)
    out = tmp_path_factory.mktemp("docs") / "bench.md"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["report", str(root), "--out", str(out), "--reps", "300"])
    assert code == 0 and "wrote" in buf.getvalue()
    return json.loads(out.with_suffix(".json").read_text()), out.read_text(), out, plain


def percentile_bootstrap(values, n_boot=2000, seed=0):
    """Reference: 95% percentile bootstrap of the mean, seeded like the report's."""
    v = np.asarray(values, float)
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))
    return np.quantile(v[idx].mean(axis=1), [0.025, 0.975])


def test_per_env_means_and_cis(report):
    result, md, _, _ = report
    a = result["envs"]["EnvA-v0"]
    assert a["x"]["seeds"] == [0, 1, 2]  # the unfinished seed 7 is not in
    assert a["x"]["return_mode"]["mean"] == pytest.approx(20.0)
    assert a["x"]["return_stochastic"]["mean"] == pytest.approx(19.0)
    assert a["x"]["return_mode"]["ci"] == pytest.approx(list(percentile_bootstrap([10, 20, 30])))
    assert a["y"]["return_mode"]["mean"] == pytest.approx(5.0) and a["y"]["seeds"] == [0, 1, 2]
    assert result["envs"]["EnvB-v0"]["y"]["return_mode"]["mean"] == pytest.approx(850 / 3)
    lo, hi = percentile_bootstrap([10, 20, 30])
    assert f"| x | 3 | 20.0 [{lo:.1f}, {hi:.1f}] | 19.0 [" in md
    assert "| z | 2 | 15.0 [15.0, 15.0] |" in md


def test_normalised_iqm_and_probability_of_improvement(report):
    from rliable import library as rly
    from rliable import metrics

    result, md, _, _ = report
    agg = result["aggregate"]
    # EnvC-v0 has one run (max == min): it cannot be normalised and is left out; z has no EnvB run.
    assert agg["envs"] == ["EnvA-v0", "EnvB-v0"] and agg["left_out"] == ["z"]
    assert agg["bounds"] == {"EnvA-v0": [0.0, 30.0], "EnvB-v0": [100.0, 400.0]}
    # Each algorithm keeps its first n seeds per env, n = its smallest count (x: 2 on EnvB).
    x = np.array([[10 / 30, 0.0], [20 / 30, 200 / 300]])
    y = np.array([[0.0, 100 / 300], [5 / 30, 150 / 300], [10 / 30, 1.0]])
    flat = np.sort(x.ravel())
    assert agg["algos"]["x"]["iqm"] == pytest.approx(flat[1:3].mean())  # IQM of 4 scores: the middle 2
    assert agg["algos"]["y"]["iqm"] == pytest.approx(metrics.aggregate_iqm(y))
    assert agg["algos"]["x"]["mean"] == pytest.approx(x.mean()) and agg["algos"]["x"]["runs_per_env"] == 2
    # rliable resamples from NumPy's global generator: seeded once, then x and y in name order, as the report does
    np.random.seed(0)
    _, ci = rly.get_interval_estimates({"x": x, "y": y}, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]), reps=300)
    assert agg["algos"]["y"]["iqm_ci"] == pytest.approx([ci["y"][0, 0], ci["y"][1, 0]])

    def mann_whitney(a, b):  # P(a > b) + P(a == b) / 2 over all pairs, averaged over envs
        return np.mean([np.mean((a[:, t, None] > b[None, :, t]) + 0.5 * (a[:, t, None] == b[None, :, t])) for t in range(a.shape[1])])

    assert agg["improvement"]["x > y"]["p"] == pytest.approx(mann_whitney(x, y))
    assert agg["improvement"]["y > x"]["p"] == pytest.approx(1 - mann_whitney(x, y))
    lo, hi = agg["improvement"]["x > y"]["ci"]
    assert 0 <= lo <= agg["improvement"]["x > y"]["p"] <= hi <= 1
    assert "min-max over the final returns" in md and "Left out (no finished run on some env): z." in md
    assert "| P(row > column) | x | y |" in md


def test_unfinished_runs_are_listed_apart(report):
    result, md, _, _ = report
    unfinished = {(u["env"], u["algo"], u["seed"]): u for u in result["unfinished"]}
    assert set(unfinished) == {("EnvA-v0", "x", 7), ("EnvA-v0", "y", 8), ("EnvB-v0", "x", 9)}
    assert unfinished["EnvB-v0", "x", 9]["error"] == "ConfigError: alpha must be > 0, got -1.0"
    assert unfinished["EnvA-v0", "x", 7]["env_steps"] == 600
    body, _, tail = md.partition("## Runs that did not finish")
    assert "1000000.0" not in body and "1000000.0" in tail
    assert "| EnvA-v0 | y | 8 | 700 / 1000 |" in tail


def test_costs_protocol_figures_and_plain_runs(report):
    result, md, out, plain = report
    # s per 1k env steps = mean of 1000 / steps_per_s over the seeds (200, 201, 202 env steps/s)
    assert f"| EnvA-v0 | x | 3 | {np.mean([1000 / 200, 1000 / 201, 1000 / 202]):.1f} | 5.00 |" in md
    assert "| EnvB-v0 | y | 3 | - | - | - | - |" in md  # no cost fields: tolerated
    assert "evaluation every 500 steps on 4 episodes" in md
    assert "`wppg bench run test.toml --out runs`" in md and "TestCPU 9000" not in md  # unfinished runs' machines not used
    for env in ("EnvA-v0", "EnvB-v0", "EnvC-v0"):
        png = out.parent / "figures" / "bench" / f"{env}.png"
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
        assert f"](figures/bench/{env}.png)" in md
    assert result["envs"]["EnvC-v0"] == {"sac-fixed": {"seeds": [0], "return_mode": {"values": [1.0], "mean": 1.0, "ci": [None, None]},
                                                      "return_stochastic": {"values": [0.0], "mean": 0.0, "ci": [None, None]}}}  # fmt: skip
    assert plain.exists()


def test_report_of_nothing_fails_clearly(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    assert "no run directories" in err.getvalue()


def test_notes_go_under_the_header_and_a_missing_notes_file_is_refused(tmp_path):
    write_run(tmp_path / "runs", "EnvA-v0", "x", 0, 1.0)
    notes = tmp_path / "notes.md"
    notes.write_text("Scope: EnvA only; EnvD was left out (no budget).\n")
    out = tmp_path / "r.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "50", "--notes", str(notes)]) == 0
    md = out.read_text()
    assert md.index("Scope: EnvA only; EnvD was left out (no budget).") < md.index("## Final evaluation return per env")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--notes", str(tmp_path / "missing.md")]) == 2
    assert "missing.md does not exist" in err.getvalue()
