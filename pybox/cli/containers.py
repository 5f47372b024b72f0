"""Container commands: run (its options are parsed in :mod:`pybox.cli.run`)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def run(ctx: typer.Context) -> None:
    """Run a command in a new container (see 'pybox run --help')."""
    from pybox.cli.run import run_command

    raise typer.Exit(run_command(list(ctx.args)))


def register(app: typer.Typer) -> None:
    app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                          "allow_interspersed_args": False, "help_option_names": []},
        add_help_option=False,
    )(run)
