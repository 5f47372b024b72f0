"""WWW-Authenticate challenge parsing (RFC 7235 syntax, as registries send it)."""

from __future__ import annotations

from pybox.registry.auth import parse_challenges


def test_bearer_challenge_with_quoted_params() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    (c,) = parse_challenges(header)
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }


def test_basic_challenge() -> None:
    (c,) = parse_challenges('Basic realm="basic-realm"')
    assert c.scheme == "basic" and c.params == {"realm": "basic-realm"}


def test_several_challenges_and_escapes() -> None:
    header = 'Basic realm="a \\"quoted\\" realm", Bearer realm="https://t/x",scope="repository:a/b:pull,push"'
    challenges = parse_challenges(header)
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params["realm"] == 'a "quoted" realm'
    assert challenges[1].params["scope"] == "repository:a/b:pull,push"


def test_unquoted_params_and_empty_header() -> None:
    (c,) = parse_challenges("Bearer realm=https://t/token, service=reg")
    assert c.params == {"realm": "https://t/token", "service": "reg"}
    assert parse_challenges("") == []
