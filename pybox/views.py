"""Docker-shaped views of the store: ``inspect`` documents, ``images`` and ``history`` rows, ``system df``.

The CLI prints these; tests and other callers use them directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybox import reference
from pybox.store import Store
from pybox.store.images import Image

__all__ = ["inspect_image", "ImageRow", "image_rows", "HistoryRow", "history_rows", "DfRow", "disk_usage"]

# Docker's inspect always shows these config keys, null when the image leaves them out.
_CONFIG_KEYS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "Healthcheck", "OnBuild", "Shell",
)


def inspect_image(store: Store, image: Image) -> dict[str, Any]:
    raw = image.config.raw
    config = {key: image.config.config.get(key) for key in _CONFIG_KEYS}
    config.update({k: v for k, v in image.config.config.items() if k not in config})
    if config["WorkingDir"] is None:
        config["WorkingDir"] = ""
    if config["User"] is None:
        config["User"] = ""
    doc: dict[str, Any] = {
        "Id": image.id,
        "Digest": image.manifest_digest,
        "RepoTags": image.tags,
        "RepoDigests": image.repo_digests,
        "Parent": "",
        "Comment": _last_comment(image),
        "Created": image.config.created,
        "Author": raw.get("author", ""),
        "Config": config,
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Size": image.size(store.layers),
        "RootFS": {"Type": "layers", "Layers": image.config.diff_ids},
        "ManifestMediaType": image.manifest.media_type,
    }
    if image.config.variant:
        doc["Variant"] = image.config.variant
    if raw.get("os.version"):
        doc["OsVersion"] = raw["os.version"]
    return doc


def _last_comment(image: Image) -> str:
    history = image.config.history
    return (history[-1].get("comment") or "") if history else ""


@dataclass(frozen=True, kw_only=True)
class ImageRow:
    repository: str
    tag: str
    digest: str
    image_id: str
    created: str
    size: int


def image_rows(store: Store) -> list[ImageRow]:
    """One row per name (``<none>`` for a digest-only or dangling image), newest first."""
    rows: list[ImageRow] = []
    for image in store.images.list():
        size = image.size(store.layers)
        names = [e for e in image.entries if e.name] or [None]
        for entry in names:
            repo, tag, digest = "<none>", "<none>", ""
            if entry is not None and entry.name:
                ref = reference.normalize(entry.name)
                repo = ref.name
                tag = ref.tag if ref.tag and not ref.digest else "<none>"
                digest = entry.pulled_digest or entry.manifest_digest
            rows.append(ImageRow(repository=repo, tag=tag, digest=digest, image_id=image.id,
                                 created=image.config.created, size=size))
    rows.sort(key=lambda r: (r.created, r.repository, r.tag), reverse=True)
    return rows


@dataclass(frozen=True, kw_only=True)
class HistoryRow:
    image: str  # the image ID on the newest row, "<missing>" on the others (as Docker)
    created: str
    created_by: str
    size: int
    comment: str


def history_rows(store: Store, image: Image) -> list[HistoryRow]:
    """The config's history, newest first, each non-empty entry paired with its layer."""
    diff_ids = image.config.diff_ids
    history = image.config.history or [{} for _ in diff_ids]
    rows: list[HistoryRow] = []
    layer = 0
    for item in history:
        size = 0
        if not item.get("empty_layer") and layer < len(diff_ids):
            size = store.layers.size(diff_ids[layer])
            layer += 1
        rows.append(HistoryRow(image="<missing>", created=item.get("created", "") or "",
                               created_by=item.get("created_by", "") or "", size=size,
                               comment=item.get("comment", "") or ""))
    rows.reverse()
    if rows:
        first = rows[0]
        rows[0] = HistoryRow(image=image.id, created=first.created, created_by=first.created_by,
                             size=first.size, comment=first.comment)
    return rows


@dataclass(frozen=True, kw_only=True)
class DfRow:
    type: str
    total: int
    active: int
    size: int
    reclaimable: int


def disk_usage(store: Store) -> list[DfRow]:
    """What ``system df`` shows. Image size counts the unpacked layers and the
    compressed blobs pybox keeps beside them (both are on disk)."""
    images = store.images.list()
    # Active: mounted with `image mount`, or the image of a container record.
    active_ids = store.mounted_image_ids() | {config.get("Image") for _, config, _ in _records(store)}
    active_layers = {d for i in images if i.id in active_ids for d in i.config.diff_ids}
    layer_bytes = {d: store.layers.size(d) for d in store.layers.diff_ids()}
    # Layers no image uses are what builds left for their cache.
    used_layers = {d for i in images for d in i.config.diff_ids}
    cache_only = {d: size for d, size in layer_bytes.items() if d not in used_layers}
    blob_bytes = sum(store.blobs.size(d) for d in store.blobs.digests())
    total = sum(layer_bytes.values()) - sum(cache_only.values()) + blob_bytes
    reclaimable = total - sum(layer_bytes.get(d, 0) for d in active_layers)
    if active_ids:
        active_blobs = {layer.digest for i in images if i.id in active_ids for layer in i.manifest.layers}
        reclaimable -= sum(store.blobs.size(d) for d in active_blobs if store.blobs.has(d))
    return [
        DfRow(type="Images", total=len(images), active=len([i for i in images if i.id in active_ids]),
              size=total, reclaimable=max(reclaimable, 0)),
        _containers_row(store),
        _volumes_row(store),
        _build_cache_row(store, sum(cache_only.values())),
    ]


def _build_cache_row(store: Store, layer_bytes: int) -> DfRow:
    """The build steps' records and the layers only they keep (``image prune`` removes those)."""
    entries = list((store.root / "cache" / "build").glob("*.json"))
    size = layer_bytes + sum(e.stat().st_size for e in entries)
    return DfRow(type="Build Cache", total=len(entries), active=0, size=size, reclaimable=size)


def _tree_size(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total


def _records(store: Store) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for cid, config in store.container_configs():
        try:
            state = json.loads((store.root / "containers" / cid / "state.json").read_bytes())
        except (OSError, ValueError):
            continue
        out.append((cid, config, state))
    return out


def _containers_row(store: Store) -> DfRow:
    """A container's size is what it wrote: its upper dir."""
    records = _records(store)
    sizes = {cid: _tree_size(store.root / "containers" / cid / "upper") for cid, _, _ in records}
    running = [cid for cid, _, state in records if state.get("status") == "running"]
    return DfRow(type="Containers", total=len(records), active=len(running), size=sum(sizes.values()),
                 reclaimable=sum(v for cid, v in sizes.items() if cid not in running))


def _volumes_row(store: Store) -> DfRow:
    base = store.root / "volumes"
    names = sorted(os.listdir(base)) if base.is_dir() else []
    used = {v for _, config, _ in _records(store) for v in config.get("Volumes") or []}
    sizes = {n: _tree_size(base / n / "_data") for n in names}
    return DfRow(type="Local Volumes", total=len(names), active=len([n for n in names if n in used]),
                 size=sum(sizes.values()), reclaimable=sum(v for n, v in sizes.items() if n not in used))
