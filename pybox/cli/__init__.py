"""Command line entry point.

``pybox run`` takes a fast path that never imports typer: see
:mod:`pybox.cli.run`. Everything else goes through the typer app.
"""

import sys


def _fast_run(argv: list[str]) -> tuple[list[str], str | None, bool] | None:
    """(run's arguments, --root, --debug) when the command is ``run``; None otherwise."""
    root, debug, i = None, False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--debug":
            debug = True
        elif arg == "--root" and i + 1 < len(argv):
            root = argv[i + 1]
            i += 1
        elif arg.startswith("--root="):
            root = arg.split("=", 1)[1]
        else:
            break
        i += 1
    if i < len(argv) and argv[i] == "run":
        return argv[i + 1 :], root, debug
    return None


def main() -> None:
    fast = _fast_run(sys.argv[1:])
    if fast is not None:
        from pybox.cli.run import run_main

        run_main(*fast)
    from pybox.cli.app import run

    run()
