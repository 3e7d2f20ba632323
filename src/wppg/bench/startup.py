"""Start-up times: `import wppg`, constructing an agent, `Agent.load` and the first update call, each
measured in a fresh process, with JAX's persistent compilation cache off, cold (empty) and warm (filled
by the cold run); `wppg bench speed --sections startup` or `python -m wppg.bench.startup`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from wppg import compile_cache

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import jax, numpy as np
import wppg
from wppg.agent import Agent, make_agent
t1 = time.perf_counter()
mode, variant, env, path = sys.argv[1:5]
out = {"import_s": t1 - t0}
if mode == "construct":
    agent = make_agent(variant, env, seed=0, progress=False)
    out["construct_s"] = time.perf_counter() - t1
    agent.save(path)
else:
    agent = Agent.load(path, progress=False)
    out["load_s"] = time.perf_counter() - t1
t2 = time.perf_counter()
agent.predict(np.zeros(agent.env_info.obs_dim, np.float32), deterministic=True)
out["first_predict_s"] = time.perf_counter() - t2
if hasattr(agent.trainer, "buffer"):
    from wppg.bench.speed import random_batches
    c = agent.train_config
    n = c.train_freq * c.n_envs * c.utd
    batches = random_batches(n, c.batch_size, agent.env_info.obs_dim, agent.env_info.bounds.dim)
    t3 = time.perf_counter()
    jax.block_until_ready(agent.algorithm.update(agent.trainer.state, batches, jax.random.PRNGKey(0)))
    out["first_update_s"] = time.perf_counter() - t3
print("STARTUP " + json.dumps(out))
"""


def _child(mode: str, variant: str, env: str, path: Path, cache: Path | None) -> dict[str, float]:
    environ = dict(os.environ)
    environ.pop(compile_cache.OFF_ENV, None)
    if cache is None:
        environ[compile_cache.OFF_ENV] = "1"
    else:
        environ[compile_cache.DIR_ENV] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, variant, env, str(path)], env=environ, capture_output=True, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("STARTUP ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"start-up child ({mode} {variant} {env}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("STARTUP ") :])


def startup_section(env: str, variants: list[str], log=print) -> list[dict[str, Any]]:
    """Rows of (variant, cache, phase times) for the cache off, cold and warm; each phase in a fresh process."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            cache = Path(tmp) / f"cache-{variant}"
            for label, cache_dir in (("off", None), ("cold", cache), ("warm", cache)):
                path = Path(tmp) / f"{variant}-{label}.npz"
                row: dict[str, Any] = {"variant": variant, "env": env, "cache": label}
                built = _child("construct", variant, env, path, cache_dir)
                loaded = _child("load", variant, env, path, cache_dir)
                row.update(import_s=built["import_s"], construct_s=built["construct_s"], load_s=loaded["load_s"])
                row.update(first_predict_s=loaded["first_predict_s"], first_update_s=loaded.get("first_update_s"))
                rows.append(row)
                times = ", ".join(
                    f"{k[:-2].replace('_', ' ')} " + ("-" if row[k] is None else f"{row[k]:.2f} s")
                    for k in ("import_s", "construct_s", "load_s", "first_predict_s", "first_update_s")
                )
                log(f"  {variant:8s} cache {label:4s}: {times}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wppg.bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--variants", nargs="+", default=["sac", "wppg-i"])
    p.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = p.parse_args(argv)
    print(f"start-up on {args.env} (seconds; each phase in a fresh process):", flush=True)
    rows = startup_section(args.env, args.variants, log=lambda s: print(s, flush=True))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
