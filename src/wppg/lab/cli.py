"""`wppg lab <experiment> --out DIR [options]`; `wppg lab <experiment> --help` lists the options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tyro

from wppg.lab import experiments as ex

COMMANDS: dict[str, tuple[type, Callable[[Any], object]]] = {
    "presets": (ex.PresetsConfig, ex.presets),
    "linear": (ex.LinearConfig, ex.linear),
    "eta-floor": (ex.EtaFloorConfig, ex.eta_floor),
    "eps-floor": (ex.EpsFloorConfig, ex.eps_floor),
    "tau-rate": (ex.TauRateConfig, ex.tau_rate),
    "compare": (ex.CompareConfig, ex.compare),
    "grid": (ex.GridConfig, ex.grid_refinement),
}


def main(argv: list[str]) -> int:
    """Parse `argv` (without the leading 'lab') and run one experiment."""
    cfg = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in COMMANDS.items()},
        prog="wppg lab",
        description="Exact-evaluation convergence lab for WPG/WPPG (no neural networks).",
        args=argv,
    )
    for cls, fn in COMMANDS.values():
        if type(cfg) is cls:
            fn(cfg)
            return 0
    raise AssertionError("unreachable")
