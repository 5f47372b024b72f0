"""The image model: platform choice from an index, manifest parsing, media types."""

from __future__ import annotations

import json

import pytest

from pybox.errors import DigestMismatch, InvalidDocument, PlatformMismatch, UnsupportedManifest, UsageError
from pybox.image import MT, Index, Manifest, Platform, check_digest, parse_manifest_or_index, sha256_digest

DIGEST = "sha256:" + "a" * 64


def _index(*platforms: dict, media_type: str = MT.OCI_MANIFEST) -> Index:
    doc = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_INDEX,
        "manifests": [
            {"mediaType": media_type, "size": 10, "digest": "sha256:" + f"{i:x}" * 64, "platform": p}
            for i, p in enumerate(platforms, start=1)
        ],
    }
    parsed = parse_manifest_or_index(json.dumps(doc).encode(), MT.OCI_INDEX)
    assert isinstance(parsed, Index)
    return parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform(os="linux", architecture="amd64")),
        ("linux/x86_64", Platform(os="linux", architecture="amd64")),
        ("linux/arm64", Platform(os="linux", architecture="arm64", variant="v8")),
        ("linux/aarch64", Platform(os="linux", architecture="arm64", variant="v8")),
        ("linux/arm/7", Platform(os="linux", architecture="arm", variant="v7")),
        ("Linux/ARM64/v8", Platform(os="linux", architecture="arm64", variant="v8")),
    ],
)
def test_platform_parse_normalizes_like_containerd(text: str, expected: Platform) -> None:
    assert Platform.parse(text) == expected


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_platform_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        Platform.parse(text)


def test_index_choice_prefers_exact_platform_and_skips_attestations() -> None:
    index = _index(
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "amd64"},
    )
    assert index.choose(Platform.parse("linux/amd64")).digest == "sha256:" + "3" * 64
    assert index.choose(Platform.parse("linux/arm64")).digest == "sha256:" + "2" * 64


def test_index_choice_falls_back_through_arm_variants() -> None:
    index = _index({"os": "linux", "architecture": "arm", "variant": "v6"},
                   {"os": "linux", "architecture": "arm", "variant": "v5"})
    assert index.choose(Platform.parse("linux/arm/v7")).digest == "sha256:" + "1" * 64


def test_index_arm64_without_variant_matches_v8() -> None:
    index = _index({"os": "linux", "architecture": "arm64"})
    assert index.choose(Platform.parse("linux/arm64/v8")).digest == "sha256:" + "1" * 64


def test_index_without_matching_platform_says_what_it_offers() -> None:
    index = _index({"os": "linux", "architecture": "s390x"}, {"os": "unknown", "architecture": "unknown"})
    with pytest.raises(PlatformMismatch, match=r"linux/amd64.*offers: linux/s390x\)"):
        index.choose(Platform.parse("linux/amd64"))


def test_manifest_parse_reads_layers_and_config() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": MT.DOCKER_MANIFEST,
        "config": {"mediaType": MT.DOCKER_CONFIG, "size": 5, "digest": DIGEST},
        "layers": [{"mediaType": MT.DOCKER_LAYER, "size": 7, "digest": DIGEST}],
    }
    m = parse_manifest_or_index(json.dumps(doc).encode(), MT.DOCKER_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == MT.DOCKER_MANIFEST
    assert [layer.size for layer in m.layers] == [7]


def test_body_media_type_must_agree_with_content_type() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "config": {"mediaType": MT.OCI_CONFIG, "size": 5, "digest": DIGEST},
        "layers": [{"mediaType": MT.OCI_LAYER_GZIP, "size": 7, "digest": DIGEST}],
    }
    with pytest.raises(InvalidDocument, match="served a application/vnd.oci.image.index.v1\\+json"):
        parse_manifest_or_index(json.dumps(doc).encode(), MT.OCI_INDEX)


def test_schema1_is_refused_with_a_clear_message() -> None:
    doc = {"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": [], "history": []}
    with pytest.raises(UnsupportedManifest, match="schema 1"):
        parse_manifest_or_index(json.dumps(doc).encode(), MT.DOCKER_SCHEMA1_SIGNED)


def test_manifest_without_media_type_is_guessed_from_content_type() -> None:
    doc = {
        "schemaVersion": 2,
        "config": {"mediaType": MT.OCI_CONFIG, "size": 5, "digest": DIGEST},
        "layers": [{"mediaType": MT.OCI_LAYER_GZIP, "size": 7, "digest": DIGEST}],
    }
    m = parse_manifest_or_index(json.dumps(doc).encode(), MT.OCI_MANIFEST)
    assert isinstance(m, Manifest) and m.media_type == MT.OCI_MANIFEST


def test_check_digest() -> None:
    check_digest(b"abc", sha256_digest(b"abc"), "x")
    with pytest.raises(DigestMismatch, match="expected digest"):
        check_digest(b"abd", sha256_digest(b"abc"), "x")
