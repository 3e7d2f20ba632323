"""Small multimodal tasks with known soft-optimal policies, and metrics against them.

Importing `wppg` registers these Gymnasium ids (continuous Box actions, flat Box observations):

- `wppg/BanditQuadratic-v0`: one-step bandit, a in [-1, 1], r(a) = -(a - 0.3)^2.
- `wppg/BanditDoubleWell-v0`: one-step bandit, a in [-1, 1], r(a) = -3.2 (a^2 - 0.25)^2: wells at
  +-0.5, barrier height 0.2 at a = 0 (2 tau at tau = 0.1).
- `wppg/BanditFourModes-v0`: one-step bandit, a in [-1, 1]^2,
  r(a) = -3.2 [(a1^2 - 0.25)^2 + (a2^2 - 0.25)^2]: four modes at (+-0.5, +-0.5).
- `wppg/MultiGoal-v1`: the 2-D multi-goal point task of Haarnoja et al. (2017) with the reward
  coefficients of the SAC authors' multigoal example (action cost 1, distance cost 0.1, goal reward
  1), meant for a temperature of 1; see `MultiGoalEnv`.
- `wppg/MultiGoal-v0`: the same task with the 2017 coefficients (30, 1, 10). At those, grad_a Q is
  of order 70 and the paper's particle step eta grad_a Q (eta = 0.1) is several box widths: an
  explicit Euler step that overshoots (docs/results/multigoal.md).

A one-step task has Q(a) = r(a), so its soft-optimal policy at temperature tau is the Gibbs
policy pi*(a) proportional to exp(r(a) / tau) on the action box: `gibbs_policy` computes it on a
grid, and `policy_metrics` compares a policy's samples with it (W2 distance, spread, mode masses),
or, on MultiGoal, counts the goals that stochastic episodes reach.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import gymnasium as gym
import jax
import numpy as np

BANDIT_IDS = ("wppg/BanditQuadratic-v0", "wppg/BanditDoubleWell-v0", "wppg/BanditFourModes-v0")
MULTIGOAL_ID = "wppg/MultiGoal-v1"
MULTIGOAL_IDS = ("wppg/MultiGoal-v0", MULTIGOAL_ID)
TASK_IDS = (*BANDIT_IDS, *MULTIGOAL_IDS)
MULTIGOAL_HORIZON = 30

# Act on one policy sample batch of this size (1-D and 2-D bandits) and this many MultiGoal episodes.
DEFAULT_SAMPLES = 2000
DEFAULT_EPISODES = 20
# MultiGoal's `origin_directions` counts the goal directions that hold at least this share of the
# policy's first actions at the origin (the soft-optimal policy: all four, 1/4 each, by symmetry).
ORIGIN_DIRECTION_SHARE = 0.1

ActFn = Callable[[np.ndarray, jax.Array], Any]


# --- the Gibbs policy on a grid ---------------------------------------------------------------------
@dataclass(frozen=True)
class GibbsGrid:
    """pi*(a) proportional to exp(r(a) / tau) on a tensor grid of [-1, 1]^d.

    `density` (shape (n,) * d) integrates to 1 under the trapezoid rule on `axes`; `mass` is the
    density times the trapezoid weights, flattened like `points` (so it sums to 1).
    """

    tau: float
    axes: tuple[np.ndarray, ...]
    density: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.axes)

    @cached_property
    def points(self) -> np.ndarray:
        """Grid nodes [m, d], in the C order of `density`."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        return np.stack([g.ravel() for g in mesh], axis=-1)

    @cached_property
    def mass(self) -> np.ndarray:
        """Probability of each node [m], summing to 1."""
        return (self.density * _trapezoid_weights(self.axes)).ravel()

    def mean(self) -> np.ndarray:
        """Mean action [d]."""
        return self.mass @ self.points

    def std(self) -> np.ndarray:
        """Standard deviation of each action dimension [d]."""
        return np.sqrt(self.mass @ (self.points - self.mean()) ** 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n exact-in-distribution draws [n, d]: the inverse of the piecewise-linear CDF in 1-D; in
        more dimensions a node drawn by its mass, jittered uniformly within its cell."""
        if self.dim == 1:
            x = self.axes[0]
            cdf = np.concatenate([[0.0], np.cumsum(0.5 * (self.density[1:] + self.density[:-1]) * np.diff(x))])
            return np.interp(rng.uniform(size=n), cdf / cdf[-1], x)[:, None]
        idx = rng.choice(len(self.mass), size=n, p=self.mass / self.mass.sum())
        half = np.array([(a[1] - a[0]) / 2 for a in self.axes])
        return np.clip(self.points[idx] + rng.uniform(-half, half, size=(n, self.dim)), -1.0, 1.0)


def _trapezoid_weights(axes: tuple[np.ndarray, ...]) -> np.ndarray:
    w = None
    for x in axes:
        wx = np.zeros_like(x)
        wx[1:] += np.diff(x) / 2
        wx[:-1] += np.diff(x) / 2
        w = wx if w is None else np.multiply.outer(w, wx)
    return w


def gibbs_policy(reward: Callable[[np.ndarray], np.ndarray], dim: int, tau: float, n: int | None = None) -> GibbsGrid:
    """The Gibbs policy exp(r(a) / tau) / Z on a grid of n points per dimension over [-1, 1]^dim
    (default 2001 in 1-D, 201 in 2-D); `reward` maps actions [..., dim] to rewards [...]."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    n = n if n is not None else (2001 if dim == 1 else 201)
    axes = tuple(np.linspace(-1.0, 1.0, n) for _ in range(dim))
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    logits = np.asarray(reward(mesh), np.float64) / tau
    density = np.exp(logits - logits.max())  # shift before exp: exp(r / tau) underflows for small tau
    density /= np.sum(density * _trapezoid_weights(axes))
    return GibbsGrid(float(tau), axes, density)


# --- envs -----------------------------------------------------------------------------------------
class BanditEnv(gym.Env):
    """A one-step bandit: a constant observation (zeros, shape (1,)), one action in [-1, 1]^d, reward
    r(a), then terminated. Subclasses set `action_dim` and `reward`. `reference_tau` is the
    temperature of the Gibbs policy the metrics compare with."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    action_dim = 1

    def __init__(self, reference_tau: float = 0.1):
        if reference_tau <= 0:
            raise ValueError(f"reference_tau must be > 0, got {reference_tau}")
        self.reference_tau = float(reference_tau)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self._obs = np.zeros(1, np.float32)

    @staticmethod
    def reward(a: np.ndarray) -> np.ndarray:
        """r(a) for actions [..., d]; returns [...]. Each task class defines its own; the base class
        is not a task (it is not registered) and refuses to be used as one."""
        raise TypeError("BanditEnv is the base class of the bandit tasks: use one of its registered subclasses")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self._obs.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.clip(np.asarray(action, np.float64).reshape(self.action_dim), -1.0, 1.0)
        return self._obs.copy(), float(self.reward(a)), True, False, {}

    def gibbs(self, tau: float | None = None, n: int | None = None) -> GibbsGrid:
        """The Gibbs policy at `tau` (default `reference_tau`) on a grid (see `gibbs_policy`)."""
        return _gibbs_cached(type(self), self.reference_tau if tau is None else float(tau), n)


class BanditQuadratic(BanditEnv):
    """r(a) = -(a - 0.3)^2 on [-1, 1]: the Gibbs policy is N(0.3, tau / 2) truncated to the box."""

    action_dim = 1

    @staticmethod
    def reward(a: np.ndarray) -> np.ndarray:
        return -((a[..., 0] - 0.3) ** 2)


class BanditDoubleWell(BanditEnv):
    """r(a) = -3.2 (a^2 - 0.25)^2 on [-1, 1]: two equal wells at +-0.5, barrier 0.2 at a = 0."""

    action_dim = 1

    @staticmethod
    def reward(a: np.ndarray) -> np.ndarray:
        return -3.2 * (a[..., 0] ** 2 - 0.25) ** 2


class BanditFourModes(BanditEnv):
    """r(a) = -3.2 [(a1^2 - 0.25)^2 + (a2^2 - 0.25)^2] on [-1, 1]^2: four modes at (+-0.5, +-0.5)."""

    action_dim = 2

    @staticmethod
    def reward(a: np.ndarray) -> np.ndarray:
        return -3.2 * ((a[..., 0] ** 2 - 0.25) ** 2 + (a[..., 1] ** 2 - 0.25) ** 2)


_GIBBS_CACHE: dict[tuple[type, float, int | None], GibbsGrid] = {}


def _gibbs_cached(cls: type[BanditEnv], tau: float, n: int | None) -> GibbsGrid:
    key = (cls, tau, n)
    if key not in _GIBBS_CACHE:
        _GIBBS_CACHE[key] = gibbs_policy(cls.reward, cls.action_dim, tau, n)
    return _GIBBS_CACHE[key]


class MultiGoalEnv(gym.Env):
    """The multi-goal point task of Haarnoja et al. 2017 (Reinforcement learning with deep
    energy-based policies), with four goals.

    - Observation: the position p in [-7, 7]^2; p_0 ~ N(0, 0.1^2 I).
    - Action: a velocity a in [-1, 1]^2 (clipped to the box); p' = clip(p + a, -7, 7).
    - Goals: (5, 0), (-5, 0), (0, 5), (0, -5).
    - Reward: -action_cost ||a||^2 - distance_cost min_g ||p' - g||^2, plus goal_reward when p' is
      within distance 1 of a goal; reaching a goal ends the episode (terminated), and
      `info["goal"]` is its index (-1 while none is reached). Registered with a 30-step time limit.

    The defaults (30, 1, 10) are the 2017 paper's (`wppg/MultiGoal-v0`); `wppg/MultiGoal-v1` uses
    (1, 0.1, 1), the coefficients of the SAC authors' multigoal example, which ran at temperature 1.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    goals = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    bound = 7.0
    goal_radius = 1.0
    init_std = 0.1

    def __init__(self, action_cost: float = 30.0, distance_cost: float = 1.0, goal_reward: float = 10.0) -> None:
        coefficients = {"action_cost": action_cost, "distance_cost": distance_cost, "goal_reward": goal_reward}
        for name, value in coefficients.items():
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"MultiGoalEnv: {name} must be a finite number >= 0, got {value!r}")
        self.action_cost = float(action_cost)
        self.distance_cost = float(distance_cost)
        self.goal_reward = float(goal_reward)
        self.observation_space = gym.spaces.Box(-self.bound, self.bound, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """`options={"start": (x, y)}` starts at that position instead of p_0 ~ N(0, 0.1^2 I)."""
        super().reset(seed=seed)
        start = (options or {}).get("start")
        noise = self.np_random.normal(0.0, self.init_std, 2)  # drawn either way: one RNG stream per seed
        p0 = noise if start is None else np.asarray(start, np.float64).reshape(2)
        self._pos = np.clip(p0, -self.bound, self.bound)
        return self._pos.astype(np.float32), {"goal": -1}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.clip(np.asarray(action, np.float64).reshape(2), -1.0, 1.0)
        self._pos = np.clip(self._pos + a, -self.bound, self.bound)
        sq = np.sum((self.goals - self._pos) ** 2, axis=1)
        nearest = int(np.argmin(sq))
        reached = bool(sq[nearest] <= self.goal_radius**2)
        reward = -self.action_cost * float(a @ a) - self.distance_cost * float(sq[nearest])
        reward += self.goal_reward if reached else 0.0
        return self._pos.astype(np.float32), reward, reached, False, {"goal": nearest if reached else -1}


def register_tasks() -> None:
    """Register the `wppg/` ids with Gymnasium; calling it again changes nothing."""
    entries = {
        "wppg/BanditQuadratic-v0": ("BanditQuadratic", None, {}),
        "wppg/BanditDoubleWell-v0": ("BanditDoubleWell", None, {}),
        "wppg/BanditFourModes-v0": ("BanditFourModes", None, {}),
        "wppg/MultiGoal-v0": ("MultiGoalEnv", MULTIGOAL_HORIZON, {}),
        MULTIGOAL_ID: (
            "MultiGoalEnv",
            MULTIGOAL_HORIZON,
            {"action_cost": 1.0, "distance_cost": 0.1, "goal_reward": 1.0},
        ),
    }
    for env_id, (cls, horizon, kwargs) in entries.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=f"wppg.tasks:{cls}", max_episode_steps=horizon, kwargs=kwargs)


