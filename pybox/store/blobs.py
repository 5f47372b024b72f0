"""Content-addressed blobs: ``blobs/sha256/<hex>``.

Contracts:
- A blob file exists only once its content was verified against its digest
  (and size, where known); readers never see partial content.
- ``put`` is idempotent: putting content that is present changes nothing.
- Every read goes through :class:`~pybox.store.verify.VerifiedReader`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pybox.errors import DigestMismatch, NotFound
from pybox.image import digest_hex, sha256_digest
from pybox.store.batch import Batch
from pybox.store.fs import make_temp_name, remove_tree, sha256_names
from pybox.store.verify import DigestVerifier, VerifiedReader

__all__ = ["BlobStore", "BlobWriter"]

_CHUNK = 1 << 20


class BlobWriter:
    """Writes a blob into ``tmp/`` while verifying it; :meth:`finish` stages it in a batch.

    A resumable writer keeps its file at ``tmp/blob-<hex>.partial`` (the
    caller holds the blob's lock): a download that breaks off, or a pybox
    that is interrupted or killed, leaves it there, and the next writer for
    the same digest replays its bytes through the verifier with
    :meth:`read_existing` before appending the rest.
    """

    def __init__(self, store: "BlobStore", digest: str, size: int | None, what: str, *,
                 resumable: bool = False) -> None:
        self._store = store
        self.digest = digest
        hex_ = digest_hex(digest)
        if resumable:
            self.tmp = store.tmp_dir / f"blob-{hex_}.partial"
            self._fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        else:
            self.tmp = make_temp_name(store.tmp_dir, "blob-" + hex_)
            self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.existing = os.fstat(self._fd).st_size
        self._replayed = 0
        self._verifier = DigestVerifier(digest, size, what)

    @property
    def count(self) -> int:
        return self._verifier.count

    def read_existing(self, n: int) -> bytes:
        """The next bytes of an earlier partial download (verified as they pass); b"" when done."""
        if self._replayed >= self.existing:
            return b""
        data = os.pread(self._fd, min(n, self.existing - self._replayed), self._replayed)
        if not data:
            raise DigestMismatch(f"{self.tmp} shrank while being resumed")
        self._replayed += len(data)
        self._verifier.update(data)
        return data

    def write(self, data: bytes) -> None:
        assert self._replayed >= self.existing, "replay the partial download before appending"
        self._verifier.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def finish(self, batch: Batch) -> None:
        """Verify what was written and stage it; a mismatch discards it."""
        self._close()
        try:
            self._verifier.verify()
        except DigestMismatch:
            self.discard()
            raise
        batch.add(self.tmp, self._store.path(self.digest))

    def suspend(self) -> None:
        """Stop, keeping what was downloaded for a later resume."""
        self._close()

    def discard(self) -> None:
        self._close()
        remove_tree(self.tmp)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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

    def writer(self, digest: str, size: int | None, what: str, *, resumable: bool = False) -> BlobWriter:
        return BlobWriter(self, digest, size, what, resumable=resumable)

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
