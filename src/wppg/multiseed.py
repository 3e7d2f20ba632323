"""Many seeds of one off-policy agent in one process, with the update `jax.vmap`-ed across seeds.

`MultiSeedTrainer` holds N ordinary single-seed `Trainer`s (one per seed: its replay buffer, NumPy
generator, env pool, evaluation env, logs and checkpoints) and replaces only the two hot calls of
the loop: the actions of every seed's envs come from one vmapped `act`, and every seed's
gradient steps from one vmapped `update`, each jitted once, over the agent states stacked along a
leading seed axis. The per-seed JAX keys are stacked too and split inside those calls, exactly as
`Trainer` splits its own key, so every random stream of seed k is the one of a separate run
with seed k. The stacked state is written back into each trainer (`sync`) before evaluations,
checkpoints and at the end of `learn`, so each seed's run directory, checkpoint and evaluation
protocol are those of a single-seed run: `wppg.Agent.load` and `wppg resume` continue it alone.

Seed k of a vmapped run equals a separate run with seed k up to floating-point rounding, not
bit for bit: XLA lowers the batched matrix products and reductions of the vmapped program with
another blocking and summation order, so the parameters differ at the level of float32 rounding
(relative 1e-7 per step), and these differences grow slowly through training (and, after the
warm-up, through the env trajectories that the actions steer). tests/test_multiseed.py checks
parameters and evaluation returns to a relative 1e-5 after a few hundred env steps.

Speed: the gain is the work that one seed leaves on the table. Where one seed's update is small
for the device (a GPU, or small networks where call overhead dominates on a CPU core), N seeds
cost little more than one. Where it already keeps the device busy, N seeds cost about N times
one: with batch 256 and (256, 256) networks on one CPU core, a single-seed run spends 80-95% of
its time in update calls whose matrix products run near the core's matmul rate, so only the
rest (act and update dispatch, env steps, sampling) is shared, and four seeds train about 1.05
times faster together than one after another. `measure_vmapped_speedup` measures it on the
machine at hand (`wppg bench speed --sections vmap`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from wppg import registry
from wppg.agent import Agent, make_agent
from wppg.algorithms.base import OffPolicyAlgorithm, require, with_key_split
from wppg.envs import EnvOutputError, EnvPool, EnvSpec
from wppg.rundir import RunLock, check_writable
from wppg.trainer import (
    Trainer,
    TrainingDivergedError,
    TrainingInterrupted,
    stop_on_signals,
)


def check_seeds(seeds: Sequence[int], variant: str | None = None) -> list[int]:
    """The seeds as a list of distinct non-negative ints, or a ConfigError naming the problem;
    with `variant`, also check that it is an off-policy algorithm."""
    if variant is not None:
        _require_off_policy(variant)
    seeds = list(seeds)
    require(len(seeds) > 0, "seeds must hold at least one seed, got none")
    require(
        all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds),
        f"seeds must be non-negative integers, got {seeds}",
    )
    duplicates = sorted({int(s) for s in seeds if seeds.count(s) > 1})
    require(not duplicates, f"seeds must be distinct: {duplicates} given more than once in {seeds}")
    return [int(s) for s in seeds]


def _require_off_policy(variant: str) -> None:
    require(variant in registry.REGISTRY, f"unknown algorithm {variant!r}; available: {sorted(registry.names())}")
    require(
        not registry.get(variant).on_policy,
        f"{variant} is on-policy: vmapped multi-seed training needs an off-policy algorithm (a replay buffer and "
        f"an update on minibatches); train the seeds of {variant} as separate runs",
    )


BATCHING = ("vmap", "map")
"""How one call covers every seed: 'vmap' batches the seeds' arrays (one program on arrays with
a seed axis); 'map' loops over the seeds inside one jitted call (`jax.lax.map`)."""


def _check_batching(batching: str) -> str:
    require(batching in BATCHING, f"batching must be one of {BATCHING}, got {batching!r}")
    return batching


def _seed_loop(fn):
    def looped(*args):
        return jax.lax.map(lambda a: fn(*a), args)

    return looped


@jax.jit
def _stack(trees: Sequence[Any]) -> Any:
    """Stack N pytrees along a new leading axis (jitted: one compilation, not one per leaf shape)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@jax.jit
def _unstack(tree: Any) -> list[Any]:
    """Inverse of `_stack`."""
    n = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


