"""Uniform replay buffer on the host (NumPy), with an exact state for checkpoints."""

from __future__ import annotations

import numpy as np

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """Ring buffer of transitions. `terminated` excludes time-limit truncation, so the critic
    bootstraps through truncated episode ends."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity = int(capacity)
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros((capacity,), np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "terminated": np.zeros((capacity,), np.float32),
        }
        self.ptr = 0
        self.size = 0

    def add(self, **batch: np.ndarray) -> None:
        """Add n transitions given as arrays with a leading axis n."""
        n = len(batch["reward"])
        idx = (self.ptr + np.arange(n)) % self.capacity
        for name in FIELDS:
            self.data[name][idx] = batch[name]
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, rng: np.random.Generator, n_batches: int, batch_size: int) -> dict[str, np.ndarray]:
        """n_batches minibatches drawn uniformly with replacement: arrays [n_batches, batch_size, ...]."""
        idx = rng.integers(0, self.size, size=(n_batches, batch_size))
        return {name: arr[idx] for name, arr in self.data.items()}

    def state(self) -> dict[str, np.ndarray]:
        """The filled part of the buffer and its pointers (what a checkpoint stores)."""
        out = {name: arr[: self.size] for name, arr in self.data.items()}
        out["ptr"] = np.asarray(self.ptr)
        out["size"] = np.asarray(self.size)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"checkpoint buffer holds {size} transitions but capacity is {self.capacity}")
        for name in FIELDS:
            self.data[name][:size] = state[name]
        self.ptr, self.size = int(state["ptr"]), size
