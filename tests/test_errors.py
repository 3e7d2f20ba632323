"""Every error path of the public API: the exception type and a message that names the problem."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import jax
import numpy as np
import pytest

import wppg
from wppg import checkpoint as ckpt
from wppg.agent import Agent
from wppg.algorithms import ConfigError, PPOConfig, SACConfig, WPPGConfig
from wppg.checkpoint import CheckpointError
from wppg.config import TrainConfig
from wppg.envs import ActionSpaceError, EnvOutputError, describe_env
from wppg.trainer import TrainingDivergedError


class SpaceEnv(gym.Env):
    """A do-nothing env with the given action (and observation) space."""

    def __init__(self, action_space: gym.Space, observation_space: gym.Space | None = None):
        self.action_space = action_space
        self.observation_space = observation_space or gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


# --- action and observation spaces --------------------------------------------------------------
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.mark.parametrize(
    ("space", "words"),
    [
        (gym.spaces.Discrete(3), ["Discrete", "not supported", "Box"]),
        (gym.spaces.MultiDiscrete([2, 3]), ["MultiDiscrete", "not supported"]),
        (gym.spaces.Dict({"a": BOX}), ["Dict", "not supported"]),
        (gym.spaces.Tuple((BOX, BOX)), ["Tuple", "not supported"]),
        (gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), ["unbounded", "finite"]),
        (gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, np.inf], np.float32)), ["unbounded"]),
        (gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32), ["one-dimensional", "(2, 2)"]),
        (gym.spaces.Box(-1.0, 1.0, (0,), np.float32), ["zero size"]),
    ],
    ids=["discrete", "multidiscrete", "dict", "tuple", "unbounded", "half-unbounded", "2d-box", "zero-size"],
)
def test_unsupported_action_space(space, words, tmp_path):
    with pytest.raises(ActionSpaceError) as err:
        wppg.WPPG(SpaceEnv(space), run_dir=tmp_path / "run", progress=False)
    for word in words:
        assert word in str(err.value), f"{word!r} not in {err.value}"
    assert isinstance(err.value, ValueError)
    assert not (tmp_path / "run").exists()
    # the same check guards SAC, env factories and describe_env itself
    with pytest.raises(ActionSpaceError, match=re.escape(words[0])):
        wppg.SAC(lambda: SpaceEnv(space), progress=False)
    with pytest.raises(ActionSpaceError):
        describe_env(SpaceEnv(space))


def test_supported_space_passes():
    """The control case: the same env with a bounded 1-D Box is accepted."""
    info = describe_env(SpaceEnv(gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 4.0], np.float32))))
    assert info.obs_dim == 3 and info.bounds.dim == 2
    np.testing.assert_allclose(info.bounds.scale, [1.0, 2.0])
    np.testing.assert_allclose(info.bounds.bias, [0.0, 2.0])


def test_inverted_action_bounds():
    with pytest.raises(ActionSpaceError, match="high <= low"):
        describe_env(SpaceEnv(gym.spaces.Box(np.array([1.0], np.float32), np.array([1.0], np.float32))))


def test_non_flat_observation_space():
    obs = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)})
    with pytest.raises(ActionSpaceError, match="observation space.*FlattenObservation"):
        wppg.WPPG(SpaceEnv(BOX, obs), progress=False)


def test_bad_env_argument():
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        wppg.WPPG("NoSuchEnv-v0", progress=False)
    with pytest.raises(TypeError, match="env must be"):
        wppg.WPPG(42, progress=False)


# --- hyperparameters ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("agent_cls", "kwargs", "field"),
    [
        (wppg.WPPG, {"K": 0}, "K"),
        (wppg.WPPG, {"eta": 0.0}, "eta"),
        (wppg.WPPG, {"eta": -0.1}, "eta"),
        (wppg.WPPG, {"tau": -1e-4}, "tau"),
        (wppg.WPPG, {"entropy_sigma": 0.0}, "entropy_sigma"),
        (wppg.WPPG, {"entropy_M": 0}, "entropy_M"),
        (wppg.WPPG, {"latent_dim": 0}, "latent_dim"),
        (wppg.WPPG, {"coupling": "nearest"}, "coupling"),
        (wppg.WPPG, {"gamma": 1.0}, "gamma"),
        (wppg.WPPG, {"gamma": -0.5}, "gamma"),
        (wppg.WPPG, {"polyak": 0.0}, "polyak"),
        (wppg.WPPG, {"polyak": 1.5}, "polyak"),
        (wppg.WPPG, {"actor_lr": 0.0}, "actor_lr"),
        (wppg.WPPG, {"hidden": (32, 0)}, "hidden"),
        (wppg.WPPG, {"batch_size": 512, "buffer_size": 256}, "batch_size"),
        (wppg.WPPG, {"learning_starts": -1}, "learning_starts"),
        (wppg.WPPG, {"checkpoint_every": -1}, "checkpoint_every"),
        (wppg.WPPG, {"n_envs": 0}, "n_envs"),
        (wppg.WPPG, {"policy": "flow"}, "policy"),
        (wppg.SAC, {"alpha": 0.0}, "alpha"),
        (wppg.SAC, {"alpha": -0.2}, "alpha"),
        (wppg.SAC, {"alpha_lr": 0.0}, "alpha_lr"),
        (wppg.SAC, {"gamma": 1.0}, "gamma"),
    ],
    ids=lambda v: (
        v.__name__
        if isinstance(v, type)
        else ",".join(f"{k}={x}" for k, x in v.items())
        if isinstance(v, dict)
        else "error"
    ),
)
def test_invalid_hyperparameter(agent_cls, kwargs, field, tmp_path):
    """Rejected with a ConfigError naming the field when the agent is built, before any training
    (nothing is written to the run directory)."""
    with pytest.raises(ConfigError) as err:
        agent_cls("Pendulum-v1", run_dir=tmp_path / "run", progress=False, **kwargs)
    assert re.match(rf"{field}\b", str(err.value)), f"message does not start with the field {field!r}: {err.value}"
    assert not (tmp_path / "run").exists()


def _kwargs_id(kwargs: dict) -> str:
    return ",".join(f"{k}={x!r}" for k, x in kwargs.items())


@pytest.mark.parametrize(
    ("cfg", "kwargs", "field"),
    [
        (WPPGConfig, {"hidden": "64"}, "hidden"),
        (WPPGConfig, {"hidden": (32, True)}, "hidden"),
        (WPPGConfig, {"hidden": 64}, "hidden"),
        (WPPGConfig, {"K": 2.5}, "K"),
        (WPPGConfig, {"K": True}, "K"),
        (WPPGConfig, {"K": "8"}, "K"),
        (WPPGConfig, {"eta": float("inf")}, "eta"),
        (WPPGConfig, {"eta": "0.1"}, "eta"),
        (WPPGConfig, {"tau": float("nan")}, "tau"),
        (WPPGConfig, {"tau_min": "1e-4"}, "tau_min"),
        (WPPGConfig, {"actor_lr": float("nan")}, "actor_lr"),
        (WPPGConfig, {"critic_lr": float("inf")}, "critic_lr"),
        (WPPGConfig, {"entropy_sigma": float("nan")}, "entropy_sigma"),
        (WPPGConfig, {"latent_dim": 2.5}, "latent_dim"),
        (WPPGConfig, {"policy": 1}, "policy"),
        (SACConfig, {"alpha": "fixed"}, "alpha"),
        (SACConfig, {"alpha": 0}, "alpha"),
        (SACConfig, {"alpha_init": "0.2"}, "alpha_init"),
        (SACConfig, {"target_entropy": "auto"}, "target_entropy"),
        (PPOConfig, {"n_steps": 64.5}, "n_steps"),
        (PPOConfig, {"norm_obs": "yes"}, "norm_obs"),
        (TrainConfig, {"batch_size": True}, "batch_size"),
        (TrainConfig, {"learning_starts": 1.5}, "learning_starts"),
        (TrainConfig, {"seed": -1}, "seed"),
        (TrainConfig, {"seed": "0"}, "seed"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else _kwargs_id(v) if isinstance(v, dict) else "field",
)
def test_hyperparameter_of_the_wrong_type(cfg, kwargs, field):
    """Types are checked from the field annotations, for every config class: a ConfigError that
    starts with the field's name, instead of hidden="64" becoming widths (6, 4)."""
    with pytest.raises(ConfigError) as err:
        cfg(**kwargs)
    assert re.match(rf"{field}\b", str(err.value)), f"message does not start with the field {field!r}: {err.value}"


