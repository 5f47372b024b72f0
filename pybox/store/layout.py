"""``index.json`` and ``oci-layout``: the store root is a valid OCI image layout.

Each named image is one entry in ``index.json``: the descriptor of its
(platform) manifest with the full reference in
``org.opencontainers.image.ref.name`` (``docker.io/library/alpine:latest``),
so ``skopeo copy oci:ROOT:docker.io/library/alpine:latest ...`` and
``umoci unpack --image ROOT:...`` read pybox's images. An image that lost its
last name to a newer pull stays as an entry without a name (dangling, as
Docker's ``<none>``) until ``image prune``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pybox.errors import StoreError
from pybox.image import MT, Descriptor
from pybox.store.fs import atomic_write
from pybox.store.locks import FileLock

__all__ = ["REF_NAME", "PULLED_DIGEST", "INDEX_DIGEST", "Entry", "ImageIndex", "LAYOUT_VERSION"]

REF_NAME = "org.opencontainers.image.ref.name"
# The digest a name was pulled at (an index's or a manifest's): Docker's RepoDigests.
PULLED_DIGEST = "io.pybox.pulled-digest"
# The index the manifest was chosen from, kept for multi-platform push.
INDEX_DIGEST = "io.pybox.index-digest"
LAYOUT_VERSION = "1.0.0"


@dataclass(frozen=True, kw_only=True)
class Entry:
    descriptor: Descriptor

    @property
    def name(self) -> str | None:
        return self.descriptor.annotations.get(REF_NAME)

    @property
    def pulled_digest(self) -> str | None:
        return self.descriptor.annotations.get(PULLED_DIGEST)

    @property
    def index_digest(self) -> str | None:
        return self.descriptor.annotations.get(INDEX_DIGEST)

    @property
    def manifest_digest(self) -> str:
        return self.descriptor.digest

    def renamed(self, name: str | None) -> "Entry":
        annotations = dict(self.descriptor.annotations)
        if name is None:
            annotations.pop(REF_NAME, None)
        else:
            annotations[REF_NAME] = name
        return Entry(descriptor=replace(self.descriptor, annotations=annotations))


class ImageIndex:
    def __init__(self, root: Path) -> None:
        self.path = root / "index.json"
        self._lock_path = root / "locks" / "index.lock"
        self._tmp = root / "tmp"

    def load(self) -> list[Entry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(raw)
            return [Entry(descriptor=Descriptor.from_dict(d)) for d in doc.get("manifests") or []]
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{self.path} is corrupt: {e}") from e

    def update(self, change: Callable[[list[Entry]], list[Entry]]) -> list[Entry]:
        """Read, change and write ``index.json`` atomically under the index lock."""
        with FileLock(self._lock_path):
            entries = change(self.load())
            doc = {
                "schemaVersion": 2,
                "mediaType": MT.OCI_INDEX,
                "manifests": [e.descriptor.to_dict() for e in entries],
            }
            atomic_write(self.path, json.dumps(doc, indent=2).encode() + b"\n", self._tmp)
            return entries

    def set_name(self, name: str, entry: Entry) -> None:
        """Point ``name`` at ``entry``'s manifest; an image that loses its last name stays dangling."""

        def change(entries: list[Entry]) -> list[Entry]:
            moved = [e.renamed(None) if e.name == name else e for e in entries]
            return _without_redundant_dangling([*moved, entry.renamed(name)])

        self.update(change)

    def remove_names(self, names: set[str]) -> None:
        self.update(lambda entries: [e for e in entries if e.name not in names])

    def remove_manifests(self, digests: set[str]) -> None:
        self.update(lambda entries: [e for e in entries if e.manifest_digest not in digests])


def _without_redundant_dangling(entries: list[Entry]) -> list[Entry]:
    """Drop nameless entries whose manifest is still named or already listed."""
    named = {e.manifest_digest for e in entries if e.name is not None}
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.name is None:
            if e.manifest_digest in named or e.manifest_digest in seen:
                continue
            seen.add(e.manifest_digest)
        out.append(e)
    return out
