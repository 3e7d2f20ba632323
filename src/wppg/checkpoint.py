"""Atomic, self-describing checkpoints: one .npz file of named arrays plus a JSON header.

Loading never executes code from the file and allocates nothing the file alone decides: the
header is JSON, parsed under a size cap and checked against `HEADER_SCHEMA` (types, ranges,
depth, the memory its sizes imply) before anything is built from it; every array's shape and
dtype are read from its .npy header and checked (against the model's when the caller gives
them, `Expect`) before its data are read, with `allow_pickle=False`. The env snapshots inside
are plain data (see `wppg.envs.env_state`); a pickled env snapshot (envs whose state is not plain
data) is unpickled only when the caller passes trust=True (see `wppg.trainer.BaseTrainer.load_state`).
Threat model: docs/guide/security.md.
"""

from __future__ import annotations

import errno
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization, traverse_util

FORMAT = "wppg-checkpoint-v1"
_META = "__meta__"

MAX_HEADER_BYTES = 64 * 2**20
"""Cap on the JSON header's size."""
MAX_DEPTH = 16
"""Cap on the nesting depth of the JSON header."""
MAX_BLOB_BYTES = 256 * 2**20
"""Cap on an array the model does not size (env snapshots, pickles)."""
BYTES_PER_PARAMETER = 32
"""Memory counted per network parameter when a header's layer widths are checked against this
machine's memory: float32 parameters, target copies, Adam's two moments, gradients."""
_INT_CAP = 2**53


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or incompatible with this version of the code."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (disk full, no permission); the previous one is kept."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def _flatten(tree: dict[str, Any]) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict(serialization.to_state_dict(tree), sep="/")
    return {k: np.asarray(v) for k, v in flat.items()}


def save(path: str | os.PathLike, meta: dict[str, Any], tree: dict[str, Any]) -> Path:
    """Write `tree` (nested dicts / pytrees of arrays) and `meta` to `path` atomically.

    The data go to a new temporary file in the same directory (never through a link), are flushed
    to disk, and replace the old file in one rename, so a crash mid-save never leaves a
    half-written checkpoint. A failed write raises `CheckpointWriteError` (an OSError) and leaves
    the previous checkpoint as it was.
    """
    from wppg.rundir import RunDirError, refuse_link, temp_path

    path = Path(path)
    arrays = _flatten(tree)
    header = {"format": FORMAT, **meta}
    arrays[_META] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        refuse_link(path)
        tmp.unlink(missing_ok=True)  # our own leftover of a failed save
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RunDirError) as e:
        kept = f"the previous checkpoint {path} is kept unchanged" if path.is_file() else "no checkpoint was written"
        code = getattr(e, "errno", None)
        hint = " (disk full: free some space)" if code == errno.ENOSPC else ""
        message = f"could not write checkpoint {path}: {getattr(e, 'strerror', None) or e}{hint}; {kept}"
        raise CheckpointWriteError(message, code) from e
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the directory itself is gone or not one: the error above says so
            pass
    return path


# --- the header's schema -----------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and (not _is_int(v) or abs(v) <= _INT_CAP)


def _count(lo: int = 0, hi: int = _INT_CAP) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if _is_int(v) and lo <= v <= hi else f"must be an integer in [{lo}, {hi}], got {_short(v)}"

    return check


