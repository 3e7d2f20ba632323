"""Faults: hostile checkpoint files, hostile envs, concurrent writers, kills and resumes.

Every test here fails on a version of wppg without the matching guard: a pickled env snapshot
executing code on load, a NaN or mis-shaped env output reaching the replay buffer, two
processes writing one run, an --overwrite that deletes a run before finding the new one
invalid, a Ctrl-C that loses the work since the last periodic checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import wppg
from wppg import checkpoint as ckpt
from wppg import trainer as trainer_mod
from wppg.agent import Agent
from wppg.checkpoint import CheckpointError, CheckpointWriteError
from wppg.envs import EnvOutputError
from wppg.rundir import LOCK_NAME, RunLock, RunLockedError
from wppg.schedule import TrainingInterrupted

SRC = str(Path(wppg.__file__).resolve().parents[1])

# Most runs here are shorter than learning_starts on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:learning_starts.*zero gradient steps:UserWarning")


def files_of(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --- a small saved run, shared by the file tests ------------------------------------------------------
SAVED_STEPS = 30


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny) -> Path:
    """A SAC run directory checkpointed mid-episode after SAVED_STEPS random-action steps (no
    gradient step: learning_starts is larger), so the checkpoint holds env snapshots."""
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    agent = wppg.SAC("Pendulum-v1", seed=3, run_dir=run_dir, progress=False, **tiny("sac", learning_starts=1000))
    with pytest.warns(UserWarning, match="zero gradient steps"):
        agent.learn(SAVED_STEPS)
    (run_dir / "config.json").write_text(json.dumps({"variant": "sac"}))
    return run_dir


def copy_of(run: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def arrays_of(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop(ckpt._META).tobytes().decode())
    return header, arrays


def write_npz(path: Path, header: dict, arrays: dict[str, np.ndarray]) -> Path:
    arrays = {**arrays, ckpt._META: np.frombuffer(json.dumps(header).encode(), np.uint8)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


class Payload:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


# --- 1. no code execution on load ---------------------------------------------------------------
@pytest.mark.parametrize("entry", ["pool/pickles/0"], ids=["pickle-entry"])
def test_pickled_env_snapshot_is_not_executed(saved_run, tmp_path, entry, run_cli):
    run = copy_of(saved_run, tmp_path)
    last = run / "checkpoints" / "last.npz"
    header, arrays = arrays_of(last)
    assert "pool/env_states" in arrays and not any(k.startswith("pool/pickles") for k in arrays), (
        "Pendulum's snapshot should be data only"
    )
    marker = tmp_path / "marker"
    arrays = {k: v for k, v in arrays.items() if k != "pool/env_states"}
    arrays[entry] = np.frombuffer(pickle.dumps(Payload(marker)), np.uint8)
    write_npz(last, header, arrays)

    with pytest.warns(UserWarning, match="pickle.*trust"):
        agent = Agent.load(last, progress=False)
    assert not marker.exists(), "loading a checkpoint executed code from it"
    assert agent.trainer.pool is None and agent.num_timesteps == SAVED_STEPS  # new episodes, same counters
    code, _, stderr = run_cli(["eval", str(run), "--episodes", "1"])
    assert code == 0, stderr
    assert not marker.exists(), "`wppg eval` executed code from the checkpoint"
    # The control: the payload is live, and trust=True is what runs it.
    with contextlib.suppress(Exception), pytest.warns(UserWarning):
        Agent.load(last, progress=False, trust=True)
    assert marker.exists(), "the payload never ran: the test does not test anything"


def test_data_only_snapshot_resumes_mid_episode(saved_run):
    agent = Agent.load(saved_run, progress=False)
    env = agent.trainer.pool.envs[0]
    assert vars(env)["_elapsed_steps"] == SAVED_STEPS, "the TimeLimit counter was not restored"
    assert agent.trainer.pool.ep_length[0] == SAVED_STEPS


# --- 8. named errors for damaged files --------------------------------------------------------------
@pytest.mark.parametrize("missing", ["key", "buffer/reward", "buffer/size", "pool/obs", "agent/step"])
def test_checkpoint_missing_an_entry(saved_run, tmp_path, missing):
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    assert missing in arrays
    bad = write_npz(tmp_path / "bad.npz", header, {k: v for k, v in arrays.items() if k != missing})
    with pytest.raises(CheckpointError, match=missing.split("/")[-1]):
        Agent.load(bad, progress=False)


@pytest.mark.parametrize(
    ("entry", "dtype"),
    [("agent/step", np.float64), ("agent/actor_params/params/net/Dense_0/kernel", np.float64), ("key", np.float32),
     ("buffer/reward", np.float64), ("buffer/obs", np.int32)],
    ids=["step", "kernel", "key", "reward", "obs"],
)  # fmt: skip
def test_checkpoint_with_a_wrong_dtype(saved_run, tmp_path, entry, dtype):
    header, arrays = arrays_of(saved_run / "checkpoints" / "last.npz")
    arrays[entry] = arrays[entry].astype(dtype)
    bad = write_npz(tmp_path / "bad.npz", header, arrays)
    with pytest.raises(CheckpointError, match="dtype"):
        Agent.load(bad, progress=False)


def test_disk_full_keeps_the_old_checkpoint(saved_run, tmp_path, monkeypatch):
    run = copy_of(saved_run, tmp_path)
    last = run / "checkpoints" / "last.npz"
    agent, good = Agent.load(run, progress=False), last.read_bytes()

    def full(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.np, "savez", full)
    with pytest.raises(CheckpointWriteError) as err:
        agent.save(last)
    msg = str(err.value)
    assert "No space left" in msg and "kept" in msg and str(last) in msg, msg
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert last.read_bytes() == good
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.npz"]


def test_stale_temp_files_are_removed(saved_run, tmp_path):
    """The lock holder removes the temp files of this host's dead writers; loading removes none."""
    from wppg.rundir import _host

    run = copy_of(saved_run, tmp_path)
    d = run / "checkpoints"
    stale = d / f".last.npz.tmp-{_host()}-{dead_pid()}"
    live = d / f".last.npz.tmp-{_host()}-{os.getppid()}"
    other_host = d / f".last.npz.tmp-elsewhere-{dead_pid()}"
    for p in (stale, live, other_host):
        p.write_bytes(b"half a checkpoint")
    agent = Agent.load(run, run_dir=run, progress=False)  # (what `wppg resume` does first)
    assert stale.exists(), "loading (without the lock) removed a temp file"
    with pytest.warns(UserWarning, match="zero gradient steps"):
        agent.learn(SAVED_STEPS + 1)
    assert not stale.exists(), "a temp file of a killed writer was left behind"
    assert live.exists(), "a temp file of a live process was removed"
    assert other_host.exists(), "a temp file of another host (whose processes cannot be checked) was removed"


