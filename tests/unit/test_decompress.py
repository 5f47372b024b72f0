"""open_decompressed: gzip (multi-member), zstd (multi-frame), plain tar, sniffing, corruption."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from pybox.errors import ContentError
from pybox.store.decompress import open_decompressed

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# Larger than the 1 MiB chunks on both sides, part incompressible, part very compressible.
PAYLOAD = os.urandom(1_500_000) + b"layer data " * 300_000


class _Pipe:
    """A stream with nothing but read(), which returns short reads, like a socket."""

    def __init__(self, data: bytes, max_read: int = 70_000) -> None:
        self._data = io.BytesIO(data)
        self._max = max_read

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._max
        return self._data.read(min(size, self._max))


def _read_all(reader: io.RawIOBase | io.BufferedIOBase, size: int = 1 << 20) -> bytes:
    parts = []
    while chunk := reader.read(size):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("media_type", [OCI_GZIP, DOCKER_GZIP, DOCKER_FOREIGN_GZIP, NONDIST_GZIP])
def test_gzip_single_member(media_type: str) -> None:
    reader = open_decompressed(_Pipe(gzip.compress(PAYLOAD)), media_type)
    assert _read_all(reader) == PAYLOAD


def test_gzip_multi_member_as_pigz_or_cat_writes() -> None:
    parts = [PAYLOAD[:1000], PAYLOAD[1000:2_000_000], b"", PAYLOAD[2_000_000:]]
    blob = b"".join(gzip.compress(p) for p in parts)
    assert _read_all(open_decompressed(_Pipe(blob), OCI_GZIP)) == PAYLOAD


def test_gzip_small_reads() -> None:
    reader = open_decompressed(io.BytesIO(gzip.compress(PAYLOAD[:300_000]) * 2), OCI_GZIP)
    assert _read_all(reader, 511) == PAYLOAD[:300_000] * 2


def test_gzip_trailing_zero_padding_is_skipped_like_python_gzip() -> None:
    blob = gzip.compress(b"abc") + b"\0" * 5000
    assert gzip.decompress(blob) == b"abc"  # the reference behaviour
    assert _read_all(open_decompressed(io.BytesIO(blob), OCI_GZIP)) == b"abc"


@pytest.mark.parametrize("cut", [10, 4, 5000])
def test_truncated_gzip_raises(cut: int) -> None:
    blob = gzip.compress(PAYLOAD)[:-cut]
    with pytest.raises(ContentError, match="truncated"):
        _read_all(open_decompressed(_Pipe(blob), OCI_GZIP))


def test_empty_gzip_raises() -> None:
    with pytest.raises(ContentError, match="truncated"):
        open_decompressed(io.BytesIO(b""), OCI_GZIP).read(10)


def test_gzip_garbage_after_member_raises() -> None:
    with pytest.raises(ContentError, match="corrupt"):
        _read_all(open_decompressed(io.BytesIO(gzip.compress(b"abc") + b"junk!"), OCI_GZIP))


def test_gzip_corrupt_data_raises() -> None:
    blob = bytearray(gzip.compress(PAYLOAD))
    blob[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
    with pytest.raises(ContentError):
        _read_all(open_decompressed(io.BytesIO(bytes(blob)), OCI_GZIP))


@pytest.mark.parametrize("media_type", [OCI_ZSTD, NONDIST_ZSTD])
def test_zstd_multi_frame(media_type: str) -> None:
    cctx = zstandard.ZstdCompressor()
    blob = cctx.compress(PAYLOAD[:1_000_000]) + cctx.compress(PAYLOAD[1_000_000:])
    assert _read_all(open_decompressed(_Pipe(blob), media_type)) == PAYLOAD


def test_zstd_corrupt_raises() -> None:
    blob = zstandard.ZstdCompressor().compress(b"layer data " * 300_000)
    with pytest.raises(ContentError, match="zstd"):
        _read_all(open_decompressed(io.BytesIO(blob[:20] + b"\xff" * 50 + blob[70:]), OCI_ZSTD))


def test_plain_tar_is_the_raw_stream() -> None:
    raw = io.BytesIO(PAYLOAD)
    assert open_decompressed(raw, OCI_TAR) is raw


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, zstandard.ZstdCompressor().compress, lambda data: data],
    ids=["gzip", "zstd", "plain"],
)
@pytest.mark.parametrize("media_type", ["application/octet-stream", "application/vnd.docker.image.rootfs.diff.tar"])
def test_unknown_media_type_is_sniffed(compress, media_type: str) -> None:
    # Short reads while sniffing: the magic arrives in pieces.
    reader = open_decompressed(_Pipe(compress(PAYLOAD[:20_000]), max_read=3), media_type)
    assert _read_all(reader) == PAYLOAD[:20_000]


def test_sniffing_a_tiny_plain_stream() -> None:
    assert _read_all(open_decompressed(_Pipe(b"ab", max_read=1), "")) == b"ab"
    assert _read_all(open_decompressed(io.BytesIO(b""), "")) == b""