def test_hyperparameter_types_that_are_accepted():
    c = WPPGConfig(K=2.0, tau=0, eta=1, hidden=[8, 8], latent_dim=None)
    assert (c.K, c.tau, c.eta, c.hidden) == (2, 0.0, 1.0, (8, 8))
    assert type(c.K) is int and type(c.tau) is float
    assert TrainConfig(total_steps=1e6).total_steps == 1_000_000
    assert SACConfig(target_entropy=None).target_entropy is None and SACConfig(target_entropy=-2).target_entropy == -2.0
    assert SACConfig(hidden=[16]).hidden == (16,) and PPOConfig(hidden=np.array([8, 8])).hidden == (8, 8)


def test_field_types_cover_new_fields_and_unions():
    """A field added later is checked by its annotation alone; `float | str` takes both."""
    import dataclasses

    from wppg.algorithms.base import OffPolicyConfig

    @dataclasses.dataclass(frozen=True)
    class Later(OffPolicyConfig):
        temperature: float | str = 0.1
        samples: int | None = None

    assert Later(temperature="auto").temperature == "auto"
    assert Later(temperature=1).temperature == 1.0
    assert Later(samples=None).samples is None
    with pytest.raises(ConfigError, match=r"^temperature must be float or str"):
        Later(temperature=None)
    with pytest.raises(ConfigError, match=r"^temperature must be"):
        Later(temperature=float("inf"))
    with pytest.raises(ConfigError, match=r"^samples must be int or None"):
        Later(samples=1.5)


