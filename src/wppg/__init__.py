"""wppg: Wasserstein proximal policy gradient (WPPG, WPPG-I) and SAC in JAX.

agent = wppg.WPPG("Pendulum-v1", policy="implicit", seed=0, K=8)
agent.learn(20_000)
action, _ = agent.predict(obs, deterministic=True)
agent.save("pendulum.npz"); agent = wppg.WPPG.load("pendulum.npz")

Importing wppg turns on JAX's persistent compilation cache (`wppg.compile_cache`; off with
WPPG_NO_COMPILE_CACHE=1).
"""

from wppg import compile_cache
from wppg._version import __version__
from wppg.agent import PPO, SAC, WPO, WPPG, Agent
from wppg.algorithms import PPOConfig, SACConfig, WPOConfig, WPPGConfig
from wppg.config import TrainConfig
from wppg.tasks import register_tasks

compile_cache.enable()
register_tasks()  # the wppg/ Gymnasium ids (multimodal tasks with known soft-optimal policies)

__all__ = [
    "PPO",
    "SAC",
    "WPO",
    "WPPG",
    "Agent",
    "PPOConfig",
    "SACConfig",
    "TrainConfig",
    "WPOConfig",
    "WPPGConfig",
    "__version__",
]
