"""Paired comparison of two sets of runs, seed by seed on each env: B against A.

    python experiments/tools/paired.py runs/coupling-classic-knn:wppg-i-paper runs/coupling-classic-knn:wppg-i
    python experiments/tools/paired.py runs/prec-f32:sac runs/prec-bf16:sac --last 5
    python experiments/tools/paired.py runs/hopper-sac-sbx-ours:sac runs/hopper-sac-sbx:sbx-sac --unpaired

Each side is DIR:LABEL (the runs of algorithm LABEL found under DIR, as `wppg report` finds them), so
the same label in two outputs (float32 against bf16) and two labels in one output (the paper's
projection against the default) both work. Only finished runs present on both sides for an (env,
seed) are paired. Per env it prints each pair's final return and mean of the last evaluations, then
the mean paired difference B - A with its 95% percentile-bootstrap CI and the number of pairs where
B is ahead, and the wall time and ms per gradient step of each side (summary.json) with their ratio;
then rliable's probability of improvement P(B > A) on each env and over all envs, with 95% stratified
bootstrap CIs.

With --unpaired (two implementations, whose seeds do not pair), every finished run of each side on
an env counts: the difference of the two means with a 95% bootstrap CI (each side resampled on its
own) and P(B > A), rliable's probability of improvement (the share of (A run, B run) pairs where B's
run is ahead, ties counting half).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from wppg.bench.report import RunRecord, discover, last_mean, mean_ci


def side(spec: str) -> tuple[str, dict[tuple[str, int], RunRecord]]:
    """DIR:LABEL -> (LABEL, {(env, seed): finished run})."""
    root, sep, label = spec.rpartition(":")
    if not sep or not root or not label:
        raise SystemExit(f"expected DIR:LABEL, got {spec!r}")
    runs = {(r.env_id, r.seed): r for r in discover([root]) if r.algo == label and r.finished and r.seed is not None}
    return label, runs


def value(record: RunRecord, key: str, metric: str, last: int) -> float | None:
    """The run's final `metric` ('final') or its mean over the last `last` evaluations ('last')."""
    return record.final.get(metric) if key == "final" else last_mean(record, metric, last)


def paired_table(a: dict, b: dict, metric: str, last: int) -> dict[str, dict]:
    """Per env: the paired rows and the paired statistics of B - A."""
    out: dict[str, dict] = {}
    for env in sorted({e for e, _ in a} & {e for e, _ in b}):
        seeds = sorted(s for e, s in a if e == env and (e, s) in b)
        rows = []
        for s in seeds:
            ra, rb = a[(env, s)], b[(env, s)]
            row: dict[str, Any] = {"seed": s}
            for key in ("final", "last"):
                row[f"a_{key}"], row[f"b_{key}"] = value(ra, key, metric, last), value(rb, key, metric, last)
            for side_, r in (("a", ra), ("b", rb)):
                row[f"{side_}_wall_s"] = r.summary.get("wall_time_s")
                row[f"{side_}_ms"] = r.summary.get("ms_per_gradient_step")
            rows.append(row)
        stats = {}
        for key in ("final", "last"):
            diff = np.array([r[f"b_{key}"] - r[f"a_{key}"] for r in rows], float)
            mean, lo, hi = mean_ci(diff)
            stats[key] = {
                "mean_a": float(np.mean([r[f"a_{key}"] for r in rows])),
                "mean_b": float(np.mean([r[f"b_{key}"] for r in rows])),
                "mean_diff": mean, "ci": [lo, hi], "b_ahead": int(np.sum(diff > 0)), "n": len(rows),
            }  # fmt: skip
        out[env] = {"rows": rows, "stats": stats}
    return out


