"""Command line: `wppg train | resume | eval | plot | lab | bench | report`.

`wppg train --algo {wppg,wppg-i,sac,wpo,ppo} --env ID --total-steps N --seed S --out DIR [hyperparameters]`
takes every field of `TrainConfig` and of the algorithm's config as a flag (see `--help`).
"""

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from wppg import registry
from wppg.agent import Agent, make_agent
from wppg.algorithms import ConfigError
from wppg.checkpoint import CheckpointError
from wppg.config import TrainConfig
from wppg.envs import ActionSpaceError, import_env
from wppg.rundir import RUN_MARKER, RunDirError, RunLock, RunLockedError, check_writable, is_run, remove_run, write_json
from wppg.schedule import TrainingInterrupted
from wppg.trainer import TrainingDivergedError

USAGE = """usage: wppg <command> [options]

commands:
  train    train an agent:   wppg train --algo wppg-i --env Pendulum-v1 --total-steps 20000 --out runs/x
  resume   continue a run:   wppg resume DIR [--total-steps N]
  eval     evaluate a run:   wppg eval DIR --episodes 10 [--video]
  export   deploy a policy:  wppg export DIR --out policy.onnx (or policy.npz: weights for NumPy)
  plot     learning curves:  wppg plot DIR [DIR ...] --out fig.png
  lab      theory lab:       wppg lab --help
  bench    benchmark suites: wppg bench run SUITE --out runs/bench --workers 2 | wppg bench list | wppg bench speed
  report   suite report:     wppg report runs/bench --out report.md

`wppg <command> --help` lists each command's options; `wppg train --algo sac --help` those of SAC
(`--help-all`: with their full descriptions)."""


# tyro's choices, from the registry and the presets (a Literal of the names, built at import).
ALGO_CHOICES = Literal[tuple(registry.names())]  # type: ignore[valid-type]
PRESET_CHOICES = Literal[tuple(registry.preset_names())]  # type: ignore[valid-type]


def _train_args_type(algo_cfg_cls: type) -> type:
    @dataclass
    class TrainArgs:
        """Train an agent and write logs, checkpoints, an evaluation summary into --out."""

        env: str
        """Env: a Gymnasium id (Pendulum-v1, Hopper-v5, dm_control/cheetah-run-v0) or your own module:Id or
        module:Class (the working directory is importable); continuous, bounded Box actions."""
        out: Path
        """Run directory: config.json, train.csv, eval.csv, tb/, checkpoints/last.npz, summary.json."""
        algo: ALGO_CHOICES = "wppg"  # type: ignore[valid-type]
        """Algorithm (`wppg.registry`): wppg (Gaussian pushforward), wppg-i (implicit), sac, wpo, ppo (on-policy)."""
        preset: PRESET_CHOICES | None = None  # type: ignore[valid-type]
        """WPPG / WPPG-I preset applied before the flags: default, gpu, cpu or paper (docs/guide/choosing.md).
        Default: gpu on a GPU or TPU, default on a CPU; other algorithms have none."""
        overwrite: bool = False
        """Replace an existing run in --out (otherwise refuse, to never lose saved work)."""
        progress: bool = True
        """Show a progress bar."""
        seeds: tuple[int, ...] = ()
        """Train these seeds in one process, the updates vmapped across seeds (off-policy algorithms),
        into --out/seed<k>/ (replaces --seed); seed k equals a separate run with --seed k up to rounding."""
        train: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=TrainConfig)
        algorithm: Annotated[algo_cfg_cls, tyro.conf.OmitArgPrefixes] = field(default_factory=algo_cfg_cls)

    return TrainArgs


def _fail(message: str) -> int:
    print(f"wppg: error: {message}", file=sys.stderr)
    return 2


def _flag_values(argv: list[str], flag: str) -> list[str]:
    """The raw values given to `flag` (as `--flag v` or `--flag=v`), before any parsing."""
    out = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
    out += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]
    return out


def _checkpoint_of(run_dir: Path) -> Path:
    """run_dir/checkpoints/last.npz; for the parent of a multi-seed run, an error naming its seeds."""
    path = run_dir / "checkpoints" / "last.npz"
    if not path.exists():
        seeds = sorted(p.parent.parent.name for p in run_dir.glob("seed*/checkpoints/last.npz"))
        if seeds:
            runs = " ".join(str(run_dir / s) for s in seeds)
            raise CheckpointError(f"{run_dir} holds a multi-seed run (--seeds): give one seed's run directory: {runs}")
    return path


def _field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's docstring (the string literal under it), through the class's bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        except (OSError, TypeError, IndexError, AttributeError):
            continue
        for node, nxt in zip(body, body[1:]):
            doc = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) else None
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(doc, str):
                docs[node.target.id] = doc
    return docs


