"""Strict validation of OCI image documents, by hand, with the standard library only.

What opencontainers/image-spec accepts (``schema/validator.go`` at commit
13cff549) is the sum of three checks, and this module reproduces all three:

1. Go's ``encoding/json`` decode into the typed structs of ``specs-go/v1``:
   wrong JSON types fail, numbers must fit ``int64``, ``data`` must be padded
   standard base64, NaN and Infinity are not JSON;
2. the extra checks in ``validator.go``: a descriptor's digest, when its
   algorithm is a registered one, is lower-case hex of the right length
   (go-digest ``Digest.Validate``); every ``config.Env`` entry matches
   ``^[^=]+=.*$``;
3. the JSON schemas (draft-04, with the ``uri`` and ``date-time`` formats):
   each rule below names the schema file it comes from.

A few rules go further than upstream, each marked "(pybox)" where it is made:
duplicate object keys and bytes that are not UTF-8 are refused, every
descriptor (not only a stand-alone one) gets the digest check, index entries
may not have a negative size, ``rootfs.diff_ids`` must be digests (they name
layer directories in the store), and a manifest may not pose as an index or
the other way round.

Go matches JSON keys to struct fields case-insensitively (``"OS": 5`` would
fail its decode); this module only looks at the exact keys the schemas name.

Errors are :class:`~pybox.errors.InvalidDocument` with one line naming the
field, e.g. ``invalid image manifest: layers[0].size: must be an integer >= 0,
got "7682"``.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pybox.errors import InvalidDocument
from pybox.image import MT

__all__ = [
    "validate_descriptor",
    "validate_manifest",
    "validate_index",
    "validate_config",
    "validate_layout",
    "validate_document",
]

# Tuples, not pybox.image's sets: error messages list the allowed types in this order.
_MANIFEST_TYPES = (MT.OCI_MANIFEST, MT.DOCKER_MANIFEST)
_INDEX_TYPES = (MT.OCI_INDEX, MT.DOCKER_LIST)

_INT64_MAX = 2**63 - 1

# A check looks at one value found at `path` and raises _Invalid if it is wrong.
_Check = Callable[[Any, str], None]


class _Invalid(Exception):
    """One problem at one place; the public functions turn it into InvalidDocument."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


class _NotJson(ValueError):
    """Raised from json.loads hooks for input Go's encoding/json would refuse."""


# ------------------------------------------------------------------ paths and messages


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _entry(path: str, key: str) -> str:
    # Map keys are free text (annotation names hold dots), so quote them.
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _show(value: Any, limit: int = 80) -> str:
    """The offending value as it would appear in the JSON, cut to fit one line."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(path: str, expected: str, value: Any) -> _Invalid:
    return _Invalid(path, f"{expected}, got {_show(value)}")


# ------------------------------------------------------------------ JSON types


def _string(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise _fail(path, "must be a string", value)


def _boolean(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise _fail(path, "must be true or false", value)


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, but `true` is not a JSON integer. A
    # float (1.0, 1e3) is refused too: Go will not decode it into an int64.
    return isinstance(value, int) and not isinstance(value, bool)


def _size(value: Any, path: str) -> None:
    # defs-descriptor.json#/definitions/size: integer, minimum 0; Go's int64
    # bounds it above. The schema gives image-index-schema.json's manifests[]
    # entries defs.json#/definitions/int64 instead, which lets a negative size
    # through; no blob has one, so (pybox) every size must be >= 0.
    if not _is_int(value) or value < 0:
        raise _fail(path, "must be an integer >= 0", value)
    if value > _INT64_MAX:
        raise _fail(path, f"must fit in an int64 (at most {_INT64_MAX})", value)


def _schema_version(value: Any, path: str) -> None:
    # image-manifest-schema.json and image-index-schema.json: integer, minimum
    # and maximum 2.
    if not _is_int(value) or value != 2:
        raise _fail(path, "must be 2", value)


def _enum(*allowed: str) -> _Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise _fail(path, "must be " + " or ".join(json.dumps(a) for a in allowed), value)

    return check


def _one_of(doc: dict[str, Any], path: str, name: str, allowed: tuple[str, ...]) -> None:
    if name in doc:
        _enum(*allowed)(doc[name], _field(path, name))


def _or_null(check: _Check) -> _Check:
    """The schema's ``oneOf: [<check>, {"type": "null"}]``."""

    def nullable(value: Any, path: str) -> None:
        if value is not None:
            check(value, path)

    return nullable


def _array(item: _Check, *, non_empty: bool = False) -> _Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise _fail(path, "must be an array", value)
        if non_empty and not value:
            raise _Invalid(path, "must not be empty")
        for i, element in enumerate(value):
            item(element, f"{path}[{i}]")

    return check


