"""What a benchmark ran on: CPU (model, family/model, vector extension), cores, memory, OS, Python and package versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "wppg", "jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco", "box2d",
    "stable-baselines3", "sbx-rl", "torch", "ray", "rliable",
)  # fmt: skip


THREAD_VARIABLES = ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "JAX_PLATFORMS")


# Widest vector extension first: what a CPU's matrix products can use (AMX: bf16 tiles on Intel).
SIMD_LEVELS = (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpuinfo_fields(cpuinfo: str | None = None) -> dict[str, str]:
    """The fields of the first processor in /proc/cpuinfo (or in the text `cpuinfo`); {} where it
    cannot be read. The one reader of that file: the machine record and the speed benchmark use it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_identity(cpuinfo: str | None = None) -> dict[str, str]:
    """The CPU's model name, its family/model numbers and its widest vector extension (SIMD_LEVELS),
    from /proc/cpuinfo's first processor. The numbers and the extension tell apart CPUs that a cloud
    names alike (one model name for several CPU generations of different speeds)."""
    fields = cpuinfo_fields(cpuinfo)
    out = {"cpu_model": fields.get("model name") or platform.processor() or platform.machine()}
    if "cpu family" in fields and "model" in fields:
        out["cpu_family_model"] = f"{fields['cpu family']}/{fields['model']}"
    if "flags" in fields:
        flags = set(fields["flags"].split())
        out["cpu_simd"] = next((name for flag, name in SIMD_LEVELS if flag in flags), "SSE")
    return out


def cpu_label(m: dict[str, Any]) -> str:
    """The CPU of a machine.json as reports name it: model name, with family/model and vector
    extension where recorded (older machine.json files have the name only)."""
    extra = []
    if m.get("cpu_family_model"):
        extra.append(f"family/model {m['cpu_family_model']}")
    if m.get("cpu_simd"):
        extra.append(str(m["cpu_simd"]))
    return str(m.get("cpu_model") or "-") + (f" ({', '.join(extra)})" if extra else "")


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
        **cpu_identity(),
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
    return (
        f"{cpu_label(m)}, {m.get('cpu_count', '?')} CPUs{mem}{gpus}; {m.get('os', '?')}; Python {m.get('python', '?')}"
    )