def _first_sentence(text: str, width: int) -> str:
    """The docstring's first sentence on one line, cut to `width` characters."""
    text = " ".join(text.replace("e.g.", "e.g").replace("i.e.", "i.e").split())
    end = re.search(r"\.(\s|$)", text)
    text = text[: end.start()] if end else text
    return text if len(text) <= width else text[: width - 3].rstrip(" ,;:(") + "..."


def _short_help(groups: list[tuple[str, Any, set[str]]], prog: str) -> str:
    """One line per flag, grouped: (title, dataclass instance of the defaults, fields left out)."""
    lines = [f"usage: {prog} --env ENV --out DIR [options]", ""]
    for title, defaults, skip in groups:
        lines.append(f"{title}:")
        docs = _field_docs(type(defaults))
        for f in dataclasses.fields(defaults):
            value = getattr(defaults, f.name)
            if f.name in skip or dataclasses.is_dataclass(value):
                continue
            name = f.name.replace("_", "-")
            if isinstance(value, bool):
                flag, shown = f"--[no-]{name}", " (on)" if value else " (off)"
            else:
                flag = f"--{name}"
                plain = " ".join(map(str, value)) if isinstance(value, tuple) else value
                shown = " (required)" if value is tyro.MISSING else f" ({plain})"
            head = f"  {flag:<22} "
            lines.append(head + _first_sentence(docs.get(f.name, ""), 118 - len(head) - len(shown)) + shown)
        lines.append("")
    lines.append(f"`{prog} --help-all`: every flag with its full description (the docstrings of")
    lines.append("wppg.TrainConfig and of the algorithm's config class).")
    return "\n".join(lines)


def _header(command: str, algo: str, env: Any, out: Path, preset: str | None) -> None:
    """The one line a run starts with: what runs where, and where it writes."""
    import jax

    device = jax.devices()[0]
    env_name = env if isinstance(env, str) else getattr(env, "__name__", type(env).__name__)
    kind = device.platform + ("" if device.platform == "cpu" else f" ({device.device_kind})")
    parts = [f"{algo} on {env_name}", f"preset {preset}" if preset else None, f"device {kind}", f"out {out}"]
    print(f"wppg {command}: " + ", ".join(p for p in parts if p), flush=True)


def _summary_line(out: Path, ev: dict[str, Any]) -> str:
    """The line a run ends with: its steps and last evaluation, and where summary.json is."""

    def ret(name: str) -> str:
        mean, std = ev.get(f"return_{name}"), ev.get(f"return_{name}_std")
        return "-" if mean is None else f"{mean:.1f}" + ("" if std is None else f" +- {std:.1f}")

    return (
        f"done: {ev.get('step', '?')} env steps; eval return {ret('mode')} (mode), {ret('stochastic')} (stochastic); "
        f"{out / 'summary.json'}"
    )


def _env_arg(spec: str | None) -> Any:
    """`--env` as `wppg.envs.import_env` reads it; None stays None (the run's own env id)."""
    return None if spec is None else import_env(spec)


