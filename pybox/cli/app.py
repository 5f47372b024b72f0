"""The ``pybox`` command as a typer app: global options and command groups.

Typer's pretty tracebacks are off: they print local variables, which may
hold tokens and passwords. Errors go through :mod:`pybox.cli.common`.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from pybox.cli.common import configure, fail, guarded, install_signal_handlers, interrupted, state

__all__ = ["app", "run", "state"]


app = typer.Typer(
    name="pybox",
    help="Pull, build and run OCI container images.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    root: Optional[str] = typer.Option(
        None, "--root", envvar="PYBOX_ROOT", help="Store directory (default /var/lib/pybox).", show_envvar=True
    ),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks."),
) -> None:
    configure(root, debug)


def _register() -> None:
    from pybox.cli import auth, containers, images, system, volumes

    containers.register(app)
    images.register(app)
    volumes.register(app)
    auth.register(app)
    system.register(app)


def run(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    _register()

    def body() -> int:
        try:
            result = app(args=argv, prog_name="pybox", standalone_mode=False)
        except typer.Exit as e:
            return e.exit_code
        except typer.Abort:
            return fail("aborted", 130)
        except typer.TyperException as e:
            # Flag and argument errors from the parser: say which, and how to get help.
            format_message = getattr(e, "format_message", None)
            text = format_message() if format_message else str(e)
            return fail(f"{text} (see 'pybox --help')")
        if interrupted():
            # Typer turns KeyboardInterrupt into a plain 130 before it reaches us.
            return fail("interrupted", 130)
        return result if isinstance(result, int) else 0

    code = guarded(body)
    sys.stdout.flush()
    sys.exit(code)
