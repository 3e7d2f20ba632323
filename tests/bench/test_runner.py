"""The harness end to end: the smoke suite on the local backend with 2 workers (a fresh run next
to a resumed one, then a second invocation that skips both), and the Ray backend on a real local
Ray instance (a run next to a failing one, files returned to the driver)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wppg.bench.ray_backend import mirror, pack
from wppg.bench.runner import _other_workers_cores, _pick_cores, prepare, record_spec, run_suite
from wppg.bench.spec import Resources, Run, load_spec, parse_set
from wppg.bench.worker import execute, run_state, worker_environment
from wppg.cli import main

# The tiny configuration of conftest.py, so that the workers compile small programs.
TINY_SET = [
    "learning_starts=100", "batch_size=32", "buffer_size=5000", "hidden=[32, 32]", "eval_episodes=1",
    "eval_every=100", "log_every=50", "checkpoint_every=100", "K=2", "entropy_M=4", "entropy_L=4",
]  # fmt: skip
STEPS = 200


@pytest.fixture
def worker_cache(monkeypatch):
    """Let the worker processes share this session's JAX compilation cache."""
    import jax

    cache = jax.config.jax_compilation_cache_dir
    if cache:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", cache)
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def bench_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def eval_steps(run_dir: Path) -> list[int]:
    rows = (run_dir / "eval.csv").read_text().strip().splitlines()[1:]
    return [int(float(r.split(",")[0])) for r in rows]


def test_worker_environment_threads_platform_and_cores():
    run = Run("Pendulum-v1", "sac", 0, 10)
    env = worker_environment(run, [3], base={"XLA_FLAGS": "--xla_dump_to=/tmp/x intra_op_parallelism_threads=8"})
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["JAX_PLATFORMS"] == "cpu" and env["WPPG_BENCH_CPUS"] == "3"
    wide = Run("Pendulum-v1", "sac", 0, 10, resources=Resources(cpus=4, gpus=0.5))
    env = worker_environment(wide, None, base={"WPPG_BENCH_CPUS": "0"})
    assert env["XLA_FLAGS"] == "intra_op_parallelism_threads=4" and env["OMP_NUM_THREADS"] == "4"
    assert (
        "JAX_PLATFORMS" not in env and env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450" and "WPPG_BENCH_CPUS" not in env
    )


def test_cores_are_exclusive_until_workers_exceed_them():
    usage = dict.fromkeys([0, 1, 2], 0)
    assert [_pick_cores(usage, 1), _pick_cores(usage, 2)] == [[0], [1, 2]]
    assert _pick_cores(usage, 1) == [0] and usage == {0: 2, 1: 1, 2: 1}  # oversubscribed: least used first


def test_pack_and_mirror_reproduce_a_directory(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "last.npz").write_bytes(b"\x00\x01")
    (src / "eval.csv").write_text("step\n1\n")
    (dst / "tb").mkdir(parents=True)
    (dst / "tb" / "stale").write_text("old")
    (dst / "error.txt").write_text("old error")
    mirror(pack(src), dst)
    assert pack(dst) == {"checkpoints/last.npz": b"\x00\x01", "eval.csv": b"step\n1\n"} and not (dst / "tb").exists()


def test_run_state(tmp_path):
    assert run_state(tmp_path, 100) == "new"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.npz").write_bytes(b"")
    assert run_state(tmp_path, 100) == "resume"
    (tmp_path / "summary.json").write_text(json.dumps({"env_steps": 100}))
    assert run_state(tmp_path, 100) == "finished" and run_state(tmp_path, 101) == "resume"
    (tmp_path / "summary.json").write_text("{truncated")
    assert run_state(tmp_path, 100) == "resume"