def cmd_train(argv: list[str]) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo", default="wppg", choices=sorted(registry.names()))
    pre.add_argument("--preset", default=None, choices=registry.preset_names())
    known, _ = pre.parse_known_args(argv)
    entry = registry.get(known.algo)
    fixed, cfg_cls = entry.fixed, entry.config_cls
    # As the API: the registry resolves the preset (None: the backend's) and refuses one the algorithm lacks.
    chosen = entry.resolve_preset(known.preset)
    preset = entry.preset(chosen or "default")
    args_type = _train_args_type(cfg_cls)
    if "--policy" in argv:
        return _fail("--policy is set by --algo: use --algo wppg (Gaussian) or --algo wppg-i (implicit)")
    default = args_type(
        env=tyro.MISSING,
        out=tyro.MISSING,
        algo=known.algo,
        preset=chosen,
        algorithm=cfg_cls(**{**fixed, **preset}),
    )
    if any(not v.strip() for v in _flag_values(argv, "--out")):
        return _fail("--out is empty: give the run directory, e.g. --out runs/x")
    if "--help-all" in argv:
        argv = [a if a != "--help-all" else "--help" for a in argv]
    elif "-h" in argv or "--help" in argv:
        groups = [
            ("run", default, {"train", "algorithm"}),
            ("training (wppg.TrainConfig)", default.train, set()),
            (f"algorithm (wppg.{cfg_cls.__name__})", default.algorithm, set(fixed)),
        ]
        print(_short_help(groups, "wppg train"))
        return 0
    args = tyro.cli(args_type, args=argv, default=default, prog="wppg train")
    env = import_env(args.env)
    from wppg.multiseed import check_seeds, make_seed_agents, seed_dir, train_agents

    seeds = check_seeds(args.seeds, args.algo) if args.seeds else []
    outs = [seed_dir(args.out, s) for s in seeds] or [args.out]
    existing = [out for out in outs if (out / "checkpoints" / "last.npz").exists() or (out / "config.json").exists()]
    if existing and not args.overwrite:
        out = existing[0]
        resume = f"continue it with `wppg resume {out}`, or " if (out / "checkpoints" / "last.npz").exists() else ""
        return _fail(f"{out} already holds a run: {resume}pass --overwrite to replace it")
    for out in existing:
        if not is_run(out):
            raise RunDirError(
                f"{out} holds a config.json or checkpoints/last.npz but no {RUN_MARKER} marker, so wppg did not "
                "write it and --overwrite will not delete it: use another --out"
            )
    hyper = {**dataclasses.asdict(args.train), **args.algorithm.to_dict()}
    for k in fixed:
        hyper.pop(k)
    seed = hyper.pop("seed")
    command = "wppg train " + " ".join(argv)
    _header("train", args.algo, args.env, args.out, chosen)
    # Everything is validated (env, spaces, configs) before the directory is touched, so that a
    # bad flag never costs an --overwrite'd run.
    if seeds:
        total = hyper.pop("total_steps")
        agents = make_seed_agents(
            args.algo, env, seeds, args.out, total_steps=total, overwrite=args.overwrite, preset=chosen, **hyper
        )
    else:
        agents = [
            make_agent(
                args.algo,
                env,
                seed=seed,
                preset=chosen,
                run_dir=args.out,
                progress=args.progress,
                overwrite=args.overwrite,
                **hyper,
            )
        ]
    locks = [RunLock(check_writable(out)) for out in outs]
    try:
        for lock in locks:
            lock.acquire()
        for out in existing:
            remove_run(out)
        if seeds:
            results = train_agents(agents, total, progress=args.progress, command=command)
            for r in results:
                print(f"seed {r['seed']}: " + _summary_line(seed_dir(args.out, r["seed"]), r["final_eval"]))
            return 0
        agent = agents[0]
        config = {**agent.trainer.meta, "train_config": agent.train_config.to_dict(), "command": command}
        write_json(args.out / "config.json", config)
        agent.trainer.train_until(agent.train_config.total_steps)
    finally:
        for lock in locks:
            lock.release()
    print(_summary_line(args.out, agent.trainer.last_eval))
    return 0


def cmd_resume(argv: list[str]) -> int:
    @dataclass
    class ResumeArgs:
        """Continue a run from its last checkpoint, to its total_steps (or a new --total-steps)."""

        run_dir: tyro.conf.Positional[Path]
        total_steps: int | None = None
        """New total env steps (to extend a finished run); default: the target of the interrupted
        command (a `resume --total-steps N` stopped midway goes on to N), else the run's total_steps."""
        progress: bool = True
        env: str | None = None
        """The env, for a run trained on one without a registered id: module:Id or module:Class as for
        `wppg train` (the working directory is importable). Default: the run's env id."""
        trust_checkpoint: bool = False
        """Allow unpickling a pickled env snapshot in the checkpoint (envs whose state is not plain
        data) and an env id with a module part (`module:Env-v1`, imported by gym.make): both can
        execute code, so only for files you wrote. Without it such envs start new episodes (a warning)."""

    args = tyro.cli(ResumeArgs, args=argv, prog="wppg resume")
    if args.total_steps is not None and args.total_steps < 1:
        return _fail(f"--total-steps must be >= 1, got {args.total_steps}")
    if not (args.run_dir / "checkpoints" / "last.npz").exists():
        from wppg.multiseed import resume_seeds, seed_checkpoints

        if seed_checkpoints(args.run_dir):  # a multi-seed run: its seeds go on together, vmapped
            results = resume_seeds(args.run_dir, args.total_steps, progress=args.progress, trust=args.trust_checkpoint)
            for r in results:
                print(f"seed {r['seed']}: " + _summary_line(Path(r["run_dir"]), r["final_eval"]))
            return 0
    path = _checkpoint_of(args.run_dir)
    env = _env_arg(args.env)
    agent = Agent.load(path, env=env, run_dir=args.run_dir, progress=args.progress, trust=args.trust_checkpoint)
    until = args.total_steps or agent.trainer.target_steps or agent.train_config.total_steps
    if agent.num_timesteps >= until:
        print(f"{args.run_dir} is already at {agent.num_timesteps} >= {until} steps; pass --total-steps to extend it")
        return 0
    _header("resume", agent.variant, args.env or agent.env_info.env_id, args.run_dir, agent.preset)
    agent.trainer.train_until(until)
    print(_summary_line(args.run_dir, agent.trainer.last_eval))
    return 0


