"""pybox.validate against opencontainers/image-spec's schema test tables.

The tables live in ../shared/conformance/image-spec (see its README,
section "image-spec/"); they are read in place, never copied here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from support.conformance import CONFORMANCE, require_data

from pybox.errors import InvalidDocument
from pybox.validate import (
    validate_config,
    validate_descriptor,
    validate_document,
    validate_index,
    validate_layout,
    validate_manifest,
)

DATA = CONFORMANCE / "image-spec"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _rows() -> list[Any]:
    if not (DATA / "schema-cases.json").is_file():
        return [pytest.param(None, id="conformance-data-absent")]
    return [pytest.param(row, id=f"{row['test']}-{row['index']}") for row in _load("schema-cases.json")]


@pytest.mark.parametrize("row", _rows())
def test_schema_case(row: dict[str, Any] | None) -> None:
    if row is None:
        require_data(DATA / "schema-cases.json")
    ids = _load("schema-ids.json")
    # Validate by the row's schema file: schema.go's table names the media
    # type that selects it, which must be the row's media_type too.
    media_type = {schema: mt for mt, schema in ids["schema_for_media_type"].items()}[row["schema"]]
    assert media_type == row["media_type"]
    document: str = row["document"]
    if row.get("convert_docker_media_types"):
        # backwards_compatibility_test.go: the digest covers the document as
        # fetched; Docker media types are swapped for OCI ones before validating.
        assert "sha256:" + hashlib.sha256(document.encode("utf-8")).hexdigest() == row["document_digest"]
        for docker, oci in ids["docker_to_oci_media_types"].items():
            document = document.replace(docker, oci)
    raw = document.encode("utf-8")
    if row.get("fail", False):
        with pytest.raises(InvalidDocument):
            validate_document(media_type, raw)
    else:
        assert isinstance(validate_document(media_type, raw), dict)


# ------------------------------------------------------------------ standalone cases

DIGEST = "sha256:" + "a" * 64


def _descriptor(**extra: Any) -> dict[str, Any]:
    layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    return {"mediaType": layer, "size": 7682, "digest": DIGEST, **extra}


def _manifest(**extra: Any) -> dict[str, Any]:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": DIGEST}
    return {"schemaVersion": 2, "config": config, "layers": [_descriptor()], **extra}


def _config(**extra: Any) -> dict[str, Any]:
    rootfs = {"type": "layers", "diff_ids": [DIGEST]}
    return {"architecture": "amd64", "os": "linux", "rootfs": rootfs, **extra}


def _message(validate: Any, doc: object) -> str:
    with pytest.raises(InvalidDocument) as info:
        validate(doc)
    return str(info.value)


def test_minimal_documents_pass() -> None:
    validate_descriptor(_descriptor())
    validate_manifest(_manifest(mediaType="application/vnd.oci.image.manifest.v1+json"))
    entry = _descriptor(platform={"architecture": "arm64", "os": "linux"})
    validate_index({"schemaVersion": 2, "manifests": [entry]})
    validate_config(_config())
    validate_layout({"imageLayoutVersion": "1.0.0"})


def test_docker_documents_pass() -> None:
    validate_manifest(_manifest(mediaType="application/vnd.docker.distribution.manifest.v2+json"))
    extras = {"container_config": {"Hostname": "x"}, "docker_version": "1.12.1", "container": "abc"}
    raw = json.dumps(_config(**extras)).encode()
    doc = validate_document("application/vnd.docker.container.image.v1+json", raw)
    assert isinstance(doc, dict) and doc["docker_version"] == "1.12.1"


def test_layer_size_as_string_names_the_field() -> None:
    doc = _manifest(layers=[_descriptor(size="7682")])
    expected = 'invalid image manifest: layers[0].size: must be an integer >= 0, got "7682"'
    assert _message(validate_manifest, doc) == expected


def test_boolean_is_not_an_integer() -> None:
    assert "size: must be an integer >= 0, got true" in _message(validate_descriptor, _descriptor(size=True))


def test_size_must_fit_int64() -> None:
    assert "must fit in an int64" in _message(validate_descriptor, _descriptor(size=2**63))


def test_missing_member_is_named() -> None:
    doc = _config(rootfs={"diff_ids": []})
    assert _message(validate_config, doc) == "invalid image config: rootfs.type: is required"


# config_test.go's rows for these three also set "os": 123, which fails
# first; here each problem stands alone.
@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"history": "should be an array"}, "history: must be an array"),
        ({"config": {"Env": [7353]}}, "config.Env[0]: must be a string"),
        ({"config": {"Volumes": ["/var/job-result-data"]}}, "config.Volumes: must be a JSON object"),
        ({"config": {"ExposedPorts": {"80/tcp": 1}}}, 'config.ExposedPorts["80/tcp"]: must be a JSON object'),
        ({"config": {"ArgsEscaped": 1}}, "config.ArgsEscaped: must be true or false"),
    ],
)
def test_config_member_types(extra: dict[str, Any], path: str) -> None:
    assert path in _message(validate_config, _config(**extra))


def test_config_nullable_members() -> None:
    validate_config(_config(config={"Cmd": None, "Entrypoint": None, "Volumes": None, "Labels": None}))


def test_env_entry_without_equals() -> None:
    assert "config.Env[1]" in _message(validate_config, _config(config={"Env": ["A=1", "B"]}))


@pytest.mark.parametrize(
    "created",
    [
        "2015-10-31 22:22:56Z",  # RFC 3339 (5.6, NOTE) lets applications use a space; Go does not
        "2015-10-31t22:22:56z",  # nor lower case t and z
        "2015-02-29T00:00:00Z",
        "2015-10-31T24:00:00Z",
        "yesterday",
    ],
)
def test_created_must_be_rfc3339(created: str) -> None:
    assert "history[0].created" in _message(validate_config, _config(history=[{"created": created}]))


def test_known_digest_algorithm_needs_full_hex_in_a_manifest() -> None:
    doc = _manifest(layers=[_descriptor(digest="sha256:abc")])
    assert "layers[0].digest: a sha256 digest must have 64" in _message(validate_manifest, doc)


def test_data_needs_padding_and_url_needs_scheme() -> None:
    assert "data: must be standard base64" in _message(validate_descriptor, _descriptor(data="aGk"))
    validate_descriptor(_descriptor(data="aGk="))
    assert "urls[0]" in _message(validate_descriptor, _descriptor(urls=["example.com/x"]))


def test_annotation_values_are_strings() -> None:
    doc = _descriptor(annotations={"org.opencontainers.image.title": 1})
    assert 'annotations["org.opencontainers.image.title"]' in _message(validate_descriptor, doc)


def test_where_names_the_descriptor() -> None:
    message = _message(lambda d: validate_descriptor(d, where="config descriptor"), {"size": 1})
    assert message == "invalid config descriptor: mediaType: is required"


def test_manifest_posing_as_index() -> None:
    assert "manifests" in _message(validate_manifest, _manifest(manifests=[_descriptor()]))
    doc = {"schemaVersion": 2, "manifests": [], "layers": [_descriptor()]}
    assert "layers: must not be set" in _message(validate_index, doc)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "x": NaN}',
        b'{"architecture": "amd64", "architecture": "arm64", "os": "linux"}',
        b"\xff{}",
        b"[1, 2",
    ],
)
def test_refuses_what_go_json_refuses_or_is_ambiguous(raw: bytes) -> None:
    with pytest.raises(InvalidDocument, match="invalid image config: not"):
        validate_document("application/vnd.oci.image.config.v1+json", raw)


def test_document_media_type_must_agree() -> None:
    raw = json.dumps(_manifest(mediaType="application/vnd.docker.distribution.manifest.v2+json")).encode()
    with pytest.raises(InvalidDocument, match="mediaType"):
        validate_document("application/vnd.oci.image.manifest.v1+json", raw)
    assert validate_document("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8", raw)


def test_unknown_media_type() -> None:
    with pytest.raises(InvalidDocument, match="unknown media type"):
        validate_document("application/json", b"{}")