# --- 3. one writer per run directory ----------------------------------------------------------------
def test_second_writer_gets_a_named_error(saved_run, tmp_path, run_cli, hold_lock):
    """A real second process holds the lock; training into the run and `wppg train` both refuse."""
    run = copy_of(saved_run, tmp_path)
    holder = hold_lock(run)
    try:
        agent = Agent.load(run, run_dir=run, progress=False)
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on {socket.gethostname()}"):
            agent.learn(5)
        before = files_of(run)
        code, _, stderr = run_cli(["train", "--env", "Pendulum-v1", "--out", str(run), "--overwrite", "--no-progress"])
        assert code == 2 and f"pid {holder.pid}" in stderr, stderr
        assert files_of(run) == before, "a refused writer changed the run"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # The holder died without releasing its lock: the lock is stale and the next writer takes it.
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid
    with pytest.warns(UserWarning, match="zero gradient steps"):
        agent.learn(SAVED_STEPS + 2)
    assert not (run / LOCK_NAME).exists(), "learn did not release its lock"


def test_stale_lock_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "time": 0}))
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with RunLock(tmp_path):  # re-entrant within a process
            pass
        assert lock.path.exists()
    assert not (tmp_path / LOCK_NAME).exists()
    # Whatever the file says, a lock no live process holds (flock) is taken over: the kernel
    # released it when its holder died, on this host or another one sharing the volume.
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "another-host", "time": 0}))
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


