"""Atomic, self-describing checkpoints: one .npz file of named arrays plus a JSON header.

Loading never executes code from the file: arrays are read with `allow_pickle=False`, the
header is JSON, and the env snapshots inside are plain data (see `wppg.envs.env_state`). The one
exception, a pickled env snapshot (envs whose state is not plain data), is unpickled only when
the caller passes trust=True (see `wppg.trainer.BaseTrainer.load_state`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization, traverse_util

FORMAT = "wppg-checkpoint-v1"
_META = "__meta__"


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

    The data go to a temporary file in the same directory, are flushed to disk, and replace the
    old file in one rename, so a crash mid-save never leaves a half-written checkpoint. A failed
    write raises `CheckpointWriteError` (an OSError) and leaves the previous checkpoint as it was;
    temporary files of writers that were killed midway are removed.
    """
    from wppg.rundir import remove_stale_temp_files

    path = Path(path)
    arrays = _flatten(tree)
    header = {"format": FORMAT, **meta}
    arrays[_META] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent, path.name)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        kept = f"the previous checkpoint {path} is kept unchanged" if path.exists() else "no checkpoint was written"
        hint = " (disk full: free some space)" if e.errno == errno.ENOSPC else ""
        message = f"could not write checkpoint {path}: {e.strerror or e}{hint}; {kept}"
        raise CheckpointWriteError(message, e.errno) from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint: returns (meta, nested dict of NumPy arrays). Executes nothing from the
    file (no pickles); removes temp files of writers killed midway next to it."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.npz"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    from wppg.rundir import remove_stale_temp_files

    with contextlib.suppress(OSError):  # a read-only run directory: leave them
        remove_stale_temp_files(path.parent, path.name)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a wppg checkpoint ({type(e).__name__}: {e})") from e
    if _META not in arrays:
        raise CheckpointError(f"checkpoint {path} has no header: not a wppg checkpoint")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} has a corrupt header: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format')!r}; this version of wppg reads {FORMAT!r}"
        )
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
