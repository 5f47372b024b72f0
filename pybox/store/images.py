"""Images as users see them: the entries of ``index.json`` grouped by image ID.

An image's ID is its config digest (as Docker and Podman); each name in
``index.json`` that leads to that config is one of its tags or digest
references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pybox import reference
from pybox.errors import Conflict, ImageNotFound, InvalidReference, NotFound, StoreError
from pybox.image import ImageConfig, Manifest, parse_config, parse_manifest_or_index
from pybox.store.blobs import BlobStore
from pybox.store.layers import LayerStore
from pybox.store.layout import Entry, ImageIndex

__all__ = ["Image", "ImageCatalog"]

_ID_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{3,64})")


@dataclass(frozen=True, kw_only=True)
class Image:
    id: str
    manifest_digest: str
    manifest: Manifest
    config: ImageConfig
    entries: tuple[Entry, ...]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries if e.name]

    @property
    def tags(self) -> list[str]:
        return [n for n in self.names if "@" not in n]

    @property
    def repo_digests(self) -> list[str]:
        out: list[str] = []
        for e in self.entries:
            if not e.name:
                continue
            repo = reference.normalize(e.name).name
            digest = e.pulled_digest or e.manifest_digest
            rd = f"{repo}@{digest}"
            if rd not in out:
                out.append(rd)
        return out

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def dangling(self) -> bool:
        return not self.names

    def size(self, layers: LayerStore) -> int:
        return sum(layers.size(d) for d in self.config.diff_ids)


class ImageCatalog:
    def __init__(self, index: ImageIndex, blobs: BlobStore) -> None:
        self._index = index
        self._blobs = blobs

    def _load(self, entry: Entry) -> tuple[Manifest, ImageConfig]:
        try:
            # Verified by digest on the way in and validated when pulled: no schema check again.
            doc = parse_manifest_or_index(self._blobs.read(entry.manifest_digest, entry.descriptor.size), trusted=True)
            if not isinstance(doc, Manifest):
                raise StoreError(f"index.json entry {entry.manifest_digest} is not an image manifest")
            return doc, parse_config(self._blobs.read(doc.config.digest, doc.config.size), trusted=True)
        except NotFound as e:
            raise StoreError(f"image {entry.name or entry.manifest_digest} is incomplete: {e}") from e

    def list(self) -> list[Image]:
        groups: dict[str, tuple[Manifest, ImageConfig, list[Entry], str]] = {}
        for entry in self._index.load():
            manifest, config = self._load(entry)
            image_id = manifest.config.digest
            if image_id not in groups:
                groups[image_id] = (manifest, config, [], entry.manifest_digest)
            groups[image_id][2].append(entry)
        return [
            Image(id=i, manifest_digest=md, manifest=m, config=c, entries=tuple(es))
            for i, (m, c, es, md) in groups.items()
        ]

    def resolve(self, text: str) -> Image:
        """An image by name (``alpine``, ``host/x:tag``, ``x@sha256:...``) or by ID or ID prefix."""
        try:
            ref = reference.normalize(text)
        except InvalidReference:
            ref = None
        entries = self._index.load()
        exact = [e for e in entries if ref is not None and e.name == str(ref)]
        if exact:
            # The common case (`pybox run NAME`) reads one manifest and one config, not every image's.
            manifest, config = self._load(exact[0])
            same = tuple(e for e in entries if e.manifest_digest == exact[0].manifest_digest)
            return Image(id=manifest.config.digest, manifest_digest=exact[0].manifest_digest, manifest=manifest,
                         config=config, entries=same)
        images = self.list()
        if ref is not None:
            # Not a name in the index: a digest the image was pulled at (repo@sha256:...).
            for image in images:
                for e in image.entries:
                    if ref.digest and e.name and reference.normalize(e.name).name == ref.name and ref.digest in (
                        e.pulled_digest,
                        e.manifest_digest,
                    ):
                        return image
        m = _ID_PREFIX.fullmatch(text)
        if m:
            hits = [i for i in images if i.id.removeprefix("sha256:").startswith(m.group(1))]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise Conflict(f"image ID prefix {text!r} is ambiguous: it matches {len(hits)} images")
        raise ImageNotFound(f"image {text!r} is not in the store (pull it first)")
