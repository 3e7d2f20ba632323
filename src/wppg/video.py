"""Record an evaluation episode as an animated GIF."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np


def record_gif(agent, path: str | Path, deterministic: bool = True, fps: int = 30) -> Path:
    """Roll out one episode with rgb_array rendering and write it to `path` (GIF)."""
    from PIL import Image

    env_id = agent.env_info.env_id
    if env_id is None:
        raise ValueError("video needs a registered env id (the run used a user-supplied env)")
    try:
        env = gym.make(env_id, render_mode="rgb_array")
        obs, _ = env.reset(seed=agent.train_config.seed + 100_000)
        frames = [env.render()]
    except Exception as e:  # rendering back-ends fail in many ways on headless machines
        raise ValueError(
            f"cannot render {env_id} ({type(e).__name__}: {e}); install the video extra "
            "(pip install 'wppg[video]') and, for MuJoCo, set MUJOCO_GL=egl or osmesa"
        ) from e
    done = False
    while not done:
        obs, _, term, trunc, _ = env.step(agent.predict(np.asarray(obs), deterministic=deterministic)[0])
        frames.append(env.render())
        done = term or trunc
    env.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
