"""Many seeds of one off-policy agent in one process, with the update `jax.vmap`-ed across seeds.

`MultiSeedTrainer` is the `wppg.schedule.Engine` of N ordinary single-seed `Trainer`s (one per seed:
its replay buffer, NumPy generator, env pool, evaluation env, logs and checkpoints) and replaces
only the two hot calls of the loop: the actions of every seed's envs come from one vmapped `act`, and every seed's
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
one: with batch 256 and (256, 256) networks on a CPU core, a single-seed run spends most of its
time in update calls whose matrix products run near the core's matmul rate, so only the rest (act
and update dispatch, env steps, sampling) is shared. `measure_vmapped_speedup` measures the gain on
the machine at hand (`wppg bench speed --sections vmap`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from wppg import registry, schedule
from wppg.agent import Agent, make_agent
from wppg.algorithms.base import OffPolicyAlgorithm, with_key_split
from wppg.config import require
from wppg.envs import EnvSpec
from wppg.rundir import write_json
from wppg.trainer import Trainer, TrainingDivergedError


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
            f = first
            same = (a.variant, a.algo_config, other, a.env_info.env_id, a.env_info.obs_dim) == (
                f.variant, f.algo_config, f.train_config.to_dict(), f.env_info.env_id, f.env_info.obs_dim,
            )  # fmt: skip
            seeds = f"seed {a.train_config.seed} differs from seed {first.train_config.seed}"
            require(same, f"the agents must differ only in their seed; {seeds}")
        self.agents = agents
        self.trainers: list[Trainer] = [a.trainer for a in agents]
        dirs = [t.run_dir.resolve() for t in self.trainers if t.run_dir is not None]
        shared = sorted({str(d) for d in dirs if dirs.count(d) > 1})
        require(not shared, f"the seeds must have their own run directories; {', '.join(shared)} is given to several")
        self.seeds = [a.train_config.seed for a in agents]
        self.config = first.train_config
        self.progress = progress
        # One algorithm object for all seeds: its methods are pure functions of the (equal) config,
        # and sharing it compiles the per-seed evaluation `act` once instead of once per seed.
        self.algo: OffPolicyAlgorithm = first.algorithm
        for a in agents:
            a.algorithm = a.trainer.algo = self.algo
        for t in self.trainers:
            t.label = f"seed {t.config.seed}: "
        self.batching = _check_batching(batching)
        over_seeds = jax.vmap if batching == "vmap" else _seed_loop
        # The single-seed trainer's two calls, each with its key split inside: `explore_actions` and
        # the keyed `update` of one seed, mapped over the seeds.
        self._act = jax.jit(over_seeds(self.algo.explore_actions))
        self._update = jax.jit(over_seeds(with_key_split(self.algo.update)))
        self._state: Any = None
        self._keys: Any = None
        self._new: Any = None
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

    # --- the engine of the seeds (`wppg.schedule.Engine`) ----------------------------------------
    def train_until(self, until_step: int) -> dict[str, Any]:
        """Interact and learn until `until_step` env steps per seed; returns the cost figures of the
        call (also `last_costs`); each seed's last evaluation is its trainer's `last_eval`.

        The schedule (warm-up, update calls, train.csv rows, evaluations, checkpoints, summary, the
        run-directory locks and the stop on SIGINT / SIGTERM) is `wppg.schedule.run`'s, the one
        of a single-seed `Trainer`, for every seed.
        """
        self.last_costs = schedule.run(self, until_step, self.progress, label=f"{len(self.trainers)} seeds")
        return self.last_costs

    @property
    def runs(self) -> list[Trainer]:
        return self.trainers

    def begin(self) -> None:
        self._gather()

    def step_envs(self) -> list[list[tuple[float, int]]]:
        if self.trainers[0].in_warmup():
            return [t.step_with(t.random_actions()) for t in self.trainers]  # host only, no key
        obs = np.stack([t.pool.obs for t in self.trainers])
        actions, self._keys = self._act(self.algo.policy_params(self._state), obs, self._keys)
        return [t.step_with(a) for t, a in zip(self.trainers, np.asarray(actions))]

    def update_due(self) -> bool:
        return self.trainers[0].update_due()

    def update_input(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v) for k, v in _transpose([t.update_input() for t in self.trainers]).items()}

    def update(self, inputs: dict[str, np.ndarray]) -> list[dict[str, float]]:
        self._new = self._update(self._state, inputs, self._keys)
        metrics = jax.device_get(self._new[1])
        return [
            {name: float(np.asarray(v, np.float64)[i]) for name, v in metrics.items()}
            for i in range(len(self.trainers))
        ]

    def keep(self, metrics: list[dict[str, float]]) -> None:
        self._check_finite(metrics)
        self._state, _, self._keys = self._new
        self._new = None

    def grad_steps_per_update(self) -> int:
        return self.trainers[0].grad_steps_per_update()

    def policy_params(self, i: int) -> Any:
        return jax.tree.map(lambda x: x[i], self.algo.policy_params(self._state))

    def extra_costs(self) -> dict[str, Any]:
        return {"vmapped_seeds": self.seeds}

    def _check_finite(self, metrics: list[dict[str, float]]) -> None:
        """Stop on a non-finite loss of any seed, with that seed's trainer's message; nothing of
        the diverged update is kept (the trainers hold the last good state)."""
        for t, m in zip(self.trainers, metrics):
            if not all(np.isfinite(v) for v in m.values()):
                self.sync()
                try:
                    t.check_finite(m)
                except TrainingDivergedError as e:
                    raise TrainingDivergedError(f"{t.label}{e}") from None


def _transpose(dicts: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    return {k: [d[k] for d in dicts] for k in dicts[0]}


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """The run directory of one seed of a multi-seed run: `out_dir/seed<k>`."""
    return Path(out_dir) / f"seed{seed}"


def make_seed_agents(
    variant: str, env: EnvSpec, seeds: Sequence[int], out_dir: str | Path | None = None, **hyperparameters: Any
) -> list[Agent]:
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
            config = {
                **a.trainer.meta,
                "train_config": a.train_config.to_dict(),
                "vmapped_seeds": [b.train_config.seed for b in agents],
            }
            if command is not None:
                config["command"] = command
            write_json(run_dir / "config.json", config)
    multi = MultiSeedTrainer(agents, progress=progress, batching=batching)
    multi.train_until(int(total_steps))
    return [
        {
            "seed": s,
            "run_dir": str(t.run_dir) if t.run_dir is not None else None,
            "env_steps": t.env_steps,
            "final_eval": t.last_eval,
        }
        for s, t in zip(multi.seeds, multi.trainers)
    ]


def seed_checkpoints(out_dir: str | Path) -> list[Path]:
    """The checkpoints `out_dir/seed<k>/checkpoints/last.npz` of a multi-seed run, in seed order."""
    found = [p for p in Path(out_dir).glob("seed*/checkpoints/last.npz") if p.parent.parent.name[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.parent.parent.name[4:]))


def resume_seeds(
    out_dir: str | Path,
    total_steps: int | None = None,
    *,
    progress: bool = False,
    trust: bool = False,
    batching: str = "vmap",
) -> list[dict[str, Any]]:
    """Continue the seeds of a multi-seed run folder (`train_seeds`' `out_dir`) together, vmapped as
    they were trained, each in its own run directory, to `total_steps` env steps per seed
    (default: the target of the interrupted call, else the run's `total_steps`). The seeds must
    stand at one env step (those of one vmapped run do). `trust` is `Agent.load`'s. Returns what
    `train_seeds` returns."""
    paths = seed_checkpoints(out_dir)
    require(bool(paths), f"{out_dir} holds no seed<k>/checkpoints/last.npz: it is not a multi-seed run folder")
    agents = [Agent.load(p, run_dir=p.parent.parent, progress=False, trust=trust) for p in paths]
    for p, a in zip(paths, agents):
        named = int(p.parent.parent.name[4:])
        require(a.train_config.seed == named, f"{p} holds a run of seed {a.train_config.seed}, not of seed {named}")
    first = agents[0]
    until = int(total_steps or first.trainer.target_steps or first.train_config.total_steps)
    multi = MultiSeedTrainer(agents, progress=progress, batching=batching)
    if first.num_timesteps < until:
        multi.train_until(until)
    return [
        {"seed": s, "run_dir": str(t.run_dir), "env_steps": t.env_steps, "final_eval": t.last_eval}
        for s, t in zip(multi.seeds, multi.trainers)
    ]


def measure_vmapped_speedup(
    variant: str,
    env_id: str,
    n_seeds: int,
    steps: int,
    *,
    rounds: int = 3,
    batching: str = "vmap",
    **hyperparameters: Any,
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
        multi = MultiSeedTrainer(
            make_seed_agents(variant, env_id, range(n_seeds), Path(tmp) / "multi", **hp),
            progress=False,
            batching=batching,
        )
        single.trainer.train_until(warm)
        multi.train_until(warm)
        best: dict[str, tuple[float, float]] = {}  # run -> (seconds per env step, update share)
        for r in range(1, rounds + 1):
            for name in ("single", "multi"):
                t0 = time.perf_counter()
                if name == "single":
                    single.trainer.train_until(warm + r * chunk)
                    update_s = json.loads((Path(tmp) / "single" / "summary.json").read_text())["update_time_s"]
                else:
                    multi.train_until(warm + r * chunk)
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