def test_config_classes_validate_directly():
    with pytest.raises(ConfigError, match="K must be >= 1"):
        WPPGConfig(K=0)
    with pytest.raises(ConfigError, match="policy must be"):
        WPPGConfig(policy="flow")
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        SACConfig(alpha=0.0)
    with pytest.raises(ConfigError, match=r"batch_size \(64\) must not exceed buffer_size \(32\)"):
        TrainConfig(batch_size=64, buffer_size=32)
    assert issubclass(ConfigError, ValueError)
    WPPGConfig(K=1, tau=0.0, polyak=1.0, gamma=0.0)  # the boundaries that are allowed


@pytest.mark.parametrize(("agent_cls", "name"), [(wppg.WPPG, "learning_rate"), (wppg.SAC, "K")])
def test_unknown_keyword(agent_cls, name):
    with pytest.raises(TypeError) as err:
        agent_cls("Pendulum-v1", progress=False, **{name: 1})
    msg = str(err.value)
    assert "unknown hyperparameter" in msg and repr(name) in msg, msg
    assert "valid:" in msg, f"the message does not list the valid names: {msg}"
    valid = msg.split("valid:", 1)[1]
    for known in ("actor_lr", "gamma", "batch_size", "learning_starts"):
        assert repr(known) in valid, f"valid name {known!r} not listed in: {msg}"
    assert ("'K'" in valid) == (agent_cls is wppg.WPPG)
    assert ("'alpha'" in valid) == (agent_cls is wppg.SAC)


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset.*'cpu'"):
        wppg.WPPG("Pendulum-v1", preset="tpu", progress=False)


def test_learn_needs_positive_steps(tiny):
    agent = wppg.SAC("Pendulum-v1", progress=False, **tiny("sac"))
    with pytest.raises(ValueError, match="total_timesteps must be an int >= 1"):
        agent.learn(0)
    with pytest.raises(ValueError, match=r"obs must have shape \(3,\)"):
        agent.predict(np.zeros(4, np.float32))


# --- divergence ---------------------------------------------------------------------------------
NAN_AFTER = 120
CHECKPOINT_EVERY = 50


