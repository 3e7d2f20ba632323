"""Our gradient step against SBX SAC's, timed by paired alternation in one process.

    python experiments/performance/update_vs_sbx.py [ROUNDS]        # needs the `external` extra (sbx-rl)

Each round times one call of every update (32 gradient steps, batch 256, (256, 256) networks,
Hopper-v5 shapes) back to back: SBX SAC's jitted `_train` on data from its own replay buffer,
our SAC and our WPPG K = 1 on random data of the same shapes (the time of a step does not depend
on the values). The machine's speed drifts between rounds far more than between the calls of one
round, so the figure to read is the per-round ratio (SBX time / ours; > 1: ours is faster) and its
median, not the absolute times. Replay sampling is outside all the timed calls.
"""

import sys
import time

import gymnasium as gym
import jax
import numpy as np

from wppg.algorithms import SACAlgorithm, SACConfig, WPPGAlgorithm, WPPGConfig
from wppg.bench.speed import random_batches
from wppg.envs import ActionBounds

G, B = 32, 256


def sbx_update():
    from sbx import SAC
    from sbx.common.type_aliases import ReplayBufferSamplesNp

    model = SAC(
        "MlpPolicy", gym.make("Hopper-v5"), learning_starts=1000, train_freq=1, gradient_steps=1, verbose=0, seed=0
    )
    model.learn(1100)
    d = model.replay_buffer.sample(B * G)
    data = ReplayBufferSamplesNp(
        d.observations.numpy(),
        d.actions.numpy(),
        d.next_observations.numpy(),
        d.dones.numpy().flatten(),
        d.rewards.numpy().flatten(),
        np.full((B * G,), model.gamma, np.float32),
    )
    p = model.policy
    args = (
        model.tau,
        model.target_entropy,
        G,
        data,
        model.policy_delay,
        1,
        p.qf_state,
        p.actor_state,
        model.ent_coef_state,
        model.key,
    )
    return lambda: model._train(*args)


def our_update(algo):
    batches = random_batches(G, B, 11, 3)
    state = algo.init(jax.random.PRNGKey(0))
    return lambda: algo.update(state, batches, jax.random.PRNGKey(1))


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    bounds = ActionBounds(np.ones(3, np.float32), np.zeros(3, np.float32))
    calls = {
        "sbx sac": sbx_update(),
        "ours sac": our_update(SACAlgorithm(SACConfig(), 11, bounds)),
        "ours wppg K=1": our_update(WPPGAlgorithm(WPPGConfig(K=1), 11, bounds)),
    }
    for f in calls.values():
        jax.block_until_ready(f())
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, f in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(f())
            times[name].append((time.perf_counter() - t) / G)
    sbx = np.array(times["sbx sac"])
    print(f"{rounds} rounds of {G} gradient steps per call; jax {jax.__version__}, {jax.devices()[0].platform}")
    for name, t in times.items():
        ratio = sbx / np.array(t)
        print(
            f"  {name:14s} median {1e3 * np.median(t):6.2f} ms/step   "
            f"SBX/this per round: median {np.median(ratio):.2f} "
            f"[{np.min(ratio):.2f}, {np.max(ratio):.2f}]"
        )


if __name__ == "__main__":
    main()
