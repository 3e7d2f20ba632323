"""`wppg report`: aggregate run directories into a Markdown report with figures.

Per env: the final evaluation return (mode and stochastic) of the finished runs and the mean of
each run's last 5 evaluations, mean and 95% percentile-bootstrap CI over seeds. Across envs, for
both: min-max normalised scores, their interquartile mean (IQM) with 95% stratified-bootstrap CIs
and the probability of improvement of each algorithm over each other (rliable). Learning curves
per env (mean and 95% bootstrap band), also against CPU and wall-clock seconds with each algorithm's
return at SAC's budget (equal compute); the policy's spread (train.csv's `policy_entropy`,
`policy_std` and the temperature) per env, as curves and at the end of training; the cost per
algorithm, the protocol, and the runs that did not finish, listed apart. Runs on the `wppg/` tasks
add their task metrics (distance to the soft-optimal policy, mode masses, goals).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wppg.bench.machine import cpu_label, machine_line
from wppg.bench.spec import BenchError
from wppg.bench.worker import ERROR_FILE, RUN_FILE, read_json
from wppg.diagnostics import SIGMA as SPREAD_SIGMA
from wppg.logger import read_csv
from wppg.plotting import bootstrap_ci

NORMALISATION = (
    "Scores are normalised per env by min-max over the {what} of all finished runs of "
    "that env in this report: (R - min) / (max - min), so 0 is the worst run and 1 the best. The "
    "normalisation depends on which runs are in the report; compare algorithms within one report only."
)
NO_CI = (
    "no CI: one run per env, which a bootstrap over runs can only redraw (an interval of no width); the point "
    "is one run's score and ranks nothing."
)
ONE_SIDE_SINGLE = (
    "*: one of the two algorithms has one run per env, which the bootstrap cannot resample: the CI spans only "
    "the other's spread and understates the uncertainty."
)
GUIDE = 'docs/guide/benchmarking.md, "Reading a report"'
"""Where the report's columns are explained."""
LAST = 5
"""Evaluations averaged by the end-of-training metric that complements the final return."""
# The temperature columns of train.csv: SAC's alpha, WPPG's tau (fixed or learned).
TEMPERATURES = ("alpha", "tau")


@dataclass
class RunRecord:
    """What the report needs of one run directory."""

    path: Path
    env_id: str
    algo: str
    seed: int | None
    budget: int | None
    env_steps: int
    finished: bool
    final: dict[str, float]
    curve: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    train: dict[str, list[float]] = field(default_factory=dict)
    """train.csv's columns (empty when the run has none)."""
    machine: dict[str, Any] = field(default_factory=dict)
    """machine.json (empty when the run has none), read once here."""


def _algo_label(summary: dict[str, Any], config: dict[str, Any]) -> str | None:
    """A run's algorithm name: the suite's name if the harness ran it, else from its variant."""
    for source in (summary, config):
        if source.get("bench_algo"):
            return source["bench_algo"]
    variant = summary.get("variant") or config.get("variant") or summary.get("algo") or config.get("algo")
    algo_cfg = summary.get("algo_config") or config.get("algo_config") or {}
    # A fixed temperature: alpha a number, or (configs written before alpha took 'auto') autotune false.
    fixed = algo_cfg["autotune"] is False if "autotune" in algo_cfg else algo_cfg.get("alpha", "auto") != "auto"
    if variant == "sac" and fixed:
        return "sac-fixed"
    return variant


def _object(d: dict[str, Any], key: str, where: Path) -> dict[str, Any]:
    """`d[key]` when it is a JSON object ({} when absent), else a `BenchError` naming the file."""
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BenchError(f"{where}: {key!r} must be a JSON object, got {type(v).__name__}")
    return v


def _count_field(v: Any, key: str, where: Path) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**53:
        raise BenchError(f"{where}: {key!r} must be a non-negative integer, got {str(v)[:40]}")
    return v


def _text_field(v: Any, key: str, where: Path) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise BenchError(f"{where}: {key!r} must be a string, got {type(v).__name__}")


def load_run(path: Path) -> RunRecord | None:
    """Read a run directory; None when it holds nothing that says which env and algorithm it is. A
    file of the wrong shape (a list for an object, a string for a count) is a `BenchError` naming it."""
    bench_path, summary_path, config_path = path / RUN_FILE, path / "summary.json", path / "config.json"
    bench = read_json(bench_path) or {}
    run = _object(bench, "run", bench_path)
    summary = read_json(summary_path) or {}
    config = read_json(config_path) or {}
    train = _object(config, "train_config", config_path)
    _object(summary, "final_eval", summary_path)
    for key in ("env_id", "algo"):
        _text_field(run.get(key), key, bench_path)
    for key in ("env_id", "bench_algo", "variant", "algo"):
        _text_field(summary.get(key), key, summary_path)
        _text_field(config.get(key), key, config_path)
    _object(summary, "algo_config", summary_path)
    _object(config, "algo_config", config_path)
    _count_field(summary.get("env_steps"), "env_steps", summary_path)
    _count_field(summary.get("bench_budget"), "bench_budget", summary_path)
    for key in ("seed", "steps"):
        _count_field(run.get(key), key, bench_path)
    for key in ("seed", "total_steps"):
        _count_field(train.get(key), f"train_config.{key}", config_path)
    env_id = run.get("env_id") or summary.get("env_id") or config.get("env_id")
    algo = run.get("algo") or _algo_label(summary, config)
    if env_id is None or algo is None:
        return None
    seed = run.get("seed", train.get("seed"))
    budget = run.get("steps") or summary.get("bench_budget") or train.get("total_steps")
    try:
        curve = read_csv(path / "eval.csv") if (path / "eval.csv").exists() else {}
    except (OSError, ValueError) as e:
        raise BenchError(f"{path / 'eval.csv'}: not a readable eval.csv ({e})") from None
    try:
        train_rows = read_csv(path / "train.csv") if (path / "train.csv").exists() else {}
    except (OSError, ValueError):  # a file cut mid-row by a killed run: its curves are left out
        train_rows = {}
    if summary:
        env_steps = int(summary.get("env_steps") or 0)
    else:
        env_steps = int(curve["step"][-1]) if curve.get("step") else 0
    finished = bool(summary) and (budget is None or env_steps >= int(budget)) and summary.get("final_eval") is not None
    final = dict(summary.get("final_eval") or {}) if finished else {}
    if not finished and curve.get("step"):
        final = {k: v[-1] for k, v in curve.items()}
    error = None
    if (path / ERROR_FILE).exists():
        lines = (path / ERROR_FILE).read_text(errors="replace").splitlines()
        error = lines[0] if lines else "failed"
    return RunRecord(path, env_id, algo, None if seed is None else int(seed), None if budget is None else int(budget),
                     env_steps, finished, final, curve, summary, config, bench, error, train_rows,
                     read_json(path / "machine.json") or {})  # fmt: skip


