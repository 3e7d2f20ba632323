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
        run = {
            "env_id": env,
            "algo": algo,
            "seed": seed,
            "steps": BUDGET,
            "hyperparameters": {"eval_episodes": 4},
            "resources": {"cpus": 1, "gpus": 0},
        }
        (d / "bench.json").write_text(json.dumps({"run": run, "command": "wppg bench run test.toml --out runs"}))
    config = {"variant": "sac" if algo.startswith("sac") else algo, "env_id": env, "algo_config": {"alpha": 0.2 if algo == "sac-fixed" else "auto"},
              "train_config": {"seed": seed, "total_steps": BUDGET, "eval_episodes": 4, "eval_every": 500}}  # fmt: skip
    (d / "config.json").write_text(json.dumps(config))
    rows = [(500, final / 2), (steps, final)] if steps > 500 else [(steps, final)]
    lines = ["step,return_stochastic,return_stochastic_std,return_mode,return_mode_std"]
    lines += [f"{s},{v - 1},0.0,{v},0.0" for s, v in rows]
    (d / "eval.csv").write_text("\n".join(lines) + "\n")
    if summary:
        s = {
            **config,
            "env_steps": steps,
            "final_eval": {"step": steps, "return_mode": final, "return_stochastic": final - 1},
        }
        if costs:
            s.update(
                steps_per_s=200.0 + seed,
                wall_time_s=steps / (200.0 + seed),
                cpu_time_s=0.5 * steps / (200.0 + seed),
                update_time_s=2.0,
                update_calls=400,
                ms_per_gradient_step=5.0,
                peak_rss_mb=700.0 + seed,
            )
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
    (root / "EnvA-v0" / "x" / "seed7" / "machine.json").write_text(
        json.dumps({"cpu_model": "TestCPU 9000", "cpu_count": 2})
    )
    # a warning a run gave during training (`BaseTrainer.check_row`)
    summary_path = root / "EnvA-v0" / "x" / "seed1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(
        json.dumps({**summary, "warnings": ["wppg at env step 600: the learned temperature tau fell"]})
    )
    # a `wppg train` run without bench.json: its label comes from config.json (sac with a fixed alpha)
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
    _, ci = rly.get_interval_estimates(
        {"x": x, "y": y}, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]), reps=300
    )
    assert agg["algos"]["y"]["iqm_ci"] == pytest.approx([ci["y"][0, 0], ci["y"][1, 0]])

    def mann_whitney(a, b):  # P(a > b) + P(a == b) / 2 over all pairs, averaged over envs
        return np.mean(
            [
                np.mean((a[:, t, None] > b[None, :, t]) + 0.5 * (a[:, t, None] == b[None, :, t]))
                for t in range(a.shape[1])
            ]
        )

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


def test_warnings_of_the_runs_are_listed(report):
    result, md, _, _ = report
    assert result["warnings"] == [
        {"env": "EnvA-v0", "algo": "x", "seed": 1, "warning": "wppg at env step 600: the learned temperature tau fell"}
    ]
    section = md.partition("## Warnings the runs gave")[2].partition("\n## ")[0]
    assert "| EnvA-v0 | x | 1 | wppg at env step 600: the learned temperature tau fell |" in section


def test_costs_protocol_figures_and_plain_runs(report):
    result, md, out, plain = report
    # s per 1k env steps = mean of 1000 / steps_per_s over the seeds (200, 201, 202 env steps/s); the
    # runs' CPU time is half their wall time
    per_1k = np.mean([1000 / 200, 1000 / 201, 1000 / 202])
    assert f"| EnvA-v0 | x | 3 | {per_1k:.1f} | {per_1k / 2:.1f} | 5.00 |" in md
    assert "| EnvB-v0 | y | 3 | - | - | - | - | - |" in md  # no cost fields: tolerated
    assert "evaluation every 500 steps on 4 episodes" in md
    assert (
        "`wppg bench run test.toml --out runs`" in md and "TestCPU 9000" not in md
    )  # unfinished runs' machines not used
    for env in ("EnvA-v0", "EnvB-v0", "EnvC-v0"):
        png = out.parent / "figures" / "bench" / f"{env}.png"
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
        assert f"](figures/bench/{env}.png)" in md

    # last 5: the mean of both evaluations (500 and 1000) the run has
    def one(v):
        return {"values": [v], "mean": v, "ci": [None, None]}

    assert result["envs"]["EnvC-v0"] == {"sac-fixed": {
        "seeds": [0], "return_mode": one(1.0), "return_stochastic": one(0.0),
        "last5_return_mode": one(0.75), "last5_return_stochastic": one(-0.25),
    }}  # fmt: skip
    assert plain.exists()


