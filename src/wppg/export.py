"""Deploy a trained policy without wppg: an ONNX file (run it with onnxruntime), or its weights as
a NumPy `.npz` for the NumPy-only forward pass of docs/guide/export.md.

`export_onnx` traces `Agent.policy` with jax2onnx (`pip install 'wppg[export]'`): the graph takes
obs [B, obs_dim] float32 (and, with `noise_input`, the standard-normal latent [B, noise_dim]) and
returns actions [B, act_dim] in the env's action box; the parameters are constants of the graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from wppg.agent import Agent

OBS, NOISE, ACTION = "obs", "noise", "action"
"""The ONNX graph's input and output names."""


class ExportError(ValueError):
    """A policy that cannot be exported in the asked format, or an exporter that is not installed."""


def _inputs(agent: Agent, noise_input: bool) -> list[tuple[str, int]]:
    shapes = [("B", agent.env_info.obs_dim)]
    if noise_input:
        shapes.append(("B", agent.noise_dim))
    return shapes


def export_onnx(agent: Agent, path: str | Path, noise_input: bool = False) -> Path:
    """Write the agent's deterministic policy (the mode), or with `noise_input` the policy of a given
    latent (`Agent.policy(noise_input=True)`), as an ONNX model with a dynamic batch axis."""
    try:
        from jax2onnx import to_onnx
    except ImportError as e:
        raise ExportError("ONNX export needs jax2onnx: pip install 'wppg[export]'") from e
    params = agent.policy_params()
    if noise_input:
        g = agent.policy(noise_input=True)
        fn, names = (lambda obs, noise: g(params, obs, noise)), [OBS, NOISE]
    else:
        f = agent.policy(deterministic=True)
        fn, names = (lambda obs: f(params, obs)), [OBS]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = to_onnx(
        fn, _inputs(agent, noise_input), model_name=f"wppg_{agent.variant}", input_names=names, output_names=[ACTION]
    )
    meta = {"wppg_variant": agent.variant, "env_id": str(agent.env_info.env_id), "noise_input": str(noise_input)}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    path.write_bytes(model.SerializeToString())
    return path


def onnx_difference(agent: Agent, path: str | Path, n: int = 64, seed: int = 0) -> float:
    """Largest absolute difference between the ONNX model at `path` (run by onnxruntime) and the
    agent's own policy, on `n` standard-normal observations (and latents, for a noise-input model)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError("checking an ONNX file needs onnxruntime: pip install 'wppg[export]'") from e
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, agent.env_info.obs_dim)).astype(np.float32)
    params = agent.policy_params()
    if len(runtime.get_inputs()) == 2:
        noise = rng.standard_normal((n, agent.noise_dim)).astype(np.float32)
        got = runtime.run([ACTION], {OBS: obs, NOISE: noise})[0]
        want = np.asarray(agent.policy(noise_input=True)(params, obs, noise))
    else:
        got = runtime.run([ACTION], {OBS: obs})[0]
        want = np.asarray(agent.policy(deterministic=True)(params, obs))
    return float(np.max(np.abs(got - want)))


def _dense_index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def policy_weights(agent: Agent) -> dict[str, np.ndarray]:
    """The policy's weights in the flat layout of the NumPy forward pass (docs/guide/export.md):
    `kind` ('gaussian' or 'implicit'), `scale`, `bias`, `n_layers`, and W{i}, b{i} for the dense
    layers in order; an implicit policy adds `z_layer`, the hidden layer the latent enters, and Wz,
    the latent's part of that layer (no bias)."""
    net = getattr(agent.algorithm, "policy", None)
    kind = {"GaussianPolicy": "gaussian", "ImplicitPolicy": "implicit"}.get(type(net).__name__)
    tree = agent.policy_params().get("params", {})
    if kind is None or len(tree) != 1:
        raise ExportError(f"{agent.variant}'s policy has no NumPy export: export it to ONNX")
    ((_, layers),) = tree.items()
    dense = sorted((k for k in layers if k.startswith("Dense_")), key=_dense_index)
    if kind == "implicit":
        if set(layers) - set(dense) != {"state_in", "sample_in"}:
            raise ExportError(f"unknown layout of the implicit policy's layers {sorted(layers)}")
        # The latent enters the first hidden layer ([s, z]) or the last (latent_input='last').
        z_layer = 0 if getattr(net, "latent_input", "first") == "first" else len(dense) - 1
        dense.insert(z_layer, "state_in")
    elif set(layers) != set(dense):
        raise ExportError(f"unknown layout of the Gaussian policy's layers {sorted(layers)}")
    out: dict[str, np.ndarray] = {
        "kind": np.asarray(kind),
        "scale": np.asarray(agent.env_info.bounds.scale, np.float32),
        "bias": np.asarray(agent.env_info.bounds.bias, np.float32),
        "n_layers": np.asarray(len(dense)),
    }
    for i, name in enumerate(dense):
        out[f"W{i}"] = np.asarray(layers[name]["kernel"], np.float32)
        out[f"b{i}"] = np.asarray(layers[name]["bias"], np.float32)
    if kind == "implicit":
        out["Wz"] = np.asarray(layers["sample_in"]["kernel"], np.float32)
        out["z_layer"] = np.asarray(z_layer)
    return out


def export_weights(agent: Agent, path: str | Path) -> Path:
    """Write `policy_weights` to an `.npz` (plain arrays: `np.load(path)` needs no pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **policy_weights(agent))
    return path


def numpy_policy(w: Any, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """The NumPy-only forward pass of docs/guide/export.md, on the weights of `policy_weights`:
    the mode (noise=None) or the action of a given standard-normal latent, for obs [B, obs_dim]."""
    x = np.atleast_2d(np.asarray(obs, np.float32))
    n = int(w["n_layers"])
    z_layer = int(w["z_layer"]) if str(w["kind"]) == "implicit" else -1
    for i in range(n - 1):  # the hidden layers, ReLU
        h = x @ w[f"W{i}"] + w[f"b{i}"]
        if i == z_layer and noise is not None:
            h = h + np.atleast_2d(noise) @ w["Wz"]  # z = 0 (the mode) adds nothing
        x = np.maximum(h, 0.0)
    pre = x @ w[f"W{n - 1}"] + w[f"b{n - 1}"]
    if str(w["kind"]) == "gaussian":
        mu, log_std = np.split(pre, 2, axis=-1)
        pre = mu if noise is None else mu + np.exp(np.clip(log_std, -5.0, 2.0)) * np.atleast_2d(noise)
    return w["scale"] * np.tanh(pre) + w["bias"]  # squash into the action box


def export(agent: Agent, path: str | Path, noise_input: bool = False) -> Path:
    """`export_weights` for a path ending in .npz, else `export_onnx`."""
    if Path(path).suffix == ".npz":
        if noise_input:
            raise ExportError("--noise-input is for ONNX files; an .npz holds the weights (noise is an argument)")
        return export_weights(agent, path)
    return export_onnx(agent, path, noise_input=noise_input)


def describe(path: Path, agent: Agent, noise_input: bool) -> str:
    """One line on what was written: its inputs and outputs."""
    inputs = f"{OBS} [B, {agent.env_info.obs_dim}]" + (f", {NOISE} [B, {agent.noise_dim}]" if noise_input else "")
    info = {"variant": agent.variant, "env": agent.env_info.env_id}
    if path.suffix == ".npz":
        return f"wrote {path}: weights for the NumPy forward pass (docs/guide/export.md); {json.dumps(info)}"
    return f"wrote {path}: inputs {inputs} -> {ACTION} [B, {agent.env_info.bounds.dim}]; {json.dumps(info)}"
