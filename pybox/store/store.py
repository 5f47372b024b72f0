"""The store root and what lives under it (DESIGN section 3)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pybox.errors import StoreError
from pybox.image import MT
from pybox.store.batch import Batch
from pybox.store.blobs import BlobStore
from pybox.store.fs import atomic_write, remove_tree
from pybox.store.images import ImageCatalog
from pybox.store.layers import LayerStore
from pybox.store.layout import LAYOUT_VERSION, ImageIndex
from pybox.store.locks import FileLock

__all__ = ["Store"]

_TEMP_NAME = re.compile(r".+-(\d+)-[0-9a-f]{8}")
_DIRS = ("blobs/sha256", "layers", "l", "tmp", "locks", "mounts", "containers", "cache")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.layers = LayerStore(root)
        self.index = ImageIndex(root)
        self.images = ImageCatalog(self.index, self.blobs)
        self.tmp_dir = root / "tmp"
        self.mounts_dir = root / "mounts"

    @classmethod
    def open(cls, root: Path) -> "Store":
        """Open the store at ``root``, creating an empty OCI layout there if needed."""
        try:
            for d in _DIRS:
                (root / d).mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o700)
            layout = root / "oci-layout"
            if not layout.exists():
                doc = {"imageLayoutVersion": LAYOUT_VERSION}
                atomic_write(layout, json.dumps(doc).encode(), root / "tmp")
            if not (root / "index.json").exists():
                index = {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": []}
                atomic_write(root / "index.json", json.dumps(index).encode() + b"\n", root / "tmp")
        except PermissionError as e:
            raise StoreError(f"cannot use store at {root}: {e.strerror} (pybox needs root, or --root DIR)") from e
        return cls(root)

    def lock(self, *, exclusive: bool = False) -> FileLock:
        """Writers hold it shared; garbage collection holds it exclusively."""
        return FileLock(self.root / "locks" / "store.lock", shared=not exclusive)

    def digest_lock(self, kind: str, digest_hex: str) -> FileLock:
        return FileLock(self.root / "locks" / f"{kind}-{digest_hex}.lock")

    def clean_tmp(self) -> None:
        """Remove what dead pybox processes left in ``tmp/``; partial downloads stay for resuming.

        Temporary names end in ``-<pid>-<8 hex>`` (:func:`make_temp_name`);
        an entry whose process is gone can be neither finished nor resumed.
        """
        for name in os.listdir(self.tmp_dir):
            m = _TEMP_NAME.fullmatch(name)
            if m and not _alive(int(m.group(1))):
                remove_tree(self.tmp_dir / name)

    def clean_own_tmp(self) -> None:
        """Remove this process's temporary entries, for an interrupted pybox whose threads
        could not clean up after themselves (they may be blocked in a read)."""
        own = str(os.getpid())
        for name in os.listdir(self.tmp_dir):
            m = _TEMP_NAME.fullmatch(name)
            if m and m.group(1) == own:
                try:
                    remove_tree(self.tmp_dir / name)
                except OSError:
                    # A thread still writing into it: the next pull's clean_tmp finishes the job.
                    pass

    def batch(self) -> Batch:
        return Batch(self.root)

    def container_configs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, config.json) of every container record, skipping one that is half-written.

        The store reads these to know which images, layers and volumes
        containers still use; the records themselves belong to the runtime.
        """
        base = self.root / "containers"
        for cid in sorted(os.listdir(base)):
            try:
                yield cid, json.loads((base / cid / "config.json").read_bytes())
            except (OSError, ValueError):
                continue

    def mount_point(self, image_id: str) -> Path:
        return self.mounts_dir / image_id.removeprefix("sha256:") / "merged"

    def mounted_image_ids(self) -> set[str]:
        """Images whose ``image mount`` directory is a mount point right now."""
        prefix = str(self.mounts_dir) + "/"
        out = set()
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                point = _unescape(line.split(" ", 5)[4])
                if point.startswith(prefix) and point.endswith("/merged"):
                    out.add("sha256:" + point[len(prefix) :].split("/", 1)[0])
        return out


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
