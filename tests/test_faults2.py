"""Faults, round 2: crafted checkpoints and run directories, planted links, locks, bench files.

Each test is a probe of an attacker or an unlucky user, and fails on a version of wppg without
the matching guard: a header that makes loading import a module, writes through links planted in
a run directory, an --overwrite that deletes a user's files, a lock taken over twice, temp files
of a live writer removed by a reader, memory bombs and tracebacks from crafted headers, bench
summaries that stay lost, and the API's edges. docs/guide/security.md states the contract.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import wppg
from wppg import checkpoint as ckpt
from wppg.agent import Agent
from wppg.checkpoint import CheckpointError, CheckpointWriteError
from wppg.rundir import LOCK_NAME, RunLock, RunLockedError

SRC = str(Path(wppg.__file__).resolve().parents[1])
SAVED_STEPS = 30

# Most runs here are shorter than learning_starts on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:learning_starts.*zero gradient steps:UserWarning")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny) -> Path:
    """A SAC run directory checkpointed mid-episode after SAVED_STEPS random-action steps."""
    run_dir = tmp_path_factory.mktemp("faults2") / "run"
    agent = wppg.SAC("Pendulum-v1", seed=3, run_dir=run_dir, progress=False, **tiny("sac", learning_starts=1000))
    agent.learn(SAVED_STEPS)
    return run_dir


def copy_of(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst, symlinks=True)
    return dst


def arrays_of(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(arrays.pop(ckpt._META).tobytes().decode()), arrays


def write_npz(path: Path, header: dict | list | str | bytes, arrays: dict[str, np.ndarray]) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        np.savez(f, **arrays, **{ckpt._META: np.frombuffer(raw, np.uint8)})
    return path


def with_header(saved_run: Path, tmp_path: Path, edit) -> Path:
    """A copy of the saved checkpoint whose header `edit(header)` changed (or replaced, if it returns one)."""
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    new = edit(header)
    return write_npz(tmp_path / "crafted.npz", header if new is None else new, arrays)


# --- 1. loading never imports a module the file names ----------------------------------------------
def test_header_env_id_with_a_module_part_is_not_imported(saved_run, tmp_path, monkeypatch, run_cli):
    run = copy_of(saved_run, tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "pwnmod.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # a module beside the run, as in a user's folder
    monkeypatch.chdir(tmp_path)
    last = run / "checkpoints" / "last.npz"
    header, arrays = arrays_of(last)
    header["env_id"] = "pwnmod:Pendulum-v1"
    write_npz(last, header, arrays)

    with pytest.raises(CheckpointError, match="module part.*pass env="):
        Agent.load(last, progress=False)
    assert not marker.exists(), "loading a checkpoint imported the module its header names"
    code, _, stderr = run_cli(["eval", str(run), "--episodes", "1"])
    assert code == 2 and "env=" in stderr and len(stderr.strip().splitlines()) <= 2, stderr
    assert not marker.exists(), "`wppg eval` imported the module the header names"
    agent = Agent.load(last, env="Pendulum-v1", progress=False)  # the user names the env: fine
    assert agent.num_timesteps == SAVED_STEPS and not marker.exists()


def test_header_env_id_that_is_not_registered(saved_run, tmp_path):
    bad = with_header(saved_run, tmp_path, lambda h: h.update(env_id="NoSuchEnv-v9"))
    with pytest.raises(CheckpointError, match="'NoSuchEnv-v9', which is not registered"):
        Agent.load(bad, progress=False)


# --- 2. run files are never written through links --------------------------------------------------
def test_eval_does_not_write_through_a_planted_link(saved_run, tmp_path, run_cli):
    run = copy_of(saved_run, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / "eval_result.json").symlink_to(victim)
    code, _, stderr = run_cli(["eval", str(run), "--episodes", "1"])
    assert victim.read_text() == "precious", "`wppg eval` wrote through a link"
    assert code == 2 and "symbolic link" in stderr, stderr


@pytest.mark.parametrize("name", ["summary.json", "eval.csv"])
def test_training_does_not_write_through_a_planted_link(saved_run, tmp_path, name):
    from wppg.rundir import RunDirError

    run = copy_of(saved_run, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(victim)
    agent = Agent.load(run, run_dir=run, progress=False)
    with pytest.raises(RunDirError, match="symbolic link"):
        agent.learn(SAVED_STEPS + 2)
    assert victim.read_text() == "precious", f"training wrote through the link {name}"


def test_checkpoint_is_not_written_through_a_link(saved_run, tmp_path):
    run = copy_of(saved_run, tmp_path)
    agent = Agent.load(run, progress=False)
    victim = tmp_path / "victim.npz"
    victim.write_bytes(b"precious")
    link = tmp_path / "link.npz"
    link.symlink_to(victim)
    with pytest.raises(CheckpointWriteError, match="symbolic link"):
        agent.save(link)
    assert victim.read_bytes() == b"precious" and link.is_symlink()


def test_write_file_replaces_whole_files_only(tmp_path):
    from wppg.rundir import RunDirError, open_append, write_file

    target = tmp_path / "summary.json"
    write_file(target, "one")
    write_file(target, "two")
    assert target.read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(RunDirError, match="symbolic link"):
        write_file(tmp_path / "link", "three")
    with pytest.raises(RunDirError, match="symbolic link"):
        open_append(tmp_path / "link")
    assert target.read_text() == "two"


# --- 4. --overwrite removes only what wppg wrote ---------------------------------------------------
TINY_CLI = ["--env", "Pendulum-v1", "--algo", "sac", "--total-steps", "10", "--learning-starts", "1000",
            "--batch-size", "32", "--buffer-size", "5000", "--eval-episodes", "1", "--hidden", "32", "32",
            "--no-progress"]  # fmt: skip


def user_files(out: Path) -> dict[str, bytes]:
    files = {"videos/holiday.mp4": b"a film", "checkpoints/resnet50.pt": b"weights", "notes.txt": b"mine"}
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return files


def test_overwrite_keeps_the_files_wppg_did_not_write(tmp_path, run_cli):
    out = tmp_path / "run"
    code, _, stderr = run_cli(["train", "--out", str(out), *TINY_CLI])
    assert code == 0, stderr
    mine = user_files(out)
    code, _, stderr = run_cli(["train", "--out", str(out), "--overwrite", *TINY_CLI])
    assert code == 0, stderr
    for name, data in mine.items():
        assert (out / name).read_bytes() == data, f"--overwrite deleted the user's {name}"
    assert (out / "checkpoints" / "last.npz").exists()


def test_overwrite_refuses_a_folder_wppg_did_not_write(tmp_path, run_cli):
    out = tmp_path / "mine"
    mine = {**user_files(out), "config.json": b'{"lr": 0.1}'}
    (out / "config.json").write_bytes(mine["config.json"])
    code, _, stderr = run_cli(["train", "--out", str(out), "--overwrite", *TINY_CLI])
    assert code == 2 and ".wppg-run" in stderr, stderr
    for name, data in mine.items():
        assert (out / name).read_bytes() == data, f"--overwrite deleted the user's {name}"


def test_no_resume_advice_without_a_checkpoint(tmp_path, run_cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    code, _, stderr = run_cli(["train", "--out", str(out), *TINY_CLI])
    assert code == 2 and "--overwrite" in stderr and "wppg resume" not in stderr, stderr


# --- 7, 8, 12. the run lock --------------------------------------------------------------------------
WORKER = """
import importlib.util, json, os, sys, time
spec = importlib.util.spec_from_file_location('rundir', {src!r} + '/wppg/rundir.py')
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
run, shared, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
for t in range(trials):
    while not os.path.exists(os.path.join(shared, f'go-{{t}}')):
        time.sleep(0.002)
    lock = m.RunLock(run)
    try:
        lock.acquire()
    except m.RunLockedError:
        print('refused', t, flush=True)
    else:
        try:
            os.mkdir(os.path.join(shared, f'inside-{{t}}'))
            time.sleep(0.03)
            os.rmdir(os.path.join(shared, f'inside-{{t}}'))
            print('held', t, flush=True)
        except FileExistsError:
            print('DOUBLE', t, flush=True)
        lock.release()
        m.RunLock._held.clear()
    open(os.path.join(shared, f'done-{{t}}-{{os.getpid()}}'), 'w').close()
