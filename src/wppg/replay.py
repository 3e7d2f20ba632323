"""Uniform replay buffer on the host (NumPy), with an exact state for checkpoints."""

from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """Ring buffer of transitions. `terminated` excludes time-limit truncation, so the critic
    bootstraps through truncated episode ends.

    A transition is stored as one row [obs, action, reward, next_obs, terminated] of a single
    float32 array, so a minibatch is one gather of contiguous rows rather than one per field.
    `data` gives each field as a view of that array.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity = int(capacity)
        # Column(s) of each field in a row: a slice for vectors, a plain index for the scalars
        # (reward, terminated), so that reading a field gives [n, width] or [n] directly.
        widths = {"obs": obs_dim, "action": act_dim, "reward": None, "next_obs": obs_dim, "terminated": None}
        self._columns: dict[str, slice | int] = {}
        start = 0
        for name in FIELDS:
            width = widths[name]
            self._columns[name] = start if width is None else slice(start, start + width)
            start += 1 if width is None else width
        self.rows = np.zeros((self.capacity, start), np.float32)
        self.ptr = 0
        self.size = 0

    def _fields(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: rows[..., col] for name, col in self._columns.items()}

    @property
    def data(self) -> dict[str, np.ndarray]:
        """Every field over the whole capacity, as views: obs [capacity, obs_dim], reward [capacity], ..."""
        return self._fields(self.rows)

    def add(self, **batch: np.ndarray) -> None:
        """Add n transitions given as arrays with a leading axis n."""
        n = len(batch["reward"])
        idx = (self.ptr + np.arange(n)) % self.capacity
        new = np.empty((n, self.rows.shape[1]), np.float32)
        for name, col in self._columns.items():
            new[:, col] = batch[name]
        self.rows[idx] = new
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, rng: np.random.Generator, n_batches: int, batch_size: int) -> dict[str, np.ndarray]:
        """n_batches minibatches drawn uniformly with replacement: arrays [n_batches, batch_size, ...]."""
        idx = rng.integers(0, self.size, size=(n_batches, batch_size))
        return self._fields(np.take(self.rows, idx, axis=0))

    def state(self) -> dict[str, np.ndarray]:
        """The filled part of the buffer and its pointers (what a checkpoint stores), field by field."""
        out = {name: np.ascontiguousarray(arr) for name, arr in self._fields(self.rows[: self.size]).items()}
        out["ptr"] = np.asarray(self.ptr)
        out["size"] = np.asarray(self.size)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        size, ptr = int(state["size"]), int(state["ptr"])
        if not 0 <= size <= self.capacity:
            raise ValueError(f"checkpoint buffer holds {size} transitions but capacity is {self.capacity}")
        if not 0 <= ptr < self.capacity or (size < self.capacity and ptr != size):
            raise ValueError(f"checkpoint buffer pointer {ptr} does not fit its size {size} (capacity {self.capacity})")
        view = self.data
        for name in FIELDS:
            saved = np.asarray(state[name])
            if saved.dtype != np.float32 or saved.shape != (size,) + view[name].shape[1:]:
                raise ValueError(
                    f"buffer field {name} has shape {saved.shape} and dtype {saved.dtype} in the checkpoint, "
                    f"expected {(size,) + view[name].shape[1:]} float32"
                )
            view[name][:size] = saved
        self.ptr, self.size = ptr, size