# Starting a worker (fork + exec) from a process that imported JAX is safe: nothing runs between the two.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_local_backend_runs_resumes_and_skips(tmp_path, worker_cache):
    out = tmp_path / "bench"
    argv = ["bench", "run", "smoke", "--out", str(out), "--workers", "2", "--seeds", "0", "--steps", str(STEPS)]
    for item in TINY_SET:
        argv += ["--set", item]
    # An interrupted WPPG run: stopped after its checkpoint at step 50 (before any update), before its summary.
    spec = load_spec("smoke").override(algos=["wppg"], seeds=[0], steps=50, set_values=parse_set(TINY_SET))
    _, wppg_dir = prepare(spec.runs()[0], out, "test")
    execute(wppg_dir)
    (wppg_dir / "summary.json").unlink()
    assert eval_steps(wppg_dir) == [50]

    code, log = bench_cli(argv)
    assert code == 0, log
    sac_dir = out / "Pendulum-v1" / "sac" / "seed0"
    assert "starting Pendulum-v1/sac/seed0: 200 steps" in log and "resuming Pendulum-v1/wppg/seed0: 200 steps" in log
    assert "2 finished now, 0 already finished (skipped), 0 failed" in log
    assert re.search(r"finished Pendulum-v1/wppg/seed0: return mode -?\d+\.\d, stochastic -?\d+\.\d; \d+ s", log)
    # Each worker had a core of its own when there are two and no other driver's workers hold one
    # (on a machine running a benchmark beside the tests, the picker rightly avoids the busy core).
    cores = re.findall(r"\(pid \d+, cpu (\d+)\)", log)
    allowed = os.sched_getaffinity(0)
    if len(allowed) >= 2 and not _other_workers_cores(set(), set(allowed)):
        assert sorted(cores) == sorted(set(cores)) and len(cores) == 2
    for d in (sac_dir, wppg_dir):
        for name in (
            "config.json",
            "train.csv",
            "eval.csv",
            "summary.json",
            "checkpoints/last.npz",
            "bench.json",
            "machine.json",
        ):
            assert (d / name).exists(), (d, name)
        summary = json.loads((d / "summary.json").read_text())
        assert summary["env_steps"] == STEPS and summary["final_eval"]["step"] == STEPS
        assert (
            summary["gradient_steps"] == STEPS - 100 + 1
        )  # one gradient step per env step from step learning_starts on
        machine = json.loads((d / "machine.json").read_text())
        assert (
            "intra_op_parallelism_threads=1" in machine["threads"]["XLA_FLAGS"]
            and machine["threads"]["OMP_NUM_THREADS"] == "1"
        )
    assert json.loads((sac_dir / "summary.json").read_text())["bench_algo"] == "sac"
    # The WPPG run went on from its checkpoint: its first segment's evaluation is kept.
    assert "resuming Pendulum-v1/wppg/seed0 from 50 env steps" in (wppg_dir / "worker.log").read_text()
    assert eval_steps(wppg_dir) == [50, 100, 200] and eval_steps(sac_dir) == [100, 200]
    resolved = json.loads((out / "bench_spec.json").read_text())
    assert [r["algo"] for r in resolved["runs"]] == ["sac", "wppg"] and resolved["command"].startswith(
        "wppg bench run smoke"
    )
    assert json.loads((out / "machine.json").read_text())["cpu_count"] == os.cpu_count()

    # A second invocation finds both finished and starts nothing.
    stamp = (sac_dir / "summary.json").stat().st_mtime_ns
    code, log = bench_cli(argv)
    assert code == 0 and log.count("skipping") == 2 and "0 finished now, 2 already finished (skipped)" in log
    assert (sac_dir / "summary.json").stat().st_mtime_ns == stamp

    # Other hyperparameters in the same place are refused, not mixed in.
    code, log = bench_cli([*argv[:-2], "--set", "K=3", "--algos", "wppg"])
    assert code == 1 and "holds a run with other hyperparameters" in log


