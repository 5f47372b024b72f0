"""Turn a layer blob into its uncompressed tar stream.

The codec comes from the descriptor's media type; an unknown media type is
sniffed by its magic bytes, as Docker's ``DecompressStream`` does. Both
codecs run over 1 MiB chunks: zlib and zstandard release the GIL while they
work, so layers can be decompressed in parallel threads (DESIGN.md §3).
tarfile's own ``r|gz`` is never used: it reads 10 KiB at a time and stops at
the first gzip member.
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

import zstandard

from pybox.errors import ContentError

__all__ = ["open_decompressed"]

_CHUNK = 1 << 20

_GZIP_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
_ZSTD_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
_TAR_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    }
)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_decompressed(raw: BinaryIO, media_type: str) -> BinaryIO:
    """Return a reader of the uncompressed tar stream inside ``raw``.

    ``raw`` is only read, never seeked or closed: the caller owns it. For an
    uncompressed layer the reader is ``raw`` itself. A corrupt or truncated
    gzip stream raises ContentError from ``read()``.
    """
    if media_type not in _GZIP_TYPES | _ZSTD_TYPES | _TAR_TYPES:
        head = _read_head(raw, len(_ZSTD_MAGIC))
        raw = _Prefixed(head, raw)
        if head.startswith(_GZIP_MAGIC):
            media_type = "application/vnd.oci.image.layer.v1.tar+gzip"
        elif head == _ZSTD_MAGIC:
            media_type = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            return raw  # type: ignore[return-value]
    if media_type in _GZIP_TYPES:
        return io.BufferedReader(_GzipReader(raw), buffer_size=_CHUNK)  # type: ignore[return-value]
    if media_type in _ZSTD_TYPES:
        return io.BufferedReader(_ZstdReader(raw), buffer_size=_CHUNK)  # type: ignore[return-value]
    return raw


def _read_head(raw: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes (fewer only at EOF) from a stream that may return short reads."""
    head = b""
    while len(head) < size:
        more = raw.read(size - len(head))
        if not more:
            break
        head += more
    return head


class _Prefixed(io.RawIOBase):
    """``raw`` with the bytes already taken off its front put back."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size is None or size < 0:
            out, self._head = self._head + self._raw.read(), b""
            return out
        out, self._head = self._head[:size], self._head[size:]
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _GzipReader(io.RawIOBase):
    """A gzip stream of one or more members (RFC 1952 §2.2), decoded by zlib.

    pigz and plain concatenation produce multi-member streams; Python's own
    gzip module reads them all and skips zero padding between and after
    members, and so does this reader. Anything else after a member must be
    another member. The stream must end at the end of a member: running out
    of input inside one is truncation, not a short layer.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=31)  # 16 + 15: gzip header and trailer
        self._pending = b""  # compressed bytes not yet given to zlib
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not len(buffer):
            return 0  # zlib would take a max_length of 0 as "no limit"
        while not self._done:
            if not self._pending:
                self._pending = self._raw.read(_CHUNK)
                if not self._pending:
                    raise ContentError("gzip layer stream is truncated")
            try:
                # max_length bounds memory: a small input can inflate 1000x.
                out = self._inflate.decompress(self._pending, len(buffer))
            except zlib.error as e:
                raise ContentError(f"gzip layer stream is corrupt: {e}") from e
            if self._inflate.eof:
                self._pending = self._inflate.unused_data
                self._start_next_member()
            else:
                self._pending = self._inflate.unconsumed_tail
            if out:
                buffer[: len(out)] = out
                return len(out)
        return 0

    def _start_next_member(self) -> None:
        while not (rest := self._pending.lstrip(b"\0")):
            self._pending = self._raw.read(_CHUNK)
            if not self._pending:
                self._done = True
                return
        self._pending = rest
        self._inflate = zlib.decompressobj(wbits=31)


class _ZstdReader(io.RawIOBase):
    """A zstd stream of one or more frames, with zstandard's errors translated.

    zstandard's stream reader does not report a stream that stops inside a
    frame (it just ends early); such a layer still fails, on a tar member cut
    short or on the diff_id check of the uncompressed stream. The frame-wise
    ``decompressobj`` would notice, but it returns a whole frame's output at
    once: a zero-filled disk image in a layer would sit in memory entirely.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=_CHUNK, read_across_frames=True, closefd=False
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return self._reader.readinto(buffer)
        except zstandard.ZstdError as e:
            raise ContentError(f"zstd layer stream is corrupt: {e}") from e