class NaNRewardEnv(gym.Env):
    """A Pendulum-shaped env (obs in R^3, action in [-2, 2], 200-step episodes) without a
    registered id, whose rewards are `bad` (NaN by default) from its NAN_AFTER+1-th step on."""

    observation_space = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def __init__(self, nan_after: int = NAN_AFTER, bad: float = float("nan")):
        self.nan_after = nan_after
        self.bad = bad
        self.steps = 0
        self.t = 0
        self.x = np.zeros(3, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.x = self.np_random.uniform(-1.0, 1.0, 3).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.steps += 1
        self.t += 1
        self.x = np.clip(0.95 * self.x + 0.1 * float(np.asarray(action).reshape(-1)[0]), -8.0, 8.0).astype(np.float32)
        reward = -float(np.sum(self.x**2))
        if self.steps > self.nan_after:
            reward = self.bad
        return self.x.copy(), reward, False, self.t >= 200, {}


@pytest.mark.parametrize(
    "bad", [pytest.param(float("nan"), id="nan-reward"), pytest.param(1e30, id="huge-reward", marks=pytest.mark.full)]
)
def test_bad_reward_raises_and_keeps_last_good_checkpoint(bad, tiny, tmp_path):
    """A NaN reward is refused at the env boundary (it never reaches the replay buffer); a finite
    but huge one makes the critic loss overflow, which stops training before the update is kept."""
    run_dir = tmp_path / "run"
    env = NaNRewardEnv(bad=bad)
    agent = wppg.WPPG(env, seed=0, run_dir=run_dir, progress=False, **tiny("wppg", checkpoint_every=CHECKPOINT_EVERY))
    expected = EnvOutputError if np.isnan(bad) else TrainingDivergedError
    with pytest.raises(expected) as err:
        agent.learn(400)
    msg = str(err.value)
    m = re.search(r"env step (\d+)", msg)
    assert m, f"the message does not give the env step: {msg}"
    step = int(m.group(1))
    if np.isnan(bad):
        assert "reward" in msg and "nan" in msg, msg
        assert step == NAN_AFTER + 1 and agent.num_timesteps == NAN_AFTER, msg
        assert np.all(np.isfinite(agent.trainer.buffer.data["reward"][: agent.trainer.buffer.size]))
    else:
        assert isinstance(err.value, FloatingPointError)
        assert "critic_loss" in msg, msg
        assert NAN_AFTER < step <= agent.num_timesteps, msg
    last = run_dir / "checkpoints" / "last.npz"
    assert str(last) in msg, f"the message does not point to the last good checkpoint: {msg}"
    # the diverged update was not kept: the agent's own parameters are still finite
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(agent.trainer.state))

    # the last periodic checkpoint predates the bad reward and holds finite parameters and rewards
    meta, tree = ckpt.load(last)
    assert meta["env_steps"] == (step - 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    assert meta["env_steps"] <= NAN_AFTER
    assert meta["env_id"] is None
    assert np.all(np.isfinite(tree["buffer"]["reward"]))
    assert np.all(np.abs(tree["buffer"]["reward"]) < 1e3)
    with pytest.raises(CheckpointError, match="pass env="):
        Agent.load(run_dir, progress=False)  # no registered id to rebuild the env from
    restored = Agent.load(run_dir, env=NaNRewardEnv(), progress=False)
    assert isinstance(restored, wppg.WPPG)
    assert restored.num_timesteps == meta["env_steps"]
    leaves = jax.tree.leaves(restored.trainer.state)
    assert leaves and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    assert np.all(np.isfinite(restored.predict(np.zeros(3, np.float32), deterministic=True)[0]))


# --- corrupt, missing and incompatible checkpoints ----------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny):
    """A valid checkpoint of an untrained WPPG agent: (path, header, arrays without the header)."""
    path = tmp_path_factory.mktemp("corrupt") / "good.npz"
    wppg.WPPG("Pendulum-v1", seed=0, progress=False, **tiny("wppg")).save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop(ckpt._META).tobytes().decode())
    return path, header, arrays


def _write(path, arrays, header=None, raw_header: bytes | None = None):
    arrays = dict(arrays)
    if raw_header is not None:
        arrays[ckpt._META] = np.frombuffer(raw_header, np.uint8)
    elif header is not None:
        arrays[ckpt._META] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_checkpoint_fixture_is_readable(saved):
    """The control case for the corruptions below: the untouched file reads back."""
    path, header, arrays = saved
    meta, tree = ckpt.load(path)
    assert meta["format"] == ckpt.FORMAT and meta["variant"] == "wppg"
    assert "actor_params" in tree["agent"]


def test_truncated_checkpoint(saved, tmp_path):
    data = saved[0].read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt or not a wppg checkpoint"):
        Agent.load(bad)


