"""What a benchmark ran on: CPU model, cores, memory, OS, Python and package versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any

PACKAGES = (
    "wppg", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco", "box2d",
    "stable-baselines3", "sbx-rl", "torch", "ray", "rliable",
)  # fmt: skip


THREAD_VARIABLES = ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "JAX_PLATFORMS")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def describe_machine() -> dict[str, Any]:
    """A JSON-able description of this machine and of the installed versions that matter."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": versions,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "threads": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line for a report: CPU model, cores, memory, GPUs, OS, Python."""
    gpus = f", GPUs: {'; '.join(m['gpus'])}" if m.get("gpus") else ", no GPU"
    mem = f", {m['memory_gib']} GiB RAM" if m.get("memory_gib") else ""
    return f"{m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} CPUs{mem}{gpus}; {m.get('os', '?')}; Python {m.get('python', '?')}"
