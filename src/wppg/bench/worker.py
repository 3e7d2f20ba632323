"""One benchmark run, in its own process: start it, resume it from its checkpoint, or skip it.

The driver writes `bench.json` (the run's `Run.to_dict()` plus the command) into the run
directory and starts `python -c BOOT RUN_DIR` with the thread and platform settings of
`worker_environment` and, for the local backend, a CPU affinity. The process then writes the
same files as `wppg train` (config.json, train.csv, eval.csv, summary.json,
checkpoints/last.npz); a failure leaves its traceback in `error.txt`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from wppg.bench.spec import Run
from wppg.rundir import RunLock, RunLockedError, write_file, write_json

# Run by a fresh interpreter: the affinity is set before anything else, and the package (which
# imports JAX) is imported only after the environment of `worker_environment` is in place.
BOOT = (
    "import os, sys\n"
    "cpus = os.environ.get('WPPG_BENCH_CPUS')\n"
    "if cpus and hasattr(os, 'sched_setaffinity'):\n"
    "    os.sched_setaffinity(0, {int(c) for c in cpus.split(',')})\n"
    # Die with the driver (Linux): a driver killed with SIGKILL leaves no orphan run behind; the
    # run gets SIGTERM, checkpoints and stops.
    "ppid = os.environ.get('WPPG_BENCH_DRIVER')\n"
    "if ppid and sys.platform.startswith('linux'):\n"
    "    import ctypes, signal\n"
    "    try:\n"
    "        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "    except (OSError, AttributeError):\n"
    "        pass\n"
    "    if os.getppid() != int(ppid):\n"
    "        sys.exit(1)\n"
    "from wppg.bench.worker import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

RUN_FILE = "bench.json"
RC_IN_USE = 75
"""The exit code of a worker whose run another process holds (a second driver on one --out)."""
ERROR_FILE = "error.txt"


def worker_environment(
    run: Run, cores: list[int] | None, base: dict[str, str] | None = None, driver: int | None = None
) -> dict[str, str]:
    """Environment of a run's process: `run.resources.cpus` threads for XLA and BLAS (one thread:
    no multi-threaded Eigen), CPU-only JAX unless the run asks for a GPU (so that parallel runs do
    not each preallocate GPU memory), at most its share of GPU memory when it asks for a fraction
    of one, the cores to pin to (WPPG_BENCH_CPUS) and, with `driver`, the driver's pid whose
    death stops the run (WPPG_BENCH_DRIVER; Linux)."""
    env = dict(os.environ if base is None else base)
    n = run.resources.cpus
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads"))
    ]
    if n == 1:
        flags += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
    else:
        flags += [f"intra_op_parallelism_threads={n}"]
    env["XLA_FLAGS"] = " ".join(flags)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(n)
    if run.resources.gpus == 0:
        env.setdefault("JAX_PLATFORMS", "cpu")
    elif run.resources.gpus < 1:  # a share of a GPU: JAX would otherwise preallocate 75% of it
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 * run.resources.gpus:.3f}")
    if cores:
        env["WPPG_BENCH_CPUS"] = ",".join(map(str, cores))
    else:
        env.pop("WPPG_BENCH_CPUS", None)
    env["PYTHONUNBUFFERED"] = "1"
    if driver is not None:
        env["WPPG_BENCH_DRIVER"] = str(driver)
    else:
        env.pop("WPPG_BENCH_DRIVER", None)
    # The seeds of one algorithm on one env compile the same programs: JAX's persistent cache
    # shares them between runs instead of compiling them again in every process.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "wppg" / "jax"))
    return env


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing, not readable JSON (a file cut mid-write)
    or not a JSON object."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def count(value: Any) -> int | None:
    """`value` if it is a non-negative integer (a step count), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def summary_steps(run_dir: Path) -> int | None:
    """The env steps summary.json records, or None when it is missing or damaged."""
    summary = read_json(run_dir / "summary.json")
    return None if summary is None else count(summary.get("env_steps"))


def run_state(run_dir: Path, steps: int) -> str:
    """'finished' (summary.json at >= steps), 'resume' (a checkpoint to continue) or 'new'."""
    done = summary_steps(run_dir)
    if done is not None and done >= steps:
        return "finished"
    if (run_dir / "checkpoints" / "last.npz").exists():
        return "resume"
    return "new"


def execute(run_dir: Path) -> dict[str, Any]:
    """Bring the run described by run_dir/bench.json to its budget; returns its summary."""
    info = read_json(run_dir / RUN_FILE)
    if info is None or not isinstance(info.get("run"), dict):
        raise ValueError(f"{run_dir / RUN_FILE} is missing or damaged: rerun `wppg bench run` to rewrite it")
    run = Run.from_dict(info["run"])
    if run_state(run_dir, run.steps) == "finished":
        return read_json(run_dir / "summary.json") or {}
    # Held for the whole run (the trainer's own lock nests): a second driver on the same --out
    # touches nothing of a run that another process is running.
    with RunLock(run_dir):
        return _execute(run_dir, run, info)


def _execute(run_dir: Path, run: Run, info: dict[str, Any]) -> dict[str, Any]:
    state = run_state(run_dir, run.steps)
    if state == "finished":
        return read_json(run_dir / "summary.json") or {}
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    from wppg.bench.machine import describe_machine

    write_json(run_dir / "machine.json", describe_machine())
    if run.external:
        from wppg.bench.external import run_external

        result = run_external(run.algo, run.env_id, run.seed, run.steps, run_dir, dict(run.hyperparameters))
        if not (run_dir / "summary.json").exists():
            write_json(run_dir / "summary.json", result)
        return result

    from wppg.agent import Agent, make_agent

    if state == "resume":
        agent = Agent.load(run_dir / "checkpoints" / "last.npz", run_dir=run_dir, progress=False)
        print(f"resuming {run.name} from {agent.num_timesteps} env steps", flush=True)
    else:
        variant, kwargs = run.agent_arguments()
        agent = make_agent(variant, run.env_id, run_dir=run_dir, progress=False, overwrite=True, **kwargs)
    # The algorithm's name in the suite (sac-fixed is the variant sac): summary.json carries it.
    agent.trainer.meta.update(bench_algo=run.algo, bench_budget=run.steps)
    if state == "new":
        config = {
            **agent.trainer.meta,
            "train_config": agent.train_config.to_dict(),
            "command": info.get("command", ""),
        }
        write_json(run_dir / "config.json", config)
    remaining = run.steps - agent.num_timesteps
    if remaining > 0:
        agent.learn(remaining, progress=False)
    elif summary_steps(run_dir) is None:
        # Finished, but its summary.json was lost or cut: write it again from the final checkpoint
        # (whose last evaluation is the final one). The cost figures of the learn calls are lost.
        agent.trainer.write_summary({"costs_lost": True})
    return read_json(run_dir / "summary.json") or {}


def main(argv: list[str]) -> int:
    """Entry of a run's process: `BOOT RUN_DIR`. Exit code 0 when the run reached its budget."""
    run_dir = Path(argv[0])
    start = time.perf_counter()
    try:
        summary = execute(run_dir)
    except RunLockedError as e:  # another driver runs it: its files are not ours to write
        print(f"skipped: {e}", file=sys.stderr, flush=True)
        return RC_IN_USE
    except BaseException as e:  # noqa: BLE001 -- recorded for the driver, whatever it was (KeyboardInterrupt too)
        write_file(run_dir / ERROR_FILE, f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps({"final_eval": summary.get("final_eval"), "wall_s": time.perf_counter() - start}), flush=True)
    return 0
