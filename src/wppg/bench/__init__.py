"""Benchmark harness: suites (TOML specs), a parallel resumable runner (local processes or Ray),
and the Markdown report (`wppg bench run | list | speed`, `wppg report`)."""

from wppg.bench.spec import Run, Spec, SpecError, load_spec, suite_names

__all__ = ["Run", "Spec", "SpecError", "load_spec", "suite_names"]
