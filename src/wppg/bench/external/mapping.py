"""Our hyperparameter names in the references' terms: `map_hyperparameters` resolves a run's
hyperparameters into a reference's constructor keywords, wrapper options and our protocol's
cadence, and rejects the names that have no equivalent there (see `wppg.bench.external`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wppg.algorithms.base import require
from wppg.algorithms.ppo import PPOConfig
from wppg.algorithms.sac import SACConfig
from wppg.config import TrainConfig
from wppg.onpolicy import OFF_POLICY_FIELDS

EXTERNAL_ALGOS: dict[str, tuple[str, str]] = {
    "sb3-sac": ("stable-baselines3", "stable_baselines3"),
    "sb3-ppo": ("stable-baselines3", "stable_baselines3"),
    "sbx-sac": ("sbx-rl", "sbx"),
}
"""External algorithm name -> (distribution name, import name) of its reference package."""


@dataclass(frozen=True)
class ProtocolSettings:
    """Our evaluation and logging cadence (defaults and meaning: `TrainConfig`)."""

    eval_every: int = TrainConfig.eval_every
    eval_episodes: int = TrainConfig.eval_episodes
    log_every: int = TrainConfig.log_every


@dataclass(frozen=True)
class ReferenceSetup:
    """What `map_hyperparameters` resolves: the reference's constructor keywords (JSON-able;
    activation functions by name), our options that need wrappers, and the protocol."""

    algo: str
    kwargs: dict[str, Any]
    options: dict[str, Any]
    protocol: ProtocolSettings


_PROTOCOL_KEYS = {f.name for f in dataclasses.fields(ProtocolSettings)}
# Accepted for compatibility with our runs' hyperparameters, with no effect (see the docstring).
_IGNORED_KEYS = {"checkpoint_every"}


def map_hyperparameters(algo: str, hyperparameters: dict[str, Any]) -> ReferenceSetup:
    """Translate our hyperparameter names into the reference's settings; raise `ConfigError`
    on a key with no equivalent there or on an invalid value."""
    if algo not in EXTERNAL_ALGOS:
        raise ValueError(f"unknown external algorithm {algo!r}; choose one of {sorted(EXTERNAL_ALGOS)}")
    hp = dict(hyperparameters)
    for name in ("seed", "total_steps"):
        require(name not in hp, f"{name!r} is an argument of run_external, not a hyperparameter")
    require(hp.get("n_envs", 1) == 1, f"external runs step one env (n_envs = 1), got n_envs = {hp.get('n_envs')}")
    hp.pop("n_envs", None)
    if algo == "sb3-ppo":
        return _map_ppo(hp)
    return _map_sac(algo, hp)


_SAC_TRAIN_KEYS = {"learning_starts", "batch_size", "buffer_size", "utd", "train_freq"}


def _groups(algo: str) -> dict[str, set[str]]:
    """Our hyperparameter names each reference has an equivalent for, by where they go."""
    if algo == "sb3-ppo":
        return {
            "protocol": _PROTOCOL_KEYS,
            "off_policy": set(OFF_POLICY_FIELDS),
            "ppo": {f.name for f in dataclasses.fields(PPOConfig)},
        }
    return {"train": _SAC_TRAIN_KEYS | _PROTOCOL_KEYS, "sac": {f.name for f in dataclasses.fields(SACConfig)}}


def accepted_hyperparameters(algo: str) -> set[str]:
    """Every hyperparameter name `map_hyperparameters` accepts for this reference (what the bench
    spec checks names against, and what `--set` is applied to)."""
    if algo not in EXTERNAL_ALGOS:
        raise ValueError(f"unknown external algorithm {algo!r}; choose one of {sorted(EXTERNAL_ALGOS)}")
    return set().union(*_groups(algo).values()) | _IGNORED_KEYS | {"n_envs"}


def _split(algo: str, hp: dict[str, Any], groups: dict[str, set[str]]) -> dict[str, dict[str, Any]]:
    known = set().union(*groups.values()) | _IGNORED_KEYS
    unknown = sorted(set(hp) - known)
    require(
        not unknown,
        f"hyperparameter(s) {', '.join(unknown)} have no equivalent in {algo}; accepted: {', '.join(sorted(known))}",
    )
    return {g: {k: v for k, v in hp.items() if k in keys} for g, keys in groups.items()}


def _map_sac(algo: str, hp: dict[str, Any]) -> ReferenceSetup:
    parts = _split(algo, hp, _groups(algo))
    tc = TrainConfig(**parts["train"])  # validates ranges and batch <= buffer
    sc = SACConfig(**parts["sac"])
    kwargs: dict[str, Any] = {
        "learning_rate": sc.actor_lr,
        "buffer_size": tc.buffer_size,
        "learning_starts": tc.learning_starts,
        "batch_size": tc.batch_size,
        "tau": sc.polyak,
        "gamma": sc.gamma,
        "train_freq": tc.train_freq,
        "gradient_steps": tc.train_freq * tc.utd,
        "ent_coef": f"auto_{sc.alpha_init}" if sc.auto_alpha else float(sc.alpha),
        "target_entropy": "auto" if sc.target_entropy is None else float(sc.target_entropy),
        "policy_kwargs": {"net_arch": list(sc.hidden), "activation_fn": "relu", "n_critics": 2},
    }
    if algo == "sb3-sac":
        require(
            sc.actor_lr == sc.critic_lr == sc.alpha_lr,
            f"sb3-sac uses one learning rate for actor, critics and temperature; got actor_lr={sc.actor_lr}, "
            f"critic_lr={sc.critic_lr}, alpha_lr={sc.alpha_lr}",
        )
    else:
        require(
            sc.alpha_lr == sc.actor_lr,
            f"sbx-sac tunes the temperature with the actor's learning rate; got alpha_lr={sc.alpha_lr}, "
            f"actor_lr={sc.actor_lr}",
        )
        kwargs["qf_learning_rate"] = sc.critic_lr
    protocol = ProtocolSettings(eval_every=tc.eval_every, eval_episodes=tc.eval_episodes, log_every=tc.log_every)
    return ReferenceSetup(algo, kwargs, {}, protocol)


def _map_ppo(hp: dict[str, Any]) -> ReferenceSetup:
    parts = _split("sb3-ppo", hp, _groups("sb3-ppo"))
    # As our on-policy trainer: the off-policy fields are accepted only at their defaults.
    TrainConfig(**parts["protocol"], **parts["off_policy"])
    for name, value in parts["off_policy"].items():
        require(
            value == getattr(TrainConfig, name),
            f"{name} has no meaning for sb3-ppo; leave it at its default {getattr(TrainConfig, name)}",
        )
    c = PPOConfig(**parts["ppo"])
    require(
        c.n_steps % c.n_minibatches == 0 and c.n_steps // c.n_minibatches >= 2,
        f"n_steps ({c.n_steps}) must split into n_minibatches ({c.n_minibatches}) equal minibatches of >= 2 steps "
        "for sb3-ppo",
    )
    kwargs = {
        "learning_rate": c.learning_rate,
        "n_steps": c.n_steps,
        "batch_size": c.n_steps // c.n_minibatches,
        "n_epochs": c.n_epochs,
        "gamma": c.gamma,
        "gae_lambda": c.gae_lambda,
        "clip_range": c.clip_coef,
        # SB3's clipped value loss is the squared error of the clipped prediction, not the max
        # of clipped and unclipped errors.
        "clip_range_vf": c.clip_coef if c.clip_vloss else None,
        "normalize_advantage": c.norm_adv,
        "ent_coef": c.ent_coef,
        "vf_coef": c.vf_coef,
        "max_grad_norm": c.max_grad_norm,
        "policy_kwargs": {
            "net_arch": {"pi": list(c.hidden), "vf": list(c.hidden)},
            "activation_fn": "tanh",
            "ortho_init": True,
            "log_std_init": c.init_log_std,
            "optimizer_kwargs": {"eps": c.adam_eps},
        },
    }
    options = {
        "anneal_lr": c.anneal_lr,
        "norm_obs": c.norm_obs,
        "norm_reward": c.norm_reward,
        "clip_obs": c.clip_obs,
        "clip_reward": c.clip_reward,
    }
    return ReferenceSetup("sb3-ppo", kwargs, options, ProtocolSettings(**parts["protocol"]))