@pytest.mark.slow  # a Ray instance and two worker processes: 1.5-4 minutes on 2 cores
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_ray_backend_returns_files_and_isolates_a_failure(tmp_path, worker_cache):
    import ray

    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(
        "[common]\nlearning_starts = 100\nbatch_size = 32\nbuffer_size = 5000\nhidden = [32, 32]\neval_episodes = 1\n"
        "eval_every = 100\ncheckpoint_every = 100\n"
        "[algos.sac]\nseeds = 1\n"
        "[algos.sac-fixed]\nseeds = 1\nhyperparameters = { alpha = -1.0 }\n"  # valid names, invalid value: fails in its run
        f'[envs."Pendulum-v1"]\nsteps = {STEPS}\n'
    )
    out = tmp_path / "bench"
    lines: list[str] = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        from wppg.bench.ray_backend import TOKEN_FILE, _probe

        token = tmp_path / "token"
        token.write_text("abc")
        assert ray.get(ray.remote(num_cpus=0)(_probe).remote(str(token), "abc"))  # a local instance shares the disk
        outcomes = run_suite(load_spec(spec_path), out, workers=2, backend="ray", ray_shared="no", echo=lines.append)
    finally:
        ray.shutdown()
    log = "\n".join(lines)
    status = {o.run.algo: o.status for o in outcomes}
    assert status == {"sac": "finished", "sac-fixed": "failed"}, log
    assert "files returned to the driver" in log and "FAILED Pendulum-v1/sac-fixed/seed0" in log
    assert "1 finished now, 0 already finished (skipped), 1 failed" in log
    ok = out / "Pendulum-v1" / "sac" / "seed0"
    for name in ("config.json", "eval.csv", "summary.json", "checkpoints/last.npz", "worker.log"):
        assert (ok / name).exists(), name
    assert json.loads((ok / "summary.json").read_text())["env_steps"] == STEPS
    error = (out / "Pendulum-v1" / "sac-fixed" / "seed0" / "error.txt").read_text()
    assert error.startswith("ConfigError: alpha must be > 0, got -1.0")
    assert not (out / TOKEN_FILE).exists()


def test_cores_of_other_drivers_workers_are_avoided(tmp_path):
    """Workers of another `wppg bench run` (processes running BOOT) count against the cores they are
    pinned to; unpinned ones, other processes and this driver's own workers do not."""
    from wppg.bench.worker import BOOT

    def fake(pid: int, cmdline: bytes, allowed: str) -> None:
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(cmdline)
        (d / "status").write_text(f"Name:\tpython\nCpus_allowed_list:\t{allowed}\n")

    boot = b"python\0-c\0" + BOOT.encode() + b"\0runs/x"
    fake(11, boot, "1")  # another driver's worker on core 1
    fake(12, boot, "0-3")  # unpinned: holds no core
    fake(13, b"python\0train.py", "2")  # not a benchmark worker
    fake(14, boot, "2")  # this driver's own worker
    (tmp_path / "self").mkdir()
    others = _other_workers_cores({14}, {0, 1, 2, 3}, proc=tmp_path)
    assert others == {1: 1}
    usage = dict.fromkeys(range(4), 0)
    assert _pick_cores(usage, 2, others) == [0, 2] and usage == {0: 1, 1: 0, 2: 1, 3: 0}
    assert _other_workers_cores(set(), {0, 1}, proc=tmp_path / "missing") == {}


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs two cores and Linux"
)
def test_two_drivers_started_back_to_back_pin_their_workers_to_different_cores(tmp_path):
    """The second driver's pick sees the first driver's new worker as pinned at once (the driver pins
    it, under a lock all drivers share), not only once the worker has pinned itself."""
    if Path("/proc/self").resolve().name != str(os.getpid()):
        pytest.skip("/proc is not this process's PID namespace: no driver can see another's workers")
    cores = sorted(os.sched_getaffinity(0))[:2]
    # A stand-in that exits early is a zombie: its affinity still reads as pinned, but /proc shows no
    # command line, so no driver can count it (rightly: it holds no core). That is the stand-in
    # failing, not the pick; such an attempt is reported and repeated, a wrong pick is not.
    died = []
    for attempt in range(3):
        picks, gone, seen = _two_drivers_pick(tmp_path / f"attempt{attempt}", cores)
        if picks[0] != picks[1] or gone is None:
            assert picks[0] != picks[1] and sorted(picks[0] + picks[1]) == cores, f"{picks}; {seen}"
            return
        died.append(gone)
    pytest.fail("the worker stand-ins kept exiting before the second pick: " + "; ".join(died))