class MultiSeedTrainer:
    """Trains the agents (one per seed, same algorithm, hyperparameters and env) in lock-step.

    `batching` says how one call covers the seeds (see `BATCHING`): 'vmap' (the default) is what
    fills a GPU and what pays on small networks; with large networks on a CPU, whose cores the
    products of one seed already keep busy, 'map' can be faster (the vmapped program's batched
    products run slower there than the seeds' products one after another).
    """

    def __init__(self, agents: Sequence[Agent], progress: bool = True, batching: str = "vmap"):
        agents = list(agents)
        require(len(agents) > 0, "MultiSeedTrainer needs at least one agent")
        for a in agents:
            require(
                isinstance(a.trainer, Trainer) and isinstance(a.algorithm, OffPolicyAlgorithm),
                f"{a.variant} is on-policy: vmapped multi-seed training needs an off-policy algorithm",
            )
        first = agents[0]
        check_seeds([a.train_config.seed for a in agents])
        for a in agents[1:]:
            other = a.train_config.to_dict() | {"seed": first.train_config.seed}
            same = (a.variant, a.algo_config, other, a.env_info.env_id, a.env_info.obs_dim) == (
                first.variant, first.algo_config, first.train_config.to_dict(), first.env_info.env_id, first.env_info.obs_dim,
            )  # fmt: skip
            require(same, f"the agents must differ only in their seed; seed {a.train_config.seed} differs from seed {first.train_config.seed}")
        self.agents = agents
        self.trainers: list[Trainer] = [a.trainer for a in agents]
        self.seeds = [a.train_config.seed for a in agents]
        self.config = first.train_config
        self.progress = progress
        # One algorithm object for all seeds: its methods are pure functions of the (equal) config,
        # and sharing it compiles the per-seed evaluation `act` once instead of once per seed.
        self.algo: OffPolicyAlgorithm = first.algorithm
        for a in agents:
            a.algorithm = a.trainer.algo = self.algo
        self.batching = _check_batching(batching)
        over_seeds = jax.vmap if batching == "vmap" else _seed_loop
        # The single-seed trainer's two calls, each with its key split inside: `explore` and
        # `keyed_update` of one seed, mapped over the seeds.
        self._act = jax.jit(over_seeds(self.algo._explore))
        self._update = jax.jit(over_seeds(with_key_split(self.algo._update)))
        self._state: Any = None
        self._keys: Any = None
        self.last_costs: dict[str, Any] = {}
        """Wall time, per-seed steps/s and update-call time of the last `learn` call."""

    # --- stacked state <-> trainers -----------------------------------------------------------
    def _gather(self) -> None:
        self._state, self._keys = _stack([(t.state, t.key) for t in self.trainers])

    def sync(self) -> None:
        """Write the stacked agent states and keys back into each seed's trainer."""
        if self._state is None:
            return
        for t, (state, key) in zip(self.trainers, _unstack((self._state, self._keys))):
            t.state, t.key = state, key

    # --- the loop ----------------------------------------------------------------------------
    def learn(self, until_step: int) -> list[dict[str, float]]:
        """Interact and learn until `until_step` env steps per seed; returns each seed's last evaluation.

        The schedule (warm-up, update calls, train.csv rows, evaluations, checkpoints, summary) is
        that of `Trainer.learn`, step for step, for every seed; so are the run-directory locks and
        the stop on SIGINT / SIGTERM (every seed checkpointed, then `TrainingInterrupted`).
        """
        with contextlib.ExitStack() as stack:
            for t in self.trainers:
                t.target_steps = int(until_step)
                if t.run_dir is not None:
                    stack.enter_context(RunLock(check_writable(t.run_dir)))
            stop = stack.enter_context(stop_on_signals())
            return self._learn(until_step, stop)

    def _learn(self, until_step: int, stop: Any) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        from wppg.logger import RunLogger

        c, trainers = self.config, self.trainers
        steps = {t.env_steps for t in trainers}
        require(len(steps) == 1, f"the seeds' runs are at different env steps {sorted(steps)}; they must be in lock-step")
        for t in trainers:
            if t.pool is None:
                t.pool = EnvPool([t.make_env() for _ in range(c.n_envs)], seed=t.config.seed)
            if t.run_dir is not None and t.logger is None:
                t.logger = RunLogger(t.run_dir, resume_step=t.env_steps if t.env_steps else None)
        self._gather()
        n = len(trainers)
        lead = trainers[0]
        start_steps, start_time = lead.env_steps, time.perf_counter()
        # Each seed's logging windows are its trainer's, so they are checkpointed with it.
        recent = [t.recent_returns for t in trainers]
        update_time, update_calls, grad_steps_done = 0.0, 0, 0
        bar = tqdm(total=until_step, initial=lead.env_steps, unit="step", disable=not self.progress, mininterval=1.0, dynamic_ncols=True)
        bar.set_description(f"{n} seeds")
        try:
            while lead.env_steps < until_step and stop.signum is None:
                if lead.env_steps < c.learning_starts:
                    finished = []
                    for t in trainers:  # uniform actions: host only, no key
                        with _env_errors(t):
                            finished.append(t._env_step())
                else:
                    finished = self._policy_env_step()
                for t, r, f in zip(trainers, recent, finished):
                    r.extend(ret for ret, _ in f)
                    t.env_steps += c.n_envs
                    t.iterations += 1
                bar.update(c.n_envs)

                if lead._update_due():
                    batches = {k: np.stack(v) for k, v in _transpose([t._update_input() for t in trainers]).items()}
                    t0 = time.perf_counter()
                    state, metrics, keys = self._update(self._state, batches, self._keys)
                    metrics = jax.device_get(metrics)
                    update_time += time.perf_counter() - t0
                    update_calls += 1
                    grad_steps_done += lead._grad_steps_per_update()
                    self._check_finite(metrics)
                    self._state, self._keys = state, keys
                    for name, v in metrics.items():
                        for i, t in enumerate(trainers):
                            t.log_metrics.setdefault(name, []).append(float(np.asarray(v, np.float64)[i]))

                if lead.env_steps % c.log_every < c.n_envs and lead.log_metrics:
                    sps = (lead.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)
                    for i, (t, r) in enumerate(zip(trainers, recent)):
                        row = {name: float(np.mean(v)) for name, v in t.log_metrics.items()}
                        row.update(t.policy_spread(jax.tree.map(lambda x, i=i: x[i], self.algo.policy_params(self._state))))
                        row["steps_per_s"] = sps
                        if r:
                            row["train_return"] = float(np.mean(r))
                        t._log("train", row)
                        t.log_metrics.clear()
                    bar.set_postfix(sps=f"{sps:.0f}", refresh=False)
                if lead.env_steps % c.eval_every < c.n_envs:
                    self.sync()
                    for t in trainers:
                        t.evaluate_and_log()
                    bar.set_postfix(eval=" ".join(t._eval_str() for t in trainers))
                if c.checkpoint_every and lead.env_steps % c.checkpoint_every < c.n_envs:
                    self._save_all()
        finally:
            bar.close()
            self.sync()
        if stop.signum is not None:
            self._save_all()
            name = signal.Signals(stop.signum).name
            where = " ".join(str(t.run_dir) for t in trainers if t.run_dir is not None)
            raise TrainingInterrupted(
                f"{name}: training stopped at env step {lead.env_steps}"
                + (f"; checkpoints written in {where}" if where else ""),
                stop.signum,
                lead.env_steps,
            )
        for t in trainers:
            if t.last_eval.get("step") != t.env_steps:
                t.evaluate_and_log()
        self._save_all()
        elapsed = time.perf_counter() - start_time
        costs = {
            "wall_time_s": elapsed,
            # Per seed: each seed advanced this many env steps per second of the shared wall time.
            "steps_per_s": (lead.env_steps - start_steps) / max(elapsed, 1e-9),
            # The vmapped update calls served every seed at once; per gradient step of one seed,
            # their time is divided by the number of seeds.
            "update_time_s": update_time,
            "update_calls": update_calls,
            "ms_per_gradient_step": 1e3 * update_time / max(grad_steps_done * n, 1),
            "vmapped_seeds": self.seeds,
        }
        self.last_costs = costs
        for t in trainers:
            if t.run_dir is not None:
                t._write_summary(costs)
            if t.logger is not None:
                t.logger.tb.flush()
        return [t.last_eval for t in trainers]

    def _policy_env_step(self) -> list[list[tuple[float, int]]]:
        """`Trainer._env_step` after the warm-up, for every seed, with one vmapped act call."""
        obs = np.stack([t.pool.obs for t in self.trainers])
        actions, self._keys = self._act(self.algo.policy_params(self._state), obs, self._keys)
        actions = np.asarray(actions)
        finished = []
        for t, o, a in zip(self.trainers, obs, actions):
            with _env_errors(t):
                next_obs, reward, terminated, _, done = t.pool.step(a)
            t.buffer.add(obs=o, action=a, reward=reward, next_obs=next_obs, terminated=terminated)
            finished.append(done)
        return finished

    def _check_finite(self, metrics: dict[str, np.ndarray]) -> None:
        """Stop on a non-finite loss of any seed, with that seed's trainer's message; nothing of
        the diverged update is kept (the trainers hold the last good state)."""
        finite = np.all([np.isfinite(v) for v in metrics.values()], axis=0)
        if not finite.all():
            self.sync()
            i = int(np.argmin(finite))
            try:
                self.trainers[i]._check_finite({name: float(v[i]) for name, v in metrics.items()})
            except TrainingDivergedError as e:
                raise TrainingDivergedError(f"seed {self.seeds[i]}: {e}") from None

    def _save_all(self) -> None:
        if any(t.run_dir is not None for t in self.trainers):
            self.sync()
        for t in self.trainers:
            if t.run_dir is not None:
                t.save(t.run_dir / "checkpoints" / "last.npz")


