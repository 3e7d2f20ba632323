"""`wppg bench run | list | speed` and `wppg report`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from wppg.bench.spec import (
    BenchError,
    SpecError,
    load_spec,
    parse_set,
    read_raw,
    suite_names,
)

BENCH_USAGE = """usage: wppg bench <command> [options]

commands:
  run     run a suite:      wppg bench run SUITE_OR_SPEC --out runs/bench --workers 2 [--backend ray]
  list    the suites:       wppg bench list
  speed   speed benchmark:  wppg bench speed --help
  export  finished runs without checkpoints (small enough to commit): wppg bench export runs/bench exported/bench"""


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wppg bench run",
        description="Run a benchmark suite (a shipped suite's name or a spec file's path). Each run writes "
        "OUT/<env>/<algo>/seed<k>/ like `wppg train`; a second invocation skips finished runs and resumes "
        "interrupted ones from their last checkpoint.",
    )
    p.add_argument("spec", help=f"suite name ({', '.join(suite_names())}) or path of a TOML spec file")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder (default: runs/bench)")
    p.add_argument(
        "--workers", type=int, default=1, help="runs at a time; local backend: each pinned to its own core(s)"
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes, or Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--ray-shared", choices=("auto", "yes", "no"), default="auto",
                   help="whether Ray tasks write into OUT directly (auto: a probe task checks that they see it)")  # fmt: skip
    p.add_argument("--algos", nargs="+", help="only these algorithms of the spec")
    p.add_argument("--envs", nargs="+", help="only these envs of the spec")
    p.add_argument("--seeds", nargs="+", type=int, help="only these seeds")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="replace every env's budget by this many env steps")
    budget.add_argument("--budget-scale", type=float, help="multiply every env's budget by this factor")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter for every algorithm that has it (TOML value: 3, 1e-3, false, [32, 32]); repeatable")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state, run nothing")
    return p


def cmd_run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    spec = load_spec(args.spec).override(
        algos=args.algos, envs=args.envs, seeds=args.seeds, steps=args.steps, budget_scale=args.budget_scale,
        set_values=parse_set(args.set),
    )  # fmt: skip
    command = "wppg bench run " + shlex.join(argv)
    if args.dry_run:
        from wppg.bench.runner import check_configs
        from wppg.bench.spec import ALIASES

        check_configs(spec)
        from wppg.bench.worker import run_state

        for run in spec.runs():
            d = run.directory(args.out)
            # An alias's fixed fields are not in its hyperparameters: show what it stands for.
            alias = f" ({ALIASES[run.algo][0]} with {ALIASES[run.algo][1]})" if run.algo in ALIASES else ""
            print(
                f"{run.name}: {run.steps} steps, {run_state(d, run.steps) if d.exists() else 'new'}, {run.hyperparameters}{alias}"
            )
        print(f"{len(spec.runs())} runs, {spec.total_steps():,} env steps")
        return 0
    from wppg.bench.runner import run_suite

    try:
        outcomes = run_suite(spec, args.out, workers=args.workers, backend=args.backend, address=args.address,
                             ray_shared=args.ray_shared, command=command)  # fmt: skip
    except BenchError as e:
        print(f"wppg bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: the unfinished runs keep their last checkpoint; rerun `{command}` to go on", file=sys.stderr
        )
        return 130
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def cmd_list(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="wppg bench list", description="List the shipped suites and their sizes.").parse_args(
        argv
    )
    for name in suite_names():
        try:
            spec = load_spec(name)
        except SpecError as e:
            raw, _, _ = read_raw(name)
            print(f"{name}: not runnable here: {e}")
            print(f"    algorithms: {', '.join(raw.get('algos', {}))}; envs: {', '.join(raw.get('envs', {}))}")
            continue
        runs = spec.runs()
        algos = ", ".join(f"{a} x{len(s.seeds)}" for a, s in spec.algos.items())
        envs = ", ".join(f"{e} ({s.steps:,})" for e, s in spec.envs.items())
        print(f"{name}: {len(runs)} runs, {spec.total_steps():,} env steps. {spec.description}")
        print(f"    algorithms (seeds): {algos}")
        print(f"    envs (budget): {envs}")
    return 0


def cmd_speed(argv: list[str]) -> int:
    from wppg.bench.speed import main as speed_main

    return speed_main(argv)


def cmd_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="wppg bench export",
        description="Copy the finished runs of a benchmark folder without their checkpoints and TensorBoard events "
        "(small enough to commit). `wppg report` reads the copies, and `wppg bench run --out DEST` skips them as "
        "finished, so a benchmark can be resumed or extended from them.",
    )
    p.add_argument("src", type=Path, help="the folder a `wppg bench run` wrote (its --out)")
    p.add_argument("dest", type=Path, help="where the copies go (same layout)")
    args = p.parse_args(argv)
    from wppg.bench.runner import export_finished

    try:
        copied = export_finished(args.src, args.dest)
    except FileNotFoundError as e:
        print(f"wppg bench export: error: {e}", file=sys.stderr)
        return 2
    print(f"exported {len(copied)} finished run(s) from {args.src} to {args.dest}")
    return 0


BENCH_COMMANDS = {"run": cmd_run, "list": cmd_list, "speed": cmd_speed, "export": cmd_export}


def bench_main(argv: list[str]) -> int:
    """`wppg bench <command> ...`."""
    if not argv or argv[0] in ("-h", "--help"):
        print(BENCH_USAGE)
        return 0 if argv else 2
    if argv[0] not in BENCH_COMMANDS:
        print(f"wppg bench: error: unknown command {argv[0]!r}\n{BENCH_USAGE}", file=sys.stderr)
        return 2
    return BENCH_COMMANDS[argv[0]](argv[1:]) or 0


def report_main(argv: list[str]) -> int:
    """`wppg report RUN_DIRS... --out report.md [--figures DIR] [--notes notes.md]`."""
    p = argparse.ArgumentParser(
        prog="wppg report",
        description="Aggregate run directories (searched recursively) into a Markdown report with figures, "
        "and the same numbers as JSON next to it.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories or folders holding them (e.g. runs/bench)")
    p.add_argument("--out", type=Path, default=Path("report.md"), help="Markdown file (default: report.md)")
    p.add_argument(
        "--figures", type=Path, default=None, help="folder of the learning-curve PNGs (default: next to --out)"
    )
    p.add_argument("--metric", choices=("return_mode", "return_stochastic"), default="return_mode",
                   help="evaluation return of the curves and the aggregate statistics")  # fmt: skip
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the aggregate CIs")
    p.add_argument(
        "--last",
        type=int,
        default=5,
        help="evaluations averaged per run by the end-of-training metric beside the final return",
    )
    p.add_argument("--notes", type=Path, default=None,
                   help="Markdown file placed under the report's header (scope of the runs, what was left out and why)")  # fmt: skip
    args = p.parse_args(argv)
    from wppg.bench.report import build_report

    notes = ""
    if args.notes is not None:
        if not args.notes.is_file():
            print(f"wppg report: --notes file {args.notes} does not exist", file=sys.stderr)
            return 2
        notes = args.notes.read_text()

    try:
        result = build_report(args.run_dirs, args.out, args.figures, metric=args.metric, reps=args.reps,
                              command="wppg report " + shlex.join(argv), notes=notes, last=args.last)  # fmt: skip
    except BenchError as e:
        print(f"wppg report: error: {e}", file=sys.stderr)
        return 2
    n_unfinished = len(result["unfinished"])
    print(f"wrote {args.out} ({len(result['envs'])} env(s); {n_unfinished} unfinished run(s) listed apart)")
    return 0
