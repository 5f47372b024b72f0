"""Making a build's results part of the store: layers from directories, images from states.

A layer directory (a RUN's upper dir or a COPY's fresh tree) is packed into
a gzip blob and then *becomes* the unpacked layer, ``layers/<diff_id>/diff``,
without a second unpack (DESIGN section 6). Both appear together in one
batch, under the same per-digest locks a pull takes, so a concurrent pull
or build of the same content never sees half of it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pybox import reference
from pybox.builder.state import ImageState, config_document, layer_descriptor
from pybox.image import MT, Descriptor, digest_hex
from pybox.store import Store
from pybox.store.batch import Batch
from pybox.store.fs import make_temp_name, remove_tree
from pybox.store.layout import Entry

__all__ = ["commit_image", "commit_layer"]

_OVERLAY_XATTR = "trusted.overlay."
_OPAQUE_XATTR = "trusted.overlay.opaque"


def commit_layer(store: Store, tree: Path, *, below: Path | None) -> tuple[str, Descriptor]:
    """Pack ``tree`` (a directory under the store's ``tmp/``) and store it as a layer; ``tree`` is consumed.

    ``below`` is the layer directory this one goes on (None: the first).
    Returns the diff_id and the compressed blob's descriptor.
    """
    # tarfile and zlib are for builds that make a layer, not for cached ones.
    from pybox.builder.layers import pack_layer

    try:
        size = _prepare(tree, below)
        blob_tmp = make_temp_name(store.tmp_dir, "blob")
        try:
            with open(blob_tmp, "wb") as out:
                packed = pack_layer(tree, out)
            with store.batch() as batch:
                _stage(store, batch, tree, blob_tmp, packed.diff_id, packed.digest, size)
        finally:
            remove_tree(blob_tmp)
    finally:
        remove_tree(tree)
    return packed.diff_id, layer_descriptor(packed.digest, packed.size)


def _stage(store: Store, batch: Batch, tree: Path, blob_tmp: Path, diff_id: str, digest: str, size: int) -> None:
    # The layer's lock before the blob's, in the order a pull takes them.
    for kind, hex_ in (("layer", digest_hex(diff_id)), ("blob", digest_hex(digest))):
        lock = store.digest_lock(kind, hex_)
        lock.acquire()
        batch.hold(lock)
    if not store.blobs.has(digest):
        staged_blob = make_temp_name(store.tmp_dir, "blob-" + digest_hex(digest))
        os.rename(blob_tmp, staged_blob)
        batch.add(staged_blob, store.blobs.path(digest))
    if not store.layers.has(diff_id):
        store.layers.discard_stale(diff_id)
        staged = make_temp_name(store.tmp_dir, "layer-" + digest_hex(diff_id))
        staged.mkdir()
        os.rename(tree, staged / "diff")
        (staged / "size").write_text(str(size))
        batch.add(staged, store.layers.path(diff_id), after=lambda: store.layers.ensure_link(diff_id))


def _prepare(tree: Path, below: Path | None) -> int:
    """Make ``tree`` a clean lower dir; returns the bytes of its regular files.

    The root's mode and owner become the merged root's when this layer is
    on top, so they are those of the layer below (0755 root's on the first).
    overlayfs leaves its bookkeeping (origin, impure, uuid) in an upper dir:
    meaningless or harmful in a lower dir, so only ``opaque`` stays.
    """
    root = os.stat(below) if below is not None else None
    os.chown(tree, root.st_uid if root else 0, root.st_gid if root else 0)
    os.chmod(tree, stat.S_IMODE(root.st_mode) if root else 0o755)
    total = 0
    for directory, dirs, files in os.walk(tree):
        for name in (directory, *(os.path.join(directory, n) for n in dirs + files)):
            st = os.lstat(name)
            if stat.S_ISREG(st.st_mode) and name != directory:
                total += st.st_size
            if stat.S_ISLNK(st.st_mode):
                continue
            for attr in os.listxattr(name, follow_symlinks=False):
                if attr.startswith(_OVERLAY_XATTR) and attr != _OPAQUE_XATTR:
                    os.removexattr(name, attr, follow_symlinks=False)
    return total


def commit_image(store: Store, state: ImageState, tags: list[str]) -> tuple[str, str]:
    """Write ``state`` as an image and name it ``tags``; returns (image id, manifest digest).

    Without tags it is kept as an unnamed (dangling) image, which ``pybox
    run`` and ``pybox tag`` reach by ID.
    """
    names = [str(reference.normalize(t)) for t in tags]
    config_raw = json.dumps(config_document(state), separators=(",", ":")).encode()
    with store.batch() as batch:
        config_digest = store.blobs.put(config_raw, batch)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT.OCI_MANIFEST,
            "config": {"mediaType": MT.OCI_CONFIG, "digest": config_digest, "size": len(config_raw)},
            "layers": [layer.to_dict() for layer in state.layers],
        }
        manifest_raw = json.dumps(manifest, separators=(",", ":")).encode()
        manifest_digest = store.blobs.put(manifest_raw, batch)
    entry = Entry(descriptor=Descriptor(media_type=MT.OCI_MANIFEST, digest=manifest_digest, size=len(manifest_raw)))
    for name in names:
        store.index.set_name(name, entry)
    if not names:
        store.index.update(lambda entries: entries if any(e.manifest_digest == manifest_digest for e in entries)
                           else [*entries, entry])
    return config_digest, manifest_digest
