"""System commands: df."""

from __future__ import annotations

import typer

from pybox.cli.app import state
from pybox.cli.format import human_size, table

__all__ = ["register"]

system_app = typer.Typer(help="Manage pybox.", no_args_is_help=True)


@system_app.command("df")
def df() -> None:
    """Show disk usage of the store."""
    from pybox.views import disk_usage

    rows = disk_usage(state.store())
    body = []
    for r in rows:
        share = f" ({r.reclaimable * 100 // r.size}%)" if r.size else ""
        body.append([r.type, str(r.total), str(r.active), human_size(r.size), human_size(r.reclaimable) + share])
    print(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], body))


def register(app: typer.Typer) -> None:
    app.add_typer(system_app, name="system")