def _map(item: _Check) -> _Check:
    """A JSON object used as a map: every value passes `item`.

    defs.json's mapStringString and mapStringObject constrain the values of
    keys matching ``.{1,}``; Go's map[string]T decode constrains all of them,
    the empty key too, so all are checked.
    """

    def check(value: Any, path: str) -> None:
        _json_object(value, path)
        for key, element in value.items():
            item(element, _entry(path, key))

    return check


def _json_object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _fail(path, "must be a JSON object", value)


def _object(members: Mapping[str, _Check], required: tuple[str, ...] = ()) -> _Check:
    """A JSON object with named members. Other members are allowed: no schema
    here sets additionalProperties, and Docker documents carry many more."""

    def check(value: Any, path: str) -> None:
        _json_object(value, path)
        for name in required:
            if name not in value:
                raise _Invalid(_field(path, name), "is required")
        for name, member in members.items():
            if name in value:
                member(value[name], _field(path, name))

    return check


def _all(*checks: _Check) -> _Check:
    def check(value: Any, path: str) -> None:
        for each in checks:
            each(value, path)

    return check


# ------------------------------------------------------------------ string formats

# defs-descriptor.json#/definitions/mediaType (RFC 6838 names, at most 127
# characters each side). fullmatch, not `$`: Python's `$` also matches before
# a final newline, Go's (RE2) does not.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)

# defs-descriptor.json#/definitions/digest
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# go-digest registers these algorithms; Digest.Validate then demands exactly
# this many lower-case hex digits. Other algorithms (sha256+b64, ...) are
# "unsupported" there, which validator.go lets pass after the pattern check.
_HEX_DIGITS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[a-f0-9]+")

# validator.go validateConfig: `^[^=]+=.*$` in Go's RE2, where `.` does not
# match a newline and `$` is the end of the text.
_ENV = re.compile(r"[^=]+=.*")

# RFC 3339 date-time as Go's time.Parse(time.RFC3339) takes it, which is what
# both gojsonschema's "date-time" format and Go's time.Time decode use: upper
# case T and Z only, and no leap second 60 (both narrower than RFC 3339).
_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]+)?"
    r"(?:Z|[+-](?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# RFC 3986 section 3 (URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ]).
# The schema's "uri" format needs a scheme; upstream checks it with Go's
# url.Parse plus "has a scheme", the conformance rows with a strict RFC 3986
# parser; this grammar is the stricter of the two.
_U = r"A-Za-z0-9\-._~!$&'()*+,;="  # unreserved and sub-delims
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_U}:@]|{_PCT})"
_AUTHORITY = rf"(?:(?:[{_U}:]|{_PCT})*@)?(?:\[[0-9A-Fa-f:.{_U}]+\]|(?:[{_U}]|{_PCT})*)(?::[0-9]*)?"
_URI = re.compile(
    rf"[A-Za-z][A-Za-z0-9+.\-]*:"
    rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?"
    rf"(?:#(?:{_PCHAR}|[/?])*)?"
)


def _media_type(value: Any, path: str) -> None:
    _string(value, path)
    if not _MEDIA_TYPE.fullmatch(value):
        raise _fail(path, 'must be a media type "type/subtype" (RFC 6838, 127 characters a side)', value)


def _digest(value: Any, path: str) -> None:
    _string(value, path)
    if not _DIGEST.fullmatch(value):
        raise _fail(path, 'must be a digest "algorithm:encoded" such as "sha256:<64 hex digits>"', value)
    algorithm, _, encoded = value.partition(":")
    digits = _HEX_DIGITS.get(algorithm)
    if digits is not None and (len(encoded) != digits or not _LOWER_HEX.fullmatch(encoded)):
        raise _fail(path, f"a {algorithm} digest must have {digits} lower-case hex digits", value)


def _uri(value: Any, path: str) -> None:
    _string(value, path)
    if not _URI.fullmatch(value):
        raise _fail(path, "must be an absolute URI with a scheme (RFC 3986)", value)


def _date_time(value: Any, path: str) -> None:
    _string(value, path)
    match = _DATE_TIME.fullmatch(value)
    if match is None or not _date_time_in_range(match):
        raise _fail(path, 'must be an RFC 3339 date-time such as "2015-10-31T22:22:56.015925234Z"', value)


def _date_time_in_range(match: re.Match[str]) -> bool:
    year, month, day = (int(match[name]) for name in ("year", "month", "day"))
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    last_day = 29 if month == 2 and leap else _DAYS_IN_MONTH[month - 1]
    in_range = 1 <= day <= last_day and int(match["hour"]) <= 23
    in_range = in_range and int(match["minute"]) <= 59 and int(match["second"]) <= 59
    if match["off_hour"] is not None:
        in_range = in_range and int(match["off_hour"]) <= 23 and int(match["off_minute"]) <= 59
    return in_range


