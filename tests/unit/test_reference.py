"""pybox.reference against distribution/reference's own test tables, plus pybox's uses.

The tables (``../shared/conformance/reference``, described in its README)
restate Go's ``reference_test.go`` and ``normalize_test.go`` row by row;
each row is one test here, named after the Go test and its input. Rows with
an ``err`` demand Go's exact message inside ours.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from support.conformance import CONFORMANCE, require_data

from pybox.errors import InvalidReference, UsageError
from pybox.reference import (
    DEFAULT_DOMAIN,
    NAME_TOTAL_LENGTH_MAX,
    Reference,
    familiar_match,
    normalize,
    parse,
    parse_any_reference,
    parse_docker_ref,
    parse_named,
    parse_normalized_named,
    with_name,
)

DATA = CONFORMANCE / "reference"

HEX = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"


def _short(text: str) -> str:
    """Keep ids readable: some inputs are 270 characters of 'a'."""
    if not text:
        return "<empty>"
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)})"


def _cases(table: str, test: str, key: str = "input") -> list[Any]:
    """One pytest param per row of ``test`` in ``table``; [None] when the data is absent."""
    path = DATA / table
    if not path.is_file():
        return [pytest.param(None, id=f"{test}-absent")]
    groups = json.loads(path.read_text(encoding="utf-8"))["tests"]
    (group,) = (g for g in groups if g["test"] == test)
    return [
        pytest.param(case, id=f"{test}-{i}-{_short(str(case[key]))}")
        for i, case in enumerate(group["cases"])
    ]


@pytest.fixture
def row(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param is None:
        require_data(DATA)
    return request.param


def _rows(table: str, test: str, key: str = "input") -> pytest.MarkDecorator:
    return pytest.mark.parametrize("row", _cases(table, test, key), indirect=True)


def _raises_go_error(message: str | None) -> Any:
    """pytest.raises for Go's exact error text, somewhere in ours."""
    return pytest.raises(InvalidReference, match=None if message is None else re.escape(message))


def _check_parts(ref: Reference, *, name: str, tag: str, digest: str) -> None:
    """The tables' convention: "" means the part must be absent."""
    assert ref.name == name
    assert ref.tag == (tag or None)
    assert ref.digest == (digest or None)


# --- reference_test.go ----------------------------------------------------------


@_rows("reference-cases.json", "TestReferenceParse")
def test_reference_parse(row: dict[str, Any]) -> None:
    if row["err"]:
        with _raises_go_error(row["err"]) as info:
            parse(row["input"])
        assert f'"{row["input"]}"' in str(info.value)
        return
    ref = parse(row["input"])
    assert str(ref) == row["input"]
    assert ref.domain == row["domain"]
    _check_parts(ref, name=row["repository"], tag=row["tag"], digest=row["digest"])


@_rows("reference-cases.json", "TestWithNameFailure")
def test_with_name_failure(row: dict[str, Any]) -> None:
    with _raises_go_error(row["err"]):
        with_name(row["input"])


@_rows("reference-cases.json", "TestDomainAndPath")
def test_domain_and_path(row: dict[str, Any]) -> None:
    named = with_name(row["input"])
    assert (named.domain, named.path) == (row["domain"], row["path"])


@_rows("reference-cases.json", "TestSerialization")
def test_serialization(row: dict[str, Any]) -> None:
    """Go decodes a JSON field with Parse and must encode it back to the same text."""
    text = json.dumps({"Description": row["description"], "Field": row["input"]})
    document = json.loads(text)
    if row["err"]:
        with _raises_go_error(row["err"]):
            parse(document["Field"])
        return
    ref = parse(document["Field"])
    _check_parts(ref, name=row["name"], tag=row["tag"], digest=row["digest"])
    assert json.dumps({"Description": document["Description"], "Field": str(ref)}) == text


@_rows("reference-cases.json", "TestWithTag", key="combined")
def test_with_tag(row: dict[str, Any]) -> None:
    named = with_name(row["name"])
    if row["digest"]:
        named = named.with_digest(row["digest"])
    assert str(named.with_tag(row["tag"])) == row["combined"]


@_rows("reference-cases.json", "TestWithDigest", key="combined")
def test_with_digest(row: dict[str, Any]) -> None:
    named = with_name(row["name"])
    if row["tag"]:
        named = named.with_tag(row["tag"])
    assert str(named.with_digest(row["digest"])) == row["combined"]


