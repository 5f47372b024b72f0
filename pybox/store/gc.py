"""Removing images and collecting what no image uses any more.

Everything here runs under the store lock held exclusively, so no pull is
half-way through staging content that looks unreferenced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pybox import reference
from pybox.errors import Conflict, InvalidReference
from pybox.image import Manifest, parse_config, parse_manifest_or_index
from pybox.store.fs import remove_tree
from pybox.store.images import Image
from pybox.store.store import Store

__all__ = ["GcReport", "RemoveReport", "collect", "remove_images", "prune_images"]


@dataclass(kw_only=True)
class GcReport:
    blobs: int = 0
    layers: int = 0
    bytes: int = 0


@dataclass(kw_only=True)
class RemoveReport:
    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    reclaimed: int = 0


def _container_uses(store: Store) -> dict[str, tuple[str, list[str]]]:
    """Container name -> (image ID, layer diff_ids), from the container records."""
    return {doc.get("Name", cid[:12]): (doc.get("Image", ""), list(doc.get("Layers") or []))
            for cid, doc in store.container_configs()}


def _referenced(store: Store) -> tuple[set[str], set[str]]:
    """Blob digests and layer diff_ids that an ``index.json`` entry or a container reaches."""
    blobs: set[str] = set()
    layers: set[str] = {d for _, diff_ids in _container_uses(store).values() for d in diff_ids}
    for entry in store.index.load():
        blobs.add(entry.manifest_digest)
        if entry.index_digest:
            blobs.add(entry.index_digest)
        if not store.blobs.has(entry.manifest_digest):
            continue
        doc = parse_manifest_or_index(store.blobs.read(entry.manifest_digest))
        if not isinstance(doc, Manifest):
            continue
        blobs.add(doc.config.digest)
        blobs.update(layer.digest for layer in doc.layers)
        if store.blobs.has(doc.config.digest):
            layers.update(parse_config(store.blobs.read(doc.config.digest)).diff_ids)
    return blobs, layers


def _collect_locked(store: Store) -> GcReport:
    report = GcReport()
    keep_blobs, keep_layers = _referenced(store)
    for digest in list(store.blobs.digests()):
        if digest not in keep_blobs:
            report.bytes += store.blobs.size(digest)
            store.blobs.delete(digest)
            report.blobs += 1
    for diff_id in list(store.layers.diff_ids()):
        if diff_id not in keep_layers:
            report.bytes += store.layers.size(diff_id)
            store.layers.remove(diff_id)
            report.layers += 1
    # With the store lock held exclusively no writer is staging anything, so
    # whatever is in tmp/ was left by an interrupted process.
    for name in os.listdir(store.tmp_dir):
        remove_tree(store.tmp_dir / name)
    for name in os.listdir(store.layers.links):
        link = store.layers.links / name
        if not link.exists():
            remove_tree(link)
    return report


def collect(store: Store) -> GcReport:
    """Remove blobs and layers that no image references."""
    with store.lock(exclusive=True):
        return _collect_locked(store)


def _check_not_in_use(store: Store, image: Image, force: bool) -> None:
    users = [name for name, (image_id, _) in _container_uses(store).items() if image_id == image.id]
    if users and not force:
        raise Conflict(
            f"image {image.short_id} is used by container {users[0]}"
            + (f" and {len(users) - 1} more" if len(users) > 1 else "")
            + "; -f removes its names and keeps the layers the containers need"
        )


def _check_not_mounted(store: Store, image: Image) -> None:
    if image.id in store.mounted_image_ids():
        raise Conflict(
            f"image {image.short_id} is mounted at {store.mount_point(image.id)}; "
            "run 'pybox image umount' first"
        )


def remove_images(store: Store, refs: list[str], *, force: bool = False) -> RemoveReport:
    """Docker's ``rmi``: a name with siblings is untagged, an image's last name deletes it.

    Removing by ID an image with several names needs ``force``.
    """
    report = RemoveReport()
    with store.lock(exclusive=True):
        for text in refs:
            image = store.images.resolve(text)
            by_name = [n for n in image.names if _names_match(n, text)]
            if by_name and len(image.names) > 1:
                store.index.remove_names(set(by_name))
                report.untagged += by_name
                continue
            if len(image.names) > 1 and not force:
                raise Conflict(
                    f"unable to delete {image.short_id} (must be forced): "
                    f"image is referenced by {len(image.names)} names"
                )
            _check_not_mounted(store, image)
            _check_not_in_use(store, image, force)
            store.index.remove_manifests({e.manifest_digest for e in image.entries})
            report.untagged += image.names
            report.deleted.append(image.id)
        report.reclaimed = _collect_locked(store).bytes
    return report


def _names_match(name: str, text: str) -> bool:
    try:
        return name == str(reference.normalize(text))
    except InvalidReference:
        return False


def prune_images(store: Store, *, all_images: bool = False) -> RemoveReport:
    """Remove dangling images (every unused image with ``all_images``); mounted ones stay."""
    report = RemoveReport()
    with store.lock(exclusive=True):
        mounted = store.mounted_image_ids()
        in_use = {image_id for image_id, _ in _container_uses(store).values()}
        doomed = [
            image
            for image in store.images.list()
            if (all_images or image.dangling) and image.id not in mounted and image.id not in in_use
        ]
        store.index.remove_manifests({e.manifest_digest for i in doomed for e in i.entries})
        for image in doomed:
            report.untagged += image.names
            report.deleted.append(image.id)
        report.reclaimed = _collect_locked(store).bytes
    return report