# --- 2. --overwrite validates first -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "word"),
    [(["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"), (["--env", "Pendulum-v1", "--seed", "-1"], "seed")],
    ids=["bad-env", "negative-seed"],
)
def test_overwrite_keeps_the_old_run_when_the_new_one_is_invalid(saved_run, tmp_path, flags, word, run_cli):
    run = copy_of(saved_run, tmp_path)
    before = files_of(run)
    code, _, stderr = run_cli(["train", "--out", str(run), "--overwrite", "--no-progress", *flags])
    assert code == 2 and word in stderr, stderr
    assert files_of(run) == before, "--overwrite deleted the old run before the new one was validated"


# --- 8. named errors of the command line ------------------------------------------------------------
def test_cli_named_errors(saved_run, tmp_path, run_cli):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["train", "--env", "Pendulum-v1", "--out", str(a_file / "run")], "not a directory"),
        (["train", "--env", "Pendulum-v1", "--out", str(a_file)], "not a directory"),
        (["train", "--env", "Pendulum-v1", "--out", ""], "--out is empty"),
        (["train", "--env", "Pendulum-v1", "--out", str(tmp_path / "r"), "--seed", "-1"], "seed must be >= 0"),
        (["eval", str(saved_run), "--episodes", "0"], "--episodes must be >= 1"),
        (["eval", str(saved_run), "--episodes", "-1"], "--episodes must be >= 1"),
    ]
    for argv, message in cases:
        code, _, stderr = run_cli([*argv, "--no-progress"] if argv[0] == "train" else argv)
        assert code == 2 and message in stderr, (argv, code, stderr)
    assert not (tmp_path / "r").exists()


def test_resume_of_a_multi_seed_parent_names_its_seeds(saved_run, tmp_path, run_cli):
    parent = tmp_path / "multi"
    for s in (0, 1):
        (parent / f"seed{s}" / "checkpoints").mkdir(parents=True)
        data = (saved_run / "checkpoints" / "last.npz").read_bytes()
        (parent / f"seed{s}" / "checkpoints" / "last.npz").write_bytes(data)
    code, _, stderr = run_cli(["eval", str(parent)])
    assert code == 2 and str(parent / "seed0") in stderr and str(parent / "seed1") in stderr, stderr
    code, _, stderr = run_cli(["resume", str(parent)])  # resumes the seeds together, if they are what they say
    assert code == 2 and f"{parent / 'seed0'}" in stderr and "not of seed 0" in stderr, stderr


# --- 4, 5, 8. hostile envs ------------------------------------------------------------------------
class Hostile(gym.Env):
    """Pendulum-shaped; from step `at` on it misbehaves as `how` says; no time limit."""

    observation_space = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def __init__(self, how: str = "", at: int = 10**9):
        self.how, self.at, self.steps = how, at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.steps += 1
        obs, reward = np.full(3, 0.1, np.float32), -1.0
        if self.steps >= self.at:
            if self.how == "nan-obs":
                obs[1] = np.nan
            elif self.how == "shape":
                obs = np.zeros(4, np.float32)
            elif self.how == "none-reward":
                reward = None
            elif self.how == "inf-reward":
                reward = float("inf")
            elif self.how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            elif self.how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
        return obs, reward, False, False, {}