@_rows("reference-cases.json", "TestParseNamed")
def test_parse_named(row: dict[str, Any]) -> None:
    if row["err"]:
        with _raises_go_error(row["err"]):
            parse_named(row["input"])
        return
    named = parse_named(row["input"])
    assert (named.domain, named.path) == (row["domain"], row["path"])


# --- normalize_test.go ----------------------------------------------------------


@_rows("normalize-cases.json", "TestValidateReferenceName")
def test_validate_reference_name(row: dict[str, Any]) -> None:
    _check_validity(row)


@_rows("normalize-cases.json", "TestValidateRemoteName")
def test_validate_remote_name(row: dict[str, Any]) -> None:
    _check_validity(row)


def _check_validity(row: dict[str, Any]) -> None:
    if row["valid"]:
        parse_normalized_named(row["input"])
    else:
        with _raises_go_error(None):
            parse_normalized_named(row["input"])


@_rows("normalize-cases.json", "TestParseRepositoryInfo", key="FullName")
def test_parse_repository_info(row: dict[str, Any]) -> None:
    spellings = [row["FamiliarName"], row["FullName"]]
    if row["AmbiguousName"]:
        spellings.append(row["AmbiguousName"])
    for spelling in spellings:
        named = parse_normalized_named(spelling)
        assert named.familiar == row["FamiliarName"], spelling
        assert named.familiar_name == row["FamiliarName"], spelling
        assert str(named) == row["FullName"], spelling
        assert named.domain == row["Domain"], spelling
        assert named.path == row["RemoteName"], spelling


@_rows("normalize-cases.json", "TestParseReferenceWithTagAndDigest")
def test_parse_reference_with_tag_and_digest(row: dict[str, Any]) -> None:
    ref = parse_normalized_named(row["input"])
    assert str(ref) == row["expected_string"]
    assert ref.tag is not None and ref.digest is not None
    assert ref.familiar == row["expected_familiar_string"]


@_rows("normalize-cases.json", "TestInvalidReferenceComponents", key="call")
def test_invalid_reference_components(row: dict[str, Any]) -> None:
    with _raises_go_error(None):
        if row["call"] == "ParseNormalizedNamed":
            parse_normalized_named(row["input"])
        elif row["call"] == "WithTag":
            parse_normalized_named(row["base"]).with_tag(row["input"])
        else:
            assert row["call"] == "WithDigest"
            parse_normalized_named(row["base"]).with_digest(row["input"])


@_rows("normalize-cases.json", "TestParseAnyReference", key="Reference")
def test_parse_any_reference(row: dict[str, Any]) -> None:
    ref = parse_any_reference(row["Reference"])
    assert str(ref) == row["Equivalent"]
    if row["Expected"] is None:
        assert ref == parse(row["Equivalent"])
    else:
        assert row["Expected"]["kind"] == "digestReference"
        assert ref == row["Expected"]["digest"]


@_rows("normalize-cases.json", "TestNormalizedSplitHostname")
def test_normalized_split_hostname(row: dict[str, Any]) -> None:
    named = parse_normalized_named(row["input"])
    assert (named.domain, named.path) == (row["domain"], row["path"])


@_rows("normalize-cases.json", "TestMatchError", key="pattern")
def test_match_error(row: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="syntax error in pattern"):
        familiar_match(row["pattern"], parse_any_reference(row["reference"]))


@_rows("normalize-cases.json", "TestMatch", key="reference")
def test_match(row: dict[str, Any]) -> None:
    assert familiar_match(row["pattern"], parse_any_reference(row["reference"])) is row["expected"]


@_rows("normalize-cases.json", "TestParseDockerRef")
def test_parse_docker_ref(row: dict[str, Any]) -> None:
    ref = parse_docker_ref(row["input"])
    assert str(ref) == row["expected"]
    parse(row["expected"])


# --- pybox's own expectations (no conformance data needed) ------------------------


@pytest.mark.parametrize(
    ("typed", "full", "familiar"),
    [
        ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("host:5000/a/b:tag", "host:5000/a/b:tag", "host:5000/a/b:tag"),
        ("127.0.0.1:5000/x:y", "127.0.0.1:5000/x:y", "127.0.0.1:5000/x:y"),
    ],
)
def test_normalize(typed: str, full: str, familiar: str) -> None:
    ref = normalize(typed)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert normalize(full) == ref


