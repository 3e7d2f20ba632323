"""Vmapped multi-seed training: seed k equals a separate run with seed k; run dirs; errors.

Equality is to a tolerance, not bit for bit: the vmapped program batches the matrix products
and reductions of the seeds, which XLA computes with another summation order, so each update
differs from the single-seed one by float32 rounding (relative ~1e-7); a few hundred steps of
training (and the env trajectories that the actions steer) grow that in the parameters: at most
1.9e-6 over sac and wppg-i when first measured, 5.2e-6 for wppg-i seed 0 without the action box's
reflection under jax 0.10.2, and 3.4e-5 with it (the projection onto the box and the folds pass a
rounding difference on where a particle meets a wall). Parameters and evaluation returns are
compared to 1e-4 relative to each array's largest magnitude. Adam's moments are averages of
gradients, which are small differences of larger terms and carry more relative rounding, and the
replay contents follow the drifting trajectories: those are compared to 1e-3. Adam's step
m / sqrt(v) has a size near the learning rate whatever the gradient's, so a parameter whose gradient
is near 0 can step by a share of the learning rate on a rounding difference: on an AMD EPYC CPU
(no AVX-512), wppg-i seed 0 ended with one element of 32 of an actor bias off by 9.5e-5 (3.3e-3 of
the array's largest magnitude), and the difference then spreads to a few more elements (up to 5e-4
of the largest magnitude). So the median element is held to those tolerances, every element to
1e-2. A real mismatch moves the median element by far more: a batch size of 31 instead of 32 moved
the actor's arrays by a median of 2e-3 to 1.4e-1 of their largest magnitude and 0.75-1.0 of its
biases' elements by more than 1e-2 (the matched runs: medians at most 3.4e-5). The keys and NumPy
generator states, which must be the same streams, are compared exactly.
"""

import json

import gymnasium as gym
import jax
import numpy as np
import pytest

import wppg
from wppg.agent import make_agent
from wppg.cli import main
from wppg.config import ConfigError
from wppg.envs import EnvOutputError
from wppg.logger import read_csv
from wppg.multiseed import MultiSeedTrainer, make_seed_agents, train_seeds
from wppg.trainer import TrainingDivergedError

ENV = "Pendulum-v1"
RTOL = 1e-4
"""Relative tolerance of parameters and evaluation returns (see the module docstring)."""
RTOL_NOISY = 1e-3
"""Relative tolerance of optimiser moments and replay contents."""


RTOL_OUTLIER = 1e-2
"""Relative tolerance of single elements whose Adam step flipped (module docstring)."""


