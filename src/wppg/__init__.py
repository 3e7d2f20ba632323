"""Wasserstein proximal policy gradient in JAX."""

__version__ = "0.1.0"
