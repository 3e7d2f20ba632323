"""`wppg bench speed`: how fast the updates and the training loop are on this machine, in one run.

Six sections, each printing measured figures and ratios as it goes:
- roofline: this machine's matmul rate (a large square product, and each matrix shape of the
  update alone), then each update's FLOPs (`wppg.flops`), its measured time per gradient step,
  its achieved FLOP/s, and the fraction of the time that its matrix products alone would take at
  the rates measured for their shapes (1.0 = nothing but matmuls at full speed);
- training: env steps/s of whole training runs (env, buffer, updates; no evaluation) on one env
  for sac and wppg (K = 1, 8, 32) and wppg-i, and, when installed, SBX SAC and SB3 SAC with the
  same settings; SBX runs right before and right after ours, `--rounds R` times over, and each
  round's ratios are taken against that round's faster SBX figure (their median is printed);
- cost: cost per env step relative to SAC, training loop on one env (Hopper-v5 by default) at
  train_freq 1, SAC and every WPPG variant at its defaults and presets, WPO, PPO (whole rollouts) and,
  if installed, SBX SAC, each round's ratio to that round's SAC and the median over `--cost-rounds`
  rounds, beside the FLOP model's ratio;
- coupling: ms per gradient step of wppg and wppg-i with each projection coupling (`wppg.coupling`)
  and for the paper's algorithm (shared-latent, plug-in entropy estimator), timed in alternation, and
  the ratio to the paper's;
- vmap: per-seed throughput of N seeds trained in one process against one seed alone;
- precision: the CPU's bf16 flags, a hidden layer's product in float32 and in bf16 (float32
  accumulation), and ms per gradient step of sac, wppg and wppg-i with each `precision`
  (`OffPolicyConfig.precision`), timed in alternation, with the speed-up of bf16.

Everything runs in this process with the XLA threading it was started with; the header records
the machine and its load. Compare ratios within one run: absolute times move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from wppg.bench.machine import cpu_identity, cpuinfo_fields
from wppg.flops import Product, gradient_step_products, product_flops

ROOFLINE_CASES = [("sac", 1), ("wppg", 1), ("wppg", 8), ("wppg", 32), ("wppg-i", 8), ("wppg-i", 32)]
TRAINING_CASES = [
    ("sac", {}),
    ("wppg", {"K": 1}),
    ("wppg", {"K": 8}),
    ("wppg", {"K": 32}),
    ("wppg-i", {"preset": "cpu"}),
]
# The roofline, coupling and precision sections time one gradient step at a given K with the paper's
# other costs (a soft target over the K actions, an actor step every step, the latent at the input).
PAPER_STEP = {"target_samples": None, "policy_delay": 1, "latent_input": "first"}
COST_CASES = [
    ("sac", {}),
    ("wppg", {}),
    ("wppg", {"preset": "cpu"}),
    ("wppg", {"preset": "gpu"}),
    ("wppg-i", {}),
    ("wppg-i", {"preset": "cpu"}),
    ("wppg-i", {"preset": "gpu"}),
    ("wpo", {}),
    ("ppo", {}),
]
"""The cost section's cases: SAC, each WPPG variant at its defaults and at each preset but 'paper'
(which costs what 'gpu' costs), and the baselines WPO and PPO at their defaults."""


def _variants() -> list[str]:
    """Our algorithms with a FLOP model (`wppg.registry`)."""
    from wppg import registry

    return registry.flop_models()


def _median_seconds(fn, reps: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def dispatch_overhead_s(reps: int = 200) -> float:
    """Time of a jitted call that does no arithmetic: subtracted from the per-product timings."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((4,))
    f = jax.jit(lambda a: a)
    return _median_seconds(lambda: f(x), reps)


def product_seconds(product: Product, reps: int, overhead: float) -> float:
    """Median time of one [m, k] @ [k, n] float32 product, alone and jitted, less the call overhead."""
    import jax
    import jax.numpy as jnp

    m, k, n = product
    a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
    b = jax.random.normal(jax.random.PRNGKey(1), (k, n))
    f = jax.jit(jnp.matmul)
    return max(_median_seconds(lambda: f(a, b), reps) - overhead, 1e-9)


def matmul_peak_gflops(size: int = 1024, reps: int = 10) -> float:
    """FLOP/s of a large square float32 product: the machine's practical matmul peak."""
    t = product_seconds((size, size, size), reps, 0.0)
    return 2 * size**3 / t / 1e9


