"""The steps that write a layer without a container: COPY, ADD and WORKDIR.

Sources come from the build context or, for ``COPY --from``, from another
stage's or image's merged filesystem. A source path is resolved inside its
own root (context or image): a symlink that points at ``/etc/passwd``
names the image's or the context's file, never the host's. The
destination is looked up in the stage's layers the same way, so a COPY
into a symlinked directory lands where the symlink leads, as in Docker.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybox.builder.context import BuildContext
from pybox.builder.ignore import IgnoreRules
from pybox.builder.instructions import Add, Copy, InlineFile
from pybox.builder.state import ImageState
from pybox.errors import UsageError
from pybox.store import Store
from pybox.store.layerfs import lookup
from pybox.store.fs import make_temp_name, remove_tree

__all__ = ["CopySources", "copy_step", "make_workdir", "reader_of"]

_URL_PREFIXES = ("http://", "https://", "git@", "git://")


def reader_of(store: Store, state: ImageState) -> Callable[[str], str | None]:
    """A text file of ``state``'s filesystem by path (passwd and group lookups)."""
    def read(path: str) -> str | None:
        data = store.layers.read_file(list(state.diff_ids), path)
        return None if data is None else data.decode("utf-8", "replace")

    return read


@dataclass(frozen=True, kw_only=True)
class CopySources:
    """Where a COPY/ADD reads: the context, or (``--from``) another stage's or image's layers.

    ``paths`` are the context paths the sources selected (the cache key hashed them already).
    """

    context: BuildContext | None = None
    paths: tuple[str, ...] = ()
    image: ImageState | None = None


def copy_step(store: Store, state: ImageState, instruction: Copy | Add, sources: CopySources,
              inline: list[tuple[InlineFile, str]]) -> tuple[str, object]:
    """Write the layer of ``instruction``; returns its (diff_id, descriptor).

    ``inline`` holds the heredoc sources with their final (expanded) content.
    """
    # Imported when a step runs: a cached build needs none of the copying machinery.
    from pybox.builder.commit import commit_layer
    from pybox.builder.copy import copy_into_layer, parse_chown
    from pybox.runtime.layerview import with_layers_mounted

    is_add = isinstance(instruction, Add)
    for source in instruction.sources:
        if is_add and source.startswith(_URL_PREFIXES):
            raise UsageError(f"ADD {source}: remote sources are not supported; download the file into the context")
    chown = parse_chown(instruction.chown, reader_of(store, state)) if instruction.chown else None
    workdir = state.config.get("WorkingDir") or "/"
    layer_dirs = [store.layers.diff_path(d) for d in state.diff_ids]
    dest = posixpath.join(workdir, instruction.dest)
    found = lookup(layer_dirs, dest)
    marked_dir = instruction.dest.endswith("/") or instruction.dest in (".", "")
    resolved_dest = found.path + ("/" if marked_dir and found.path != "/" else "")
    layer = make_temp_name(store.tmp_dir, "copy")
    layer.mkdir()
    scratch = make_temp_name(store.tmp_dir, "heredoc")
    try:
        named = _inline_files(scratch, inline)

        def copy(root: Path | None) -> None:
            found_sources = _resolve_sources(instruction, sources, root) + named
            if not found_sources:
                raise UsageError("no source files were specified")
            visible = sources.context.visible_host_path if sources.context is not None else None
            copy_into_layer(sources=found_sources, dest=resolved_dest, workdir="/", layer=layer, chown=chown,
                            chmod=instruction.chmod, extract_archives=is_add, dest_is_dir_in_image=found.is_dir,
                            visible=visible)

        if sources.image is not None:
            with_layers_mounted(store, list(sources.image.diff_ids), copy)
        else:
            copy(None)
        _keep_metadata(layer, layer_dirs, found.path)
        return commit_layer(store, layer, below=layer_dirs[-1] if layer_dirs else None)
    finally:
        remove_tree(layer)
        remove_tree(scratch)


def _inline_files(scratch: Path, inline: list[tuple[InlineFile, str]]) -> list[tuple[str, Path]]:
    out = []
    for doc, content in inline:
        scratch.mkdir(exist_ok=True)
        path = scratch / doc.name
        path.write_text(content, encoding="utf-8", errors="surrogateescape")
        os.chmod(path, 0o644)
        out.append((doc.name, path))
    return out


def _resolve_sources(instruction: Copy | Add, sources: CopySources, image_root: Path | None) -> list[tuple[str, Path]]:
    if image_root is not None:
        ctx = BuildContext(root=image_root, rules=IgnoreRules())
        paths = [path for source in instruction.sources for path in ctx.select(source)]
    else:
        assert sources.context is not None
        ctx, paths = sources.context, list(sources.paths)
    out = []
    for path in paths:
        resolved = lookup([ctx.root], "/" + path)
        if resolved.mode is None:
            raise UsageError(f"COPY failed: {path} is a symlink that leads nowhere in its root")
        out.append((path, ctx.root / resolved.path.lstrip("/")))
    return out


def make_workdir(store: Store, state: ImageState, path: str) -> tuple[str, object] | None:
    """The layer that creates WORKDIR ``path`` (owned by USER, as BuildKit's mkdir), or None if it exists."""
    from pybox.builder.commit import commit_layer
    from pybox.runtime.users import resolve_user

    layer_dirs = [store.layers.diff_path(d) for d in state.diff_ids]
    found = lookup(layer_dirs, path)
    if found.is_dir:
        return None
    uid = gid = 0
    if state.config.get("User"):
        user = resolve_user(state.config["User"], (), reader_of(store, state))
        uid, gid = user.uid, user.gid
    layer = make_temp_name(store.tmp_dir, "workdir")
    try:
        current = layer
        current.mkdir()
        for part in found.path.strip("/").split("/"):
            current = current / part
            current.mkdir()
            os.chmod(current, 0o755)  # mkdir's mode goes through the umask
            os.chown(current, uid, gid)
        _keep_metadata(layer, layer_dirs, found.path)
        return commit_layer(store, layer, below=layer_dirs[-1] if layer_dirs else None)
    finally:
        remove_tree(layer)


def _keep_metadata(layer: Path, layer_dirs: list[Path], path: str) -> None:
    """Give ``path`` and its parents in the new ``layer`` the owner, mode and mtime the image has for them.

    A COPY to /srv/x/ writes /srv and /srv/x into its layer only to hold
    what it copies; as the upper layer they would otherwise replace the
    image's own (a 1777 /tmp would become 0755 root's).
    """
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = posixpath.join(current, part)
        full = layer / current.lstrip("/")
        try:
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                return
        except FileNotFoundError:
            return
        found = lookup(layer_dirs, current, follow=False)
        if not found.is_dir:
            continue
        os.lchown(full, found.stat.st_uid, found.stat.st_gid)
        os.chmod(full, stat.S_IMODE(found.stat.st_mode))
        os.utime(full, ns=(found.stat.st_atime_ns, found.stat.st_mtime_ns), follow_symlinks=False)
