"""argparse for the commands that skip typer (run, build): errors are one line and exit 125."""

from __future__ import annotations

import argparse

__all__ = ["ArgumentError", "Parser"]


class ArgumentError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own exit is status 2 with the usage; pybox's is one line and 125.
        raise ArgumentError(message)
