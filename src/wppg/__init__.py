"""wppg: Wasserstein proximal policy gradient (WPPG, WPPG-I) and SAC in JAX.

agent = wppg.WPPG("Pendulum-v1", policy="implicit", seed=0, K=8)
agent.learn(20_000)
action = agent.predict(obs, deterministic=True)
agent.save("pendulum.npz"); agent = wppg.WPPG.load("pendulum.npz")
"""

from wppg._version import __version__
from wppg.agent import PPO, SAC, WPO, WPPG, Agent
from wppg.algorithms import PPOConfig, SACConfig, WPOConfig, WPPGConfig
from wppg.config import TrainConfig
from wppg.tasks import register_tasks

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