def test_costs_of_runs_on_different_cpus_are_kept_apart(tmp_path):
    for seed, cpu in enumerate(["CPU-A", "CPU-B", "CPU-B"]):
        d = write_run(tmp_path / "runs", "EnvA-v0", "x", seed, 10.0)
        (d / "machine.json").write_text(json.dumps({"cpu_model": cpu, "cpu_count": 2}))
    out = tmp_path / "bench.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "50"]) == 0
    md = out.read_text()
    assert "| env | algorithm | CPU | runs |" in md
    assert f"| EnvA-v0 | x | CPU-A | 1 | {1000 / 200:.1f} |" in md
    assert f"| EnvA-v0 | x | CPU-B | 2 | {np.mean([1000 / 201, 1000 / 202]):.1f} |" in md


def test_cpus_of_one_name_are_told_apart_by_family_and_vector_extension(tmp_path):
    """Clouds name several CPU generations alike ('AMD EPYC'): machine.json records the family/model
    numbers and the widest vector extension, and the cost section keeps such runs apart."""
    from wppg.bench.machine import cpu_identity, cpu_label

    info = (
        "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: {}\nmodel\t\t: {}\nflags\t\t: fpu {}\n\nprocessor\t: 1\n"
    )
    zen2 = cpu_identity(info.format(23, 49, "sse2 avx avx2"))
    zen5 = cpu_identity(info.format(26, 2, "avx2 avx512f avx512_bf16"))
    assert zen2 == {"cpu_model": "AMD EPYC", "cpu_family_model": "23/49", "cpu_simd": "AVX2"}
    assert cpu_label(zen5) == "AMD EPYC (family/model 26/2, AVX-512)"
    assert cpu_identity(info.format(6, 143, "avx512f amx_tile"))["cpu_simd"] == "AMX"
    assert cpu_label({"cpu_model": "AMD EPYC"}) == "AMD EPYC"  # a machine.json from before these fields
    for seed, machine in enumerate([zen2, zen5, {"cpu_model": "AMD EPYC"}]):
        d = write_run(tmp_path / "runs", "EnvA-v0", "x", seed, 10.0)
        (d / "machine.json").write_text(json.dumps({**machine, "cpu_count": 2}))
    out = tmp_path / "bench.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "50"]) == 0
    md = out.read_text()
    for label in ("AMD EPYC (family/model 23/49, AVX2)", "AMD EPYC (family/model 26/2, AVX-512)", "AMD EPYC"):
        assert f"| EnvA-v0 | x | {label} | 1 |" in md


def test_one_run_per_env_gets_no_aggregate_ci(tmp_path):
    # A bootstrap over one run per env redraws that run: its interval would have no width. The report
    # says so instead of printing [p, p], and flags a pair where only one side can be resampled.
    finals = {
        "EnvA-v0": {"a": [0.0, 10.0], "b": [4.0], "c": [6.0]},
        "EnvB-v0": {"a": [5.0, 1.0], "b": [2.0], "c": [0.0]},
    }
    for env, by_algo in finals.items():
        for algo, values in by_algo.items():
            for seed, v in enumerate(values):
                write_run(tmp_path / "runs", env, algo, seed, v)
    out = tmp_path / "r.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "100"]) == 0
    agg, md = json.loads(out.with_suffix(".json").read_text())["aggregate"], out.read_text()
    assert agg["algos"]["a"]["iqm_ci"] is not None and agg["algos"]["a"]["runs_per_env"] == 2
    assert agg["algos"]["b"]["iqm_ci"] is None and agg["algos"]["b"]["mean_ci"] is None
    # b and c: one run each per env, P(b > c) = (1 + 0) / 2 on EnvA (4 < 6) and EnvB (2 > 0)
    assert agg["improvement"]["b > c"] == {"p": pytest.approx(0.5), "ci": None, "one_side_single": False}
    assert agg["improvement"]["a > b"]["ci"] is not None and agg["improvement"]["a > b"]["one_side_single"]
    lo, hi = agg["improvement"]["a > b"]["ci"]
    assert lo < hi  # a's two runs per env are resampled
    b_iqm = agg["algos"]["b"]["iqm"]
    assert f"| b | 1 | {b_iqm:.3f} (no CI) |" in md and "no CI: one run per env" in md
    assert "| 0.50 (no CI) |" in md and "]* |" in md and "*: one of the two algorithms has one run per env" in md


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