def discover(paths: list[str | Path]) -> list[RunRecord]:
    """Every run directory under `paths` (a directory holding summary.json, eval.csv or bench.json)."""
    dirs: set[Path] = set()
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        for name in ("summary.json", "eval.csv", RUN_FILE):
            for p in [root / name, *root.rglob(name)]:
                if p.is_file() and not {"checkpoints", "tb"} & set(p.parts):
                    dirs.add(p.parent.resolve())
    records = [r for r in (load_run(d) for d in sorted(dirs)) if r is not None]
    return sorted(records, key=lambda r: (r.env_id, r.algo, r.seed if r.seed is not None else -1, str(r.path)))


# --- statistics ---------------------------------------------------------------------------------
def mean_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap CI of the mean (NaN bounds with a single value)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float("nan"), float("nan")
    lo, hi = bootstrap_ci(values[:, None], n_boot=n_boot, seed=seed)
    return float(values.mean()), float(lo[0]), float(hi[0])


def last_mean(record: RunRecord, key: str, n: int = LAST) -> float | None:
    """Mean of `key` over the run's last `n` evaluations up to its budget (the final one included; a
    step logged twice counts once, with its later row); None without evaluations of `key`."""
    steps, values = record.curve.get("step"), record.curve.get(key)
    if not steps or values is None:
        return None
    by_step = {int(s): float(v) for s, v in zip(steps, values, strict=True)
               if record.budget is None or s <= record.budget}  # fmt: skip
    kept = [by_step[s] for s in sorted(by_step)][-n:]
    kept = [v for v in kept if np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _stats(vals: np.ndarray) -> dict[str, Any]:
    """{values, mean, ci} of the report's JSON (ci [None, None] for one value) and the raw `ci_bounds`."""
    m, lo, hi = mean_ci(vals)
    ci = [lo, hi] if np.isfinite(lo) else [None, None]
    return {"values": vals.tolist(), "mean": m, "ci": ci, "ci_bounds": (lo, hi)}


def normalise(
    finals: dict[str, dict[str, list[float]]],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, tuple[float, float]]]:
    """Min-max normalisation per env: finals[env][algo] -> scores[env][algo], bounds[env]. Envs
    whose runs all scored the same (max == min) are left out: they cannot be normalised."""
    scores, bounds = {}, {}
    for env, by_algo in finals.items():
        allv = np.concatenate([np.asarray(v, float) for v in by_algo.values()])
        lo, hi = float(allv.min()), float(allv.max())
        if hi > lo:
            bounds[env] = (lo, hi)
            scores[env] = {a: (np.asarray(v, float) - lo) / (hi - lo) for a, v in by_algo.items()}
    return scores, bounds


