"""Safety of a run directory: one writer at a time (a lock file), writability, stale temp files.

Two processes training into one directory would interleave their logs and overwrite each
other's checkpoints, so a writer holds `<run>/.lock` (created with O_EXCL, holding its pid and
host) while it trains. A lock whose process is gone (same host, pid not alive) is stale and is
taken over; a lock of another host cannot be checked and is respected.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, ClassVar, Self

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory's lock."""


class RunDirError(ValueError):
    """A run directory cannot be created or written."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    try:
        # A zombie (exited, not yet reaped) still answers kill(0) but holds no lock.
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def check_writable(run_dir: str | Path, what: str = "run directory") -> Path:
    """Create `run_dir` if needed and check that files can be written there, or raise `RunDirError`."""
    run_dir = Path(run_dir)
    if str(run_dir) == "":
        raise RunDirError(f"the {what} is an empty path")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError as e:
        raise RunDirError(f"cannot use {run_dir} as the {what}: {e.filename or run_dir} is not a directory") from e
    except NotADirectoryError as e:
        raise RunDirError(f"cannot use {run_dir} as the {what}: a part of its path is not a directory ({e})") from e
    except OSError as e:
        raise RunDirError(f"cannot write to the {what} {run_dir}: {e.strerror or e}") from e
    return run_dir


def _holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process (the lock file is unreadable)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("time", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {started})"


class RunLock:
    """The lock of one run directory; re-entrant within a process (`with RunLock(d): ...`)."""

    _held: ClassVar[dict[Path, int]] = {}

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir).absolute() / LOCK_NAME

    def acquire(self) -> Self:
        """Take the lock, replacing a stale one; raises `RunLockedError` naming a live holder."""
        if self._held.get(self.path):
            self._held[self.path] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if holder is None and time.time() - self._mtime() < 5:
                    time.sleep(0.2)  # another process is writing its lock file right now
                    holder = _holder(self.path)
                if self._stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(
                    f"{self.path.parent} is in use by {_describe(holder)}: two processes must not write one run. "
                    f"Wait for it to finish, or use another --out. If no such process runs, delete {self.path}."
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held[self.path] = 1
            return self
        raise RunLockedError(f"could not take the lock {self.path}: it keeps being re-created")

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    @staticmethod
    def _stale(holder: dict[str, Any] | None) -> bool:
        if holder is None:
            return False
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell whether a process of another host lives
        pid = holder.get("pid")
        if pid == os.getpid():
            return True  # this process holds no lock on it (`_held` says so): a leftover
        return isinstance(pid, int) and not pid_alive(pid)

    def release(self) -> None:
        count = self._held.get(self.path, 0)
        if count > 1:
            self._held[self.path] = count - 1
            return
        self._held.pop(self.path, None)
        if count == 1 and (_holder(self.path) or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temp_files(directory: str | Path, name: str) -> list[Path]:
    """Delete `.<name>.tmp-<pid>` files of processes that are gone (a write killed midway);
    returns the removed paths. Files of live processes (a save in progress) are kept."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.glob(f".{name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                p.unlink()
                removed.append(p)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
    return removed
