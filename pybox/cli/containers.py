"""Commands with parsers of their own: run (:mod:`pybox.cli.run`) and build (:mod:`pybox.cli.build`)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def run(ctx: typer.Context) -> None:
    """Run a command in a new container (see 'pybox run --help')."""
    from pybox.cli.run import run_command

    raise typer.Exit(run_command(list(ctx.args)))


def build(ctx: typer.Context) -> None:
    """Build an image from a Containerfile (see 'pybox build --help')."""
    from pybox.cli.build import build_command

    raise typer.Exit(build_command(list(ctx.args)))


def register(app: typer.Typer) -> None:
    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False,
                "help_option_names": []}
    app.command(context_settings=settings, add_help_option=False)(run)
    app.command(context_settings=settings, add_help_option=False)(build)
