"""Unpacked layers: ``layers/<diff_id hex>/diff`` plus short links in ``l/``.

A layer directory is keyed by its diff_id (the digest of the uncompressed
tar), so a layer that ten images share is unpacked once. It becomes visible
only after its unpack completed and the uncompressed stream's digest equals
the diff_id the image config promised: an image that lies about a diff_id
must not poison a layer other images share.

Overlay mounts name their lower dirs relative to the store root through the
``l/`` links (``l/<20 hex>`` instead of ``layers/<64 hex>/diff``), so more
than a hundred layers fit in the one page the mount options may take.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pybox.errors import DigestMismatch, StoreError
from pybox.image import digest_hex
from pybox.store.batch import Batch
from pybox.store.fs import make_temp_name, remove_tree, sha256_names
from pybox.store.layerfs import lookup
from pybox.store.verify import HashingReader, Readable

__all__ = ["LayerStore", "StagedLayer"]

_SHORT = 20


@dataclass(frozen=True, kw_only=True)
class StagedLayer:
    diff_id: str
    tmp: Path
    size: int


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "layers"
        self.links = root / "l"
        self.tmp_dir = root / "tmp"

    def path(self, diff_id: str) -> Path:
        return self.dir / digest_hex(diff_id)

    def diff_path(self, diff_id: str) -> Path:
        return self.path(diff_id) / "diff"

    def has(self, diff_id: str) -> bool:
        return (self.path(diff_id) / "diff").is_dir()

    def size(self, diff_id: str) -> int:
        try:
            return int((self.path(diff_id) / "size").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def unpack(self, compressed: Readable, media_type: str, diff_id: str) -> StagedLayer:
        """Unpack a layer stream into ``tmp/`` and check it against ``diff_id``.

        Reads ``compressed`` to its end (the caller's verifier sees every
        byte). On any failure the partial directory is removed.
        """
        # Imported here: zstandard and tarfile are for pulls, not for `pybox run`'s start.
        from pybox.store.decompress import open_decompressed
        from pybox.store.unpack import unpack

        hex_ = digest_hex(diff_id)
        tmp = make_temp_name(self.tmp_dir, "layer-" + hex_)
        (tmp / "diff").mkdir(parents=True)
        try:
            tar = HashingReader(open_decompressed(compressed, media_type))
            stats = unpack(tar, tmp / "diff")
            tar.drain()
            # Trailing bytes after the compressed stream's end still count
            # toward the blob digest.
            while compressed.read(1 << 20):
                pass
            if tar.digest != diff_id:
                raise DigestMismatch(
                    f"layer content has diff_id {tar.digest}, but the image config says {diff_id}"
                )
            (tmp / "size").write_text(str(stats.bytes))
        except BaseException:
            remove_tree(tmp)
            raise
        return StagedLayer(diff_id=diff_id, tmp=tmp, size=stats.bytes)

    def discard_stale(self, diff_id: str) -> None:
        """Remove unpack directories an interrupted pybox left for this layer (caller holds its lock)."""
        prefix = "layer-" + digest_hex(diff_id) + "-"
        for name in os.listdir(self.tmp_dir):
            if name.startswith(prefix):
                remove_tree(self.tmp_dir / name)

    def stage(self, staged: StagedLayer, batch: Batch) -> None:
        batch.add(staged.tmp, self.path(staged.diff_id), after=lambda: self.ensure_link(staged.diff_id))

    def ensure_link(self, diff_id: str) -> str:
        """The lowerdir name of a layer relative to the store root, creating its link if needed."""
        hex_ = digest_hex(diff_id)
        link_file = self.path(diff_id) / "link"
        try:
            return "l/" + link_file.read_text()
        except FileNotFoundError:
            pass
        target = f"../layers/{hex_}/diff"
        # A 20-hex prefix collision would need crafted diff_ids; fall back to
        # the full digest rather than share a link between two layers.
        for name in (hex_[:_SHORT], hex_):
            link = self.links / name
            try:
                os.symlink(target, link)
            except FileExistsError:
                if os.readlink(link) != target:
                    continue
            tmp = make_temp_name(self.tmp_dir, "link")
            tmp.write_text(name)
            os.replace(tmp, link_file)
            return "l/" + name
        raise StoreError(f"cannot create a short link for layer {diff_id}")

    def remove(self, diff_id: str) -> None:
        link_file = self.path(diff_id) / "link"
        try:
            name = link_file.read_text()
        except FileNotFoundError:
            name = None
        # Move aside first so a half-removed tree is never mistaken for a layer.
        doomed = make_temp_name(self.tmp_dir, "rm-layer")
        try:
            os.rename(self.path(diff_id), doomed)
        except FileNotFoundError:
            return
        if name:
            remove_tree(self.links / name)
        remove_tree(doomed)

    def read_file(self, diff_ids: list[str], path: str, *, limit: int = 1 << 20) -> bytes | None:
        """A regular file as the merged image shows it, read from the layer dirs (no mount needed).

        Symlinks among its parents resolve inside the image; a symlink as the
        file itself is not followed. None if absent or not a regular file.
        """
        found = lookup([self.diff_path(d) for d in diff_ids], path, follow=False)
        if found.stat is None or found.layer is None or not stat.S_ISREG(found.stat.st_mode):
            return None
        fd = os.open(found.layer / found.path.lstrip("/"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            return f.read(limit)

    def diff_ids(self) -> Iterator[str]:
        return sha256_names(self.dir)

