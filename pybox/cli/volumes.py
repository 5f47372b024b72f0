"""Volume commands: create, ls, inspect, rm, prune."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from pybox.cli.app import state

__all__ = ["register"]

volume_app = typer.Typer(help="Manage volumes.", no_args_is_help=True)


def _volumes():  # noqa: ANN202 - lazily imported type
    from pybox.runtime.volumes import VolumeStore

    return VolumeStore(state.store())


@volume_app.command("create")
def create(
    name: Optional[str] = typer.Argument(None, metavar="[NAME]"),
    label: List[str] = typer.Option([], "-l", "--label", help="KEY=VALUE"),
) -> None:
    """Create a volume (a random name when none is given)."""
    from pybox.runtime.runconfig import parse_labels

    volume, _ = _volumes().create(name, labels=parse_labels(label))
    print(volume.name)


@volume_app.command("ls")
def ls(quiet: bool = typer.Option(False, "-q", "--quiet", help="Only names.")) -> None:
    """List volumes."""
    from pybox.cli.format import table

    volumes = _volumes().list()
    if quiet:
        for v in volumes:
            print(v.name)
        return
    print(table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in volumes]))


@volume_app.command("inspect")
def inspect(names: List[str] = typer.Argument(..., metavar="NAME...")) -> None:
    """Show volumes as JSON."""
    store = _volumes()
    print(json.dumps([store.get(n).inspect() for n in names], indent=4))


@volume_app.command("rm")
def rm(
    names: List[str] = typer.Argument(..., metavar="NAME..."),
    force: bool = typer.Option(False, "-f", "--force", help="Remove even if a container record mounts it."),
) -> None:
    """Remove volumes."""
    store = _volumes()
    for name in names:
        store.remove(name, force=force)
        print(name)


@volume_app.command("prune")
def prune(
    all_: bool = typer.Option(False, "-a", "--all", help="Also named volumes, not just anonymous ones."),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask (pybox never asks)."),
) -> None:
    """Remove volumes no container uses."""
    removed = _volumes().prune(all_volumes=all_)
    if removed:
        print("Deleted Volumes:")
        for name in removed:
            print(name)


def register(app: typer.Typer) -> None:
    app.add_typer(volume_app, name="volume")