# --- the last-n metric and the policy-spread section, on runs with longer eval.csv and a train.csv -----------------
EVAL_STEPS = [125, 250, 375, 500, 625, 750, 875, 1000]


def write_long_run(root: Path, env: str, algo: str, seed: int, evals: list[float], *, spread: bool = True) -> Path:
    """A finished run whose eval.csv has one row per EVAL_STEPS (the budget's row written twice, as a
    final evaluation after a periodic one could be) and, with `spread`, a train.csv of diagnostics."""
    d = write_run(root, env, algo, seed, evals[-1])
    rows = [*zip(EVAL_STEPS, evals, strict=True), (BUDGET, evals[-1])]
    lines = ["step,return_stochastic,return_stochastic_std,return_mode,return_mode_std"]
    (d / "eval.csv").write_text("\n".join([*lines, *(f"{s},{v - 1},0.0,{v},0.0" for s, v in rows)]) + "\n")
    if spread:
        temp = "alpha" if algo == "sac" else "tau"
        rows = ["step,critic_loss,policy_std,policy_entropy," + temp]
        rows.append("100,1.0,,,")  # a row before the diagnostics started: left out of the curves
        for s in range(200, BUDGET + 1, 200):
            rows.append(f"{s},1.0,{0.5 - s / 4000 + seed / 100},{-1.0 - s / 1000 - seed / 10},{0.2 - s / 10000}")
        (d / "train.csv").write_text("\n".join(rows) + "\n")
    return d


LONG = {  # env -> algo -> one eval curve per seed
    "EnvA-v0": {"sac": [[0, 1, 2, 3, 4, 5, 6, 7], [0, 10, 20, 30, 40, 50, 60, 10]],
                "wppg": [[5, 5, 5, 5, 5, 5, 5, 5], [1, 1, 1, 9, 9, 9, 9, 9], [0, 0, 0, 0, 0, 0, 0, 100]]},
    "EnvB-v0": {"sac": [[0, 0, 0, 10, 20, 30, 40, 50], [0, 0, 0, 0, 0, 0, 0, 0]],
                "wppg": [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], [3, 3, 3, 3, 3, 3, 3, 3]]},
}  # fmt: skip


@pytest.fixture(scope="module")
def long_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    for env, by_algo in LONG.items():
        for algo, curves in by_algo.items():
            for seed, evals in enumerate(curves):
                write_long_run(root, env, algo, seed, [float(v) for v in evals])
    write_long_run(root, "EnvA-v0", "sbx-sac", 0, [1.0] * 8, spread=False)  # a reference without diagnostics
    out = tmp_path_factory.mktemp("docs") / "long.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(root), "--out", str(out), "--reps", "100"]) == 0
    return json.loads(out.with_suffix(".json").read_text()), out.read_text(), out, root