@pytest.mark.parametrize(
    ("how", "words"),
    [("nan-obs", ["observation", "non-finite", "[1]"]), ("shape", ["observation", "(4,)", "(3,)"]),
     ("none-reward", ["reward is None"]), ("inf-reward", ["reward", "inf"])],
)  # fmt: skip
def test_hostile_env_output_is_refused(how, words, tiny, tmp_path):
    run_dir = tmp_path / "run"
    agent = wppg.SAC(Hostile(how, at=7), run_dir=run_dir, progress=False, **tiny("sac", checkpoint_every=5))
    with pytest.raises(EnvOutputError) as err:
        agent.learn(20)
    msg = str(err.value)
    for w in words + ["env step 7", str(run_dir / "checkpoints" / "last.npz")]:
        assert w in msg, f"{w!r} not in {msg}"
    assert agent.num_timesteps == 6 and agent.trainer.buffer.size == 6
    assert np.all(np.isfinite(agent.trainer.buffer.rows[:6]))
    assert ckpt.load(run_dir)[0]["env_steps"] == 5
    assert not (run_dir / LOCK_NAME).exists(), "a failed learn kept the run's lock"


def test_evaluation_of_an_endless_env_is_capped(tiny, monkeypatch):
    monkeypatch.setattr(trainer_mod, "EVAL_MAX_EPISODE_STEPS", 25)
    agent = wppg.SAC(Hostile(), progress=False, **tiny("sac"))
    with pytest.warns(UserWarning, match="cut at 25 steps") as record:
        returns = agent.evaluate(episodes=2)
    assert len([w for w in record if "cut at" in str(w.message)]) == 1, "warn once, not per episode"
    np.testing.assert_allclose(returns, [-25.0, -25.0])
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        agent.evaluate(episodes=0)


# --- 6. Agent.load(path, env=X) ---------------------------------------------------------------------
class OtherPendulum(Hostile):
    """Another env class with Pendulum's spaces."""


def test_load_with_another_env_trains_on_it(saved_run, monkeypatch):
    monkeypatch.setattr(trainer_mod, "EVAL_MAX_EPISODE_STEPS", 10)  # OtherPendulum has no time limit
    with pytest.warns(UserWarning, match="starting new episodes"):
        agent = Agent.load(saved_run, env=OtherPendulum(), progress=False)
    agent.learn(3)
    assert all(type(e) is OtherPendulum for e in agent.trainer.pool.envs)
    assert agent.num_timesteps == SAVED_STEPS + 3

    class Wider(OtherPendulum):
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    with pytest.raises(CheckpointError, match="spaces"):
        Agent.load(saved_run, env=Wider(), progress=False)


# --- 9, 11. SIGINT / SIGTERM, and the persisted target ------------------------------------------------
gym.register("WppgTestSignal-v0", entry_point=Hostile, kwargs={"how": "", "at": 10**9}, max_episode_steps=40)


@pytest.mark.parametrize(("how", "code"), [("sigint", 130), pytest.param("sigterm", 143, marks=pytest.mark.full)])
def test_signal_checkpoints_and_resume_goes_on_to_the_target(how, code, tiny, tmp_path, monkeypatch, run_cli):
    """The signal arrives inside the env step of step 23: that step and its update finish, the
    checkpoint is at 23, and a resume without --total-steps continues to the interrupted target."""
    handler = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    run_dir = tmp_path / "run"
    hyper = tiny("sac", learning_starts=10, batch_size=8)
    agent = wppg.SAC(Hostile(how, at=23), run_dir=run_dir, progress=False, **hyper)
    with pytest.raises(TrainingInterrupted) as err:
        agent.learn(60)
    assert err.value.env_steps == 23 and f"wppg resume {run_dir}" in str(err.value)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handler, "handlers not restored"
    meta, _ = ckpt.load(run_dir)
    assert meta["env_steps"] == 23 and meta["target_steps"] == 60
    assert int(agent.trainer.state.step) == 23 - 10 + 1  # the update of the last step was taken
    header, arrays = arrays_of(run_dir / "checkpoints" / "last.npz")
    # An env id, so that `wppg resume` can rebuild the env (the agent was trained on an instance).
    write_npz(run_dir / "checkpoints" / "last.npz", {**header, "env_id": "WppgTestSignal-v0"}, arrays)
    rc, _, stderr = run_cli(["resume", str(run_dir), "--no-progress"])
    assert rc == 0, stderr
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 60

    # the same through the command line: its exit code says which signal
    gym.register(f"WppgTest-{how}-v0", entry_point=Hostile, kwargs={"how": how, "at": 23}, max_episode_steps=40)
    rc, _, stderr = run_cli(["train", "--algo", "sac", "--env", f"WppgTest-{how}-v0", "--out", str(tmp_path / "cli"),
                             "--total-steps", "60", "--learning-starts", "10", "--batch-size", "8",
                             "--buffer-size", "5000", "--hidden", "32", "32", "--eval-episodes", "1",
                             "--no-progress"])  # fmt: skip
    assert rc == code and "env step 23" in stderr, stderr


