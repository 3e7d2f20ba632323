"""`python -m wppg ...`: the same commands as the `wppg` script."""

from wppg.cli import _entry

if __name__ == "__main__":
    _entry()