def _base64(value: Any, path: str) -> None:
    # content-descriptor.json gives `data` only "type: string" (binaryEncoding
    # is not a draft-04 keyword); Go's []byte decode is what rejects it:
    # base64.StdEncoding, padding required, but \r and \n skipped.
    _string(value, path)
    encoded = value.replace("\r", "").replace("\n", "")
    try:
        binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _fail(path, "must be standard base64 with padding", value) from None


def _env_entry(value: Any, path: str) -> None:
    _string(value, path)
    if not _ENV.fullmatch(value):
        raise _fail(path, 'must be "NAME=value"', value)


# ------------------------------------------------------------------ documents

_string_map = _map(_string)  # defs.json#/definitions/mapStringString
_object_map = _map(_json_object)  # defs.json#/definitions/mapStringObject

# image-index-schema.json, manifests[].platform (Go: specs-go/v1 Platform).
_platform = _object(
    {
        "architecture": _string,
        "os": _string,
        "os.version": _string,
        "os.features": _array(_string),
        "variant": _string,
    },
    required=("architecture", "os"),
)

# content-descriptor.json with defs-descriptor.json. `platform` is not in that
# schema but is in Go's Descriptor struct (so its types are checked there);
# image-index-schema.json's entries add the required architecture and os.
_descriptor = _object(
    {
        "mediaType": _media_type,
        "size": _size,
        "digest": _digest,
        "urls": _array(_uri),
        "data": _base64,
        "artifactType": _media_type,
        "annotations": _string_map,
        "platform": _platform,
    },
    required=("mediaType", "size", "digest"),
)


def _not_an_index(doc: dict[str, Any], path: str) -> None:
    # (pybox) A manifest that also reads as an index is ambiguous: two clients
    # could pull different images for one digest (GHSA-77vh-xpmg-72qh, and
    # containerd's images.validateMediaType). The spec: "when used, this field
    # MUST contain the media type" of a manifest.
    if doc.get("manifests"):
        raise _Invalid(_field(path, "manifests"), "must not be set in an image manifest (is it an index?)")
    _one_of(doc, path, "mediaType", _MANIFEST_TYPES)


def _not_a_manifest(doc: dict[str, Any], path: str) -> None:
    # (pybox) The converse of _not_an_index, for the same advisory.
    for name in ("config", "layers"):
        if doc.get(name):
            raise _Invalid(_field(path, name), "must not be set in an image index (is it a manifest?)")
    _one_of(doc, path, "mediaType", _INDEX_TYPES)


# image-manifest-schema.json
_manifest = _all(
    _object(
        {
            "schemaVersion": _schema_version,
            "mediaType": _media_type,
            "artifactType": _media_type,
            "config": _descriptor,
            "subject": _descriptor,
            "layers": _array(_descriptor, non_empty=True),  # minItems: 1
            "annotations": _string_map,
        },
        required=("schemaVersion", "config", "layers"),
    ),
    _not_an_index,
)

# image-index-schema.json. Its manifests[] items restate the descriptor with
# `size` as defs.json's int64 and a `platform`; the descriptor check covers
# both (see _size for the sign).
_index = _all(
    _object(
        {
            "schemaVersion": _schema_version,
            "mediaType": _media_type,
            "artifactType": _media_type,
            "subject": _descriptor,
            "manifests": _array(_descriptor),
            "annotations": _string_map,
        },
        required=("schemaVersion", "manifests"),
    ),
    _not_a_manifest,
)

# config-schema.json, properties.config (Go: ImageConfig).
_container_config = _object(
    {
        "User": _string,
        "ExposedPorts": _object_map,
        # (pybox) Docker's container.Config writes "Env": null (no omitempty)
        # and Go decodes it; the schema alone would refuse such real images.
        "Env": _or_null(_array(_env_entry)),
        "Entrypoint": _or_null(_array(_string)),
        "Cmd": _or_null(_array(_string)),
        "Volumes": _or_null(_object_map),
        "WorkingDir": _string,
        "Labels": _or_null(_string_map),
        "StopSignal": _string,
        "ArgsEscaped": _boolean,
    }
)

# config-schema.json, properties.rootfs. diff_ids are only "string" there;
# (pybox) they must be digests, because they name directories in the store.
_rootfs = _object(
    {"diff_ids": _array(_digest), "type": _enum("layers")},
    required=("diff_ids", "type"),
)