def test_normalize_parts() -> None:
    ref = normalize("host:5000/a/b:tag")
    assert ref == Reference(domain="host:5000", path="a/b", tag="tag")
    assert ref.name == "host:5000/a/b"
    assert ref.api_host == "host:5000"
    assert normalize("alpine").domain == DEFAULT_DOMAIN
    assert normalize("alpine").api_host == "registry-1.docker.io"


def test_localhost_is_a_domain() -> None:
    ref = normalize("localhost/x")
    assert (ref.domain, ref.path, ref.tag) == ("localhost", "x", "latest")
    assert ref.familiar == "localhost/x:latest"


def test_digest_only_gets_no_tag() -> None:
    ref = normalize(f"name@sha256:{HEX}")
    assert (ref.path, ref.tag, ref.digest) == ("library/name", None, f"sha256:{HEX}")
    assert str(ref) == f"docker.io/library/name@sha256:{HEX}"


def test_tag_and_digest_are_both_kept() -> None:
    ref = normalize(f"name:tag@sha256:{HEX}")
    assert (ref.tag, ref.digest) == ("tag", f"sha256:{HEX}")
    assert ref.familiar == f"name:tag@sha256:{HEX}"
    assert parse_docker_ref(f"name:tag@sha256:{HEX}").tag is None


def test_parse_does_not_normalize() -> None:
    ref = parse("alpine")
    assert (ref.domain, ref.path, ref.tag) == ("", "alpine", None)
    assert ref.name == "alpine"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "invalid reference format"),  # Go: "docker.io/library/" does not parse
        ("Alpine", "must be lowercase"),
        ("alpine:", "invalid reference format"),
        ("a b", "invalid reference format"),
        ("alpine@sha256:abc", "invalid reference format"),
        (f"alpine@sha256:{HEX[:40]}", "invalid checksum digest length"),
        (f"alpine@sha256:{HEX.upper()}", "invalid checksum digest format"),
        (f"alpine@sha512:{HEX}{HEX}", "unsupported digest algorithm"),
        (HEX, "cannot specify 64-byte hexadecimal strings"),
        ("x/" + "a" * NAME_TOTAL_LENGTH_MAX, "must not be more than 255 characters"),
    ],
)
def test_invalid_reference_names_the_input(typed: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        normalize(typed)
    assert str(info.value).startswith(f'invalid reference "{typed}": ')
    assert reason in str(info.value)


def test_with_tag_and_digest_keep_each_other() -> None:
    ref = normalize("alpine").with_digest(f"sha256:{HEX}")
    assert (ref.tag, ref.digest) == ("latest", f"sha256:{HEX}")
    assert ref.with_tag("3").tag == "3"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        ref.with_tag("-bad")


@pytest.mark.parametrize(
    ("typed", "loopback"),
    [
        ("localhost/x", True),
        ("localhost:5000/x", True),
        ("127.0.0.1:5000/x", True),
        ("127.1.2.3/x", True),
        ("[::1]:5000/x", True),
        ("[::1]/x", True),
        ("alpine", False),
        ("192.168.1.1:5000/x", False),
        ("[2001:db8::1]:5000/x", False),
        ("example.com/x", False),
    ],
)
def test_is_loopback(typed: str, loopback: bool) -> None:
    assert normalize(typed).is_loopback is loopback


def test_parse_any_reference_takes_an_image_id() -> None:
    assert parse_any_reference(HEX) == f"sha256:{HEX}"
    assert parse_any_reference("alpine") == parse_normalized_named("alpine")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("alpine", True),
        ("alp*", True),
        ("alpine:3*", True),
        ("*/alpine", False),
        ("alpine:2", False),
    ],
)
def test_familiar_match(pattern: str, expected: bool) -> None:
    assert familiar_match(pattern, normalize("alpine:3.20")) is expected


def test_pathological_input_is_refused_quickly() -> None:
    """No regex backtracking blow-up on long near-misses."""
    with pytest.raises(InvalidReference):
        normalize("a." * 5000 + "-/b")
    with pytest.raises(InvalidReference):
        normalize("a-" * 5000 + "!")