def test_last_five_evaluations_per_env_and_across_envs(long_report):
    from rliable import metrics

    result, md, _, _ = long_report
    last5 = {env: {a: [float(np.mean(c[-5:])) for c in curves] for a, curves in by.items()} for env, by in LONG.items()}
    row = result["envs"]["EnvA-v0"]["wppg"]
    assert row["last5_return_mode"]["values"] == pytest.approx(last5["EnvA-v0"]["wppg"])  # the doubled row counts once
    assert row["last5_return_stochastic"]["mean"] == pytest.approx(np.mean(last5["EnvA-v0"]["wppg"]) - 1)
    assert row["last5_return_mode"]["ci"] == pytest.approx(list(percentile_bootstrap(last5["EnvA-v0"]["wppg"])))
    assert row["return_mode"]["values"] == [5.0, 9.0, 100.0]  # the final return is still the end point
    m, (lo, hi) = np.mean(last5["EnvA-v0"]["sac"]), percentile_bootstrap(last5["EnvA-v0"]["sac"])
    assert f"| {m:.1f} [{lo:.1f}, {hi:.1f}] | {m - 1:.1f} [" in md
    # Across envs: min-max per env over the last-5 values, then IQM (rliable), sac with 2 runs per env.
    agg = result["aggregate_last5"]
    last5["EnvA-v0"]["sbx-sac"] = [1.0]  # the reference's run enters the bounds, not the matrices (no EnvB run)
    scores = {}
    for env, by in last5.items():
        lo_e, hi_e = min(min(v) for v in by.values()), max(max(v) for v in by.values())
        assert agg["bounds"][env] == pytest.approx([lo_e, hi_e])
        scores[env] = {a: (np.asarray(v) - lo_e) / (hi_e - lo_e) for a, v in by.items()}
    sac = np.stack([scores["EnvA-v0"]["sac"], scores["EnvB-v0"]["sac"]], axis=1)
    wppg = np.stack([scores["EnvA-v0"]["wppg"], scores["EnvB-v0"]["wppg"]], axis=1)
    assert agg["algos"]["sac"]["iqm"] == pytest.approx(metrics.aggregate_iqm(sac))
    assert agg["algos"]["wppg"]["mean"] == pytest.approx(wppg.mean())
    assert agg["improvement"]["sac > wppg"]["p"] == pytest.approx(metrics.probability_of_improvement(sac, wppg))
    assert agg["left_out"] == ["sbx-sac"] and result["aggregate"]["bounds"]["EnvA-v0"] == [1.0, 100.0]
    assert "## Across envs: normalised IQM and probability of improvement, on the mean of the last 5 evaluations" in md
    assert "| algorithm | seeds | return, mode | return, stochastic | last 5, mode | last 5, stochastic |" in md


def test_policy_spread_table_and_figure(long_report, monkeypatch):
    result, md, out, root = long_report
    spread = result["spread"]["EnvA-v0"]
    assert set(spread) == {"sac", "wppg"}  # sbx-sac has no diagnostics
    # each run's last train.csv row (step 1000): entropy -2 - seed/10, std 0.25 + seed/100, temperature 0.1
    assert spread["wppg"]["policy_entropy"]["values"] == pytest.approx([-2.0, -2.1, -2.2])
    assert spread["sac"]["policy_std"]["mean"] == pytest.approx(0.255)
    assert spread["sac"]["temperature"]["values"] == pytest.approx([0.1, 0.1])
    assert "| wppg | 3 | -2.100 [" in md and "## Policy spread" in md and "-0.88 nats per action dimension" in md
    table = md.split("## Policy spread")[1].split("### EnvA-v0")[1].split("![")[0].strip().splitlines()
    assert table[0].startswith("| algorithm | runs | policy entropy | policy entropy (knn) |")
    assert len({line.count("|") for line in table}) == 1, table  # as many cells in every row as in the header
    png = out.parent / "figures" / out.stem / "EnvA-v0-spread.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and f"](figures/{out.stem}/EnvA-v0-spread.png)" in md
    # The figure's curves: one per seed, the rows without diagnostics dropped, temperatures on a log axis.
    import wppg.plotting
    from wppg.bench.report import build_report

    seen = []
    given = []  # the colour map each figure was drawn with
    monkeypatch.setattr(
        wppg.plotting,
        "plot_panels",
        lambda panels, path, title, colors: seen.append(panels) or given.append(colors) or path,
    )
    monkeypatch.setattr(
        wppg.plotting, "plot_curves", lambda curves, path, title, ylabel, colors: given.append(colors) or path
    )
    build_report([root / "EnvB-v0"], out.parent / "again.md", reps=20, last=3)
    assert len(given) == 2 and all(g == wppg.plotting.label_colors(["sac", "wppg"]) for g in given)
    entropy, _, temperature = seen[0]
    assert [len(c) for c in entropy[0].values()] == [2, 3] and entropy[2] is False and temperature[2] is True
    steps, values = entropy[0]["sac"][1]
    assert steps.tolist() == list(range(200, 1001, 200)) and values[0] == pytest.approx(-1.3)
    again = json.loads((out.parent / "again.json").read_text())
    assert again["envs"]["EnvB-v0"]["sac"]["last3_return_mode"]["values"] == pytest.approx([40.0, 0.0])


