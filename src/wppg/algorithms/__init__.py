"""Algorithms: each is a config dataclass plus pure `init`, `update` and `act` functions."""

from wppg.algorithms.base import ConfigError, OffPolicyAlgorithm, OffPolicyConfig
from wppg.algorithms.ppo import PPOAlgorithm, PPOConfig
from wppg.algorithms.sac import SACAlgorithm, SACConfig
from wppg.algorithms.wpo import WPOAlgorithm, WPOConfig
from wppg.algorithms.wppg import PRESETS, WPPGAlgorithm, WPPGConfig

ALGORITHMS: dict[str, tuple[type[OffPolicyAlgorithm] | type[PPOAlgorithm], type[OffPolicyConfig] | type[PPOConfig]]] = {
    "wppg": (WPPGAlgorithm, WPPGConfig),
    "sac": (SACAlgorithm, SACConfig),
    "wpo": (WPOAlgorithm, WPOConfig),
    "ppo": (PPOAlgorithm, PPOConfig),
}

__all__ = ["ALGORITHMS", "PRESETS", "ConfigError", "PPOAlgorithm", "PPOConfig", "SACAlgorithm", "SACConfig", "WPOAlgorithm", "WPOConfig", "WPPGAlgorithm", "WPPGConfig"]