def test_a_spawned_worker_shows_its_command_line_before_the_lock_is_let_go():
    """Popen returns while the kernel is still setting the new command line (it reads empty in /proc
    for a moment, so another driver would not count the worker): `_await_command_line` waits it out."""
    from wppg.bench.runner import _await_command_line

    if not Path(f"/proc/{os.getpid()}/cmdline").exists() or shutil.which("sleep") is None:
        pytest.skip("needs /proc and a sleep program")
    argv = [shutil.which("sleep") or "sleep", "30"]
    want = b"".join(a.encode() + b"\0" for a in argv)
    seen = []
    for _ in range(100):  # without the wait, about one start in five read empty on the machine it was found on
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        try:
            _await_command_line(proc, argv)
            seen.append((Path("/proc") / str(proc.pid) / "cmdline").read_bytes())
        finally:
            proc.kill()
            proc.wait()
    assert all(s == want for s in seen), [s for s in seen if s != want][:3]


def _two_drivers_pick(folder: Path, cores: list[int]) -> tuple[list[list[int]], str | None, list[str]]:
    """Two drivers start a worker stand-in each, back to back: their core picks, a line if the first
    stand-in had exited by the time the check ran (exit code and output; None while it lives), and
    what the second driver's /proc view showed of the first stand-in."""
    from wppg.bench.runner import _spawn_pinned
    from wppg.bench.worker import BOOT

    # BOOT on the command line (as `_other_workers_cores` looks for), sleeping.
    argv = [sys.executable, "-c", "import time; time.sleep(30)", BOOT]
    folder.mkdir()
    procs: list[subprocess.Popen] = []

    def own_workers_cores() -> dict[int, int]:
        # /proc narrowed to this test's stand-ins: real workers of other drivers (a campaign on this
        # machine, a test in another xdist process) would otherwise count too and could tie the cores.
        view = folder / f"proc{len(procs)}"
        view.mkdir()
        for proc in procs:
            (view / str(proc.pid)).symlink_to(f"/proc/{proc.pid}")
            seen.append(_proc_entry(view / str(proc.pid), BOOT))
        return _other_workers_cores(set(), set(cores), proc=view)

    picks: list[list[int]] = []
    seen: list[str] = []
    gone: str | None = None
    with contextlib.ExitStack() as logs:
        try:
            for i in range(2):  # two drivers, each with its own usage count
                usage = dict.fromkeys(cores, 0)
                log = logs.enter_context(open(folder / f"standin{i}.log", "wb"))
                proc, mine = _spawn_pinned(
                    argv, lambda c: dict(os.environ), log,
                    lambda usage=usage: _pick_cores(usage, 1, own_workers_cores()),
                )  # fmt: skip
                procs.append(proc)
                picks.append(mine)
                assert os.sched_getaffinity(proc.pid) == set(mine)
            first = procs[0].poll()
            if first is not None:
                gone = f"exit code {first}, output {(folder / 'standin0.log').read_bytes()[-500:]!r}"
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    return picks, gone, seen


def _proc_entry(entry: Path, marker: str) -> str:
    """What `_other_workers_cores` reads of one process: whether its command line holds the marker,
    and its State, Pid and Cpus_allowed_list lines."""
    try:
        held = marker.encode() in (entry / "cmdline").read_bytes()
        lines = [x for x in (entry / "status").read_text().splitlines() if x.startswith(("State", "Pid", "Cpus_a"))]
    except OSError as e:
        return f"{entry.name}: unreadable ({e})"
    return f"{entry.name}: marker {'found' if held else 'missing'}, {lines}"


def test_export_keeps_finished_runs_without_checkpoints_and_they_stay_finished(tmp_path):
    """`wppg bench export`: finished runs are copied without checkpoints/tb/worker log, unfinished ones
    are left out, and a runner pointed at the copies skips them as finished."""
    from wppg.bench.cli import bench_main
    from wppg.bench.spec import Run
    from wppg.bench.worker import run_state

    def make(seed: int, env_steps: int) -> Run:
        run = Run.from_dict({"env_id": "Pendulum-v1", "algo": "sac", "seed": seed, "steps": 100,
                             "hyperparameters": {}, "resources": {"cpus": 1, "gpus": 0.0}})  # fmt: skip
        d = run.directory(tmp_path / "src")
        (d / "checkpoints").mkdir(parents=True)
        (d / "checkpoints" / "last.npz").write_bytes(b"x" * 100)
        (d / "tb").mkdir()
        (d / "tb" / "events").write_text("e")
        (d / "bench.json").write_text(json.dumps({"run": run.to_dict(), "command": "c"}))
        (d / "summary.json").write_text(json.dumps({"env_steps": env_steps}))
        (d / "train.csv").write_text("step\n50\n")
        (d / "worker.log").write_text("progress")
        return run

    done, unfinished = make(0, 100), make(1, 50)
    (tmp_path / "src" / "bench_spec.json").write_text("{}")
    assert bench_main(["export", str(tmp_path / "src"), str(tmp_path / "dest")]) == 0
    d = done.directory(tmp_path / "dest")
    assert sorted(p.name for p in d.iterdir()) == ["bench.json", "summary.json", "train.csv"]
    assert run_state(d, done.steps) == "finished"
    assert not unfinished.directory(tmp_path / "dest").exists()
    assert (tmp_path / "dest" / "bench_spec.json").is_file()
    state, _ = prepare(done, tmp_path / "dest", "c")
    assert state == "finished"
    assert bench_main(["export", str(tmp_path / "missing"), str(tmp_path / "d2")]) == 2


