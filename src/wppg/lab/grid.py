"""The action grid, its boundary rule, and the heat step.

Cell-centred tensor grid on [-L, L]^d with n cells per axis (spacing h = 2L/n). A policy pi(.|s)
is stored as its cell masses w (summing to 1); its density is w / h^d, piecewise constant, and
the entropy we use is that of the piecewise-constant density (exact differential entropy).

Operators compute their output on an *extended* grid (the same spacing, `pad` extra cells on each
side) and then map it back with `Grid.fold`:
- bounded box (paper 1): reflecting walls by the method of images. Cell j outside the box is
  mirrored into the box (period 2n); this conserves mass exactly and is the no-flux boundary of
  the Fokker-Planck equation;
- unbounded (paper 2): the grid only truncates R^d. Mass outside is dropped and reported as the
  mass-conservation error (`leaked`); the caller renormalises.

Heat step: convolution with the discrete Gaussian kernel K_m = exp(-t) I_m(t), t = var / h^2, per
axis. It is the exact solution of the grid heat equation d_t w = (1/2) Delta_h w at time var, so
it is positive, conserves mass and adds exactly `var` to the variance along each axis for any
var > 0 (a sampled Gaussian kernel does not when sqrt(var) < h). It differs from the Gaussian
convolution of a smooth density by O(h^2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special


class Grid:
    """Cell-centred grid with `n` cells per axis on [-half_width, half_width]^dim."""

    def __init__(self, dim: int, half_width: float, n: int, bounded: bool):
        self.dim, self.half_width, self.n, self.bounded = dim, half_width, n, bounded
        self.h = 2 * half_width / n
        self.axis = -half_width + self.h * (np.arange(n) + 0.5)
        self.edges = -half_width + self.h * np.arange(n + 1)
        self.shape = (n,) * dim
        self.vol = self.h**dim
        mesh = np.meshgrid(*([self.axis] * dim), indexing="ij")
        self.nodes = np.stack([m.ravel() for m in mesh], axis=-1)  # (n^d, d)

    @property
    def size(self) -> int:
        return self.n**self.dim

    def extended_nodes(self, pad: int) -> np.ndarray:
        """Nodes of the grid extended by `pad` cells per side, shape ((n + 2 pad)^d, d)."""
        ax = -self.half_width + self.h * (np.arange(-pad, self.n + pad) + 0.5)
        mesh = np.meshgrid(*([ax] * self.dim), indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def fold(self, ext: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """Map masses on the extended grid (..., n + 2 pad per axis) back to the grid.

        Returns (masses, leaked) with leaked the mass lost per leading index (0 when bounded).
        """
        total = ext.sum(axis=tuple(range(-self.dim, 0)))
        out = ext
        if self.bounded:
            i = np.arange(-pad, self.n + pad) % (2 * self.n)
            i = np.where(i >= self.n, 2 * self.n - 1 - i, i)
            fold = np.zeros((self.n + 2 * pad, self.n))
            fold[np.arange(self.n + 2 * pad), i] = 1.0
            for ax in range(-self.dim, 0):
                out = np.moveaxis(np.moveaxis(out, ax, -1) @ fold, -1, ax)
        else:
            crop = (slice(pad, pad + self.n),) * self.dim
            out = out[(Ellipsis,) + crop]
        return out, total - out.sum(axis=tuple(range(-self.dim, 0)))

    def heat(self, masses: np.ndarray, var: float) -> tuple[np.ndarray, np.ndarray]:
        """Convolve masses (..., *shape) with the heat kernel of variance `var` per axis.

        Returns (masses, leaked); see the module docstring for the kernel and the walls.
        """
        if var <= 0:
            return masses, np.zeros(masses.shape[: masses.ndim - self.dim])
        kernel = discrete_gaussian(var / self.h**2)
        pad = len(kernel) // 2
        widths = [(0, 0)] * (masses.ndim - self.dim) + [(pad, pad)] * self.dim
        ext = np.pad(masses, widths)
        for ax in range(masses.ndim - self.dim, masses.ndim):
            ext = ndimage.convolve1d(ext, kernel, axis=ax, mode="constant")
        return self.fold(ext, pad)


def discrete_gaussian(t: float) -> np.ndarray:
    """Kernel exp(-t) I_m(t), m = -M..M, truncated where it falls below 1e-18, normalised."""
    m_max = int(math.ceil(t + 12 * math.sqrt(t) + 12))
    k = special.ive(np.arange(m_max + 1), t)
    m_max = max(1, int(np.nonzero(k > 1e-18)[0].max()) + 1)
    k = k[: m_max + 1]
    kernel = np.concatenate([k[:0:-1], k])
    return kernel / kernel.sum()
