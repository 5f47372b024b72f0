"""The one place blob content is checked against its descriptor.

Every blob read, from the network or from disk, passes through a
:class:`VerifiedReader`: it counts and hashes what flows through it and fails
when the stream is too long, or, at its end, too short or of another digest
(umoci's ``pkg/hardening/verified_reader.go`` makes the same three checks).
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from pybox.errors import DigestMismatch

__all__ = ["Readable", "DigestVerifier", "VerifiedReader", "HashingReader"]


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class HashingReader:
    """Passes bytes through while hashing and counting them (for diff_ids)."""

    def __init__(self, source: Readable) -> None:
        import hashlib  # not at module level: `pybox run` imports this module but hashes nothing

        self._source = source
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._hash.update(data)
            self.count += len(data)
        return data

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read to the end, so the digest covers the whole stream."""
        while self.read(chunk):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class DigestVerifier:
    """Counts and hashes content fed to it; fails when it is too long, or at the end too short or different."""

    def __init__(self, digest: str, size: int | None, what: str) -> None:
        if not digest.startswith("sha256:"):
            raise DigestMismatch(f"{what}: unsupported digest algorithm in {digest!r}")
        import hashlib

        self._hash = hashlib.sha256()
        self._expected = digest
        self._size = size
        self._what = what
        self.count = 0
        self.verified = False

    def update(self, data: bytes) -> None:
        self.count += len(data)
        if self._size is not None and self.count > self._size:
            raise DigestMismatch(f"{self._what}: more than the expected {self._size} bytes")
        self._hash.update(data)

    def verify(self) -> None:
        if self.verified:
            return
        if self._size is not None and self.count != self._size:
            raise DigestMismatch(f"{self._what}: got {self.count} bytes, expected {self._size}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._expected:
            raise DigestMismatch(f"{self._what}: digest is {actual}, expected {self._expected}")
        self.verified = True


class VerifiedReader:
    """Reads ``source`` and raises :class:`DigestMismatch` unless it is exactly ``digest``/``size``.

    The end check runs on the read that returns ``b""``, so a consumer that
    stops early must :meth:`drain` before trusting the content.
    """

    def __init__(self, source: Readable | BinaryIO, digest: str, size: int | None, what: str) -> None:
        self._source = source
        self._verifier = DigestVerifier(digest, size, what)

    @property
    def count(self) -> int:
        return self._verifier.count

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._verifier.update(data)
        elif n != 0:
            self._verifier.verify()
        return data

    def drain(self, chunk: int = 1 << 20) -> None:
        while self.read(chunk):
            pass

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "VerifiedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
