"""Content-addressed blobs: ``blobs/sha256/<hex>``.

Contracts:
- A blob file exists only once its content was verified against its digest
  (and size, where known); readers never see partial content.
- ``put`` is idempotent: putting content that is present changes nothing.
- Every read goes through :class:`~pybox.store.verify.VerifiedReader`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pybox.errors import DigestMismatch, NotFound
from pybox.image import digest_hex, sha256_digest
from pybox.store.batch import Batch
from pybox.store.fs import make_temp_name, remove_tree, sha256_names
from pybox.store.verify import DigestVerifier, VerifiedReader

__all__ = ["BlobStore", "BlobWriter"]

_CHUNK = 1 << 20


class BlobWriter:
    """Writes a blob into ``tmp/`` while verifying it; :meth:`finish` stages it in a batch."""

    def __init__(self, store: "BlobStore", digest: str, size: int | None, what: str) -> None:
        self._store = store
        self.digest = digest
        self.tmp = make_temp_name(store.tmp_dir, "blob-" + digest_hex(digest))
        self._file: BinaryIO = open(self.tmp, "wb")
        self._verifier = DigestVerifier(digest, size, what)

    @property
    def count(self) -> int:
        return self._verifier.count

    def write(self, data: bytes) -> None:
        self._verifier.update(data)
        self._file.write(data)

    def finish(self, batch: Batch) -> None:
        """Verify what was written and stage it; a mismatch discards it."""
        self._file.close()
        try:
            self._verifier.verify()
        except DigestMismatch:
            self.discard()
            raise
        batch.add(self.tmp, self._store.path(self.digest))

    def discard(self) -> None:
        self._file.close()
        remove_tree(self.tmp)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.tmp_dir = root / "tmp"

    def path(self, digest: str) -> Path:
        return self.dir / digest_hex(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def open(self, digest: str, size: int | None = None) -> VerifiedReader:
        try:
            f = open(self.path(digest), "rb")
        except FileNotFoundError as e:
            raise NotFound(f"blob {digest} is not in the store") from e
        return VerifiedReader(f, digest, size, f"blob {digest}")

    def read(self, digest: str, size: int | None = None) -> bytes:
        chunks = []
        with self.open(digest, size) as reader:
            while chunk := reader.read(_CHUNK):
                chunks.append(chunk)
        return b"".join(chunks)

    def writer(self, digest: str, size: int | None, what: str) -> BlobWriter:
        return BlobWriter(self, digest, size, what)

    def put(self, data: bytes, batch: Batch, digest: str | None = None) -> str:
        """Stage ``data``; with ``digest`` given, it must match. Returns the digest."""
        actual = sha256_digest(data)
        if digest is not None and digest != actual:
            raise DigestMismatch(f"content for {digest} has digest {actual}")
        if not self.has(actual):
            w = self.writer(actual, len(data), f"blob {actual}")
            w.write(data)
            w.finish(batch)
        return actual

    def delete(self, digest: str) -> None:
        remove_tree(self.path(digest))

    def digests(self) -> Iterator[str]:
        return sha256_names(self.dir)
