"""Retry timing rules, token caching and error wording, without a network."""

from __future__ import annotations

import requests
import pytest

from pybox.errors import TransportError
from pybox.registry import auth as auth_module
from pybox.registry.auth import Authenticator, parse_challenges
from pybox.registry.client import RegistryClient, RetryPolicy, _retry_after
from pybox.registry.credentials import Credentials


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0)
    for attempt in range(10):
        wait = policy.backoff(attempt)
        assert 0 <= wait <= min(4.0, 0.5 * 2**attempt)


def _response(headers: dict[str, str]) -> requests.Response:
    resp = requests.Response()
    resp.headers.update(headers)
    return resp


def test_retry_after_seconds_and_http_date() -> None:
    assert _retry_after(_response({"Retry-After": "3"})) == 3.0
    assert _retry_after(_response({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert _retry_after(_response({})) is None


class _FakeSession:
    """Answers token requests and counts them."""

    def __init__(self, expires_in: int) -> None:
        self.calls: list[dict] = []
        self.expires_in = expires_in

    def get(self, url: str, **kwargs: object) -> requests.Response:
        self.calls.append({"url": url, **kwargs})
        resp = requests.Response()
        resp.status_code = 200
        resp._content = ('{"token": "t%d", "expires_in": %d}' % (len(self.calls), self.expires_in)).encode()
        return resp


def test_tokens_are_cached_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: now[0])
    session = _FakeSession(expires_in=300)
    creds = Credentials(username="u", password="secret", source="test")
    authn = Authenticator(session, host="h", verify=True, credentials=creds)  # type: ignore[arg-type]
    (challenge,) = parse_challenges('Bearer realm="https://auth.example/token",service="svc"')
    scope = "repository:a/b:pull"
    assert authn.header(challenge, scope) == "Bearer t1"
    assert authn.header(challenge, scope) == "Bearer t1"
    assert len(session.calls) == 1
    assert session.calls[0]["params"] == {"service": "svc", "scope": scope, "account": "u"}
    assert session.calls[0]["auth"] == ("u", "secret")
    now[0] += 296  # renewed a little before expires_in
    assert authn.header(challenge, scope) == "Bearer t2"
    assert authn.header(challenge, "repository:other:pull") == "Bearer t3"
    authn.forget(challenge, scope)
    assert authn.header(challenge, scope) == "Bearer t4"


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(username="u", password="hunter2", identity_token="tok", source="--creds")
    assert "hunter2" not in repr(creds) and "tok" not in repr(creds)
    assert creds.describe() == "an identity token from --creds"


def test_dns_and_connection_failures_read_well() -> None:
    client = RegistryClient("registry.invalid:5000", plain_http_ok=False)
    dns = requests.exceptions.ConnectionError("HTTPSConnectionPool: NameResolutionError: Failed to resolve")
    refused = requests.exceptions.ConnectionError("Max retries exceeded: [Errno 111] Connection refused")
    assert str(client._transport_error(dns)) == "cannot resolve registry host registry.invalid:5000"
    assert str(client._transport_error(refused)).startswith("cannot connect to registry.invalid:5000")
    assert isinstance(client._transport_error(refused), TransportError)
    client.close()
