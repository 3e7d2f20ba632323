"""Command line: `wppg train|resume|eval|plot|lab ...`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from wppg.lab.cli import main as lab_main

        return lab_main(argv[1:])
    raise SystemExit("usage: wppg {train,resume,eval,plot,lab} ...")
