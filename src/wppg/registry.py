"""The one list of this package's algorithms: each is declared here once, by an `AlgorithmEntry`.

Everything that names algorithms reads this list: `wppg.agent.make_agent` and `Agent.load`, the
`--algo` choices of `wppg train`, the names a benchmark spec may use and the hyperparameters it
accepts (`wppg.bench.spec`), the algorithms `wppg bench speed` can measure (those with a FLOP
model) and the vmapped multi-seed training (off-policy entries only). Adding an algorithm means
writing its module under `wppg.algorithms` (a config dataclass and a class that fulfils
`wppg.algorithms.protocol.Algorithm`) and one `register(...)` line below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wppg.algorithms.base import require
from wppg.algorithms.ppo import PPOAlgorithm, PPOConfig
from wppg.algorithms.protocol import Algorithm
from wppg.algorithms.sac import SACAlgorithm, SACConfig
from wppg.algorithms.wpo import WPOAlgorithm, WPOConfig
from wppg.algorithms.wppg import PRESETS, WPPGAlgorithm, WPPGConfig, backend_preset

__all__ = ["REGISTRY", "AlgorithmEntry", "flop_models", "get", "names", "preset_names", "register"]


@dataclass(frozen=True)
class AlgorithmEntry:
    """One algorithm under one name (the CLI's `--algo`, the agent's `variant`, run files)."""

    name: str
    """The name users give: 'wppg', 'wppg-i', 'sac', ..."""
    config_cls: type
    """Its hyperparameter dataclass (validated when built)."""
    algorithm_cls: type[Algorithm]
    """Its class (`wppg.algorithms.protocol.Algorithm`); built by its `build` classmethod."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Config fields this name fixes (the policy variant: wppg-i is WPPG with policy='implicit')."""
    on_policy: bool = False
    """Trained by the on-policy loop (`wppg.onpolicy.OnPolicyTrainer`) instead of the replay one."""
    flops: str | None = None
    """Its name in `wppg.flops.gradient_step_products`, or None without a FLOP model."""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Named config presets (`preset=` of the agent, `--preset` of the CLI); none when empty."""
    default_preset: Callable[[], str] | None = None
    """The preset a run gets when none is named (called then), e.g. `backend_preset`; None: 'default'."""

    @property
    def algo(self) -> str:
        """The algorithm's own name (meta 'algo' of run files), shared by its variants."""
        return str(self.algorithm_cls.name)

    @property
    def trainer_cls(self) -> type:
        """The interaction loop: `wppg.trainer.Trainer`, or `wppg.onpolicy.OnPolicyTrainer`."""
        if self.on_policy:
            from wppg.onpolicy import OnPolicyTrainer

            return OnPolicyTrainer
        from wppg.trainer import Trainer

        return Trainer

    def config_fields(self) -> set[str]:
        """Names of its config's fields (the fixed ones included)."""
        return {f.name for f in dataclasses.fields(self.config_cls)}

    def make_config(self, preset: str = "default", **kwargs: Any) -> Any:
        """Its config: the preset's values, then `kwargs`, then the fixed fields."""
        return self.config_cls(**{**self.preset(preset), **kwargs, **self.fixed})

    def resolve_preset(self, name: str | None = None) -> str | None:
        """The preset a run uses (what the agent and `wppg train` record): `name`, or for None the
        entry's `default_preset()`; None for an entry without presets, which accepts only 'default'."""
        if not self.presets:
            require(
                name in (None, "default"),
                f"{self.name} has no presets, got preset={name!r}: leave preset out (or use a WPPG variant)",
            )
            return None
        if name is None:
            name = self.default_preset() if self.default_preset is not None else "default"
        require(name in self.presets, f"unknown preset {name!r}; available: {sorted(self.presets)}")
        return name

    def preset(self, name: str | None) -> dict[str, Any]:
        """The values of a preset (`resolve_preset(name)`'s); {} for 'default' and for an entry without presets."""
        resolved = self.resolve_preset(name)
        return {} if resolved is None else dict(self.presets[resolved])


REGISTRY: dict[str, AlgorithmEntry] = {}
"""Name -> entry, in registration order."""


def register(entry: AlgorithmEntry) -> AlgorithmEntry:
    """Add an algorithm; a name is registered once."""
    require(entry.name not in REGISTRY, f"algorithm {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> AlgorithmEntry:
    """The entry of `name`, or a `ConfigError` listing the registered names."""
    require(name in REGISTRY, f"unknown algorithm {name!r}; available: {', '.join(names())}")
    return REGISTRY[name]


def names() -> list[str]:
    """The registered names, in registration order."""
    return list(REGISTRY)


def preset_names() -> list[str]:
    """Every preset name of any entry, 'default' included."""
    return sorted({"default", *(p for e in REGISTRY.values() for p in e.presets)})


def flop_models() -> list[str]:
    """Names of the entries with a FLOP model (what `wppg bench speed` can measure)."""
    return [name for name, e in REGISTRY.items() if e.flops is not None]


register(
    AlgorithmEntry(
        "wppg",
        WPPGConfig,
        WPPGAlgorithm,
        {"policy": "gaussian"},
        flops="wppg",
        presets=PRESETS,
        default_preset=backend_preset,
    )
)
register(
    AlgorithmEntry(
        "wppg-i",
        WPPGConfig,
        WPPGAlgorithm,
        {"policy": "implicit"},
        flops="wppg-i",
        presets=PRESETS,
        default_preset=backend_preset,
    )
)
register(AlgorithmEntry("sac", SACConfig, SACAlgorithm, flops="sac"))
register(AlgorithmEntry("wpo", WPOConfig, WPOAlgorithm))
register(AlgorithmEntry("ppo", PPOConfig, PPOAlgorithm, on_policy=True))
