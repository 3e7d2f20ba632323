"""Shared test fixtures: tiny hyperparameters, benchmark scripts as modules, and a per-session JAX
compilation cache.

Most of the wall time of a short training test is XLA compilation, not training: every agent
jit-compiles its own update and act functions (they are jitted bound methods), so a test that
builds three agents of one config (train straight / train, save, load, train on) compiles the
same program three times. A persistent compilation cache in a temporary directory, shared by
the whole session and deleted at its end, makes the second and later compilations of an
identical program a cache hit. It changes no numerics: a cached executable is the same binary.
Each process of a parallel run (`make test` runs pytest-xdist) has a cache of its own: JAX guards a
shared one only under a size limit, and that cost more CPU than the sharing saved. Set
JAX_COMPILATION_CACHE_DIR yourself to use another directory, or WPPG_TEST_NO_COMPILATION_CACHE=1 to
turn the cache off.

For the same reason the tests compile with XLA's backend optimisation level 0
(`--xla_backend_optimization_level=0` in XLA_FLAGS, inherited by the benchmark workers the tests
start): LLVM's code generation for the CPU takes most of a compilation and the tests' tiny programs
run too briefly for its optimisations to pay. It changes code generation, not what is computed: XLA's
graph-level passes (fusion, simplification) still run, and every comparison a test makes is between
programs compiled alike. The speed figures of `wppg bench speed` and all training runs outside the
tests use the full optimisation. WPPG_TEST_FULL_OPT=1 (or an optimisation level of your own in
XLA_FLAGS) keeps it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_CACHE_DIR: str | None = None

# Small enough for two busy CPU cores; shared by the tests so identical programs hit the cache.
TINY_TRAIN: dict[str, Any] = {
    "batch_size": 32,
    "buffer_size": 5_000,
    "learning_starts": 50,
    "eval_episodes": 1,
    "eval_every": 10**6,
    "checkpoint_every": 0,
    "log_every": 10**6,
}
TINY_ALGO: dict[str, dict[str, Any]] = {
    "wppg": {"hidden": (32, 32), "K": 2, "entropy_M": 4, "entropy_L": 4},
    "wppg-i": {"hidden": (32, 32), "K": 2, "entropy_M": 4, "entropy_L": 4},
    "sac": {"hidden": (32, 32)},
}


XLA_TEST_OPT = "--xla_backend_optimization_level=0"


def pytest_configure(config: pytest.Config) -> None:
    global _CACHE_DIR
    flags = os.environ.get("XLA_FLAGS", "")
    if not os.environ.get("WPPG_TEST_FULL_OPT") and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_TEST_OPT}".strip()  # read when JAX first starts its backend
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.environ.get("WPPG_TEST_NO_COMPILATION_CACHE"):
        return
    import jax

    _CACHE_DIR = tempfile.mkdtemp(prefix="wppg-tests-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny():
    """`tiny(variant, **overrides)`: keyword arguments of a tiny agent of variant 'wppg', 'wppg-i' or 'sac'."""

    def hyperparameters(variant: str, **overrides: Any) -> dict[str, Any]:
        return {**TINY_TRAIN, **TINY_ALGO[variant], **overrides}

    return hyperparameters


@pytest.fixture(scope="session")
def saved_tiny_agent(tiny, tmp_path_factory):
    """`saved_tiny_agent(variant) -> path`: a tiny 'wppg-i' (tau='auto') or 'sac' agent on Pendulum-v1
    after 120 env steps, saved once per session with its replay buffer, for the scripts that read one."""
    import wppg

    paths: dict[str, Path] = {}

    def saved(variant: str) -> Path:
        if variant not in paths:
            if variant == "sac":
                agent = wppg.SAC("Pendulum-v1", seed=0, progress=False, **tiny("sac"))
            else:
                agent = wppg.WPPG("Pendulum-v1", policy="implicit", seed=0, progress=False, **tiny(variant, tau="auto"))
            agent.learn(120)
            paths[variant] = tmp_path_factory.mktemp(f"saved-{variant}") / "agent.npz"
            agent.save(paths[variant])
        return paths[variant]

    return saved


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="session")
def load_benchmark():
    """`load_benchmark(name) -> module`: the script experiments/*/NAME.py imported as a module (it is not a package)."""

    def load(name: str) -> ModuleType:
        (path,) = EXPERIMENTS.glob(f"*/{name}.py")
        if str(path.parent) not in sys.path:  # as when a script runs: its neighbours import by name
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def hold_lock():
    """`hold_lock(run_dir) -> Popen`: a second process that takes the run directory's lock and holds it
    until its stdin closes. It loads rundir.py alone (no JAX import), so it starts in well under a second."""
    import subprocess

    import wppg.rundir

    def hold(run_dir: Path) -> subprocess.Popen:
        script = (
            "import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('rundir', {wppg.rundir.__file__!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            f"m.RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); sys.stdin.read()"
        )
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        holder = subprocess.Popen([sys.executable, "-c", script], text=True, **pipes)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return holder

    return hold


@pytest.fixture(scope="session")
def run_cli():
    """`run_cli(argv) -> (code, stdout, stderr)`: `wppg` main(argv) with its output captured; a
    SystemExit (from argument parsing) becomes its code."""
    from wppg.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        return code, out.getvalue(), err.getvalue()

    return run