"""


def test_taking_over_a_stale_lock_gives_one_holder(tmp_path):
    """Several processes at once find a lock of a dead process: exactly one may hold the run. (A
    race: a lock taken over by read-unlink-create gave two holders in a few percent of trials.)"""
    run, shared = tmp_path / "run", tmp_path / "shared"
    run.mkdir()
    shared.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = json.dumps({"pid": dead.pid, "host": os.uname().nodename, "time": 0})
    n, trials = 6, 80
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER.format(src=SRC), str(run), str(shared), str(trials)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    try:
        for t in range(trials):
            (run / LOCK_NAME).unlink(missing_ok=True)
            (run / LOCK_NAME).write_text(stale)
            (shared / f"go-{t}").touch()
            deadline = time.monotonic() + 30
            while len(list(shared.glob(f"done-{t}-*"))) < n and time.monotonic() < deadline:
                time.sleep(0.005)
    finally:
        outs = [p.communicate(timeout=60)[0] for p in procs]
    lines = [line for out in outs for line in out.split()]
    doubles = [line for out in outs for line in out.splitlines() if line.startswith("DOUBLE")]
    assert not doubles, f"two holders of one lock in {len(doubles)} of {trials} trials"
    assert lines.count("held") >= trials, "some trial had no holder at all"


def test_lock_of_a_live_process_is_respected_and_released_by_its_death(tmp_path, hold_lock):
    holder = hold_lock(tmp_path)
    try:
        # 12. whatever the lock file holds, a refused writer gets a named error
        bad = ["5", "[1, 2]", '{"pid": 7, "host": "h", "time": "x"}', '{"pid": 7, "host": "h", "time": 1e300}']
        for content in bad:
            (tmp_path / LOCK_NAME).write_text(content)  # in place: the holder's flock stays
            with pytest.raises(RunLockedError, match="in use by"):
                RunLock(tmp_path).acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with RunLock(tmp_path) as lock:  # the kernel released the dead holder's lock
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("content", ["5", "[1, 2]", '{"time": "x"}', '{"pid": 1, "time": 1e300}', "\x00garbage"])
def test_bad_lock_contents_of_no_live_holder(tmp_path, content):
    (tmp_path / LOCK_NAME).write_text(content)
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_loading_removes_no_temp_file(saved_run, tmp_path):
    """8. A reader never deletes temp files, nor does the lock holder delete those it cannot
    check: they may be a live save of another container sharing the volume, whose pid means
    nothing here."""
    run = copy_of(saved_run, tmp_path)
    d = run / "checkpoints"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    others = [d / f".last.npz.tmp-{dead.pid}", d / f".last.npz.tmp-other_container-{dead.pid}"]
    for p in others:
        p.write_bytes(b"a save in progress elsewhere")
    agent = Agent.load(run, run_dir=run, progress=False)
    assert all(p.exists() for p in others), "loading removed a temp file of another writer"
    agent.learn(SAVED_STEPS + 1)
    assert all(p.exists() for p in others), "the lock holder removed a temp file of another host"


# --- 10, 11. crafted headers and arrays ---------------------------------------------------------------
def deep(n: int) -> bytes:
    return b'{"format": "wppg-checkpoint-v1", "x": ' + b"[" * n + b"]" * n + b"}"


CRAFTED = {
    "meta-list": (lambda h: [1, 2], "JSON object"),
    "meta-string": (lambda h: "x", "JSON object"),
    "variant-list": (lambda h: h.update(variant=["sac"]), "'variant'"),
    "huge-seed": (lambda h: h["train_config"].update(seed=10**20), "'train_config'.*seed"),
    "inf-steps": (lambda h: h.update(env_steps=float("inf")), "'env_steps'"),
    "float-steps": (lambda h: h.update(env_steps=1.5), "'env_steps'"),
    "string-target": (lambda h: h.update(target_steps="100"), "'target_steps'"),
    "last-eval-dict": (lambda h: h.update(last_eval={"foo": 1.0}), "'last_eval'"),
    "last-eval-list": (lambda h: h.update(last_eval=[1]), "'last_eval'"),
    "meta-missing": (lambda h: h.pop("np_rng") and None, "'np_rng' is missing"),
    "np-rng-bad": (lambda h: h.update(np_rng={"bit_generator": "PCG64", "state": 5}), "'np_rng'"),
    "warnings-dict": (lambda h: h.update(warnings={"a": 1}), "'warnings'"),
    "window-strings": (lambda h: h.update(log_window={"metrics": {"q": ["x"]}, "returns": []}), "'log_window'"),
    "buffer-1e12": (lambda h: h["train_config"].update(buffer_size=10**12), "buffer_size"),
    "hidden-huge": (lambda h: h["algo_config"].update(hidden=[200_000, 200_000]), "hidden"),
    "batch-zero": (lambda h: h["train_config"].update(batch_size=0), "batch_size"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_header_gives_a_named_error(saved_run, tmp_path, case):
    edit, field = CRAFTED[case]
    bad = with_header(saved_run, tmp_path, edit)
    with pytest.raises(CheckpointError, match=field):
        Agent.load(bad, progress=False)


def test_deeply_nested_header(saved_run, tmp_path):
    _, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    for n in (100, 100_000):
        bad = write_npz(tmp_path / f"deep{n}.npz", deep(n), arrays)
        with pytest.raises(CheckpointError, match="header"):
            Agent.load(bad, progress=False)


def test_array_header_claiming_a_huge_shape(saved_run, tmp_path):
    """An .npy header claiming 10^12 elements over a few bytes of data: refused before allocating."""
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    path = write_npz(tmp_path / "claim.npz", header, arrays)
    import zipfile

    fake = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    fake["shape"] = (10**12,)
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, fake)
    buf.write(b"\0" * 16)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("buffer/bomb.npy", buf.getvalue())
    with pytest.raises(CheckpointError, match="bomb"):
        Agent.load(path, progress=False)


def test_compressed_array_is_checked_before_it_is_read(saved_run, tmp_path):
    """A zip bomb: a member of honest header that decompresses to far more than the model holds is
    refused from its header, without reading it."""
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    arrays["buffer/obs"] = np.zeros((4_000_000, 3), np.float32)  # 48 MB, a few kB compressed
    path = tmp_path / "bomb.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays, **{ckpt._META: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    del arrays
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="buffer/obs"):
            Agent.load(path, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"loading read the bomb ({peak / 1e6:.0f} MB allocated)"


@pytest.mark.parametrize(("entry", "value"), [("buffer/ptr", 7), ("buffer/size", 10**9)])
def test_crafted_buffer_pointers(saved_run, tmp_path, entry, value):
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    arrays[entry] = np.asarray(value, arrays[entry].dtype)
    bad = write_npz(tmp_path / "ptr.npz", header, arrays)
    with pytest.raises(CheckpointError, match="buffer"):
        Agent.load(bad, progress=False)


def test_env_pool_of_the_wrong_size(saved_run, tmp_path):
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    for k in ("pool/obs", "pool/ep_return", "pool/ep_length"):
        arrays[k] = np.concatenate([arrays[k]] * 3)
    bad = write_npz(tmp_path / "pool.npz", header, arrays)
    with pytest.raises(CheckpointError, match="pool/"):
        Agent.load(bad, progress=False)


@pytest.mark.parametrize(("attr", "value"), [("step", {"int": None}), ("_elapsed_steps", "x")])
def test_env_state_entries_that_would_break_training(saved_run, tmp_path, attr, value):
    """A snapshot attribute hiding a method, or of another type than the env's: new episodes (a
    warning), never a crash at the next env step."""
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    states = json.loads(arrays["pool/env_states"].tobytes().decode())
    states[0]["layers"][0]["attrs"][attr] = 5 if attr == "step" else value
    arrays["pool/env_states"] = np.frombuffer(json.dumps(states).encode(), np.uint8)
    bad = write_npz(tmp_path / "env.npz", header, arrays)
    with pytest.warns(UserWarning, match="new episodes"):
        agent = Agent.load(bad, progress=False)
    agent.learn(3)  # trains on
    assert agent.num_timesteps == SAVED_STEPS + 3


# --- 9, 13. bench files ---------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["[]", '{"env_steps": null}', '{"env_steps": 1e400}', '{"env_steps": "5"}', "{"])
def test_run_state_of_a_damaged_summary(tmp_path, content):
    from wppg.bench.worker import run_state

    (tmp_path / "summary.json").write_text(content)
    assert run_state(tmp_path, 10) == "new"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.npz").write_bytes(b"")
    assert run_state(tmp_path, 10) == "resume"


def test_worker_rewrites_a_lost_summary(tmp_path, tiny):
    from wppg.bench.runner import prepare
    from wppg.bench.spec import Run
    from wppg.bench.worker import execute, run_state

    hp = {**tiny("sac", learning_starts=1000), "hidden": [32, 32]}
    run = Run("Pendulum-v1", "sac", 0, 20, hp)
    _, run_dir = prepare(run, tmp_path, "test")
    first = execute(run_dir)
    assert run_state(run_dir, 20) == "finished"
    for damage in ("", '{"env_steps": 2'):  # lost, then cut mid-write
        (run_dir / "summary.json").write_text(damage) if damage else (run_dir / "summary.json").unlink()
        assert run_state(run_dir, 20) == "resume"
        again = execute(run_dir)
        assert run_state(run_dir, 20) == "finished", "a finished run whose summary was lost stays unfinished"
        assert again["final_eval"] == first["final_eval"] and again["env_steps"] == 20


def make_report_run(root: Path, bench: object, summary: object, config: object | None = None) -> Path:
    d = root / "runs" / "r0"
    d.mkdir(parents=True)
    (d / "bench.json").write_text(json.dumps(bench))
    (d / "summary.json").write_text(json.dumps(summary))
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    return d


GOOD_BENCH = {"run": {"env_id": "Pendulum-v1", "algo": "sac", "seed": 0, "steps": 10}}
GOOD_SUMMARY = {"env_steps": 10, "final_eval": {"return_mode": 1.0, "return_stochastic": 1.0}}


@pytest.mark.parametrize(
    ("bench", "summary", "config", "file"),
    [
        (GOOD_BENCH, {**GOOD_SUMMARY, "final_eval": [1, 2]}, None, "summary.json"),
        ({"run": []}, GOOD_SUMMARY, {"env_id": "Pendulum-v1", "variant": "sac"}, "bench.json"),
        (GOOD_BENCH, GOOD_SUMMARY, {"train_config": "x"}, "config.json"),
        (GOOD_BENCH, {**GOOD_SUMMARY, "env_steps": None}, None, None),
        (GOOD_BENCH, {**GOOD_SUMMARY, "env_steps": "10"}, None, "summary.json"),
    ],
    ids=["final-eval-list", "run-list", "train-config-string", "steps-null", "steps-string"],
)
def test_report_names_the_damaged_file(tmp_path, bench, summary, config, file, run_cli):
    d = make_report_run(tmp_path, bench, summary, config)
    code, _, stderr = run_cli(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"), "--reps", "10"])
    if file is None:
        assert code == 0, stderr
    else:
        assert code == 2 and str(d.resolve() / file) in stderr, stderr


SPEC = """
name = "probe"
[algos.sac]
seeds = {seeds}
hyperparameters = {{ {hp} }}
[envs."Pendulum-v1"]
steps = 100
"""


@pytest.mark.parametrize(
    ("seeds", "hp", "word"),
    [
        ("99999999999999999999", "", "seeds"),
        ("[0, 99999999999]", "", "seeds"),
        ("1", 'hidden = "64"', "hidden"),
        ("1", "batch_size = 0", "batch_size"),
    ],
    ids=["seed-count-overflow", "seed-too-large", "hidden-string", "batch-zero"],
)
def test_spec_errors_at_dry_run(tmp_path, run_cli, seeds, hp, word):
    spec = tmp_path / "probe.toml"
    spec.write_text(SPEC.format(seeds=seeds, hp=hp))
    code, stdout, stderr = run_cli(["bench", "run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"])
    assert code == 2 and word in stderr, (stdout, stderr)


# --- 14. API edges --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def agent(tiny):
    return wppg.SAC("Pendulum-v1", progress=False, **tiny("sac"))


@pytest.mark.parametrize("obs", [np.float32(1), None, "abc", [[[1.0, 2.0, 3.0]]], [np.nan, 0.0, 0.0]])
def test_predict_bad_observation(agent, obs):
    with pytest.raises(ValueError, match="obs"):
        agent.predict(obs)


@pytest.mark.parametrize("steps", [1.7, True, "10"])
def test_learn_bad_step_count(agent, steps):
    with pytest.raises(ValueError, match="total_timesteps"):
        agent.learn(steps)


def test_save_under_a_file_gives_the_write_error(agent, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointWriteError, match="could not write checkpoint"):
        agent.save(tmp_path / "file" / "x.npz")


def test_action_bounds_beyond_float32():
    from wppg.envs import ActionSpaceError

    class Huge(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        action_space = gym.spaces.Box(-1e300, 1e300, (1,), np.float64)

    with pytest.raises(ActionSpaceError, match="float32"):
        wppg.SAC(Huge(), progress=False)


def test_disk_full_while_logging_names_the_file(saved_run, tmp_path, monkeypatch):
    import wppg.logger

    run = copy_of(saved_run, tmp_path)
    agent = Agent.load(run, run_dir=run, progress=False)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wppg.logger, "open_append", full)
    with pytest.raises(OSError, match=r"could not write .*eval\.csv: No space left"):
        agent.learn(SAVED_STEPS + 2)


# --- also noted: bench drivers --------------------------------------------------------------------------
def test_a_run_of_another_driver_is_skipped_untouched(tmp_path, hold_lock):
    """Two drivers on one --out: the second one's worker finds the run locked, writes nothing
    into it and is reported as skipped, not failed."""
    from wppg.bench.outcomes import Pending, finish
    from wppg.bench.runner import prepare
    from wppg.bench.spec import Run
    from wppg.bench.worker import ERROR_FILE, main

    run = Run("Pendulum-v1", "sac", 0, 20)
    _, run_dir = prepare(run, tmp_path, "test")
    holder = hold_lock(run_dir)
    try:
        before = sorted(p.name for p in run_dir.iterdir())
        code = main([str(run_dir)])
        assert sorted(p.name for p in run_dir.iterdir()) == before, "the second driver's worker wrote into the run"
        outcome = finish(Pending(run, run_dir, "new"), code, 0.0)
        assert outcome.status == "skipped" and not (run_dir / ERROR_FILE).exists(), outcome
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_workers_die_with_their_driver(tmp_path):
    """A driver killed with SIGKILL leaves no orphan worker (Linux: the worker's parent-death signal)."""
    from wppg.bench.worker import BOOT

    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")
    head = BOOT.split("from wppg.bench.worker import main")[0]
    worker = head + "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    driver = (
        "import os, subprocess, sys\n"
        "env = dict(os.environ, WPPG_BENCH_DRIVER=str(os.getpid()))\n"
        f"p = subprocess.Popen([sys.executable, '-c', {worker!r}], env=env, stdout=subprocess.PIPE, text=True)\n"
        "assert p.stdout.readline().strip() == 'ready'\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    d = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True)
    child = int(d.stdout.readline())
    d.kill()
    d.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        try:
            if Path(f"/proc/{child}/stat").read_text().split(") ", 1)[1][:1] == "Z":
                return  # exited, awaiting its (new) parent's reaping
        except OSError:
            return
        time.sleep(0.05)
    os.kill(child, 9)
    pytest.fail("the worker outlived its killed driver")
