"""Image commands: pull, images, inspect, tag, rmi, image history/mount/umount/prune."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from pybox.cli.app import state
from pybox.cli.format import human_age, human_size, table, truncate
from pybox.errors import UsageError

__all__ = ["register"]

image_app = typer.Typer(help="Manage images.", no_args_is_help=True)


def parse_bool(value: str, flag: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise UsageError(f"invalid value {value!r} for {flag}: expected true or false")


def pull(
    ref: str = typer.Argument(..., metavar="REF", help="Image reference, e.g. alpine or host:5000/app:v1"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID."),
    platform: Optional[str] = typer.Option(None, "--platform", help="os/arch[/variant] to choose from an index."),
    tls_verify: str = typer.Option("true", "--tls-verify", flag_value="true", is_flag=False, metavar="BOOL",
                                   help="Verify TLS certificates; false also allows plain HTTP."),
    creds: Optional[str] = typer.Option(None, "--creds", metavar="USER:PASS",
                                        help="Credentials for the registry (else from login and auth files)."),
    authfile: Optional[str] = typer.Option(None, "--authfile", help="pybox's auth file (default ~/.config/pybox/auth.json)."),
) -> None:
    """Pull an image from a registry."""
    from pybox.cli.progress import make_progress
    from pybox.image import Platform
    from pybox.reference import normalize
    from pybox.registry.pull import PullOptions, pull as do_pull

    from pybox.registry.credentials import own_auth_file, parse_creds

    options = PullOptions(
        platform=Platform.parse(platform) if platform else None,
        tls_verify=parse_bool(tls_verify, "--tls-verify"),
        credentials=parse_creds(creds) if creds else None,
        authfile=own_auth_file(authfile),
    )
    name = str(normalize(ref))
    if not quiet:
        print(f"Trying to pull {name}...", flush=True)
    result = do_pull(state.store(), name, options, make_progress(quiet))
    if quiet:
        print(result.image_id)
        return
    print(f"Digest: {result.pulled_digest}")
    print(f"Image: {result.image_id}")
    print(f"Status: {'Downloaded newer image' if result.new_layers else 'Image is up to date'} for {result.name}")


def images(
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only image IDs."),
    all_: bool = typer.Option(False, "-a", "--all", help="Show all images (including intermediate ones)."),
    digests: bool = typer.Option(False, "--digests", help="Show digests."),
    fmt: Optional[str] = typer.Option(None, "--format", help="'json' for machine-readable output."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Show full image IDs."),
) -> None:
    """List images in the store."""
    from pybox.views import image_rows

    rows = image_rows(state.store())
    if fmt is not None and fmt != "json":
        raise UsageError(f"unsupported --format {fmt!r}: only 'json' is supported")
    if quiet:
        seen: list[str] = []
        for r in rows:
            shown = r.image_id if no_trunc else r.image_id.removeprefix("sha256:")[:12]
            if shown not in seen:
                seen.append(shown)
        print("\n".join(seen)) if seen else None
        return
    if fmt == "json":
        print(json.dumps([
            {"Repository": r.repository, "Tag": r.tag, "Digest": r.digest, "ID": r.image_id,
             "Created": r.created, "Size": r.size}
            for r in rows
        ], indent=2))
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    body = []
    for r in rows:
        ident = r.image_id if no_trunc else r.image_id.removeprefix("sha256:")[:12]
        body.append([r.repository, r.tag] + ([r.digest or "<none>"] if digests else [])
                    + [ident, human_age(r.created), human_size(r.size)])
    print(table(headers, body))


def inspect(
    names: List[str] = typer.Argument(..., metavar="NAME..."),
    type_: Optional[str] = typer.Option(None, "--type", help="image or container (default: whichever matches)."),
) -> None:
    """Show details of images or containers as JSON."""
    from pybox.errors import NotFound
    from pybox.runtime.containers import inspect_container, resolve_container
    from pybox.views import inspect_image

    if type_ not in (None, "image", "container"):
        raise UsageError(f"invalid --type {type_!r}: expected image or container")
    store = state.store()
    docs = []
    for name in names:
        if type_ != "container":
            try:
                docs.append(inspect_image(store, store.images.resolve(name)))
                continue
            except NotFound:
                if type_ == "image":
                    raise
        try:
            docs.append(inspect_container(resolve_container(store, name)))
        except NotFound:
            if type_ == "container":
                raise
            raise NotFound(f"no such image or container: {name}") from None
    print(json.dumps(docs, indent=4))


def history(
    ref: str = typer.Argument(..., metavar="IMAGE"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate output."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
) -> None:
    """Show the history of an image."""
    from pybox.views import history_rows

    store = state.store()
    rows = history_rows(store, store.images.resolve(ref))
    if quiet:
        for r in rows:
            print(r.image if no_trunc or r.image == "<missing>" else r.image.removeprefix("sha256:")[:12])
        return
    body = []
    for r in rows:
        ident = r.image if no_trunc or r.image == "<missing>" else r.image.removeprefix("sha256:")[:12]
        # A heredoc's lines would break the table's rows.
        one_line = " ".join(r.created_by.split("\n")).strip()
        created_by = one_line if no_trunc else truncate(one_line, 45)
        body.append([ident, human_age(r.created), created_by, human_size(r.size), r.comment])
    print(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], body))


def tag(
    source: str = typer.Argument(..., metavar="SOURCE"),
    target: str = typer.Argument(..., metavar="TARGET"),
) -> None:
    """Give an image another name."""
    from pybox.reference import normalize

    store = state.store()
    image = store.images.resolve(source)
    name = normalize(target)
    if name.digest:
        raise UsageError(f"cannot tag with a digest reference: {target}")
    with store.lock():
        store.index.set_name(str(name), image.entries[0])


def rmi(
    refs: List[str] = typer.Argument(..., metavar="IMAGE..."),
    force: bool = typer.Option(False, "-f", "--force", help="Remove an image with several names by ID."),
) -> None:
    """Remove images; layers no image uses are removed too."""
    from pybox.store.gc import remove_images

    report = remove_images(state.store(), refs, force=force)
    for name in report.untagged:
        print(f"Untagged: {name}")
    for image_id in report.deleted:
        print(f"Deleted: {image_id}")


def mount(ref: str = typer.Argument(..., metavar="IMAGE")) -> None:
    """Mount an image's root filesystem read-only and print the directory."""
    from pybox.runtime.imagemount import mount_image

    store = state.store()
    print(mount_image(store, store.images.resolve(ref)))


def umount(ref: str = typer.Argument(..., metavar="IMAGE")) -> None:
    """Unmount an image mounted with 'pybox image mount'."""
    from pybox.runtime.imagemount import umount_image

    store = state.store()
    umount_image(store, store.images.resolve(ref))


def prune(
    all_: bool = typer.Option(False, "-a", "--all", help="Remove every unused image, not just dangling ones."),
) -> None:
    """Remove dangling images and the layers only they use."""
    from pybox.store.gc import prune_images

    report = prune_images(state.store(), all_images=all_)
    for image_id in report.deleted:
        print(f"Deleted: {image_id}")
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")


def register(app: typer.Typer) -> None:
    app.command()(pull)
    app.command()(images)
    app.command()(inspect)
    app.command()(tag)
    app.command()(rmi)
    app.command()(history)
    image_app.command("pull")(pull)
    image_app.command("ls")(images)
    image_app.command("inspect")(inspect)
    image_app.command("tag")(tag)
    image_app.command("rm")(rmi)
    image_app.command("history")(history)
    image_app.command("mount")(mount)
    image_app.command("umount")(umount)
    image_app.command("prune")(prune)
    app.add_typer(image_app, name="image")