def score_matrices(scores: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """rliable's input: algo -> [runs x envs] over the envs of `scores`, for the algorithms with at
    least one run on every env; each algorithm keeps its first n runs per env, n = its smallest
    seed count over the envs. Returns (matrices, envs, algorithms left out)."""
    envs = sorted(scores)
    algos = sorted({a for by_algo in scores.values() for a in by_algo})
    complete = [a for a in algos if all(len(scores[e].get(a, [])) > 0 for e in envs)]
    mats = {}
    for a in complete:
        n = min(len(scores[e][a]) for e in envs)
        mats[a] = np.stack([scores[e][a][:n] for e in envs], axis=1)
    return mats, envs, [a for a in algos if a not in complete]


@contextlib.contextmanager
def _rliable_seeded(seed: int) -> Iterator[None]:
    """rliable draws its stratified resamples from NumPy's global generator (its `random_state`
    argument does not reach them): seed that, and put its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate(mats: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """IQM and mean of the normalised scores with 95% stratified-bootstrap CIs, and the probability
    of improvement P(X > Y) of every pair with its CI (rliable)."""
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as e:
        raise BenchError("the aggregate statistics need rliable: pip install -e '.[bench]'") from e

    def iqm_and_mean(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    with _rliable_seeded(seed):
        point, interval = rly.get_interval_estimates(mats, iqm_and_mean, reps=reps)
    out: dict[str, Any] = {"algos": {}, "improvement": {}}
    # With one run per env a bootstrap over runs redraws that run every time: an interval of no width,
    # which is no measure of uncertainty. Such CIs are None; a pair with one such side is flagged.
    single = {a for a in mats if mats[a].shape[0] == 1}
    for a in mats:
        out["algos"][a] = {
            "runs_per_env": int(mats[a].shape[0]),
            "iqm": float(point[a][0]),
            "iqm_ci": None if a in single else [float(interval[a][0, 0]), float(interval[a][1, 0])],
            "mean": float(point[a][1]),
            "mean_ci": None if a in single else [float(interval[a][0, 1]), float(interval[a][1, 1])],
        }
    names = sorted(mats)
    pairs = {f"{x},{y}": (mats[x], mats[y]) for i, x in enumerate(names) for y in names[i + 1 :]}
    if pairs:

        def poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.array([metrics.probability_of_improvement(x, y)])

        with _rliable_seeded(seed):
            p_point, p_interval = rly.get_interval_estimates(pairs, poi, reps=reps)
        for key in pairs:
            x, y = key.split(",")
            p, lo, hi = float(p_point[key][0]), float(p_interval[key][0, 0]), float(p_interval[key][1, 0])
            both, one_side = x in single and y in single, (x in single) != (y in single)
            # Mann-Whitney counts ties as one half, so P(Y > X) = 1 - P(X > Y) exactly.
            for name, value, ci in ((f"{x} > {y}", p, [lo, hi]), (f"{y} > {x}", 1 - p, [1 - hi, 1 - lo])):
                out["improvement"][name] = {"p": value, "ci": None if both else ci, "one_side_single": one_side}
    return out


# --- the report ---------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _mci(m: float, lo: float, hi: float, digits: int = 1) -> str:
    return f"{_f(m, digits)} [{_f(lo, digits)}, {_f(hi, digits)}]" if np.isfinite(lo) else f"{_f(m, digits)}"


def _aggregate_cell(m: float, ci: list[float] | None, digits: int = 3, mark: str = "") -> str:
    """A point with its CI, or marked as having none (one run per env)."""
    return f"{m:.{digits}f} (no CI)" if ci is None else _mci(m, *ci, digits=digits) + mark


def _curves(records: list[RunRecord], metric: str) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for r in records:
        if r.curve.get("step") and metric in r.curve:
            out[r.algo].append((np.asarray(r.curve["step"]), np.asarray(r.curve[metric])))
    return dict(out)


def _cost_row(runs: list[RunRecord]) -> list[str]:
    def values(key: str, f=lambda v: v) -> list[float]:
        return [
            f(float(r.summary[key])) for r in runs if isinstance(r.summary.get(key), int | float) and r.summary[key] > 0
        ]

    per_1k = values("steps_per_s", lambda v: 1000.0 / v)
    # CPU seconds over the same env steps (steps_per_s x wall_time_s of the learn call)
    cpu_1k = [1000.0 * float(r.summary["cpu_time_s"]) / (float(r.summary["steps_per_s"]) * float(r.summary["wall_time_s"]))
              for r in runs if all(isinstance(r.summary.get(k), int | float) and r.summary[k] > 0
                                   for k in ("cpu_time_s", "steps_per_s", "wall_time_s"))]  # fmt: skip
    ms = values("ms_per_gradient_step")
    rss = values("peak_rss_mb")
    upd = [float(r.summary["update_time_s"]) / float(r.summary["wall_time_s"]) for r in runs
           if r.summary.get("update_time_s") is not None and r.summary.get("wall_time_s")]  # fmt: skip
    return [
        _f(np.mean(per_1k) if per_1k else None),
        _f(np.mean(cpu_1k) if cpu_1k else None),
        _f(np.mean(ms) if ms else None, 2),
        _f(100 * np.mean(upd) if upd else None, 0),
        _f(max(rss) if rss else None, 0),
    ]


def _machines(records: list[RunRecord], roots: list[Path]) -> list[str]:
    seen: dict[str, None] = {}
    for m in [*(r.machine for r in records), *(read_json(Path(root) / "machine.json") for root in roots)]:
        if m:
            seen.setdefault(machine_line(m), None)
    return list(seen)


def _versions(records: list[RunRecord], roots: list[Path]) -> dict[str, str]:
    for m in [*(read_json(Path(root) / "machine.json") for root in roots), *(r.machine for r in records)]:
        if m and m.get("packages"):
            return m["packages"]
    return {}


def build_report(
    run_dirs: list[str | Path],
    out: str | Path,
    figures: str | Path | None = None,
    *,
    metric: str = "return_mode",
    reps: int = 2000,
    command: str = "",
    notes: str = "",
    last: int = LAST,
) -> dict[str, Any]:
    """Write the Markdown report to `out` (figures into `figures`) and `out` with suffix .json
    (the numbers); returns those numbers. `notes` (Markdown: the scope of the runs, what was left
    out and why) goes under the header as written. `last`: evaluations of the end-of-training mean."""
    if last < 1:
        raise BenchError(f"--last must be >= 1, got {last}")
    out = Path(out)
    figures = Path(figures) if figures is not None else out.parent / "figures" / out.stem
    records = discover(run_dirs)
    if not records:
        raise FileNotFoundError(
            f"no run directories (with summary.json, eval.csv or {RUN_FILE}) under {', '.join(map(str, run_dirs))}"
        )
    done = [r for r in records if r.finished]
    unfinished = [r for r in records if not r.finished]
    envs = sorted({r.env_id for r in done})
    from wppg.plotting import label_colors

    colors = label_colors(r.algo for r in done)  # an algorithm's colour in every figure of the report
    result: dict[str, Any] = {
        "metric": metric, "last": last, "envs": {}, "aggregate": None, f"aggregate_last{last}": None, "spread": {},
        "unfinished": [],
    }  # fmt: skip
    lines = ["# Benchmark results", ""]
    if command:
        lines += [f"Written by `{command}`.", ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    lines += [
        (
            f"{len(done)} finished runs on {len(envs)} env(s); {len(unfinished)} unfinished or failed run(s) are listed apart "
            "at the end and enter no table or figure."
        ),
        "",
        "## Final evaluation return per env",
        "",
        (
            "Mean over seeds of each run's final evaluation, with its 95% percentile-bootstrap CI (2000 resamples); "
            f"`mode` acts with the policy's mode, `stochastic` samples actions. `last {last}`: the same for the mean of "
            f"each run's last {last} evaluations (the final one included), an end-of-training figure less at the mercy "
            "of one evaluation."
        ),
        "",
    ]
    finals: dict[str, dict[str, list[float]]] = {}
    lasts: dict[str, dict[str, list[float]]] = {}
    for env in envs:
        runs = [r for r in done if r.env_id == env]
        budgets = sorted({r.budget for r in runs if r.budget is not None})
        lines += [f"### {env}", "", f"Budget: {', '.join(f'{b:,}' for b in budgets) or '?'} env steps.", ""]
        lines += [
            f"| algorithm | seeds | return, mode | return, stochastic | last {last}, mode | last {last}, stochastic |",
            "|---|---|---|---|---|---|",
        ]
        result["envs"][env] = {}
        for algo in sorted({r.algo for r in runs}):
            mine = sorted((r for r in runs if r.algo == algo), key=lambda r: (r.seed is None, r.seed))
            row: dict[str, Any] = {"seeds": [r.seed for r in mine]}
            cells = []
            keys = ("return_mode", "return_stochastic")
            for name, get in [
                *((key, lambda r, key=key: r.final.get(key)) for key in keys),
                *((f"last{last}_{key}", lambda r, key=key: last_mean(r, key, last)) for key in keys),
            ]:
                vals = np.array([v for v in map(get, mine) if v is not None], float)
                if len(vals):
                    row[name] = _stats(vals)
                    cells.append(_mci(row[name]["mean"], *row[name]["ci_bounds"]))
                    del row[name]["ci_bounds"]
                else:
                    cells.append("-")
            result["envs"][env][algo] = row
            if metric in row:
                finals.setdefault(env, {})[algo] = row[metric]["values"]
            if f"last{last}_{metric}" in row:
                lasts.setdefault(env, {})[algo] = row[f"last{last}_{metric}"]["values"]
            lines.append(f"| {algo} | {len(mine)} | " + " | ".join(cells) + " |")
        fig = _plot_env(env, runs, figures, metric, colors)
        if fig is not None:
            rel = os.path.relpath(fig, out.parent)
            lines += ["", f"![{env} learning curves]({rel})"]
        lines.append("")

    lines += _task_metrics_section(done, result)
    lines += _aggregate_section(finals, reps, result, metric)
    lines += _aggregate_section(lasts, reps, result, metric, last=last)
    lines += _equal_compute_section(done, figures, out, result, metric, colors)
    lines += _spread_section(done, figures, out, result, colors)
    lines += _cost_section(done)
    lines += _protocol_section(records, done, [Path(p) for p in run_dirs], command)
    lines += _warnings_section(records, result)
    lines += _unfinished_section(unfinished, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


def _plot_env(env: str, runs: list[RunRecord], figures: Path, metric: str, colors: dict[str, str]) -> Path | None:
    from wppg.plotting import plot_curves

    curves = _curves(runs, metric)
    if not curves:
        return None
    safe = env.replace("/", "_")
    return plot_curves(
        curves,
        figures / f"{safe}.png",
        title=f"{env}: mean over seeds, band: 95% bootstrap CI",
        ylabel=f"eval {metric.replace('_', ' ')}",
        colors=colors,
    )


# --- equal compute ------------------------------------------------------------------------------
CLOCKS = {"cpu": "CPU seconds", "wall": "wall-clock seconds"}
"""The clocks of the equal-compute curves: the process's CPU time, or the wall clock."""
REFERENCE = "sac"
"""The algorithm whose full-run time is the budget of the equal-compute table."""
RESUME_SLACK = 1.02
"""A run whose rows imply more time than its summary's wall_time_s (beyond this factor) was resumed."""
EQUAL_COMPUTE = (
    "Evaluation returns against the seconds a run had spent when it evaluated, so that algorithms whose env steps "
    "cost differently are compared at equal compute. The runs do not record the time of an evaluation: it is "
    "reconstructed from train.csv, whose `steps_per_s` is the mean rate since the run started, so a logged row at "
    "step s was reached s / steps_per_s wall seconds in; evaluations between rows are placed by linear "
    "interpolation in env steps. CPU seconds scale these wall seconds by the run's cpu_time_s / wall_time_s "
    "(summary.json), which assumes the run's CPU share was the same throughout. Runs without train.csv rates, "
    "without the summary's times, or resumed (their rates restart at the resume and the summary times only the "
    "last part) are left out of that clock's figure and table, and counted. Figure: the mean over seeds on a "
    "common grid of seconds (each run's returns interpolated between its evaluations, up to the shortest run of "
    "the algorithm), band: 95% bootstrap CI. Table: each run's return at the reference algorithm's budget (the "
    "mean over its runs of their whole run's seconds), interpolated between evaluations; a run that ended before "
    "the budget enters with its final return. The wall clock also counts time a run waited for a shared core."
)


@dataclass
class TimeCurve:
    """A run's evaluations against the seconds it had spent (`time_curve`)."""

    seconds: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    total: float
    """The seconds of the whole run."""


def _positive(summary: dict[str, Any], key: str) -> float | None:
    v = summary.get(key)
    return float(v) if _number(v) and np.isfinite(v) and v > 0 else None


def time_curve(record: RunRecord, metric: str = "return_mode", clock: str = "cpu") -> tuple[TimeCurve | None, str]:
    """The run's evaluations of `metric` against the `clock`'s seconds ('cpu' or 'wall'), reconstructed from
    train.csv's `steps_per_s` (mean rate since the run started) and summary.json's wall_time_s and cpu_time_s.
    Returns (curve, '') or (None, why the run cannot give one)."""
    if clock not in CLOCKS:
        raise BenchError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    rows = _train_series(record, ("steps_per_s",))
    if rows is None:
        return None, "no train.csv with steps_per_s"
    steps, rates = rows
    keep = rates > 0
    steps, rates = steps[keep].astype(float), rates[keep]
    wall = _positive(record.summary, "wall_time_s")
    if not len(steps) or wall is None:
        return None, "no train.csv with steps_per_s" if not len(steps) else "no wall_time_s in summary.json"
    cpu = _positive(record.summary, "cpu_time_s")
    if clock == "cpu" and cpu is None:
        return None, "no cpu_time_s in summary.json"
    elapsed = steps / rates
    if np.any(np.diff(steps) <= 0) or np.any(np.diff(elapsed) < 0) or elapsed[-1] > RESUME_SLACK * wall:
        return None, "resumed (train.csv's rates span more than the summary's last part)"
    anchor_steps, anchor_s = np.r_[0.0, steps], np.r_[0.0, elapsed]
    if record.env_steps > steps[-1]:
        anchor_steps, anchor_s = np.r_[anchor_steps, record.env_steps], np.r_[anchor_s, max(wall, elapsed[-1])]
    by_step = {int(s): float(v) for s, v in zip(record.curve.get("step", []), record.curve.get(metric, []), strict=True)
               if s <= anchor_steps[-1] and (record.budget is None or s <= record.budget)}  # fmt: skip
    evals = np.array(sorted(s for s, v in by_step.items() if np.isfinite(v)), float)
    if not len(evals):
        return None, f"no evaluations of {metric}"
    scale = cpu / wall if clock == "cpu" and cpu is not None else 1.0
    seconds = scale * np.interp(evals, anchor_steps, anchor_s)
    values = np.array([by_step[int(s)] for s in evals])
    return TimeCurve(seconds, evals.astype(np.int64), values, scale * max(wall, elapsed[-1])), ""


def at_budget(curve: TimeCurve, budget: float) -> tuple[float, float, bool]:
    """(return, env steps) of the run at `budget` seconds, interpolated between its evaluations, and whether
    it ended before the budget (then its final evaluation)."""
    if budget >= curve.seconds[-1]:
        return float(curve.values[-1]), float(curve.steps[-1]), budget > curve.total
    return (float(np.interp(budget, curve.seconds, curve.values)),
            float(np.interp(budget, curve.seconds, curve.steps)), False)  # fmt: skip


def _on_grid(curves: list[TimeCurve], n: int = 100) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each run's returns interpolated onto one grid of seconds, from the latest first evaluation to the
    earliest last one, so that the mean over runs is defined at every point."""
    lo, hi = max(c.seconds[0] for c in curves), min(c.seconds[-1] for c in curves)
    grid = np.linspace(lo, hi, n) if hi > lo else np.array([lo])
    return [(grid, np.interp(grid, c.seconds, c.values)) for c in curves]


def _equal_compute_section(
    done: list[RunRecord], figures: Path, out: Path, result: dict[str, Any], metric: str, colors: dict[str, str]
) -> list[str]:
    """Per clock: a figure per env of the return against seconds, and the return of every algorithm at the
    reference algorithm's budget; stored in `result['equal_compute'][clock]`."""
    from wppg.plotting import plot_curves

    lines = ["## Equal compute", "", EQUAL_COMPUTE, ""]
    result["equal_compute"] = {}
    for clock, unit in CLOCKS.items():
        curves: dict[str, dict[str, list[TimeCurve]]] = defaultdict(lambda: defaultdict(list))
        left_out: dict[str, list[str]] = defaultdict(list)
        for r in done:
            curve, why = time_curve(r, metric, clock)
            if curve is None:
                left_out[why].append(_display_path(r.path))
            else:
                curves[r.env_id][r.algo].append(curve)
        stored: dict[str, Any] = {"left_out": dict(left_out), "envs": {}}
        result["equal_compute"][clock] = stored
        lines += [f"### Against {unit}", ""]
        n_out = sum(map(len, left_out.values()))
        lines += [f"Runs: {len(done) - n_out} of {len(done)}; left out: {n_out}"
                  + "".join(f"; {why}: {len(paths)}" for why, paths in sorted(left_out.items())) + ".", ""]  # fmt: skip
        if not curves:
            continue
        lines += [f"| env | budget ({unit}, {REFERENCE}) | algorithm | runs | return at budget | "
                  "env steps at budget | ended before |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for env in sorted(curves):
            by_algo = curves[env]
            ref = by_algo.get(REFERENCE, [])
            budget = float(np.mean([c.total for c in ref])) if ref else None
            stored["envs"][env] = {"budget": budget, "algos": {}}
            for algo in sorted(by_algo):
                if budget is None:
                    continue
                got = [at_budget(c, budget) for c in by_algo[algo]]
                ret, steps = _stats(np.array([g[0] for g in got])), _stats(np.array([g[1] for g in got]))
                ended = sum(g[2] for g in got)
                lines.append(f"| {env} | {budget:.0f} | {algo} | {len(got)} | {_mci(ret['mean'], *ret.pop('ci_bounds'))} | "
                             f"{_mci(steps['mean'], *steps.pop('ci_bounds'), digits=0)} | {ended} |")  # fmt: skip
                stored["envs"][env]["algos"][algo] = {"return": ret, "env_steps": steps, "ended_before": ended}
            if budget is None:
                lines.append(f"| {env} | - | no {REFERENCE} run on this clock | - | - | - | - |")
        lines.append("")
        for env in sorted(curves):
            grid = {algo: _on_grid(cs) for algo, cs in curves[env].items()}
            fig = plot_curves(grid, figures / f"{env.replace('/', '_')}-{clock}-seconds.png",
                              title=f"{env}: mean over seeds, band: 95% bootstrap CI",
                              ylabel=f"eval {metric.replace('_', ' ')}", colors=colors, xlabel=unit)  # fmt: skip
            lines += [f"![{env} against {unit}]({os.path.relpath(fig, out.parent)})", ""]
    return lines


TASK_REFERENCE = (
    "The `wppg/` tasks have a known soft-optimal policy (the Gibbs policy exp(r(a) / tau) / Z at the env's "
    "reference temperature); the `reference` row gives its metrics. Sample metrics carry sampling noise. "
    f"What each metric measures: {GUIDE}."
)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _task_metrics_section(done: list[RunRecord], result: dict[str, Any]) -> list[str]:
    """Per env and algorithm, mean and 95% bootstrap CI over seeds of the runs' summary task_metrics."""
    runs = [r for r in done if isinstance(r.summary.get("task_metrics"), dict)]
    if not runs:
        return []
    from wppg.tasks import reference_metrics

    lines = ["## Task metrics", "", TASK_REFERENCE, ""]
    result["task_metrics"] = {}
    for env in sorted({r.env_id for r in runs}):
        mine = [r for r in runs if r.env_id == env]
        names = list(dict.fromkeys(k for r in mine for k, v in r.summary["task_metrics"].items() if _number(v)))
        header = "| algorithm | seeds | " + " | ".join(names) + " |"
        lines += [f"### {env}", "", header, "|---" * (len(names) + 2) + "|"]
        reference = reference_metrics(env) or {}
        if reference:
            lines.append("| reference | - | " + " | ".join(_f(reference.get(k), 3) for k in names) + " |")
        out: dict[str, Any] = {"reference": reference, "algos": {}}
        for algo in sorted({r.algo for r in mine}):
            by_algo = [r for r in mine if r.algo == algo]
            row: dict[str, Any] = {"seeds": [r.seed for r in by_algo]}
            cells = []
            for k in names:
                got = [r.summary["task_metrics"].get(k) for r in by_algo]
                vals = np.array([v for v in got if _number(v)], float)
                if len(vals):
                    m, lo, hi = mean_ci(vals)
                    row[k] = {"values": vals.tolist(), "mean": m, "ci": [lo, hi] if np.isfinite(lo) else [None, None]}
                    cells.append(_mci(m, lo, hi, digits=3))
                else:
                    cells.append("-")
            out["algos"][algo] = row
            lines.append(f"| {algo} | {len(by_algo)} | " + " | ".join(cells) + " |")
        result["task_metrics"][env] = out
        lines.append("")
    return lines


def _aggregate_section(
    finals: dict[str, dict[str, list[float]]], reps: int, result: dict[str, Any], metric: str,
    *, last: int | None = None,
) -> list[str]:  # fmt: skip
    """IQM, mean and probability of improvement of the per-run values `finals[env][algo]`: the final
    return, or (`last`) the mean of each run's last evaluations; stored in `result['aggregate']`
    or `result['aggregate_last<n>']`."""
    if last is None:
        heading, what, described, key = "", f"final returns (`{metric}`)", f"final `{metric}`", "aggregate"
    else:
        heading, key = f", on the mean of the last {last} evaluations", f"aggregate_last{last}"
        what = described = f"per-run means of the last {last} evaluations of `{metric}`"
    lines = [f"## Across envs: normalised IQM and probability of improvement{heading}", "",
             NORMALISATION.format(what=what), ""]  # fmt: skip
    scores, bounds = normalise(finals)
    mats, envs, left_out = score_matrices(scores)
    if not mats:
        return [*lines, "No algorithm has finished runs on every env with distinct scores: nothing to aggregate.", ""]
    agg = aggregate(mats, reps=reps)
    agg["envs"], agg["left_out"] = envs, left_out
    agg["bounds"] = {e: list(b) for e, b in bounds.items()}
    result[key] = agg
    lines += [
        f"Metric: {described}. Envs: {', '.join(envs)} (bounds: "
        + "; ".join(f"{e} [{bounds[e][0]:.1f}, {bounds[e][1]:.1f}]" for e in envs)
        + f"). CIs: 95% stratified bootstrap over runs within each env, {reps} resamples (rliable). Each algorithm "
        "enters with its first n seeds of every env, n = its smallest seed count over the envs.",
        "",
    ]
    if left_out:
        lines += [f"Left out (no finished run on some env): {', '.join(left_out)}.", ""]
    lines += ["| algorithm | runs per env | IQM | mean |", "|---|---|---|---|"]
    for a, v in sorted(agg["algos"].items(), key=lambda kv: -kv[1]["iqm"]):
        lines.append(
            f"| {a} | {v['runs_per_env']} | {_aggregate_cell(v['iqm'], v['iqm_ci'])} | {_aggregate_cell(v['mean'], v['mean_ci'])} |"
        )
    if any(v["iqm_ci"] is None for v in agg["algos"].values()):
        lines += ["", NO_CI]
    names = sorted(agg["algos"])
    if len(names) > 1:
        poi = (
            "Probability of improvement P(row > column): the chance that a run of the row algorithm beats a run of "
            "the column algorithm on an env drawn at random (Mann-Whitney), with its 95% CI."
        )
        lines += ["", poi, ""]
        lines += ["| P(row > column) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for x in names:
            cells = []
            for y in names:
                v = agg["improvement"].get(f"{x} > {y}")
                cells.append(
                    "-" if v is None else _aggregate_cell(v["p"], v["ci"], 2, "*" if v["one_side_single"] else "")
                )
            lines.append(f"| {x} | " + " | ".join(cells) + " |")
        if any(v["one_side_single"] for v in agg["improvement"].values()):
            lines += ["", ONE_SIDE_SINGLE]
    return [*lines, ""]


def _train_series(r: RunRecord, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of the first of `columns` that the run's train.csv has, finite rows only, up to its budget."""
    steps = r.train.get("step")
    for c in columns:
        if steps and c in r.train:
            s, v = np.asarray(steps, float), np.asarray(r.train[c], float)
            keep = np.isfinite(s) & np.isfinite(v) & ((s <= r.budget) if r.budget is not None else True)
            if keep.any():
                return s[keep].astype(np.int64), v[keep]
    return None


SPREAD_PANELS = (
    (("policy_entropy",), "policy entropy (nats, unit box)", False),
    (("policy_entropy_knn",), "policy entropy, nearest-neighbour (nats, unit box)", False),
    (("policy_std",), "policy std (unit box)", False),
    (("policy_on_walls",), "fraction of actions on the walls of the box", False),
    (TEMPERATURES, "temperature (SAC alpha, WPPG tau)", True),
)


def _spread_section(
    done: list[RunRecord], figures: Path, out: Path, result: dict[str, Any], colors: dict[str, str]
) -> list[str]:
    """Per env: the policy's spread and temperature at the end of training (mean and 95% bootstrap
    CI over seeds of each run's last train.csv row) and as curves over training."""
    envs = sorted({r.env_id for r in done if _train_series(r, ("policy_entropy",)) is not None})
    if not envs:
        return []
    floor = 0.5 * np.log(2 * np.pi * np.e * SPREAD_SIGMA**2)
    lines = [
        "## Policy spread",
        "",
        (
            "From train.csv (a row every `log_every` env steps), on the unit box: the policy's entropy, plug-in "
            f"(floor {floor:.2f} nats per action dimension: a collapsed policy) and nearest-neighbour estimates; the "
            "per-state action std; the fraction of actions on the box's walls; the temperature. Table: each run's "
            "last row, mean and 95% bootstrap CI over seeds; figure: the mean over seeds and its band. What each "
            f"column measures: {GUIDE}."
        ),
        "",
    ]
    for env in envs:
        runs = [r for r in done if r.env_id == env]
        panels = []
        for columns, ylabel, log in SPREAD_PANELS:
            curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
            for r in runs:
                series = _train_series(r, columns)
                if series is not None:
                    curves[r.algo].append(series)
            panels.append((dict(curves), ylabel, log))
        names = ["policy entropy", "policy entropy (knn)", "policy std", "on walls", "temperature"]
        assert len(names) == len(SPREAD_PANELS)
        lines += [f"### {env}", "", "| algorithm | runs | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
        result["spread"][env] = {}
        for algo in sorted(panels[0][0]):
            row: dict[str, Any] = {}
            cells = []
            for (columns, _, _), (curves, _, _) in zip(SPREAD_PANELS, panels, strict=True):
                vals = np.array([v[-1] for _, v in curves.get(algo, [])], float)
                if len(vals):
                    stats = _stats(vals)
                    m, (lo, hi) = stats["mean"], stats.pop("ci_bounds")
                    if columns == TEMPERATURES:  # 1e-4 to 1: significant digits, not decimals
                        cells.append(f"{m:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) else f"{m:.3g}")
                    else:
                        cells.append(_mci(m, lo, hi, digits=3))
                    row[columns[0] if len(columns) == 1 else "temperature"] = stats
                else:
                    cells.append("-")
            result["spread"][env][algo] = row
            lines.append(f"| {algo} | {len(panels[0][0][algo])} | " + " | ".join(cells) + " |")
        from wppg.plotting import plot_panels

        fig = plot_panels([p for p in panels if p[0]], figures / f"{env.replace('/', '_')}-spread.png",
                          title=f"{env}: policy spread, mean over seeds, band: 95% bootstrap CI", colors=colors)  # fmt: skip
        lines += ["", f"![{env} policy spread]({os.path.relpath(fig, out.parent)})", ""]
    return lines


def _cost_section(done: list[RunRecord]) -> list[str]:
    cpus = {r.path: cpu_label(r.machine) for r in done}
    by_cpu = len(set(cpus.values())) > 1  # costs of different CPUs are not averaged together
    lines = [
        "## Cost",
        "",
        (
            "Per algorithm and env, means over finished runs: wall-clock seconds per 1000 env steps, the process's CPU "
            "seconds (all threads) over the same steps, which unlike the wall clock do not count time the run was "
            "stopped or waited for a core it shared (over the runs that record it), milliseconds per gradient step (update time / gradient steps, compilation included), the share of wall time spent in "
            "updates, and the largest peak resident memory. They cover the last `learn` call of each run (the part "
            "after a resume) and depend on the machine and its load (see Protocol)"
            + ("; runs on different CPUs are kept apart" if by_cpu else "")
            + ". `-`: not recorded."
        ),
        "",
        f"| env | algorithm |{' CPU |' if by_cpu else ''} runs | s per 1k env steps | CPU s per 1k env steps | "
        "ms per gradient step | update share (%) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if by_cpu else ""),
    ]
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in done:
        groups[(r.env_id, r.algo, cpus[r.path] if by_cpu else "")].append(r)
    for (env, algo, cpu), runs in sorted(groups.items()):
        lines.append(
            f"| {env} | {algo} |{f' {cpu} |' if by_cpu else ''} {len(runs)} | " + " | ".join(_cost_row(runs)) + " |"
        )
    return [*lines, ""]


def _protocol_section(records: list[RunRecord], done: list[RunRecord], roots: list[Path], command: str) -> list[str]:
    lines = ["## Protocol", ""]
    eval_eps: dict[str, set] = defaultdict(set)
    eval_every: dict[str, set] = defaultdict(set)
    for r in done:
        t = r.config.get("train_config") or {}
        hp = r.bench.get("run", {}).get("hyperparameters", {})
        for key, store in (("eval_episodes", eval_eps), ("eval_every", eval_every)):
            v = t.get(key, hp.get(key))
            if v is not None:
                store[r.env_id].add(v)
    lines += [
        (
            "- Evaluation: on a separate env instance, every `eval_every` env steps and at the end of the run, with reset "
            "seeds fixed by the run seed; each evaluation runs its episodes once with sampled actions (`stochastic`) and "
            "once with the policy's mode (`mode`: the mean of a Gaussian policy, z = 0 for an implicit one). The final "
            "evaluation is the one at the budget."
        ),
    ]
    for env in sorted({r.env_id for r in done}):
        runs = [r for r in done if r.env_id == env]
        budgets = sorted({r.budget for r in runs if r.budget is not None})
        seeds = {
            a: sorted(r.seed for r in runs if r.algo == a and r.seed is not None)
            for a in sorted({r.algo for r in runs})
        }
        lines.append(
            f"- {env}: budget {', '.join(f'{b:,}' for b in budgets) or '?'} env steps; evaluation every "
            f"{', '.join(map(str, sorted(eval_every[env]))) or '?'} steps on {', '.join(map(str, sorted(eval_eps[env]))) or '?'} "
            f"episodes; seeds: " + "; ".join(f"{a} {s}" for a, s in seeds.items())
        )
    hps: dict[str, set[str]] = defaultdict(set)
    for r in done:
        run_hp = r.bench.get("run", {}).get("hyperparameters")
        if run_hp is not None:
            hps[r.algo].add(json.dumps(run_hp, sort_keys=True))
    if hps:
        lines.append("- Hyperparameters given to each algorithm (the rest are the defaults of its config):")
        for algo, sets in sorted(hps.items()):
            lines.append(f"  - {algo}: " + " or ".join(f"`{s}`" for s in sorted(sets)))
    versions = _versions(records, roots)
    if versions:
        lines.append(
            "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + " (env ids carry the env versions)."
        )
    machines = _machines(done, roots)
    if machines:
        lines.append("- Hardware: " + " | ".join(machines))
    runs_m = [r.machine for r in done if r.machine]
    usable = sorted({m["usable_cpus"] for m in runs_m if m.get("usable_cpus")})
    loads = [m["load_average_1min"] for m in runs_m if m.get("load_average_1min") is not None]
    if usable or loads:
        lines.append(
            "- Each run's process could use "
            + (" or ".join(map(str, usable)) or "?")
            + " CPU core(s)"
            + (
                f"; the machine's 1-minute load average when the runs (last) started: {min(loads):.1f} to {max(loads):.1f}"
                if loads
                else ""
            )
            + " (timings are only comparable at similar load)."
        )
    commands = sorted({r.bench.get("command") for r in records if r.bench.get("command")})
    if commands:
        lines.append(
            "- Runs made by: "
            + "; ".join(f"`{c}`" for c in commands)
            + " (rerun to resume or extend; finished runs are skipped)."
        )
    if command:
        lines.append(f"- Tables and figures made by: `{command}`.")
    return [*lines, ""]


def _display_path(path: Path) -> str:
    """The path relative to the working directory when it lies under it (reports get committed)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _warnings_section(records: list[RunRecord], result: dict[str, Any]) -> list[str]:
    """The warnings about training that runs recorded in summary.json (`BaseTrainer.check_row`)."""
    warned = [(r, str(w)) for r in records for w in r.summary.get("warnings") or []]
    result["warnings"] = [{"env": r.env_id, "algo": r.algo, "seed": r.seed, "warning": w} for r, w in warned]
    if not warned:
        return []
    lines = [
        "## Warnings the runs gave",
        "",
        "Given during training and kept in the run's summary.json; the runs are in the tables above if they finished.",
        "",
        "| env | algorithm | seed | warning |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.env_id} | {r.algo} | {r.seed if r.seed is not None else '?'} | {w.replace('|', '/')} |"
        for r, w in warned
    ]
    return [*lines, ""]


def _unfinished_section(unfinished: list[RunRecord], result: dict[str, Any]) -> list[str]:
    if not unfinished:
        return []
    lines = [
        "## Runs that did not finish",
        "",
        "Not in any table or figure above. `last eval`: the return (mode) of the last evaluation the run logged.",
        "",
        "| env | algorithm | seed | env steps / budget | last eval | error | directory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in unfinished:
        err = (r.error or "").replace("|", "/")
        lines.append(
            f"| {r.env_id} | {r.algo} | {r.seed if r.seed is not None else '?'} | {r.env_steps:,} / {r.budget if r.budget is not None else '?'} | "
            f"{_f(r.final.get('return_mode'))} | {err or '-'} | {_display_path(r.path)} |"
        )
        result["unfinished"].append({"env": r.env_id, "algo": r.algo, "seed": r.seed, "env_steps": r.env_steps, "budget": r.budget,
                                     "error": r.error, "path": str(r.path)})  # fmt: skip
    return [*lines, ""]