def test_sigint_from_outside_stops_a_cli_run_with_a_checkpoint(tmp_path):
    """A real `wppg train` process gets SIGINT once training runs; it exits 130 with a checkpoint
    at the step it stopped, from which a resume continues."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from wppg.cli import main; sys.exit(main())", "train", "--algo", "sac",
         "--env", "Pendulum-v1", "--out", str(out), "--total-steps", "100000", "--learning-starts", "20",
         "--batch-size", "8", "--hidden", "16", "--log-every", "20", "--eval-episodes", "1", "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / "train.csv").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    meta, _ = ckpt.load(out)
    step = meta["env_steps"]
    assert f"training stopped at env step {step}" in stderr, stderr
    assert 20 <= step < 100_000 and meta["target_steps"] == 100_000
    assert not (out / LOCK_NAME).exists()
    resumed = Agent.load(out, run_dir=out, progress=False)  # (a full resume after a signal: the test above)
    assert resumed.num_timesteps == step and resumed.trainer.target_steps == 100_000
    assert resumed.trainer.pool is not None and resumed.trainer.pool.ep_length[0] == step % 200


# --- 12. logs ---------------------------------------------------------------------------------------
@pytest.mark.full
def test_train_csv_is_exact_across_a_resume(tiny, tmp_path):
    """Rows of a run saved at 270 and resumed equal those of a straight run, train_return included
    (it first appears at step 200, after rows without it)."""
    hyper = tiny("sac", hidden=(16,), log_every=50)
    straight = tmp_path / "straight"
    wppg.SAC("Pendulum-v1", seed=1, run_dir=straight, progress=False, **hyper).learn(400)
    split = tmp_path / "split"
    wppg.SAC("Pendulum-v1", seed=1, run_dir=split, progress=False, **hyper).learn(270)
    Agent.load(split, run_dir=split, progress=False).learn(130)

    from wppg.logger import read_csv

    a, b = read_csv(straight / "train.csv"), read_csv(split / "train.csv")
    assert a["step"] == b["step"] == [50.0 * k for k in range(1, 9)]
    assert np.isnan(a["train_return"][0]) and np.isfinite(a["train_return"][-1]), "train_return was dropped"
    for name in a:
        if name != "steps_per_s":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_column_that_starts_late_is_kept(tmp_path):
    """train_return first appears in a later row: the header grows, earlier rows read NaN there."""
    from wppg.logger import RunLogger, read_csv

    log = RunLogger(tmp_path)
    log.log("train", 10, {"critic_loss": 1.0})
    log.log("train", 20, {"critic_loss": 2.0, "train_return": -5.0})
    log.log("train", 30, {"train_return": -4.0, "critic_loss": 3.0})
    log.close()
    rows = read_csv(tmp_path / "train.csv")
    assert rows["critic_loss"] == [1.0, 2.0, 3.0]
    assert np.isnan(rows["train_return"][0]) and rows["train_return"][1:] == [-5.0, -4.0]
    again = RunLogger(tmp_path, resume_step=20)  # a resume truncates and keeps the wider header
    again.log("train", 30, {"critic_loss": 4.0, "train_return": -3.0})
    again.close()
    assert read_csv(tmp_path / "train.csv")["train_return"][1:] == [-5.0, -3.0]