def probability_of_improvement(a: list[np.ndarray], b: list[np.ndarray], n_boot: int = 2000, seed: int = 0) -> dict:
    """P(B > A) as rliable defines it: per env, the share of (A run, B run) pairs where B's run is ahead
    (ties count half), averaged over envs; its 95% CI by the stratified bootstrap (each side's runs
    resampled within each env on their own; None when an env has a single run on a side). a, b: one
    array of scores per env."""

    def poi(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
        per_env = [np.mean((y[None, :] > x[:, None]) + 0.5 * (y[None, :] == x[:, None])) for x, y in zip(xs, ys)]
        return float(np.mean(per_env))

    n = [len(x) for x in a]
    if min(n + [len(y) for y in b]) < 2:  # a bootstrap of one run redraws it every time: no measure of spread
        return {"p": poi(a, b), "ci": None, "n": n}
    rng = np.random.default_rng(seed)
    boot = [poi([rng.choice(x, len(x)) for x in a], [rng.choice(y, len(y)) for y in b]) for _ in range(n_boot)]
    return {"p": poi(a, b), "ci": np.percentile(boot, [2.5, 97.5]).tolist(), "n": n}


def improvement(table: dict[str, dict]) -> dict[str, dict]:
    """P(B > A) of the paired table's runs, on each env and over all envs, for the final return and
    the mean of the last evaluations."""
    out: dict[str, dict] = {}
    for key in ("final", "last"):
        scores = {
            env: [np.array([r[f"{side_}_{key}"] for r in t["rows"]], float) for side_ in "ab"]
            for env, t in table.items()
        }
        out[key] = {env: probability_of_improvement([a], [b]) for env, (a, b) in scores.items()}
        if len(scores) > 1:
            out[key]["all envs"] = probability_of_improvement(*(list(x) for x in zip(*scores.values())))
    return out


def unpaired_table(a: dict, b: dict, metric: str, last: int, n_boot: int = 2000) -> dict[str, dict]:
    """Per env: each side's values, the difference of means B - A with its bootstrap CI (each side
    resampled on its own) and rliable's probability of improvement P(B > A)."""
    from rliable import metrics

    out: dict[str, dict] = {}
    rng = np.random.default_rng(0)
    for env in sorted({e for e, _ in a} & {e for e, _ in b}):
        runs_a = [r for (e, _), r in sorted(a.items()) if e == env]
        runs_b = [r for (e, _), r in sorted(b.items()) if e == env]
        stats = {}
        for key in ("final", "last"):
            va, vb = (np.array([value(r, key, metric, last) for r in runs], float) for runs in (runs_a, runs_b))
            boot = [rng.choice(vb, len(vb)).mean() - rng.choice(va, len(va)).mean() for _ in range(n_boot)]
            stats[key] = {
                "a": va.tolist(), "b": vb.tolist(), "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
                "mean_diff": float(vb.mean() - va.mean()), "ci": np.percentile(boot, [2.5, 97.5]).tolist(),
                "p_b_ahead": float(metrics.probability_of_improvement(vb[:, None], va[:, None])),
            }  # fmt: skip
        out[env] = {"seeds_a": [r.seed for r in runs_a], "seeds_b": [r.seed for r in runs_b], "stats": stats}
    return out


def print_paired(table: dict[str, dict]) -> None:
    for env, t in table.items():
        print(f"\n{env}: {len(t['rows'])} pairs")
        print("  seed   A final    B final   A last    B last    A ms/step  B ms/step")
        for r in t["rows"]:
            ms = " ".join(f"{x:10.2f}" if x is not None else "         -" for x in (r["a_ms"], r["b_ms"]))
            returns = " ".join(f"{r[k]:9.1f}" for k in ("a_final", "b_final", "a_last", "b_last"))
            print(f"  {r['seed']:4d} {returns} {ms}")
        for key, s in t["stats"].items():
            ci = f"[{s['ci'][0]:+.1f}, {s['ci'][1]:+.1f}]"
            print(f"  {key:5s}: mean A {s['mean_a']:.1f}, B {s['mean_b']:.1f}; B - A {s['mean_diff']:+.1f} {ci} "
                  f"(95% bootstrap CI), B ahead on {s['b_ahead']} of {s['n']}")  # fmt: skip
        ms = [(r["a_ms"], r["b_ms"]) for r in t["rows"] if r["a_ms"] and r["b_ms"]]
        if ms:
            ratio = np.median([x / y for x, y in ms])
            print(f"  ms per gradient step: median ratio A / B {ratio:.2f} (machine load differs between runs)")


def print_unpaired(table: dict[str, dict]) -> None:
    for env, t in table.items():
        print(f"\n{env}: A seeds {t['seeds_a']}, B seeds {t['seeds_b']}")
        for key, s in t["stats"].items():
            values = "; ".join(f"{k.upper()} " + " ".join(f"{x:.1f}" for x in s[k]) for k in ("a", "b"))
            ci = f"[{s['ci'][0]:+.1f}, {s['ci'][1]:+.1f}]"
            print(f"  {key:5s}: {values}")
            print(f"         mean A {s['mean_a']:.1f}, B {s['mean_b']:.1f}; B - A {s['mean_diff']:+.1f} {ci} "
                  f"(95% bootstrap CI, sides resampled apart); P(B > A) {s['p_b_ahead']:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="DIR:LABEL of the reference side")
    p.add_argument("b", help="DIR:LABEL of the side compared with it")
    p.add_argument("--metric", default="return_mode", choices=("return_mode", "return_stochastic"))
    p.add_argument("--last", type=int, default=5, help="evaluations averaged beside the final return")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--unpaired", action="store_true", help="compare all runs of each side, not seed pairs")
    args = p.parse_args(argv)
    (la, a), (lb, b) = side(args.a), side(args.b)
    make, show, unit = (
        (unpaired_table, print_unpaired, "env") if args.unpaired else (paired_table, print_paired, "(env, seed)")
    )
    table = make(a, b, args.metric, args.last)
    if not table:
        print(f"no {unit} has a finished run on both sides ({len(a)} and {len(b)} finished runs)")
        return 1
    print(f"A = {args.a}, B = {args.b}; {args.metric}; last = mean of the last {args.last} evaluations")
    show(table)
    poi = None if args.unpaired else improvement(table)
    if poi:
        print("\nprobability of improvement P(B > A) over the paired runs (rliable's; 95% stratified bootstrap CI):")
        for key, envs in poi.items():
            for env, v in envs.items():
                ci = f"[{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]" if v["ci"] else "(no CI: an env with one run)"
                print(f"  {key:5s} {env:16s} {v['p']:.2f} {ci}  (runs per env: {v['n']})")
    if args.json:
        doc = {"a": args.a, "b": args.b, "metric": args.metric, "envs": table, "improvement": poi}
        args.json.write_text(json.dumps(doc, indent=2))
    print(f"\nlabels: A = {la}, B = {lb}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
