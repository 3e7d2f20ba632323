"""The package version, in a module of its own: the trainer writes it into checkpoints and
imports it from here, not from the package root that imports the trainer."""

__version__ = "0.1.0"