def test_random_bytes_checkpoint(tmp_path):
    bad = tmp_path / "noise.npz"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"corrupt or not a wppg checkpoint") as err:
        Agent.load(bad)
    assert str(bad) in str(err.value)


def test_empty_checkpoint_file(tmp_path):
    bad = tmp_path / "empty.npz"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt"):
        Agent.load(bad)


def test_npz_without_header(saved, tmp_path):
    bad = _write(tmp_path / "noheader.npz", saved[2])
    with pytest.raises(CheckpointError, match="has no header: not a wppg checkpoint"):
        Agent.load(bad)


def test_header_with_wrong_format(saved, tmp_path):
    bad = _write(tmp_path / "v0.npz", saved[2], {**saved[1], "format": "wppg-checkpoint-v0"})
    with pytest.raises(CheckpointError, match=r"format 'wppg-checkpoint-v0'.*reads 'wppg-checkpoint-v1'"):
        Agent.load(bad)


def test_header_not_json(saved, tmp_path):
    bad = _write(tmp_path / "garbled.npz", saved[2], raw_header=b"\xff{not json")
    with pytest.raises(CheckpointError, match="corrupt header"):
        Agent.load(bad)


def test_header_with_unknown_agent(saved, tmp_path):
    bad = _write(tmp_path / "ddpg.npz", saved[2], {**saved[1], "variant": "ddpg"})
    with pytest.raises(CheckpointError, match="unknown agent 'ddpg'"):
        Agent.load(bad)


def test_header_missing_a_required_field(saved, tmp_path):
    """A header cut short (no train_config) is a corrupt checkpoint, not a bare KeyError."""
    header = {k: v for k, v in saved[1].items() if k != "train_config"}
    bad = _write(tmp_path / "short-header.npz", saved[2], header)
    with pytest.raises(CheckpointError, match=re.escape(str(bad))):
        Agent.load(bad)


def test_checkpoint_missing_its_arrays(saved, tmp_path):
    """A header with none of the arrays (or some of them missing) is corrupt."""
    some = {k: v for k, v in saved[2].items() if "actor_params" not in k}
    bad = _write(tmp_path / "partial.npz", some, saved[1])
    with pytest.raises(CheckpointError, match="missing .*actor_params"):
        Agent.load(bad)
    bare = _write(tmp_path / "bare.npz", {}, saved[1])
    with pytest.raises(CheckpointError):
        Agent.load(bare)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Agent.load(tmp_path / "nope.npz")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*last\.npz"):
        Agent.load(tmp_path / "empty_run")  # a directory without checkpoints/last.npz


def test_checkpoint_of_another_architecture(saved, tmp_path):
    """Arrays of a (32, 32) network under a header edited to other hidden widths: the model
    built from the header does not fit the saved parameters."""
    header = json.loads(json.dumps(saved[1]))
    header["algo_config"]["hidden"] = [32]
    bad = _write(tmp_path / "hidden32.npz", saved[2], header)
    with pytest.raises(
        CheckpointError, match=r"agent state in the checkpoint does not match the model: .*unexpected .*Dense_2"
    ):
        Agent.load(bad)
    wide = dict(saved[2])
    kernel = "agent/actor_params/params/net/Dense_0/kernel"
    wide[kernel] = np.zeros((3, 48), np.float32)
    bad = _write(tmp_path / "wide.npz", wide, saved[1])
    with pytest.raises(
        CheckpointError, match=r"Dense_0/kernel has shape \(3, 48\) in the checkpoint, \(3, 32\) in the model"
    ):
        Agent.load(bad)


def test_checkpoint_of_another_algorithm(saved):
    with pytest.raises(CheckpointError, match=r"holds a wppg agent, not sac; load it with wppg\.WPPG\.load"):
        wppg.SAC.load(saved[0])


def test_checkpoint_with_unknown_hyperparameter(saved, tmp_path):
    """A header from another version of wppg (an unknown config field) is reported as such."""
    header = json.loads(json.dumps(saved[1]))
    header["algo_config"]["beta"] = 1.0
    bad = _write(tmp_path / "newer.npz", saved[2], header)
    with pytest.raises(CheckpointError, match="incompatible with this version"):
        Agent.load(bad)