def test_an_algorithm_keeps_its_colour_in_panels_that_lack_others():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wppg.plotting import _draw_curves, label_colors

    run = (np.arange(3), np.zeros(3))
    colors = label_colors(["wppg", "sac", "wppg-i", "sac"])
    assert list(colors) == ["sac", "wppg", "wppg-i"] and len(set(colors.values())) == 3
    fig, (full, partial) = plt.subplots(1, 2)
    _draw_curves(full, {"sac": [run], "wppg": [run], "wppg-i": [run]}, colors)
    _draw_curves(partial, {"sac": [run], "wppg-i": [run]}, colors)  # a panel without wppg's column
    drawn = [{line.get_label().split()[0]: line.get_color() for line in ax.lines} for ax in (full, partial)]
    plt.close(fig)
    assert drawn[0] == colors and drawn[1] == {"sac": colors["sac"], "wppg-i": colors["wppg-i"]}


# --- equal compute: eval curves against CPU and wall seconds, rebuilt from train.csv's rates ------------------------
def write_timed_run(root: Path, env: str, algo: str, seed: int, times: dict[int, float], evals: dict[int, float], *,
                    cpu_share: float | None = 0.5, train: bool = True) -> Path:  # fmt: skip
    """A finished run whose train.csv rows at `times`' steps log the mean rate since the start (what the trainer
    writes: step / elapsed wall seconds), with eval.csv at `evals`' steps, wall_time_s the last row's time and
    cpu_time_s `cpu_share` of it."""
    d = write_run(root, env, algo, seed, evals[max(evals)])
    lines = ["step,return_stochastic,return_stochastic_std,return_mode,return_mode_std"]
    (d / "eval.csv").write_text("\n".join([*lines, *(f"{s},{v - 1},0.0,{v},0.0" for s, v in evals.items())]) + "\n")
    if train:
        rows = ["step,critic_loss,steps_per_s", *(f"{s},1.0,{s / t}" for s, t in times.items())]
        (d / "train.csv").write_text("\n".join(rows) + "\n")
    summary = json.loads((d / "summary.json").read_text())
    wall = times[max(times)]
    summary.update(wall_time_s=wall, steps_per_s=BUDGET / wall)
    summary.pop("cpu_time_s")
    if cpu_share is not None:
        summary["cpu_time_s"] = cpu_share * wall
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_time_curve_places_evaluations_at_the_seconds_the_rates_imply(tmp_path):
    from wppg.bench.report import load_run, time_curve

    # 10 s to step 500, then 2 s to 1000: the rates 50 and 83.3 steps/s are means since the start, so step
    # 1000 is at 12 s (integrating them as rates of each interval would give 16 s)
    d = write_timed_run(
        tmp_path, "EnvA-v0", "sac", 0, {500: 10.0, 1000: 12.0}, {250: 1.0, 500: 2.0, 750: 3.0, 1000: 4.0}
    )
    wall, _ = time_curve(load_run(d), clock="wall")
    np.testing.assert_allclose(wall.seconds, [5.0, 10.0, 11.0, 12.0])  # step 250: between the start and step 500
    np.testing.assert_allclose(wall.values, [1.0, 2.0, 3.0, 4.0])
    assert wall.total == pytest.approx(12.0)
    cpu, why = time_curve(load_run(d), clock="cpu")
    assert why == "" and cpu.total == pytest.approx(6.0)
    np.testing.assert_allclose(cpu.seconds, [2.5, 5.0, 5.5, 6.0])  # scaled by cpu_time_s / wall_time_s = 0.5