# --- metrics --------------------------------------------------------------------------------------
def _task(env: gym.Env | str | None) -> BanditEnv | MultiGoalEnv | None:
    if isinstance(env, str):
        return None
    unwrapped = getattr(env, "unwrapped", None)
    return unwrapped if isinstance(unwrapped, BanditEnv | MultiGoalEnv) else None


def is_task(env: gym.Env | str | None) -> bool:
    """Whether `env` (an instance, possibly wrapped, or an env id) is one of the tasks of this module."""
    return env in TASK_IDS if isinstance(env, str) else _task(env) is not None


def w2_1d(x: np.ndarray, x_mass: np.ndarray | None, y: np.ndarray, y_mass: np.ndarray) -> float:
    """Exact W2 between two discrete measures on the line (points and masses; x_mass None: uniform),
    from their quantile functions: W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    wx = np.full(len(x), 1.0 / len(x)) if x_mass is None else np.asarray(x_mass, np.float64).ravel()
    wy = np.asarray(y_mass, np.float64).ravel()
    ix, iy = np.argsort(x), np.argsort(y)
    x, wx, y, wy = x[ix], wx[ix], y[iy], wy[iy]
    cx, cy = np.cumsum(wx) / wx.sum(), np.cumsum(wy) / wy.sum()
    # Both quantile functions are constant between consecutive breakpoints of the merged CDF levels.
    u = np.unique(np.concatenate([[0.0], cx, cy]).clip(0.0, 1.0))
    mid = (u[1:] + u[:-1]) / 2
    qx = x[np.minimum(np.searchsorted(cx, mid), len(x) - 1)]
    qy = y[np.minimum(np.searchsorted(cy, mid), len(y) - 1)]
    return float(np.sqrt(np.sum(np.diff(u) * (qx - qy) ** 2)))


def w2_to_grid(samples: np.ndarray, grid: GibbsGrid, cells: int = 24) -> float:
    """W2 between equally weighted samples [n, d] and the grid measure. 1-D: exact (`w2_1d`). More
    dimensions: exact optimal transport (POT's emd2) to the grid coarsened to `cells` cells per
    dimension, each cell's mass at its centroid (the coarsening moves mass by at most a cell's
    diagonal, and keeps the cost of one call well under a second for n = 2000 in 2-D)."""
    samples = np.asarray(samples, np.float64).reshape(len(samples), grid.dim)
    if grid.dim == 1:
        return w2_1d(samples[:, 0], None, grid.points[:, 0], grid.mass)
    import ot

    edges = np.linspace(-1.0, 1.0, cells + 1)
    cell = np.stack(
        [np.clip(np.searchsorted(edges, grid.points[:, i], side="right") - 1, 0, cells - 1) for i in range(grid.dim)],
        -1,
    )
    flat = np.ravel_multi_index(tuple(cell.T), (cells,) * grid.dim)
    mass = np.bincount(flat, grid.mass, cells**grid.dim)
    centroid = np.stack(
        [np.bincount(flat, grid.mass * grid.points[:, i], cells**grid.dim) for i in range(grid.dim)], -1
    )
    keep = mass > 1e-12
    mass, centroid = mass[keep], centroid[keep] / mass[keep, None]
    cost = ot.dist(samples, centroid)  # squared Euclidean
    w2sq = ot.emd2(np.full(len(samples), 1.0 / len(samples)), mass / mass.sum(), cost, numItermax=10_000_000)
    return float(np.sqrt(max(float(w2sq), 0.0)))


def _bandit_metrics(task: BanditEnv, a: np.ndarray) -> dict[str, float]:
    grid = task.gibbs()
    out = {
        "w2_to_gibbs": w2_to_grid(a, grid),
        "policy_std": float(np.mean(np.std(a, axis=0))),
        "mean_reward": float(np.mean(task.reward(a))),
    }
    if task.action_dim == 1:
        out["policy_mean"] = float(np.mean(a))
    if isinstance(task, BanditDoubleWell):
        out["mass_left"] = float(np.mean(a[:, 0] < 0))
    if isinstance(task, BanditFourModes):
        quadrant = (a[:, 0] >= 0).astype(int) * 2 + (a[:, 1] >= 0).astype(int)
        out["mode_min_mass"] = float(np.bincount(quadrant, minlength=4).min() / len(a))
    return out


def _multigoal_episodes(env: gym.Env, act: ActFn, key: jax.Array, episodes: int, start: Any = None) -> np.ndarray:
    """The goal index each of `episodes` stochastic episodes reaches (-1: none), from reset seeds
    drawn from `key`, starting at `start` (None: the env's random start)."""
    seed_key, act_key = jax.random.split(key)
    seeds = np.asarray(jax.random.randint(seed_key, (episodes,), 0, 2**31 - 1))
    options = None if start is None else {"start": start}
    # Episodes run in lock-step so that the policy acts on one batch [episodes, 2] per step: row i
    # is episode i (rows of finished episodes are acted on and ignored, which keeps one shape).
    envs = [copy.deepcopy(env) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=int(s), options=options)[0] for e, s in zip(envs, seeds, strict=True)])
    obs = obs.astype(np.float32)
    done = np.zeros(episodes, bool)
    goal = np.full(episodes, -1)
    horizon = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else MULTIGOAL_HORIZON
    for t in range(horizon):
        actions = np.asarray(act(obs, jax.random.fold_in(act_key, t)))
        for i in np.flatnonzero(~done):
            o, _, term, trunc, info = envs[i].step(actions[i])
            obs[i] = o
            if term and info.get("goal", -1) >= 0:
                goal[i] = info["goal"]
            done[i] = term or trunc
        if done.all():
            break
    for e in envs:
        e.close()
    return goal