# config-schema.json, properties.history.items
_history_entry = _object(
    {
        "created": _date_time,
        "author": _string,
        "created_by": _string,
        "comment": _string,
        "empty_layer": _boolean,
    }
)

# config-schema.json. Docker's configs add container, container_config,
# docker_version and more: allowed, as the schema allows other members.
_config = _object(
    {
        "created": _date_time,
        "author": _string,
        "architecture": _string,
        "variant": _string,
        "os": _string,
        "os.version": _string,
        "os.features": _array(_string),
        "config": _container_config,
        "rootfs": _rootfs,
        "history": _array(_history_entry),
    },
    required=("architecture", "os", "rootfs"),
)

# image-layout-schema.json
_layout = _object({"imageLayoutVersion": _enum("1.0.0")}, required=("imageLayoutVersion",))


# ------------------------------------------------------------------ public API


def _run(what: str, check: _Check, doc: object) -> None:
    try:
        check(doc, "")
    except _Invalid as e:
        where = f"{e.path}: " if e.path else ""
        raise InvalidDocument(f"invalid {what}: {where}{e.problem}") from None


def validate_descriptor(doc: object, where: str = "descriptor") -> None:
    """Check one content descriptor; `where` names it in the error ("invalid <where>: ...")."""
    _run(where, _descriptor, doc)


def validate_manifest(doc: object) -> None:
    """Check an OCI image manifest or a Docker schema2 manifest (same shape)."""
    _run("image manifest", _manifest, doc)


def validate_index(doc: object) -> None:
    """Check an OCI image index or a Docker manifest list (same shape)."""
    _run("image index", _index, doc)


def validate_config(doc: object) -> None:
    """Check an OCI image config or a Docker image config (extra members allowed)."""
    _run("image config", _config, doc)


def validate_layout(doc: object) -> None:
    """Check the contents of an image layout's ``oci-layout`` file."""
    _run("image layout", _layout, doc)


_BY_MEDIA_TYPE: dict[str, tuple[str, _Check]] = {
    MT.OCI_DESCRIPTOR: ("descriptor", _descriptor),
    MT.OCI_LAYOUT: ("image layout", _layout),
    MT.OCI_MANIFEST: ("image manifest", _manifest),
    MT.DOCKER_MANIFEST: ("image manifest", _manifest),
    MT.OCI_INDEX: ("image index", _index),
    MT.DOCKER_LIST: ("image index", _index),
    MT.OCI_CONFIG: ("image config", _config),
    MT.DOCKER_CONFIG: ("image config", _config),
}


def validate_document(media_type: str, raw: bytes) -> object:
    """Parse `raw` as the document `media_type` names, validate it and return it.

    `media_type` may carry parameters, as a Content-Type header does. A
    manifest or index that names its own media type must name this one.
    """
    name = media_type.partition(";")[0].strip().lower()
    if name not in _BY_MEDIA_TYPE:
        raise InvalidDocument(f"cannot validate a document of unknown media type {media_type!r}")
    what, check = _BY_MEDIA_TYPE[name]
    doc = _parse(what, raw)
    _run(what, check, doc)
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if what in ("image manifest", "image index") and declared is not None and declared != name:
        raise InvalidDocument(
            f"invalid {what}: mediaType: says {declared!r}, but the document was given as {name!r}"
        )
    return doc


# ------------------------------------------------------------------ JSON parsing


def _parse(what: str, raw: bytes) -> object:
    # Go's encoding/json reads UTF-8 only (Python's json.loads on bytes would
    # also take UTF-16 and UTF-32). Go replaces invalid bytes with U+FFFD; (pybox)
    # refuses them, since the digest covers bytes nobody can read back.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidDocument(f"invalid {what}: not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_members)
    except RecursionError:
        raise InvalidDocument(f"invalid {what}: not valid JSON: nested too deeply") from None
    except ValueError as e:  # json.JSONDecodeError, _NotJson, int digit limit
        raise InvalidDocument(f"invalid {what}: not valid JSON: {e}") from None


def _refuse_constant(name: str) -> object:
    # Python's json takes NaN, Infinity and -Infinity; they are not JSON
    # (RFC 8259 section 6) and Go's encoding/json refuses them.
    raise _NotJson(f"{name} is not a JSON value")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # (pybox) Go and Python both keep the last of duplicate keys, other parsers
    # the first; a document whose meaning depends on the parser is refused
    # (RFC 8259 section 4: names SHOULD be unique; I-JSON, RFC 7493: MUST).
    members: dict[str, Any] = {}
    for key, value in pairs:
        if key in members:
            raise _NotJson(f"duplicate key {json.dumps(key, ensure_ascii=False)}")
        members[key] = value
    return members