def cmd_eval(argv: list[str]) -> int:
    @dataclass
    class EvalArgs:
        """Evaluate a run's last checkpoint with stochastic actions and with the mode."""

        run_dir: tyro.conf.Positional[Path]
        episodes: int = 10
        video: bool = False
        """Also record one mode episode to run_dir/videos/eval.gif (needs the env's rgb_array render)."""
        env: str | None = None
        """The env to evaluate on, for a run trained on one without a registered id: module:Id or
        module:Class as for `wppg train`. Default: the run's env id."""
        trust_checkpoint: bool = False
        """Allow unpickling a pickled env snapshot in the checkpoint (see `wppg resume --help`)."""

    args = tyro.cli(EvalArgs, args=argv, prog="wppg eval")
    if args.episodes < 1:
        return _fail(f"--episodes must be >= 1, got {args.episodes}")
    env = _env_arg(args.env)
    agent = Agent.load(_checkpoint_of(args.run_dir), env=env, progress=False, trust=args.trust_checkpoint)
    result = {"env_steps": agent.num_timesteps}
    for name, det in (("stochastic", False), ("mode", True)):
        r = agent.evaluate(args.episodes, deterministic=det)
        result[f"return_{name}"] = float(r.mean())
        result[f"return_{name}_std"] = float(r.std())
        print(f"{name:>10}: {r.mean():10.2f} +- {r.std():.2f} over {args.episodes} episodes")
    metrics = agent.trainer.task_metrics()
    if metrics is not None:
        result["task_metrics"] = metrics
        print("task metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if args.video:
        from wppg.video import record_gif

        path = record_gif(agent, args.run_dir / "videos" / "eval.gif")
        print(f"video: {path}")
    write_json(args.run_dir / "eval_result.json", result)
    return 0


def cmd_export(argv: list[str]) -> int:
    @dataclass
    class ExportArgs:
        """Export a run's policy to a file that runs without wppg (docs/guide/export.md)."""

        run_dir: tyro.conf.Positional[Path]
        out: Path = Path("policy.onnx")
        """policy.onnx: an ONNX model (onnxruntime; obs [B, obs_dim] -> action [B, act_dim], the mode), or
        policy.npz: the weights for the NumPy forward pass of the docs."""
        noise_input: bool = False
        """ONNX: take the standard-normal latent as a second input `noise` [B, noise_dim] (a stochastic policy)."""
        check: bool = True
        """ONNX: run the file in onnxruntime on random observations and print its largest difference from wppg."""
        env: str | None = None
        """The env, for a run trained on one without a registered id (module:Id or module:Class)."""

    from wppg.export import ExportError, describe, export, onnx_difference

    args = tyro.cli(ExportArgs, args=argv, prog="wppg export")
    env = _env_arg(args.env)
    agent = Agent.load(_checkpoint_of(args.run_dir), env=env, progress=False)
    try:
        path = export(agent, args.out, noise_input=args.noise_input)
        print(describe(path, agent, args.noise_input))
        if args.check and path.suffix != ".npz":
            print(f"onnxruntime vs wppg: max abs difference {onnx_difference(agent, path):.2e}")
    except ExportError as e:
        return _fail(str(e))
    return 0


def cmd_plot(argv: list[str]) -> int:
    @dataclass
    class PlotArgs:
        """Plot learning curves; runs of the same algorithm and env are pooled over seeds (a multi-seed
        folder of `--seeds` counts as its seeds' runs)."""

        run_dirs: tyro.conf.Positional[list[Path]]
        out: Path = Path("curves.png")
        metric: Literal["return_mode", "return_stochastic"] = "return_mode"

    from wppg.plotting import plot_runs

    args = tyro.cli(PlotArgs, args=argv, prog="wppg plot")
    print(f"wrote {plot_runs(args.run_dirs, args.out, args.metric)}")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from wppg.bench.cli import bench_main

    return bench_main(argv)


def cmd_report(argv: list[str]) -> int:
    from wppg.bench.cli import report_main

    return report_main(argv)


COMMANDS = {
    "train": cmd_train,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "export": cmd_export,
    "plot": cmd_plot,
    "bench": cmd_bench,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "lab":
        from wppg.lab.cli import main as lab_main

        return lab_main(rest)
    if command not in COMMANDS:
        return _fail(f"unknown command {command!r}\n{USAGE}")
    try:
        return COMMANDS[command](rest)
    except TrainingInterrupted as e:
        print(f"wppg: {e}", file=sys.stderr)
        return 128 + e.signum  # the shell's code for a death by that signal: 130 (SIGINT), 143 (SIGTERM)
    except KeyboardInterrupt:
        print("wppg: interrupted", file=sys.stderr)
        return 130
    except (
        ConfigError, ActionSpaceError, CheckpointError, TrainingDivergedError, RunLockedError, RunDirError,
        ValueError, OSError,
    ) as e:  # fmt: skip
        return _fail(str(e))


def _entry() -> Any:
    sys.exit(main())