def test_runs_lacking_what_a_clock_needs_are_left_out_and_counted(tmp_path):
    from wppg.bench.report import load_run, time_curve

    times, evals = {500: 5.0, 1000: 10.0}, {500: 1.0, 1000: 2.0}
    no_train = write_timed_run(tmp_path, "EnvA-v0", "sac", 0, times, evals, train=False)
    no_cpu = write_timed_run(tmp_path, "EnvA-v0", "sac", 1, times, evals, cpu_share=None)
    resumed = write_timed_run(tmp_path, "EnvA-v0", "sac", 2, times, evals)
    summary = json.loads((resumed / "summary.json").read_text())  # the summary times only the part after a resume
    (resumed / "summary.json").write_text(json.dumps({**summary, "wall_time_s": 4.0, "cpu_time_s": 2.0}))
    assert time_curve(load_run(no_train))[1] == "no train.csv with steps_per_s"
    assert time_curve(load_run(no_cpu), clock="cpu")[1] == "no cpu_time_s in summary.json"
    assert time_curve(load_run(no_cpu), clock="wall")[0] is not None
    assert time_curve(load_run(resumed), clock="wall")[1].startswith("resumed")
    with pytest.raises(Exception, match="clock must be one of"):
        time_curve(load_run(no_cpu), clock="gpu")


def test_at_budget_interpolates_and_marks_runs_that_ended_before():
    from wppg.bench.report import TimeCurve, at_budget

    c = TimeCurve(np.array([2.0, 4.0, 6.0]), np.array([200, 400, 600]), np.array([0.0, 10.0, 30.0]), total=8.0)
    assert at_budget(c, 5.0) == (20.0, 500.0, False)
    assert at_budget(c, 3.0) == (5.0, 300.0, False)
    assert at_budget(c, 7.0) == (30.0, 600.0, False)  # after its last evaluation, within its run
    assert at_budget(c, 9.0) == (30.0, 600.0, True)


def test_equal_compute_section_and_table(tmp_path):
    from wppg.bench.report import build_report

    evals = {250: 0.0, 500: 10.0, 750: 20.0, 1000: 30.0}
    for seed, wall in enumerate([10.0, 30.0]):  # sac: 5 and 15 CPU s, so its budget is 10
        write_timed_run(tmp_path, "EnvA-v0", "sac", seed, {500: wall / 2, 1000: wall}, evals)
    for seed, wall in enumerate([40.0, 80.0]):  # x: step 1000 at 20 and 40 CPU s
        write_timed_run(tmp_path, "EnvA-v0", "x", seed, {500: wall / 2, 1000: wall}, evals)
    write_timed_run(tmp_path, "EnvA-v0", "x", 2, {500: 1.0, 1000: 2.0}, evals, train=False)
    write_timed_run(tmp_path, "EnvA-v0", "x", 3, {500: 1.0, 1000: 2.0}, evals, cpu_share=None)
    out = tmp_path / "report" / "r.md"
    result = build_report([tmp_path / "EnvA-v0"], out, reps=50)
    cpu = result["equal_compute"]["cpu"]
    assert [Path(p).name for p in cpu["left_out"]["no train.csv with steps_per_s"]] == ["seed2"]
    assert len(cpu["left_out"]["no cpu_time_s in summary.json"]) == 1
    env = cpu["envs"]["EnvA-v0"]
    assert env["budget"] == pytest.approx(10.0)
    # sac seed 0 ended at 5 s (final 30); seed 1 reaches 10 s at step 666.7, between the evaluations at 500 and 750
    assert env["algos"]["sac"]["return"]["values"] == pytest.approx([30.0, 10.0 + 10.0 * 166.667 / 250], rel=1e-5)
    assert env["algos"]["sac"]["ended_before"] == 1
    # x at 10 CPU s: seed 0 (0.02 s per step) at step 500, seed 1 (0.04 s per step) at step 250
    assert env["algos"]["x"]["return"]["values"] == pytest.approx([10.0, 0.0])
    assert env["algos"]["x"]["env_steps"]["values"] == pytest.approx([500.0, 250.0])
    assert len(result["equal_compute"]["wall"]["left_out"]["no train.csv with steps_per_s"]) == 1
    assert "no cpu_time_s in summary.json" not in result["equal_compute"]["wall"]["left_out"]
    text = out.read_text()
    assert "## Equal compute" in text and "Runs: 4 of 6; left out: 2" in text
    assert (out.parent / "figures" / "r" / "EnvA-v0-cpu-seconds.png").exists()
    assert (out.parent / "figures" / "r" / "EnvA-v0-wall-seconds.png").exists()