def _string(max_len: int = 1000, optional: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if optional and v is None:
            return None
        return None if isinstance(v, str) and len(v) <= max_len else f"must be a string (at most {max_len} characters)"

    return check


def _numbers(max_len: int, finite: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not isinstance(v, list) or len(v) > max_len or not all(_is_num(x) for x in v):
            return f"must be a list of at most {max_len} numbers"
        if finite and not all(math.isfinite(x) for x in v):
            return "must hold finite numbers"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {_short(v)}"


def _train_config(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    for k, x in v.items():
        if not _is_int(x) or not 0 <= x <= _INT_CAP:
            return f"field {k!r} must be an integer in [0, 2**53], got {_short(x)}"
    return None


def _algo_config(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    for k, x in v.items():
        items = x if isinstance(x, list) else [x]
        if len(items) > 64 or not all(y is None or isinstance(y, (bool, str)) or _is_num(y) for y in items):
            return f"field {k!r} must be a number, string, null or a short list of them, got {_short(x)}"
    return None


_EVAL_KEYS = ("step", "return_stochastic", "return_stochastic_std", "return_mode", "return_mode_std")


def _last_eval(v: Any) -> str | None:
    if not isinstance(v, dict) or len(v) > 64:
        return "must be an object"
    if v and not all(k in v for k in _EVAL_KEYS):
        return f"must be empty or hold {list(_EVAL_KEYS)}"
    if not all(isinstance(k, str) and _is_num(x) for k, x in v.items()):
        return "must map names to numbers"
    return None if not v or _is_int(v["step"]) and v["step"] >= 0 else "'step' must be a non-negative integer"


def _np_rng(v: Any) -> str | None:
    expected = np.random.default_rng(0).bit_generator.state
    if not isinstance(v, dict) or v.get("bit_generator") != expected["bit_generator"]:
        return f"must be the state of a {expected['bit_generator']} generator"
    state = v.get("state")
    if not isinstance(state, dict) or set(state) != set(expected["state"]):
        return f"'state' must hold {sorted(expected['state'])}"
    if not all(_is_int(x) and 0 <= x < 2**128 for x in state.values()):
        return "'state' must hold 128-bit unsigned integers"
    if v.get("has_uint32") not in (0, 1) or not (_is_int(v.get("uinteger")) and 0 <= v["uinteger"] < 2**32):
        return "'has_uint32' must be 0 or 1 and 'uinteger' a 32-bit unsigned integer"
    return None


def _spaces(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    if not (_is_int(v.get("obs_dim")) and 1 <= v["obs_dim"] <= 2**24):
        return "'obs_dim' must be an integer in [1, 2**24]"
    low, high = v.get("action_low"), v.get("action_high")
    for name, x in (("action_low", low), ("action_high", high)):
        problem = _numbers(2**16, finite=True)(x)
        if problem or not x:
            return f"{name!r} {problem or 'must not be empty'}"
    return None if len(low) == len(high) else "'action_low' and 'action_high' must have one length"


def _log_window(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    metrics, returns = v.get("metrics", {}), v.get("returns", [])
    if not isinstance(metrics, dict) or not all(not _numbers(10**6)(x) for x in metrics.values()):
        return "'metrics' must map names to lists of numbers"
    problem = _numbers(10**6)(returns)
    return f"'returns' {problem}" if problem else None


def _warnings(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) <= 100 and all(isinstance(w, str) and len(w) <= 10_000 for w in v)
    return None if ok else "must be a list of at most 100 strings"


HEADER_SCHEMA: dict[str, tuple[bool, Callable[[Any], str | None]]] = {
    "format": (True, _string()),
    "variant": (True, _string(100)),
    "preset": (False, _string(100, optional=True)),
    "algo": (False, _string(100)),
    "algo_config": (True, _algo_config),
    "train_config": (True, _train_config),
    "env_id": (False, _string(300, optional=True)),
    "wppg_version": (False, _string(100)),
    "spaces": (False, _spaces),
    "env_steps": (True, _count()),
    "iterations": (True, _count()),
    "n_evals": (True, _count()),
    "last_eval": (True, _last_eval),
    "np_rng": (True, _np_rng),
    "has_envs": (False, _bool),
    "target_steps": (False, lambda v: None if v is None else _count(1)(v)),
    "log_window": (False, _log_window),
    "warnings": (False, _warnings),
}
"""Each header field: (required, check returning the problem or None). Other fields (a benchmark's
additions) are kept as they are, under the caps on size and depth."""


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _depth(v: Any) -> int:
    """Nesting depth of a JSON value, without recursion (a deep header must not overflow the stack)."""
    deepest, stack = 0, [(v, 1)]
    while stack:
        x, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
    return deepest


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def validate_header(meta: Any, where: str = "checkpoint") -> dict[str, Any]:
    """Check a checkpoint header against `HEADER_SCHEMA`, then the memory its sizes imply (the replay
    buffer, the layer widths) against this machine's; returns it, or raises `CheckpointError`
    naming the field."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where} has a corrupt header: a JSON object was expected, got {type(meta).__name__}")
    if _depth(meta) > MAX_DEPTH:
        raise CheckpointError(f"{where} has a corrupt header: nested deeper than {MAX_DEPTH} levels")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} has format {_short(meta.get('format'))}; this version of wppg reads {FORMAT!r}")
    for name, (required, check) in HEADER_SCHEMA.items():
        if name not in meta:
            if required:
                raise CheckpointError(f"{where} has an incomplete header: field {name!r} is missing")
            continue
        problem = check(meta[name])
        if problem:
            raise CheckpointError(f"{where} has a bad header: {name!r} {problem}")
    obs_dim = meta.get("spaces", {}).get("obs_dim", 1)
    act_dim = len(meta.get("spaces", {}).get("action_low", [0]))
    train = meta["train_config"]
    buffer_bytes = train.get("buffer_size", 0) * (2 * obs_dim + act_dim + 2) * 4
    if buffer_bytes > _physical_memory():
        raise CheckpointError(
            f"{where} has a bad header: 'train_config.buffer_size' {train['buffer_size']} needs "
            f"{buffer_bytes / 2**30:.0f} GiB, more than this machine's memory"
        )
    for k, widths in meta["algo_config"].items():
        if isinstance(widths, list) and widths and all(_is_int(w) for w in widths):
            sizes = [obs_dim + act_dim, *widths, 2 * act_dim]
            params = sum(a * b for a, b in zip(sizes, sizes[1:]))
            if min(widths) < 0 or params * BYTES_PER_PARAMETER > _physical_memory():
                raise CheckpointError(
                    f"{where} has a bad header: 'algo_config.{k}' {_short(widths)} implies {params} parameters per "
                    "network, more than this machine's memory holds"
                )
    return meta


# --- reading ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """What an array of the checkpoint must be: `shape` exactly, or, with `leading_max`, any
    length up to it along the first axis (the filled part of a buffer) and `shape[1:]` after."""

    shape: tuple[int, ...]
    dtype: np.dtype
    leading_max: int | None = None

    def fits(self, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        if dtype != self.dtype or len(shape) != len(self.shape):
            return False
        if self.leading_max is None:
            return shape == self.shape
        return shape[0] <= self.leading_max and shape[1:] == self.shape[1:]

    def describe(self) -> str:
        if self.leading_max is None:
            return str(self.shape)
        return f"(<= {self.leading_max}, {', '.join(map(str, self.shape[1:]))})"


def expect_tree(tree: Any, prefix: str = "") -> dict[str, Expect]:
    """`Expect`s of exactly the arrays of `tree` (as `save` flattens it), under `prefix`."""
    return {f"{prefix}{k}": Expect(v.shape, v.dtype) for k, v in _flatten(tree).items()}


_WHAT = {"agent": "agent state", "buffer": "replay buffer", "rollout": "rollout", "pool": "env pool"}


def _members(path: Path, zf: zipfile.ZipFile) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """Every array's (shape, dtype, data bytes), from its .npy header only."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise CheckpointError(f"checkpoint {path} holds {info.filename!r}, which is not an array")
        name = info.filename[:-4]
        with zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except (ValueError, EOFError, SyntaxError, TypeError) as e:
                raise CheckpointError(f"checkpoint {path}: array {name!r} has a corrupt header ({e})") from e
            header_bytes = f.tell()
        if dtype.hasobject or dtype.kind not in "biufc" or dtype.itemsize == 0:
            raise CheckpointError(f"checkpoint {path}: array {name!r} has dtype {dtype}, not a numeric one")
        nbytes = math.prod(shape) * dtype.itemsize
        if header_bytes + nbytes != info.file_size:
            raise CheckpointError(
                f"checkpoint {path}: array {name!r} claims shape {shape} {dtype} but holds "
                f"{info.file_size - header_bytes} bytes of data"
            )
        out[name] = (tuple(shape), dtype, nbytes)
    return out


def _check_members(
    path: Path, members: dict[str, tuple[tuple[int, ...], np.dtype, int]], expect: dict[str, Expect] | None
) -> None:
    if expect is None:
        total = sum(n for _, _, n in members.values())
        if total > _physical_memory():
            raise CheckpointError(f"checkpoint {path} holds {total / 2**30:.0f} GiB of arrays, more than this memory")
        return
    unexpected = [k for k in members if k != _META and k not in expect]
    if unexpected:
        groups: dict[str, list[str]] = {}
        for k in unexpected:
            groups.setdefault(k.split("/", 1)[0], []).append(k)
        group, keys = next(iter(groups.items()))
        what = _WHAT.get(group, "the data")
        raise CheckpointError(
            f"{what} in the checkpoint does not match the model: unexpected {sorted(keys)[:5]} (checkpoint {path})"
        )
    for k, (shape, dtype, _) in members.items():
        if k == _META:
            continue
        e = expect[k]
        if not e.fits(shape, dtype):
            what = _WHAT.get(k.split("/", 1)[0], "checkpoint")
            if dtype != e.dtype:
                raise CheckpointError(f"{what}: {k} has dtype {dtype} in the checkpoint, {e.dtype} in the model")
            raise CheckpointError(f"{what}: {k} has shape {shape} in the checkpoint, {e.describe()} in the model")


def _resolve(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.npz"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def _corrupt(path: Path, e: BaseException) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is corrupt or not a wppg checkpoint ({type(e).__name__}: {e})")


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's header, checked by `validate_header`; reads no array."""
    path = _resolve(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return _header(path, zf)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise _corrupt(path, e) from e


def _header(path: Path, zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = zf.getinfo(_META + ".npy")
    except KeyError:
        raise CheckpointError(f"checkpoint {path} has no header: not a wppg checkpoint") from None
    if info.file_size > MAX_HEADER_BYTES:
        raise CheckpointError(f"checkpoint {path} has a header of {info.file_size} bytes (at most {MAX_HEADER_BYTES})")
    with zf.open(info) as f:
        raw = np.lib.format.read_array(f, allow_pickle=False)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"checkpoint {path} has a corrupt header: not a byte string")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {path} has a corrupt header: {type(e).__name__}: {str(e)[:200]}") from e
    return validate_header(meta, f"checkpoint {path}")


def load(path: str | os.PathLike, expect: dict[str, Expect] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint: returns (meta, nested dict of NumPy arrays). Executes nothing from the
    file (no pickles). The header is checked first (`validate_header`), then every array's shape
    and dtype from its .npy header against `expect` (when given: an array it does not list is an
    error; one it lists but the file lacks is left to the caller) before any array is read."""
    path = _resolve(path)
    try:
        with zipfile.ZipFile(path) as zf:
            meta = _header(path, zf)
            members = _members(path, zf)
            _check_members(path, members, expect)
            arrays = {}
            for name in members:
                if name != _META:
                    with zf.open(name + ".npy") as f:
                        arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        raise _corrupt(path, e) from e
    return meta, traverse_util.unflatten_dict(arrays, sep="/")


def restore_tree(template: Any, saved: dict[str, Any], what: str) -> Any:
    """Fill a pytree shaped like `template` from saved arrays, checking every shape."""
    expected = _flatten(template)
    got = traverse_util.flatten_dict(saved, sep="/")
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{what} in the checkpoint does not match the model: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for k, v in expected.items():
        if v.shape != np.shape(got[k]):
            raise CheckpointError(f"{what}: {k} has shape {np.shape(got[k])} in the checkpoint, {v.shape} in the model")
        if v.dtype != np.asarray(got[k]).dtype:
            dtype = np.asarray(got[k]).dtype
            raise CheckpointError(f"{what}: {k} has dtype {dtype} in the checkpoint, {v.dtype} in the model")
    # Empty nodes (optax's EmptyState, an algorithm's empty `extra`) hold no arrays and are not
    # stored; put them back so the state dict has the template's structure.
    full = traverse_util.flatten_dict(serialization.to_state_dict(template), sep="/", keep_empty_nodes=True)
    full.update(got)
    return serialization.from_state_dict(template, traverse_util.unflatten_dict(full, sep="/"))