def _algorithm(
    name: str,
    K: int,
    obs_dim: int,
    act_dim: int,
    hidden: tuple[int, ...],
    M: int,
    L: int,
    **settings: Any,
):
    """`name` built for these shapes; `settings` (coupling, entropy_estimator, boundary, precision)
    go to its config where it has the field, else the config's defaults hold."""
    from wppg import registry
    from wppg.config import TrainConfig
    from wppg.envs import ActionBounds

    bounds = ActionBounds(np.ones(act_dim, np.float32), np.zeros(act_dim, np.float32))
    entry = registry.get(name)
    # Each config takes those of the case's settings that it has (SAC has no K or coupling).
    case = {"K": K, "hidden": hidden, "entropy_M": M, "entropy_L": L, **PAPER_STEP, **settings}
    cfg = entry.make_config(**{k: v for k, v in case.items() if k in entry.config_fields()})
    return entry.algorithm_cls.build(cfg, obs_dim, bounds, TrainConfig())


def random_batches(n_steps: int, batch: int, obs_dim: int, act_dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n_steps` stacked replay batches of random transitions (normal observations and rewards, actions
    uniform on [-1, 1], none terminal): the input of `update` for timing and smoke checks."""
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.normal(size=(n_steps, batch, obs_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n_steps, batch, act_dim)).astype(np.float32),
        "reward": rng.normal(size=(n_steps, batch)).astype(np.float32),
        "next_obs": rng.normal(size=(n_steps, batch, obs_dim)).astype(np.float32),
        "terminated": np.zeros((n_steps, batch), np.float32),
    }


def gradient_step_seconds(algo, obs_dim: int, act_dim: int, batch: int, n_steps: int, reps: int) -> float:
    """Median seconds per gradient step of `algo.update` with `n_steps` steps scanned in one call."""
    import jax

    batches = random_batches(n_steps, batch, obs_dim, act_dim)
    state = algo.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    return _median_seconds(lambda: algo.update(state, batches, key), reps) / n_steps


def alternated_step_ms(algos: dict[Any, Any], obs_dim: int, act_dim: int, batch: int, reps: int) -> dict[Any, float]:
    """Median ms per gradient step of each algorithm, timed in alternation (`reps` rounds of one call
    of 4 scanned steps each) so that a change of the machine's load hits them alike."""
    times: dict[Any, list[float]] = {k: [] for k in algos}
    for _ in range(reps):
        for k, algo in algos.items():
            times[k].append(gradient_step_seconds(algo, obs_dim, act_dim, batch, 4, 1))
    return {k: 1e3 * float(np.median(t)) for k, t in times.items()}


def coupling_section(
    obs_dim: int,
    act_dim: int,
    hidden: tuple[int, ...],
    batch: int,
    M: int,
    L: int,
    reps: int,
    cases: list[tuple[str, int]],
    log=print,
) -> list[dict[str, Any]]:
    """ms per gradient step of wppg / wppg-i for each projection coupling (with the default 'knn' entropy
    estimator and reflected box) and for the paper's algorithm (shared-latent, plug-in estimator, no box),
    and the ratio to the paper's, all timed in alternation (`reps` rounds of one call each, median) so
    that a load change hits them alike."""
    from wppg.coupling import COUPLINGS

    paper = ("shared-latent", "plug-in", "none")
    variants = [(c, "knn", "reflect") for c in COUPLINGS] + [paper]
    rows = []
    for name, K in cases:
        algos = {v: _algorithm(name, K, obs_dim, act_dim, hidden, M, L, coupling=v[0], entropy_estimator=v[1],
                               boundary=v[2]) for v in variants}  # fmt: skip
        step_ms = alternated_step_ms(algos, obs_dim, act_dim, batch, reps)
        for (c, estimator, boundary), ms in step_ms.items():
            ratio = ms / step_ms[paper]
            rows.append({"algo": name, "K": K, "coupling": c, "entropy_estimator": estimator, "boundary": boundary,
                         "ms_per_step": ms, "ratio_to_paper": ratio})  # fmt: skip
            log(
                f"  {name:7s} K={K:<3d} {c:14s} {estimator:8s} {boundary:8s} {ms:8.2f} ms/step   {ratio:.2f}x the paper's"
            )
    return rows


PRECISION_CASES = [("sac", 1), ("wppg", 8), ("wppg-i", 8), ("wppg-i", 32)]


def cpu_bf16_flags() -> list[str]:
    """The CPU flags that decide whether bf16 products are fast (amx_bf16, avx512_bf16: XLA:CPU then
    runs them on bf16 units; without them it converts to float32 around the product)."""
    flags = cpuinfo_fields().get("flags", "").split()
    return sorted({f for f in flags if "bf16" in f or f.startswith("amx") or f == "avx512f"})


def bf16_product_seconds(product: Product, reps: int) -> tuple[float, float]:
    """Median seconds of one [m, k] @ [k, n] product in float32 and with bf16 operands and float32
    accumulation (`wppg.networks.bf16_matmul`), timed in alternation."""
    import jax

    from wppg.networks import bf16_matmul

    m, k, n = product
    a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
    b = jax.random.normal(jax.random.PRNGKey(1), (k, n))
    f32, bf16 = jax.jit(lambda x, w: x @ w), jax.jit(bf16_matmul)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        times[0].append(_median_seconds(lambda: f32(a, b), 3))
        times[1].append(_median_seconds(lambda: bf16(a, b), 3))
    return float(np.median(times[0])), float(np.median(times[1]))


def precision_section(
    obs_dim: int,
    act_dim: int,
    hidden: tuple[int, ...],
    batch: int,
    M: int,
    L: int,
    reps: int,
    cases: list[tuple[str, int]],
    log=print,
) -> dict[str, Any]:
    """The bf16 product rate against float32 at a hidden layer's shape (batch * 8 rows), then ms per
    gradient step of each case in float32 and with `precision='bf16'`, timed in alternation
    (`reps` rounds of one call each, median), and the speed-up."""
    flags = cpu_bf16_flags()
    h = hidden[-1]
    product = (8 * batch, h, h)
    t32, t16 = bf16_product_seconds(product, reps)
    flops = 2 * product[0] * product[1] * product[2]
    log(f"  cpu bf16 flags: {', '.join(flags) or 'none'}")
    log(f"  product {product[0]}x{product[1]} @ {product[1]}x{product[2]}: float32 {flops / t32 / 1e9:.1f} GFLOP/s, "
        f"bf16 {flops / t16 / 1e9:.1f} GFLOP/s ({t32 / t16:.2f}x)")  # fmt: skip
    rows = []
    for name, K in cases:
        algos = {p: _algorithm(name, K, obs_dim, act_dim, hidden, M, L, precision=p) for p in ("float32", "bf16")}
        ms = alternated_step_ms(algos, obs_dim, act_dim, batch, reps)
        rows.append({"algo": name, "K": K, "ms_per_step_float32": ms["float32"], "ms_per_step_bf16": ms["bf16"],
                     "speedup": ms["float32"] / ms["bf16"]})  # fmt: skip
        log(f"  {name:7s} K={K:<3d} float32 {ms['float32']:8.2f} ms/step   bf16 {ms['bf16']:8.2f} ms/step   "
            f"bf16 is {ms['float32'] / ms['bf16']:.2f}x faster")  # fmt: skip
    return {"cpu_bf16_flags": flags, "product": list(product), "product_gflops_float32": flops / t32 / 1e9,
            "product_gflops_bf16": flops / t16 / 1e9, "steps": rows}  # fmt: skip


def roofline(
    obs_dim: int,
    act_dim: int,
    hidden: tuple[int, ...],
    batch: int,
    M: int,
    L: int,
    reps: int,
    cases=ROOFLINE_CASES,
    log=print,
) -> list[dict[str, Any]]:
    """Per case: FLOPs per gradient step, measured time, achieved GFLOP/s, and the products-only time
    at the rates this machine reaches on each product's shape alone."""
    overhead = dispatch_overhead_s()
    shape_time: dict[Product, float] = {}
    rows = []
    for name, K in cases:
        latent = max(1, round(obs_dim / 3))
        products = [p for part in gradient_step_products(name, obs_dim, act_dim, hidden, batch, K=K, entropy_M=M, entropy_L=L,
                                                           latent_dim=latent).values() for p in part]  # fmt: skip
        algo = _algorithm(name, K, obs_dim, act_dim, hidden, M, L)
        step_s = gradient_step_seconds(algo, obs_dim, act_dim, batch, 4, reps)
        for p in set(products) - set(shape_time):
            shape_time[p] = product_seconds(p, max(5, reps), overhead)
        # Timed again after its products: the smaller of the two, so that a transient slowdown of
        # the machine does not count against the update.
        step_s = min(step_s, gradient_step_seconds(algo, obs_dim, act_dim, batch, 4, reps))
        flops = product_flops(products)
        products_s = sum(shape_time[p] for p in products)
        row = {
            "algo": name, "K": K, "gflop_per_step": flops / 1e9, "ms_per_step": 1e3 * step_s,
            "achieved_gflops": flops / step_s / 1e9, "shape_rate_gflops": flops / products_s / 1e9,
            "products_only_ms": 1e3 * products_s, "fraction_of_shape_roofline": products_s / step_s,
        }  # fmt: skip
        rows.append(row)
        log(f"  {name:6s} K={K:<3d} {row['gflop_per_step']:7.3f} GFLOP/step  {row['ms_per_step']:8.2f} ms/step  "
            f"{row['achieved_gflops']:6.1f} GFLOP/s achieved  {row['shape_rate_gflops']:6.1f} GFLOP/s on its shapes  "
            f"-> {100 * row['fraction_of_shape_roofline']:.0f}% of the shape roofline")  # fmt: skip
    return rows


def _ours_steps_per_s(
    variant: str, hp: dict[str, Any], env_id: str, steps: int, learning_starts: int, train_freq: int, seed: int
) -> dict[str, Any]:
    """Env steps/s of our training loop after warm-up and compilation, without evaluation time."""
    import tempfile

    from wppg import registry
    from wppg.agent import make_agent

    common = dict(seed=seed, progress=False, eval_every=10**9, eval_episodes=1, checkpoint_every=0, log_every=10**9)
    if registry.get(variant).on_policy:  # no buffer: a warm-up rollout and update, then whole rollouts
        rollout = case_config(variant, hp).n_steps
        warmup, steps = rollout, -(-steps // rollout) * rollout
    else:
        common.update(learning_starts=learning_starts, train_freq=train_freq)
        warmup = learning_starts + 2 * train_freq  # random warm-up, then two update calls: compiled
    with tempfile.TemporaryDirectory() as tmp:
        agent = make_agent(variant, env_id, run_dir=tmp, **common, **{**hp, "preset": hp.get("preset", "default")})
        agent.learn(warmup)
        t0 = time.perf_counter()
        agent.learn(steps)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        agent.trainer.evaluate_and_log()  # the end-of-call evaluation, timed again to take it out
        eval_s = time.perf_counter() - t1
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    elapsed = max(total - eval_s, 1e-9)
    return {
        "env_steps": steps,
        "steps_per_s": steps / elapsed,
        "wall_time_s": elapsed,
        "ms_per_gradient_step": summary.get("ms_per_gradient_step"),
    }


def measure_speed(
    algo: str, env_id: str, total_steps: int, learning_starts: int, train_freq: int, gradient_steps: int, seed: int = 0
) -> dict[str, Any]:
    """Env steps/s of reference SAC training alone (no evaluation), timed over the `total_steps`
    env steps that follow `learning_starts` untimed steps of random actions; `train_freq` env
    steps between update calls of `gradient_steps` gradient steps. Defaults otherwise as
    `SACConfig` / `TrainConfig`. The timed span includes the first update call (SBX compiles
    there); `first_update_s` reports that call alone."""
    from wppg.algorithms.base import require
    from wppg.bench.external.mapping import map_hyperparameters
    from wppg.bench.external.references import _build, _UpdateTimer, reference_version

    if algo not in ("sb3-sac", "sbx-sac"):
        raise ValueError(
            f"measure_speed compares SAC implementations: algo must be 'sb3-sac' or 'sbx-sac', got {algo!r}"
        )
    require(
        total_steps >= 1 and train_freq >= 1 and gradient_steps >= 1,
        "total_steps, train_freq and gradient_steps must be >= 1",
    )
    setup = map_hyperparameters(algo, {"learning_starts": learning_starts, "train_freq": train_freq})
    setup.kwargs["gradient_steps"] = gradient_steps
    package, version = reference_version(algo)
    from stable_baselines3.common.callbacks import BaseCallback

    model, _ = _build(setup, env_id, seed)
    timer = _UpdateTimer(model, lambda n: n)
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_training_start(self) -> None:
            if learning_starts == 0:
                marks["t0"], marks["cpu0"] = time.perf_counter(), time.process_time()

        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts:
                marks["t0"], marks["cpu0"] = time.perf_counter(), time.process_time()
            return True

    model.learn(learning_starts + total_steps, callback=Clock(), progress_bar=False)
    elapsed, cpu = time.perf_counter() - marks["t0"], time.process_time() - marks["cpu0"]
    timed_steps = int(model.num_timesteps) - learning_starts
    threads = None
    if algo == "sb3-sac":
        import torch

        threads = torch.get_num_threads()
    return {
        "algo": algo,
        "env_id": env_id,
        "reference_package": package,
        "reference_version": version,
        "learning_starts": learning_starts,
        "train_freq": train_freq,
        "gradient_steps_per_call": gradient_steps,
        "env_steps": timed_steps,
        "wall_time_s": elapsed,
        "steps_per_s": timed_steps / max(elapsed, 1e-9),
        # Per second of this process's CPU time: less sensitive to other processes on the core.
        "cpu_time_s": cpu,
        "steps_per_cpu_s": timed_steps / max(cpu, 1e-9),
        "update_time_s": timer.time,
        "update_calls": timer.calls,
        "gradient_steps": timer.steps,
        "ms_per_gradient_step": 1e3 * timer.time / max(timer.steps, 1),
        "first_update_s": timer.first_call_s,
        "torch_threads": threads,
    }


def _reference_row(
    ref: str, env_id: str, steps: int, learning_starts: int, tf: int, seed: int, when: str, log
) -> dict[str, Any] | None:
    """Env steps/s of an external SAC (SBX or SB3) at train_freq = gradient_steps = tf; None if not installed."""
    try:
        r = measure_speed(ref, env_id, steps, learning_starts, tf, tf, seed)
    except ImportError as e:
        log(f"  {ref}: not installed ({e}); `pip install wppg[external]`")
        return None
    # The reference's first update call compiles (SBX) or warms up; replace it by a typical call.
    typical = (r["update_time_s"] - r["first_update_s"]) / max(r["update_calls"] - 1, 1)
    steady = r["env_steps"] / max(r["wall_time_s"] - r["first_update_s"] + typical, 1e-9)
    log(
        f"  {ref:23s} train_freq={tf:<3d} {steady:7.1f} env steps/s ({r['steps_per_s']:.1f} with its first update call; {when})"
    )
    return {"impl": ref, "algo": "sac", "train_freq": tf, "env_steps": r["env_steps"], "steps_per_s": steady, "when": when,
            "steps_per_s_with_first_call": r["steps_per_s"], "ms_per_gradient_step": 1e3 * typical / tf,
            "ms_per_gradient_step_with_first_call": r["ms_per_gradient_step"],
            "version": r.get("reference_version")}  # fmt: skip


def training(
    env_id: str,
    steps: int,
    learning_starts: int,
    train_freqs: list[int],
    seed: int,
    cases=TRAINING_CASES,
    external: bool = True,
    rounds: int = 1,
    log=print,
) -> list[dict[str, Any]]:
    """Env steps/s of whole training runs: ours and, if installed, SBX / SB3 SAC.

    At each train_freq, `rounds` times: SBX right before our runs, ours, SBX right after, so that
    a drift of the machine's speed during a round shows; the faster SBX figure of the round is
    that round's reference (`ratio_to_sbx_round`). SB3 runs once, after the last round."""
    rows = []
    for tf in train_freqs:
        for rnd in range(1, rounds + 1):
            tag = f"round {rnd}/{rounds}, " if rounds > 1 else ""
            refs_after = ["sbx-sac", "sb3-sac"] if rnd == rounds else ["sbx-sac"]
            round_rows = (
                [_reference_row("sbx-sac", env_id, steps, learning_starts, tf, seed, tag + "before ours", log)]
                if external
                else []
            )
            round_rows += [
                _ours_row(variant, hp, env_id, steps, learning_starts, tf, seed, log) for variant, hp in cases
            ]
            if external:
                round_rows += [
                    _reference_row(ref, env_id, steps, learning_starts, tf, seed, tag + "after ours", log)
                    for ref in refs_after
                ]
            round_rows = [r for r in round_rows if r is not None]  # references that are not installed give None
            sbx = max((r["steps_per_s"] for r in round_rows if r["impl"] == "sbx-sac"), default=None)
            for r in round_rows:
                r["round"] = rnd
                if sbx and r["impl"] == "wppg":
                    r["ratio_to_sbx_round"] = r["steps_per_s"] / sbx
            rows += round_rows
    return rows


def _ours_row(
    variant: str, hp: dict[str, Any], env_id: str, steps: int, learning_starts: int, tf: int, seed: int, log
) -> dict[str, Any]:
    """One training-section row of ours (1/8 of the steps for the slow cases: K >= 32 and wppg-i)."""
    slow = hp.get("K", 1) >= 32 or variant == "wppg-i"
    n = max(train_freq_multiple(steps // (8 if slow else 1), tf), tf)
    r = _ours_steps_per_s(variant, hp, env_id, n, learning_starts, tf, seed)
    label = variant + "".join(f" {k}={v}" for k, v in hp.items())
    log(f"  wppg {label:18s} train_freq={tf:<3d} {r['steps_per_s']:7.1f} env steps/s ({n} steps)")
    return {"impl": "wppg", "algo": label, "train_freq": tf, "env_steps": n, **r}


def ratio_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per algorithm and train_freq of ours: the per-round ratios to that round's SBX SAC and their median."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if "ratio_to_sbx_round" in r:
            out.setdefault(f"{r['algo']} train_freq={r['train_freq']}", {"ratios": []})["ratios"].append(
                r["ratio_to_sbx_round"]
            )
    for v in out.values():
        v["median"] = float(np.median(v["ratios"]))
    return out


def case_label(variant: str, hp: dict[str, Any]) -> str:
    """'wppg-i preset=gpu', 'sac', 'wppg K=8'."""
    return variant + "".join(f" {k}={v}" for k, v in hp.items())


def case_config(variant: str, hp: dict[str, Any]) -> Any:
    """The algorithm config of a case: its preset (if any), then those of its settings that are the
    config's fields (the rest, `TrainConfig`'s, go to the training run only)."""
    from wppg import registry

    entry = registry.get(variant)
    fields = entry.config_fields()
    return entry.make_config(hp.get("preset", "default"), **{k: v for k, v in hp.items() if k in fields})


def case_flops(variant: str, hp: dict[str, Any], obs_dim: int, act_dim: int) -> float:
    """Model FLOPs of one gradient step of a case, averaged over its `policy_delay` (`wppg.flops`)."""
    from wppg import registry
    from wppg.flops import mean_step_flops
    from wppg.policies import default_latent_dim

    entry = registry.get(variant)
    cfg, batch = case_config(variant, hp), hp.get("batch_size", 256)
    if entry.flops == "sac":
        return mean_step_flops("sac", obs_dim, act_dim, cfg.hidden, batch)["total"]
    latent = cfg.latent_dim or default_latent_dim(obs_dim, act_dim)
    return mean_step_flops(entry.flops, obs_dim, act_dim, cfg.hidden, batch, K=cfg.K, entropy_M=cfg.entropy_M,
                           entropy_L=cfg.entropy_L, latent_dim=latent, target_samples=cfg.target_samples,
                           latent_input=cfg.latent_input, policy_delay=cfg.policy_delay)["total"]  # fmt: skip


def cost_section(
    env_id: str,
    steps: int,
    learning_starts: int,
    rounds: int = 3,
    cases=COST_CASES,
    external: bool = True,
    seed: int = 0,
    log=print,
) -> dict[str, Any]:
    """Cost per env step relative to SAC (the first case): whole training runs at train_freq = 1 (env,
    buffer, updates; no evaluation), every case once per round in turn, `rounds` rounds; each case's ms per env step
    over that round's SAC's, and the median over the rounds. Cases with K >= 32 run `steps` // 4 env
    steps; an on-policy case (PPO) runs whole rollouts, at least one. SBX SAC joins each round when
    installed (skipped otherwise). The FLOP model's ratio per gradient step (`case_flops`) is printed
    beside it where there is a model."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    labels = [case_label(v, hp) for v, hp in cases]
    with_model = set(_variants())
    model = {lab: case_flops(v, hp, obs_dim, act_dim) for lab, (v, hp) in zip(labels, cases) if v in with_model}
    rows: list[dict[str, Any]] = []
    have_sbx = external
    for rnd in range(1, rounds + 1):
        round_rows = []
        for label, (variant, hp) in zip(labels, cases):
            n = max(steps // (4 if getattr(case_config(variant, hp), "K", 1) >= 32 else 1), 2)
            r = _ours_steps_per_s(variant, hp, env_id, n, learning_starts, 1, seed)
            round_rows.append({"impl": "wppg", "algo": label, "env_steps": n, **r})
        if have_sbx:
            ref = _reference_row("sbx-sac", env_id, steps, learning_starts, 1, seed, f"round {rnd}", lambda s: log(s))
            have_sbx = ref is not None
            if ref is not None:
                round_rows.append(ref)
        sac = round_rows[0]["steps_per_s"]  # the first case, SAC
        for r in round_rows:
            r["round"] = rnd
            r["ms_per_env_step"] = 1e3 / r["steps_per_s"]
            r["ratio_to_sac"] = sac / r["steps_per_s"]
            log(f"  round {rnd}: {r['impl'] + ' ' + r['algo']:28s} {r['ms_per_env_step']:8.2f} ms/env step   "
                f"{r['ratio_to_sac']:5.2f}x SAC's")  # fmt: skip
        rows += round_rows
    summary: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = r["algo"] if r["impl"] == "wppg" else r["impl"]
        summary.setdefault(name, {"ratios": [], "ms": []})
        summary[name]["ratios"].append(r["ratio_to_sac"])
        summary[name]["ms"].append(r["ms_per_env_step"])
    log(f"cost per env step relative to SAC ({env_id}, train_freq 1, median of {rounds} rounds; model: FLOPs per "
        "gradient step over SAC's):")  # fmt: skip
    for name, v in summary.items():
        v["median_ratio"] = float(np.median(v["ratios"]))
        v["median_ms_per_env_step"] = float(np.median(v["ms"]))
        if name in model:
            v["model_ratio"] = model[name] / model[labels[0]]
        flops = f"   model {v['model_ratio']:5.2f}x" if "model_ratio" in v else ""
        log(f"  {name:28s} {v['median_ms_per_env_step']:8.2f} ms/env step   {v['median_ratio']:5.2f}x SAC's "
            f"(rounds: {' '.join(f'{x:.2f}' for x in v['ratios'])}){flops}")  # fmt: skip
    return {"env_id": env_id, "obs_dim": obs_dim, "act_dim": act_dim, "rows": rows, "summary": summary}


def train_freq_multiple(n: int, tf: int) -> int:
    return (n // tf) * tf


def vmap_section(env_id: str, n_seeds: int, steps: int, log=print) -> list[dict[str, Any]]:
    """Per-seed throughput of N vmapped seeds against one seed (`wppg.multiseed`)."""
    from wppg.multiseed import measure_vmapped_speedup

    rows = []
    for variant, hp in (("sac", {}), ("wppg", {"K": 1}), ("wppg", {"K": 8})):
        r = measure_vmapped_speedup(variant, env_id, n_seeds, steps, **hp)
        rows.append({"algo": variant + "".join(f" {k}={v}" for k, v in hp.items()), **r})
        log(
            f"  {rows[-1]['algo']:12s} "
            + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
        )
    return rows


def machine() -> dict[str, Any]:
    import jax

    return {
        "cpu": cpu_identity()["cpu_model"], "cores": os.cpu_count(), "jax": jax.__version__, "backend": jax.devices()[0].platform,
        "device": str(jax.devices()[0]), "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_average_1min": os.getloadavg()[0],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wppg bench speed", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sections",
        nargs="+",
        choices=("roofline", "coupling", "training", "cost", "vmap", "precision", "startup"),
        default=["roofline", "coupling", "training", "cost", "vmap", "precision"],
    )
    p.add_argument("--cost-steps", type=int, default=1000, help="timed env steps per run of the cost section")
    p.add_argument("--cost-rounds", type=int, default=3, help="rounds of the cost section (median)")
    p.add_argument(
        "--cost-presets", nargs="+", default=["default", "cpu", "gpu"], help="WPPG presets of the cost section"
    )
    p.add_argument("--coupling-K", type=int, nargs="+", default=[8, 32], help="K of the coupling section")
    p.add_argument("--env", default="Hopper-v5", help="env of the training and vmap sections (default Hopper-v5)")
    p.add_argument(
        "--steps", type=int, default=3000, help="timed env steps per training run (1/8 of it for K=32 and wppg-i)"
    )
    p.add_argument("--learning-starts", type=int, default=1000, help="untimed random steps before the timed span")
    p.add_argument(
        "--train-freq",
        type=int,
        nargs="+",
        default=[1, 32],
        help="train_freq settings (UTD 1: gradient steps = train_freq)",
    )
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument(
        "--entropy-ml",
        type=int,
        nargs=2,
        default=[16, 16],
        metavar=("M", "L"),
        help="entropy centres/baselines in the roofline, coupling and precision sections",
    )
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per measurement (median)")
    p.add_argument("--seeds", type=int, default=4, help="N of the vmap section")
    p.add_argument("--rounds", type=int, default=1, help="rounds of the training section (SBX, ours, SBX each round)")
    p.add_argument(
        "--wppg-K", type=int, nargs="+", default=None, metavar="K", help="only these K of wppg in the training section"
    )
    p.add_argument("--variants", nargs="+", choices=_variants(), default=_variants(), help="our algorithms to measure")
    p.add_argument("--no-external", action="store_true", help="skip SBX / SB3 even if installed")
    p.add_argument("--out", type=Path, default=Path("runs/speed/speed.json"), help="JSON with every figure")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")

    import gymnasium as gym

    result: dict[str, Any] = {"command": "wppg bench speed " + " ".join(argv or []), "machine": machine()}
    print(f"machine: {result['machine']}", flush=True)
    if "roofline" in args.sections:
        env = gym.make(args.env)
        obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
        env.close()
        peak = matmul_peak_gflops()
        result["matmul_peak_gflops"] = peak
        print(f"roofline ({args.env} shapes: obs {obs_dim}, act {act_dim}; batch {args.batch}; hidden {args.hidden}; "
              f"entropy M, L = {args.entropy_ml}); 1024^3 float32 matmul: {peak:.1f} GFLOP/s", flush=True)  # fmt: skip
        cases = [c for c in ROOFLINE_CASES if c[0] in args.variants]
        result["roofline"] = roofline(obs_dim, act_dim, tuple(args.hidden), args.batch, *args.entropy_ml, args.reps, cases,
                                      log=lambda s: print(s, flush=True))  # fmt: skip
    if "coupling" in args.sections:
        env = gym.make(args.env)
        obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
        env.close()
        print(
            f"projection couplings ({args.env} shapes; batch {args.batch}; entropy M, L = {args.entropy_ml}):",
            flush=True,
        )
        cases = [(v, K) for v in ("wppg", "wppg-i") if v in args.variants for K in args.coupling_K]
        result["coupling"] = coupling_section(obs_dim, act_dim, tuple(args.hidden), args.batch, *args.entropy_ml, args.reps, cases,
                                              log=lambda s: print(s, flush=True))  # fmt: skip
    if "training" in args.sections:
        print(
            f"training on {args.env}: {args.steps} timed env steps after {args.learning_starts} random ones, UTD 1",
            flush=True,
        )
        cases = [
            c
            for c in TRAINING_CASES
            if c[0] in args.variants and (args.wppg_K is None or c[0] != "wppg" or c[1]["K"] in args.wppg_K)
        ]
        rows = training(args.env, args.steps, args.learning_starts, args.train_freq, 0, cases, external=not args.no_external,
                        rounds=args.rounds, log=lambda s: print(s, flush=True))  # fmt: skip
        result["training"] = rows
        summary = ratio_summary(rows)
        if summary:
            result["ratios_to_sbx"] = summary
            print(
                "ratios against SBX SAC (per round: the faster of SBX before and after our runs in that round):",
                flush=True,
            )
            for name, v in summary.items():
                print(
                    f"  {name:30s} " + " ".join(f"{x:.2f}x" for x in v["ratios"]) + f"   median {v['median']:.2f}x",
                    flush=True,
                )
    if "cost" in args.sections:
        print(f"cost per env step relative to SAC on {args.env}: {args.cost_steps} timed env steps per run "
              f"(a quarter for K >= 32) after {args.learning_starts} random ones, {args.cost_rounds} rounds", flush=True)  # fmt: skip
        cases = [c for c in COST_CASES if c[0] not in _variants() or c[0] == "sac"
                 or (c[0] in args.variants and c[1].get("preset", "default") in args.cost_presets)]  # fmt: skip
        result["cost"] = cost_section(args.env, args.cost_steps, args.learning_starts, args.cost_rounds, cases,
                                      external=not args.no_external, log=lambda s: print(s, flush=True))  # fmt: skip
    if "vmap" in args.sections:
        print(f"vmapped seeds on {args.env}: N = {args.seeds}", flush=True)
        result["vmap"] = vmap_section(args.env, args.seeds, args.steps, log=lambda s: print(s, flush=True))
    if "precision" in args.sections:
        env = gym.make(args.env)
        obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
        env.close()
        print(f"precision ({args.env} shapes; batch {args.batch}; hidden {args.hidden}; entropy M, L = {args.entropy_ml}):",
              flush=True)  # fmt: skip
        cases = [c for c in PRECISION_CASES if c[0] in args.variants]
        result["precision"] = precision_section(obs_dim, act_dim, tuple(args.hidden), args.batch, *args.entropy_ml, args.reps,
                                                cases, log=lambda s: print(s, flush=True))  # fmt: skip
    if "startup" in args.sections:  # not in the default sections: `--sections startup` (wppg.bench.startup)
        from wppg.bench.startup import startup_section

        print("start-up on Pendulum-v1 (seconds; each phase in a fresh process):", flush=True)
        variants = [v for v in ("sac", "wppg-i") if v in args.variants]
        result["startup"] = startup_section("Pendulum-v1", variants, log=lambda s: print(s, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0