def assert_close_trees(a, b, rtol):
    """Each leaf of `b` equals that of `a`, relative to the leaf's largest magnitude: to `rtol` in the
    median element, and to RTOL_OUTLIER in every element."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not x.size:
            continue
        scale = max(float(np.max(np.abs(x))), 1e-12)
        np.testing.assert_allclose(y, x, rtol=0, atol=RTOL_OUTLIER * scale)
        median = float(np.median(np.abs(y - x))) / scale
        assert median <= rtol, f"median difference {median:.3g} of the array's largest magnitude {scale:.3g} > {rtol}"


def assert_close_states(a, b):
    for name in ("actor_params", "critic_params", "target_critic_params", "extra", "step"):
        assert_close_trees(getattr(a, name), getattr(b, name), RTOL)
    assert_close_trees((a.actor_opt, a.critic_opt), (b.actor_opt, b.critic_opt), RTOL_NOISY)


def assert_close_evals(a: dict, b: dict):
    assert a["step"] == b["step"]
    for k in ("return_stochastic", "return_mode"):
        np.testing.assert_allclose(b[k], a[k], rtol=RTOL)


@pytest.mark.parametrize(
    "variant,batching",
    [
        pytest.param("sac", "vmap", marks=pytest.mark.full),
        ("wppg-i", "vmap"),
        ("sac", "map"),
    ],
)
def test_each_seed_equals_a_separate_run(variant, batching, tiny, tmp_path):
    hp = tiny(variant)
    results = train_seeds(variant, ENV, [0, 3], 200, tmp_path, batching=batching, **hp)
    assert [r["seed"] for r in results] == [0, 3]
    for r in results:
        single = make_agent(variant, ENV, seed=r["seed"], progress=False, total_steps=200, **hp)
        single.trainer.train_until(200)
        loaded = wppg.Agent.load(tmp_path / f"seed{r['seed']}")
        assert loaded.num_timesteps == single.num_timesteps == r["env_steps"] == 200
        np.testing.assert_array_equal(np.asarray(loaded.trainer.key), np.asarray(single.trainer.key))
        assert loaded.trainer.np_rng.bit_generator.state == single.trainer.np_rng.bit_generator.state
        assert_close_states(single.trainer.state, loaded.trainer.state)
        assert_close_trees(single.trainer.buffer.state(), loaded.trainer.buffer.state(), RTOL_NOISY)
        assert_close_evals(single.trainer.last_eval, r["final_eval"])
    # The two seeds really differ (the comparison above is not of two copies of one run).
    a, b = (wppg.Agent.load(tmp_path / f"seed{s}").trainer.state.actor_params for s in (0, 3))
    assert not all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_cli_seeds_write_run_dirs_that_resume_alone(tiny, tmp_path):
    hp = tiny("sac", log_every=100, eval_every=100)
    flags = ["--batch-size", "32", "--buffer-size", "5000", "--learning-starts", "50", "--eval-episodes", "1",
             "--eval-every", "100", "--checkpoint-every", "0", "--log-every", "100", "--hidden", "32", "32"]  # fmt: skip
    argv = [
        "train",
        "--algo",
        "sac",
        "--env",
        ENV,
        "--total-steps",
        "200",
        "--seeds",
        "1",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
        *flags,
    ]
    assert main(argv) == 0
    for s in (1, 2):
        d = tmp_path / f"seed{s}"
        for name in ("config.json", "train.csv", "eval.csv", "summary.json", "checkpoints/last.npz"):
            assert (d / name).exists(), f"{d / name} missing"
        summary = json.loads((d / "summary.json").read_text())
        assert summary["env_steps"] == 200 and summary["vmapped_seeds"] == [1, 2]
        config = json.loads((d / "config.json").read_text())
        assert config["train_config"]["seed"] == s and config["variant"] == "sac"
        assert read_csv(d / "eval.csv")["step"] == [100.0, 200.0]
        assert read_csv(d / "train.csv")["step"] == [100.0, 200.0]
    assert main(argv) == 2  # refuses to overwrite the seeds' runs without --overwrite

    # Seed 2's checkpoint continues alone and ends where a separate 300-step run of seed 2 does.
    d = tmp_path / "seed2"
    agent = wppg.Agent.load(d, run_dir=d, progress=False)
    agent.learn(100)
    straight = make_agent("sac", ENV, seed=2, progress=False, total_steps=200, **hp)
    straight.trainer.train_until(300)
    assert_close_states(straight.trainer.state, agent.trainer.state)
    assert read_csv(d / "eval.csv")["step"] == [100.0, 200.0, 300.0]


def test_bad_input_is_refused(tiny, tmp_path):
    with pytest.raises(ConfigError, match="at least one seed"):
        train_seeds("sac", ENV, [], 100, tmp_path)
    with pytest.raises(ConfigError, match=r"distinct: \[1\]"):
        train_seeds("sac", ENV, [1, 0, 1], 100, tmp_path)
    with pytest.raises(ConfigError, match="non-negative integers"):
        train_seeds("sac", ENV, [0, -1], 100, tmp_path)
    with pytest.raises(ConfigError, match="ppo is on-policy"):
        train_seeds("ppo", ENV, [0, 1], 100, tmp_path)
    with pytest.raises(ConfigError, match="unknown algorithm"):
        train_seeds("td3", ENV, [0, 1], 100, tmp_path)
    with pytest.raises(ConfigError, match="total_steps"):
        train_seeds("sac", ENV, [0, 1], 0, tmp_path)
    with pytest.raises(ConfigError, match="batching must be one of"):
        train_seeds("sac", ENV, [0, 1], 10, tmp_path, batching="pmap")
    a, b = (make_agent("sac", ENV, seed=s, progress=False, **tiny("sac", batch_size=16 * (s + 1))) for s in (0, 1))
    with pytest.raises(ConfigError, match="differ only in their seed"):
        MultiSeedTrainer([a, b])
    assert main(["train", "--algo", "sac", "--env", ENV, "--seeds", "3", "3", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # nothing was written for a refused command


class NaNAfter(gym.Wrapper):
    """Pendulum whose reward becomes `bad` (NaN by default) after `n` steps."""

    def __init__(self, n: int, bad: float = float("nan")):
        super().__init__(gym.make(ENV))
        self.n, self.t, self.bad = n, 0, bad

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.t += 1
        return obs, (self.bad if self.t > self.n else r), term, trunc, info


def test_divergence_names_the_seed_and_keeps_the_good_state(tiny):
    # A finite but huge reward overflows the critic loss (a NaN one is refused at the env boundary).
    agents = make_seed_agents("sac", lambda: NaNAfter(80, bad=1e30), [4, 5], **tiny("sac"))
    multi = MultiSeedTrainer(agents, progress=False)
    with pytest.raises(TrainingDivergedError, match=r"seed [45]: non-finite .*critic_loss.* at env step 8[1-9]"):
        multi.train_until(200)
    for t in multi.trainers:
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(t.state))
    nan = make_seed_agents("sac", lambda: NaNAfter(30), [4, 5], **tiny("sac"))
    with pytest.raises(EnvOutputError, match=r"seed 4: env 0 at step 31 .*reward is nan, at env step 31"):
        MultiSeedTrainer(nan, progress=False).train_until(200)


@pytest.mark.full
def test_resume_of_a_multi_seed_folder_keeps_the_seeds_vmapped(tiny, tmp_path):
    hp = tiny("sac", eval_every=10**6)
    train_seeds("sac", ENV, [0, 3], 100, tmp_path / "split", **hp)
    assert main(["resume", str(tmp_path / "split"), "--total-steps", "160", "--no-progress"]) == 0
    straight = train_seeds("sac", ENV, [0, 3], 160, tmp_path / "straight", **hp)
    for r in straight:
        d = tmp_path / "split" / f"seed{r['seed']}"
        summary = json.loads((d / "summary.json").read_text())
        assert summary["env_steps"] == 160 and summary["vmapped_seeds"] == [0, 3]  # resumed together
        assert summary["final_eval"]["return_mode"] == r["final_eval"]["return_mode"]
        assert read_csv(d / "eval.csv")["step"] == [100.0, 160.0]
        resumed, whole = (wppg.Agent.load(p, progress=False) for p in (d, tmp_path / "straight" / d.name))
        assert_close_states(whole.trainer.state, resumed.trainer.state)
