"""JAX's persistent compilation cache, on by default: a second process that builds the same
networks and updates reads their compiled code from disk instead of compiling it again.

Where: `$WPPG_COMPILE_CACHE_DIR`, else `$XDG_CACHE_HOME/wppg/jax` (default `~/.cache/wppg/jax`).
Off: `WPPG_NO_COMPILE_CACHE=1`. A cache directory the user set for JAX (`JAX_COMPILATION_CACHE_DIR`
or `jax.config`) is left as it is. The folder grows with each new program (a new shape, config or JAX
version) and is never pruned: delete it at any time to reclaim the space.

Processes share it without locking (JAX's default): entries are compressed, so an entry read while
another process writes it fails to decompress, and JAX then compiles the program again (a warning).
JAX's size-limited mode locks the folder, but there one entry without its access-time file (left by a
process stopped mid-write, or by one not in that mode) makes every later write fail: it is not used.
"""

from __future__ import annotations

import os
from pathlib import Path

OFF_ENV = "WPPG_NO_COMPILE_CACHE"
DIR_ENV = "WPPG_COMPILE_CACHE_DIR"


def default_dir() -> Path:
    """`$WPPG_COMPILE_CACHE_DIR`, else `$XDG_CACHE_HOME/wppg/jax` (`~/.cache/wppg/jax`)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "wppg" / "jax"


def enable() -> Path | None:
    """Turn the cache on (see the module docstring); returns its directory, or None when it is off,
    left to the user's own setting, or the directory cannot be created."""
    import jax

    if os.environ.get(OFF_ENV, "").strip() not in ("", "0"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return None
    path = default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Every compilation is cached: start-up is many sub-second compilations.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
