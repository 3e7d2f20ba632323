"""Safety of a run directory: one writer at a time (a lock), run files written without following
links, a marker that tells a wppg run from any other folder, stale temp files.

Two processes training into one directory would interleave their logs and overwrite each
other's checkpoints, so a writer holds an exclusive `flock` on `<run>/.lock` while it trains.
The kernel releases the lock when the process dies, however it dies, so a stale lock needs no
guess about whether a process lives; the file's contents (pid, host, start time) serve only the
message of a refused writer. Every run file is written through `write_file` / `open_append`,
which never follow a symbolic link planted in the directory (see docs/guide/security.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import socket
import time
from pathlib import Path
from typing import IO, Any, ClassVar, Self

LOCK_NAME = ".lock"
RUN_MARKER = ".wppg-run"
"""Written into every run directory wppg trains into; `--overwrite` replaces only such directories."""

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<host>[^/]*)-(?P<pid>\d+)$")


class RunLockedError(RuntimeError):
    """Another live process holds the run directory's lock."""


class RunDirError(ValueError):
    """A run directory cannot be created or written, or a run file in it is a symbolic link."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31  # it exists, owned by another user (an impossible id does not)
    try:
        # A zombie (exited, not yet reaped) still answers kill(0) but holds no lock.
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def temp_path(path: Path) -> Path:
    """The temporary file a write of `path` goes through: `.<name>.tmp-<host>-<pid>` beside it."""
    return path.with_name(f".{path.name}.tmp-{_host()}-{os.getpid()}")


def refuse_link(path: str | Path) -> None:
    """Raise `RunDirError` if `path` is a symbolic link (a run file must be a plain file)."""
    if os.path.islink(path):
        raise RunDirError(f"{path} is a symbolic link: wppg does not write run files through links; remove it")


def write_file(path: str | Path, data: str | bytes, fsync: bool = False) -> Path:
    """Write a run file atomically: a new temp file (O_EXCL | O_NOFOLLOW) beside it, then one rename,
    which replaces the name and never writes through a link. A crash keeps the old file whole."""
    path = Path(path)
    refuse_link(path)
    tmp = temp_path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:  # our own leftover of a write that failed midway
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """`write_file` of `obj` as indented JSON."""
    return write_file(path, json.dumps(obj, indent=2))


def open_append(path: str | Path) -> IO[str]:
    """Open a run file for appending text, without following a link (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            refuse_link(path)
        raise
    return os.fdopen(fd, "a", newline="")


def check_writable(run_dir: str | Path, what: str = "run directory") -> Path:
    """Create `run_dir` if needed and check that files can be written there, or raise `RunDirError`."""
    run_dir = Path(run_dir)
    if str(run_dir) == "":
        raise RunDirError(f"the {what} is an empty path")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{_host()}-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        probe.unlink()
    except FileExistsError as e:
        raise RunDirError(f"cannot use {run_dir} as the {what}: {e.filename or run_dir} is not a directory") from e
    except NotADirectoryError as e:
        raise RunDirError(f"cannot use {run_dir} as the {what}: a part of its path is not a directory ({e})") from e
    except OSError as e:
        raise RunDirError(f"cannot write to the {what} {run_dir}: {e.strerror or e}") from e
    return run_dir


def _describe(text: str | None) -> str:
    """Who holds a lock, from the lock file's text; any content that is not a holder record is named."""
    try:
        holder = json.loads(text) if text else None
    except (ValueError, RecursionError):
        holder = None
    if not isinstance(holder, dict):
        return "another process (the lock file holds no valid holder record)"
    pid, host, started = holder.get("pid"), holder.get("host"), holder.get("time")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(host, str):
        return "another process (the lock file holds no valid holder record)"
    when = ""
    if isinstance(started, (int, float)) and not isinstance(started, bool) and math.isfinite(started):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            when = time.strftime(" (since %Y-%m-%d %H:%M:%S)", time.localtime(started))
    return f"pid {pid} on {host[:100]}{when}"


class RunLock:
    """The lock of one run directory; re-entrant within a process (`with RunLock(d): ...`).

    Taking it also marks the directory as a wppg run (`RUN_MARKER`) and removes the temp files
    that writers of this host killed midway left there: only the holder cleans."""

    _held: ClassVar[dict[Path, tuple[int, int]]] = {}

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir).absolute() / LOCK_NAME

    def acquire(self) -> Self:
        """Take the lock; raises `RunLockedError` naming the live holder."""
        held = self._held.get(self.path)
        if held:
            self._held[self.path] = (held[0], held[1] + 1)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refuse_link(self.path)
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    refuse_link(self.path)
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                text = _read_fd(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise RunLockedError(
                        f"{self.path.parent} is in use by {_describe(text)}: two processes must not write one run. "
                        "Wait for it to finish, or use another --out."
                    ) from None
                raise RunDirError(f"cannot lock {self.path}: {e.strerror or e} (the file system needs flock)") from e
            # The holder before us may have removed the file between our open and our flock:
            # then we locked a file no one else will see; start again on the current one.
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
            self._held[self.path] = (fd, 1)
            self._on_acquire()
            return self
        raise RunLockedError(f"could not take the lock {self.path}: it keeps being replaced")

    def _on_acquire(self) -> None:
        run_dir = self.path.parent
        marker = run_dir / RUN_MARKER
        if not marker.exists() and not marker.is_symlink():
            write_file(marker, "a run directory written by wppg\n")
        for d in (run_dir, run_dir / "checkpoints"):
            with contextlib.suppress(OSError):  # a read-only directory: leave them
                remove_stale_temp_files(d)

    def release(self) -> None:
        fd, count = self._held.get(self.path, (-1, 0))
        if count > 1:
            self._held[self.path] = (fd, count - 1)
            return
        self._held.pop(self.path, None)
        if count == 1:
            # Unlink while still holding the flock: a waiter that opened the old file then sees
            # another inode and starts again (see `acquire`).
            with contextlib.suppress(OSError):
                if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    self.path.unlink()
            os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_fd(fd: int) -> str | None:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        return None


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete the temp files (`.<name>.tmp-<host>-<pid>`) of writers of this host that are gone (a
    write killed midway); returns the removed paths. Called by the lock holder only: files of other
    hosts, whose processes cannot be checked, and of live processes are kept."""
    removed: list[Path] = []
    directory = Path(directory)
    if not directory.is_dir() or directory.is_symlink():
        return removed
    host = _host()
    for p in directory.iterdir():
        m = _TMP.match(p.name)
        if m is None or m["host"] != host:
            continue
        pid = int(m["pid"])
        if pid != os.getpid() and not pid_alive(pid):
            try:
                p.unlink()
                removed.append(p)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
    return removed


# --- what --overwrite may remove -------------------------------------------------------------------
RUN_FILES = ("config.json", "train.csv", "eval.csv", "summary.json", "eval_result.json")
"""The files of a run that `remove_run` deletes (the marker and the lock stay: the folder stays a run)."""
RUN_DIR_FILES = {"checkpoints": re.compile(r"^(last\.npz|\.last\.npz\.tmp-.*)$"),
                 "tb": re.compile(r"^events\.out\.tfevents\..*"),
                 "videos": re.compile(r"^eval\.gif$")}  # fmt: skip


def is_run(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a run wppg wrote (its marker, a plain file)."""
    marker = Path(run_dir) / RUN_MARKER
    return marker.is_file() and not marker.is_symlink()


def remove_run(run_dir: str | Path) -> list[Path]:
    """Delete the files a wppg run wrote into `run_dir` and nothing else: its run files, and in
    checkpoints/, tb/ and videos/ the files of the names wppg gives; a folder is removed only once
    empty. Raises `RunDirError` unless `run_dir` carries the marker of a wppg run."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise RunDirError(
            f"{run_dir} holds files but no {RUN_MARKER} marker, so it is not a run wppg wrote: "
            "use another --out, or empty it yourself"
        )
    removed = []
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(p)
    for sub, pattern in RUN_DIR_FILES.items():
        d = run_dir / sub
        if d.is_symlink() or not d.is_dir():
            continue
        for p in d.iterdir():
            if pattern.match(p.name) and (p.is_file() or p.is_symlink()):
                p.unlink()
                removed.append(p)
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: a user's file there stays
    return removed
