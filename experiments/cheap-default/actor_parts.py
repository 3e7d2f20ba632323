"""Where the time of WPPG / WPPG-I's actor step goes, Hopper-v5 shapes (batch 256, (256, 256), the defaults):
each prefix of the particle step jitted on its own (1: latents and policy samples with their VJP; 2: + the
transport gradient grad_a min(Q1, Q2); 3: + the pairing and heat step; 4: + the projection loss's gradient;
5: + the pull-back; 9: + the Adam step; ps: the library's particle_step), timed in alternation, median of 25.

    python experiments/cheap-default/actor_parts.py
"""

import time

import jax
import numpy as np

from wppg import registry
from wppg.algorithms.base import adam_step, grad_min_q
from wppg.coupling import couple, projection_loss, step_size
from wppg.envs import ActionBounds
from wppg.policies import sample_latents
from wppg.trainer import TrainConfig

D, d, B = 11, 3, 256


def build(name, **kw):
    e = registry.get(name)
    cfg = e.make_config("default", **kw)
    return e.algorithm_cls.build(
        cfg, D, ActionBounds(np.ones(d, np.float32), np.zeros(d, np.float32)), TrainConfig()
    ), cfg


obs = jax.random.normal(jax.random.PRNGKey(0), (B, D))
key = jax.random.PRNGKey(1)
fns = {}
for name in ("wppg", "wppg-i"):
    algo, c = build(name)
    st = algo.init(jax.random.PRNGKey(0))

    def parts(s, algo=algo, c=c, upto=9):
        k_eps, k_xi = jax.random.split(key)
        eps = sample_latents(algo.policy, k_eps, B, c.K)
        a0, pullback = jax.vjp(lambda p: algo.sample_actions(p, obs, eps), s.actor_params)
        if upto == 1:
            return a0
        g = grad_min_q(algo.critic, s.critic_params, obs, a0)
        if upto == 2:
            return g
        eta = step_size(c.step_rule, a0, g, c.eta)
        target = couple(c.coupling, a0, g, eta, algo.temperature(s), k_xi, algo.scale, algo.box)
        if upto == 3:
            return target
        loss, cot = jax.value_and_grad(lambda a: projection_loss(c.coupling, a, target, algo.scale))(a0)
        if upto == 4:
            return cot
        (grads,) = pullback(cot)
        if upto == 5:
            return grads
        return adam_step(algo.actor_tx, grads, s.actor_opt, s.actor_params)

    for u in (1, 2, 3, 4, 5, 9):
        fns[(name, u)] = (jax.jit(lambda s, parts=parts, u=u: parts(s, upto=u)), st)
    fns[(name, "ps")] = (jax.jit(lambda s, algo=algo: algo.particle_step(s, obs, key)), st)
for f, s in fns.values():
    jax.block_until_ready(f(s))
ts = {k: [] for k in fns}
for _ in range(25):
    for k, (f, s) in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(f(s))
        ts[k].append(time.perf_counter() - t)
for k in fns:
    print(k, f"{np.median(ts[k]) * 1e3:.2f} ms")
