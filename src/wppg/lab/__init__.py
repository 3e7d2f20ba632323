"""Convergence lab: exact per-state WPG/WPPG updates on small MDPs with continuous actions.

Modules: problems (MDPs and presets), grid (action grid, walls, heat step), transport
(pushforward schemes), evaluation (exact soft evaluation, optimum), updates (WPG, inexact WPG,
SPI, PMD), particles (particle WPG, plug-in entropy), diagnostics (W2, KL, rates, LSI constants),
experiments and cli (`wppg lab ...`). See docs/lab.md.
"""

from wppg.lab.evaluation import GridMDP
from wppg.lab.grid import Grid
from wppg.lab.problems import PRESETS, Problem, ProblemConfig, make_problem
from wppg.lab.updates import QError, make_update, pmd_step, spi_step, wpg_step

__all__ = [
    "GridMDP",
    "Grid",
    "PRESETS",
    "Problem",
    "ProblemConfig",
    "QError",
    "make_problem",
    "make_update",
    "pmd_step",
    "spi_step",
    "wpg_step",
]