@contextlib.contextmanager
def _env_errors(t: Trainer) -> Any:
    """An `EnvOutputError` of seed `t`'s envs, with the seed and the env step added."""
    try:
        yield
    except EnvOutputError as e:
        raise EnvOutputError(
            f"seed {t.config.seed}: {e}, at env step {t.env_steps + t.config.n_envs}; training stopped and nothing "
            f"of this step was stored{t._last_good()}"
        ) from None


def _transpose(dicts: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    return {k: [d[k] for d in dicts] for k in dicts[0]}


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """The run directory of one seed of a multi-seed run: `out_dir/seed<k>`."""
    return Path(out_dir) / f"seed{seed}"


def make_seed_agents(variant: str, env: EnvSpec, seeds: Sequence[int], out_dir: str | Path | None = None, **hyperparameters: Any) -> list[Agent]:
    """One agent per seed, as `wppg.agent.make_agent` builds them; run dirs `out_dir/seed<k>`."""
    seeds = check_seeds(seeds, variant)
    agents = []
    for s in seeds:
        # A user's env instance would be shared by every seed's pool: give each seed its own copy.
        env_s = copy.deepcopy(env) if isinstance(env, gym.Env) else env
        run_dir = seed_dir(out_dir, s) if out_dir is not None else None
        agents.append(make_agent(variant, env_s, seed=s, run_dir=run_dir, progress=False, **hyperparameters))
    return agents


def train_seeds(
    variant: str,
    env: EnvSpec,
    seeds: Sequence[int],
    total_steps: int,
    out_dir: str | Path | None,
    *,
    progress: bool = False,
    command: str | None = None,
    batching: str = "vmap",
    **hyperparameters: Any,
) -> list[dict[str, Any]]:
    """Train `seeds` of one off-policy agent in this process, updates vmapped across seeds.

    `variant` is an off-policy name of `wppg.registry` ('wppg', 'wppg-i', 'sac', 'wpo'); hyperparameters are
    the agents' keywords (config and `TrainConfig` fields, `preset` for WPPG). Seed k writes the
    usual run directory `out_dir/seed<k>/` (config.json, train.csv, eval.csv, tb/,
    checkpoints/last.npz, summary.json); `out_dir=None` writes nothing. `batching` is
    `MultiSeedTrainer`'s. Returns, per seed, {'seed', 'run_dir', 'env_steps', 'final_eval'}.
    """
    require(int(total_steps) >= 1, f"total_steps must be >= 1, got {total_steps}")
    _check_batching(batching)
    require("seed" not in hyperparameters, "train_seeds takes `seeds`, not `seed`")
    agents = make_seed_agents(variant, env, seeds, out_dir, total_steps=int(total_steps), **hyperparameters)
    return train_agents(agents, int(total_steps), progress=progress, command=command, batching=batching)


def train_agents(
    agents: Sequence[Agent],
    total_steps: int,
    *,
    progress: bool = False,
    command: str | None = None,
    batching: str = "vmap",
) -> list[dict[str, Any]]:
    """`train_seeds` on agents already built by `make_seed_agents` (validated before any file is touched)."""
    for a in agents:
        run_dir = a.trainer.run_dir
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            config = {**a.trainer.meta, "train_config": a.train_config.to_dict(), "vmapped_seeds": [b.train_config.seed for b in agents]}
            if command is not None:
                config["command"] = command
            (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    multi = MultiSeedTrainer(agents, progress=progress, batching=batching)
    evals = multi.learn(int(total_steps))
    return [
        {"seed": s, "run_dir": str(t.run_dir) if t.run_dir is not None else None, "env_steps": t.env_steps, "final_eval": e}
        for s, t, e in zip(multi.seeds, multi.trainers, evals)
    ]


def measure_vmapped_speedup(
    variant: str, env_id: str, n_seeds: int, steps: int, *, rounds: int = 3, batching: str = "vmap", **hyperparameters: Any
) -> dict[str, Any]:
    """Per-seed env steps/s of `n_seeds` vmapped seeds against one single-seed `Trainer` run.

    Both runs take the same hyperparameters (defaults: the `TrainConfig` and config defaults,
    batch 256 and (256, 256) networks, UTD 1, train_freq 1; `learning_starts` defaults to the
    batch size) and first go through the warm-up and one update call (compilation). Then
    `rounds` times in turn, the single run and the vmapped run each train `steps / rounds` more
    env steps per seed; each such `learn` call ends with one evaluation episode and a checkpoint
    per seed in a temporary directory (per seed, both pay the same for those). Alternating the
    two and keeping each one's fastest round keeps a change of the machine's load from favouring
    either. The XLA threading is the process's.

    Returns the env steps/s per seed of each, `speedup` = n_seeds * vmapped per-seed steps/s /
    single steps/s, which is the time of N separate runs (one after another, or sharing the same
    cores) over the time of one vmapped run of the N seeds (> 1: vmapping pays), and the share of
    each one's time spent in update calls.
    """
    import tempfile

    require(n_seeds >= 1, f"n_seeds must be >= 1, got {n_seeds}")
    require(rounds >= 1 and steps >= rounds, f"steps ({steps}) and rounds ({rounds}) must be >= 1 with steps >= rounds")
    _require_off_policy(variant)
    hp = {"eval_episodes": 1, "eval_every": 10**12, "checkpoint_every": 0, "log_every": 10**12, **hyperparameters}
    hp.setdefault("learning_starts", hp.get("batch_size", 256))
    warm = int(hp["learning_starts"]) + int(hp.get("train_freq", 1)) * int(hp.get("n_envs", 1))
    chunk = steps // rounds

    with tempfile.TemporaryDirectory(prefix="wppg-vmap-speed-") as tmp:
        single = make_agent(variant, env_id, seed=0, run_dir=Path(tmp) / "single", progress=False, **hp)
        multi = MultiSeedTrainer(make_seed_agents(variant, env_id, range(n_seeds), Path(tmp) / "multi", **hp), progress=False, batching=batching)
        single.trainer.learn(warm)
        multi.learn(warm)
        best: dict[str, tuple[float, float]] = {}  # run -> (seconds per env step, update share)
        for r in range(1, rounds + 1):
            for name in ("single", "multi"):
                t0 = time.perf_counter()
                if name == "single":
                    single.trainer.learn(warm + r * chunk)
                    update_s = json.loads((Path(tmp) / "single" / "summary.json").read_text())["update_time_s"]
                else:
                    multi.learn(warm + r * chunk)
                    update_s = multi.last_costs["update_time_s"]
                elapsed = time.perf_counter() - t0
                if name not in best or elapsed / chunk < best[name][0]:
                    best[name] = (elapsed / chunk, update_s / elapsed)

    single_sps, multi_sps = 1.0 / best["single"][0], 1.0 / best["multi"][0]
    return {
        "n_seeds": n_seeds,
        "batching": batching,
        "steps": chunk * rounds,
        "single_steps_per_s": single_sps,
        "vmapped_steps_per_s_per_seed": multi_sps,
        "vmapped_steps_per_s_total": n_seeds * multi_sps,
        "speedup": n_seeds * multi_sps / single_sps,
        "single_update_share": best["single"][1],
        "vmapped_update_share": best["multi"][1],
    }