def _multigoal_metrics(env: gym.Env, act: ActFn, key: jax.Array, episodes: int, n: int) -> dict[str, float]:
    k_random, k_origin, k_first = jax.random.split(key, 3)
    goal = _multigoal_episodes(env, act, k_random, episodes)
    from_origin = _multigoal_episodes(env, act, k_origin, episodes, start=(0.0, 0.0))
    # The first action at the origin, the state where the four goals are symmetric: its direction
    # is the goal it heads for (the goal g maximising <a, g>).
    first = np.asarray(act(np.zeros((n, 2), np.float32), k_first), np.float64).reshape(n, 2)
    heading = np.argmax(first @ MultiGoalEnv.goals.T, axis=1)
    share = np.bincount(heading, minlength=len(MultiGoalEnv.goals)) / n
    return {
        "goals_reached": float(len(np.unique(goal[goal >= 0]))),
        "success_rate": float(np.mean(goal >= 0)),
        "goals_from_origin": float(len(np.unique(from_origin[from_origin >= 0]))),
        "origin_directions": float(np.sum(share >= ORIGIN_DIRECTION_SHARE)),
    }


def policy_metrics(
    env: gym.Env, act: ActFn, key: jax.Array, n: int = DEFAULT_SAMPLES, episodes: int = DEFAULT_EPISODES
) -> dict[str, float] | None:
    """How close a stochastic policy is to the task's soft-optimal behaviour; None when `env` is
    not a task of this module. `act(obs [b, obs_dim], key) -> actions [b, d]` samples actions.

    Bandits (n actions at the constant observation): `w2_to_gibbs` (W2 to the Gibbs policy at the
    env's `reference_tau`), `policy_std` (mean over action dimensions), `mean_reward`,
    `policy_mean` (1-D), `mass_left` (double well: fraction of a < 0), `mode_min_mass` (four
    modes: the smallest fraction of samples in a quadrant). MultiGoal (`episodes` stochastic
    episodes from reset seeds drawn from `key`): `goals_reached` (distinct goals, 0-4) and
    `success_rate` (fraction of episodes that reach a goal), from the env's random start;
    `goals_from_origin`, the same from the exact origin, where only the policy's own spread can
    pick different goals (the random start, std 0.1, already breaks the symmetry, so a
    deterministic policy that heads for the nearest goal reaches all four in `goals_reached`);
    `origin_directions`, how many of the four goal directions hold at least 10% of n first actions
    at the origin. Deterministic given `key`.
    """
    task = _task(env)
    if task is None:
        return None
    if isinstance(task, MultiGoalEnv):
        return _multigoal_metrics(env, act, key, episodes, n)
    obs = np.zeros((n, *task.observation_space.shape), np.float32)
    # The env clips actions to the box, so the clipped samples are the policy the task sees.
    a = np.clip(np.asarray(act(obs, key), np.float64).reshape(n, task.action_dim), -1.0, 1.0)
    return _bandit_metrics(task, a)


def reference_metrics(env: gym.Env | str) -> dict[str, float] | None:
    """The values `policy_metrics` takes for the soft-optimal policy (the exact Gibbs policy of a
    bandit at its `reference_tau`; on MultiGoal, a policy that reaches every goal); None for other envs."""
    if isinstance(env, str):
        if env not in TASK_IDS:
            return None
        made = gym.make(env)
        try:
            return reference_metrics(made)
        finally:
            made.close()
    task = _task(env)
    if task is None:
        return None
    if isinstance(task, MultiGoalEnv):
        return {"goals_reached": 4.0, "goals_from_origin": 4.0, "origin_directions": 4.0}
    grid = task.gibbs()
    out = {
        "w2_to_gibbs": 0.0,
        "policy_std": float(np.mean(grid.std())),
        "mean_reward": float(grid.mass @ task.reward(grid.points)),
    }
    if task.action_dim == 1:
        out["policy_mean"] = float(grid.mean()[0])
    if isinstance(task, BanditDoubleWell):
        out["mass_left"] = 0.5
    if isinstance(task, BanditFourModes):
        out["mode_min_mass"] = 0.25
    return out
