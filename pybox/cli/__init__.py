"""Command line entry point.

``pybox run`` and ``pybox build`` take a fast path that never imports
typer: see :mod:`pybox.cli.run` and :mod:`pybox.cli.build`. Everything
else goes through the typer app.
"""

import sys


_FAST = ("run", "build")


def _fast_path(argv: list[str]) -> tuple[str, list[str], str | None, bool] | None:
    """(command, its arguments, --root, --debug) when the command is ``run`` or ``build``; None otherwise."""
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
    if i < len(argv) and argv[i] in _FAST:
        return argv[i], argv[i + 1 :], root, debug
    return None


def main() -> None:
    fast = _fast_path(sys.argv[1:])
    if fast is not None:
        command, args, root, debug = fast
        from pybox.cli.common import main_without_typer

        if command == "run":
            from pybox.cli.run import run_command

            main_without_typer(run_command, args, root, debug)
        from pybox.cli.build import build_command

        main_without_typer(build_command, args, root, debug)
    from pybox.cli.app import run

    run()
