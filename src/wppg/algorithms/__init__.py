"""Algorithms: each is a config dataclass plus pure `init`, `update` and `act` functions; the
list of them, with their names and trainers, is `wppg.registry`."""

from wppg.algorithms.ppo import PPOAlgorithm, PPOConfig
from wppg.algorithms.protocol import Algorithm
from wppg.algorithms.sac import SACAlgorithm, SACConfig
from wppg.algorithms.wpo import WPOAlgorithm, WPOConfig
from wppg.algorithms.wppg import PRESETS, WPPGAlgorithm, WPPGConfig
from wppg.config import ConfigError

__all__ = [
    "PRESETS", "Algorithm", "ConfigError", "PPOAlgorithm", "PPOConfig", "SACAlgorithm", "SACConfig", "WPOAlgorithm", "WPOConfig", "WPPGAlgorithm",
    "WPPGConfig",
]  # fmt: skip