def test_a_run_made_under_other_defaults_is_refused_and_a_field_added_later_is_not(tmp_path):
    """A run directory whose config.json differs from what this version builds for the run (a
    default changed since it started) is refused by name; a field the saved config lacks counts as
    its FIELDS_ADDED value; the step budget does not count."""
    from wppg.bench.runner import RunConflictError, resolved_configs

    run = Run.from_dict({"env_id": "Pendulum-v1", "algo": "wppg-i", "seed": 0, "steps": 100,
                         "hyperparameters": {"preset": "cpu"}, "resources": {"cpus": 1, "gpus": 0.0}})  # fmt: skip
    now = resolved_configs(run)
    assert now["algo_config"]["K"] == 8 and now["algo_config"]["entropy_estimator"] == "knn"
    d = run.directory(tmp_path)
    d.mkdir(parents=True)
    (d / "bench.json").write_text(json.dumps({"run": run.to_dict(), "command": "c"}))
    older = {k: dict(v) for k, v in now.items()}
    del older["algo_config"]["precision"]  # added later; its FIELDS_ADDED value is today's default
    older["train_config"]["total_steps"] = 50  # a shorter budget: not a difference
    (d / "config.json").write_text(json.dumps(older))
    assert prepare(run, tmp_path, "c")[0] == "new"
    del older["algo_config"]["boundary"]  # added later, and the code did otherwise before it
    (d / "config.json").write_text(json.dumps(older))
    with pytest.raises(RunConflictError, match="boundary was 'none', now 'reflect'"):
        prepare(run, tmp_path, "c")
    older["algo_config"]["boundary"] = "reflect"
    older["algo_config"]["entropy_estimator"] = "plug-in"
    (d / "config.json").write_text(json.dumps(older))
    with pytest.raises(RunConflictError, match="entropy_estimator was 'plug-in', now 'knn'"):
        prepare(run, tmp_path, "c")


def test_a_campaign_run_piecewise_is_recorded_whole(tmp_path):
    """Invocations of one spec with other --seeds keep each other's runs in bench_spec.json and list
    every command; another spec into the same folder replaces the record."""
    smoke = load_spec("smoke")
    first, second = smoke.override(seeds=[0]), smoke.override(seeds=[1])
    record_spec(tmp_path, first, first.runs(), "wppg bench run smoke --seeds 0")
    record_spec(tmp_path, second, second.runs(), "wppg bench run smoke --seeds 1")
    record_spec(tmp_path, second, second.runs(), "wppg bench run smoke --seeds 1")  # a resume adds no run twice
    doc = json.loads((tmp_path / "bench_spec.json").read_text())
    names = sorted(Run.from_dict(r).name for r in doc["runs"])
    assert names == sorted(r.name for r in first.runs() + second.runs()) and len(set(names)) == len(names)
    assert doc["commands"] == ["wppg bench run smoke --seeds 0"] + ["wppg bench run smoke --seeds 1"] * 2
    assert doc["command"] == "wppg bench run smoke --seeds 1"
    other = load_spec("classic")
    record_spec(tmp_path, other, other.runs(), "wppg bench run classic")
    doc = json.loads((tmp_path / "bench_spec.json").read_text())
    assert doc["commands"] == ["wppg bench run classic"] and len(doc["runs"]) == len(other.runs())
