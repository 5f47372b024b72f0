"""A token server for docker-registry's `auth: token` (distribution 2.8).

It follows https://distribution.github.io/distribution/spec/auth/token/ and
.../spec/auth/oauth/ as the registry verifies them
(registry/auth/token/token.go): a JWT signed RS256 whose header carries the
signing certificate in `x5c`, which must chain to `rootcertbundle`; `iss`
must equal the configured issuer and `aud` the service; `access` lists what
the bearer may do. The certificate is self-signed and has no extended key
usage, so Go's x509 Verify, which asks for ServerAuth by default, accepts it.

    tokens = TokenServer(tmp_path / "token", users={"alice": "s3cret"}, public=["pub/app"])
    with tokens, Registry(tmp_path / "reg", auth=tokens.registry_auth_config()) as reg:
        ...

Authenticated users get every action they ask for; anonymous requests get
only `pull` on the public repositories. A refresh token comes with the
answer to a user's GET with `offline_token=true` or OAuth2 POST with
`access_type=offline`. distribution accepts a token up to
60 s after its `exp` (token.Leeway), whatever `expires_in` says.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from support.loopback import LoopbackServer, LoopbackService

__all__ = ["Access", "TokenRequest", "TokenServer"]

_log = logging.getLogger(__name__)

_SOCKET_TIMEOUT = 30.0
_MAX_BODY = 65536
# Form fields that are secrets: they never go into TokenServer.requests.
_SECRET_FIELDS = frozenset({"password", "refresh_token"})


@dataclass(frozen=True, kw_only=True)
class Access:
    """One entry of the token's `access` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True, kw_only=True)
class TokenRequest:
    """What a client asked for, without its secrets.

    `params` holds the query (GET) or form (POST) fields except `password`
    and `refresh_token`; `basic` says whether an `Authorization: Basic`
    header came, `user` is the name the client claimed (Basic, form or the
    owner of its refresh token), `status` the answer, `granted` the access
    the token carries.
    """

    method: str
    params: Mapping[str, tuple[str, ...]]
    basic: bool
    user: str | None
    status: int
    granted: tuple[Access, ...]


class _Denied(Exception):
    """A refusal, answered as a distribution-style error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _b64url(data: bytes) -> str:
    # JOSE base64url without padding (RFC 7515 section 2).
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _make_certificate(key: rsa.RSAPrivateKey, issuer: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _parse_scope(scope: str) -> Access | None:
    """`repository:test/app:pull,push` -> Access; the name may hold colons."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return Access(type=kind, name=name, actions=tuple(a for a in actions.split(",") if a))


class TokenServer(LoopbackService):
    """Issues registry tokens on 127.0.0.1 for `users` ({name: password}).

    `public` names repositories anonymous clients may pull. Tokens live
    `expires_in` seconds. The signing certificate goes to
    `workdir/rootcertbundle.pem`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        public: Iterable[str] = (),
        service: str = "pybox-test-registry",
        issuer: str = "pybox-test-token-server",
        expires_in: int = 300,
    ) -> None:
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self._users = dict(users or {})
        self._public = frozenset(public)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        certificate = _make_certificate(self._key, issuer)
        self._x5c = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
        workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = workdir / "rootcertbundle.pem"
        self.rootcertbundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}
        handler = type("_BoundHandler", (_TokenHandler,), {"tokens": self})
        self._server = LoopbackServer(handler, name="tokenserver")

    @property
    def realm(self) -> str:
        return f"http://{self.host}/token"

    def registry_auth_config(self) -> dict[str, Any]:
        """The `auth:` section for Registry(auth=...)."""
        return {"token": {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.rootcertbundle),
        }}

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    # --- tokens ----------------------------------------------------------------

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _check_password(self, user: str, password: str) -> None:
        expected = self._users.get(user)
        if expected is None or not secrets.compare_digest(expected, password):
            raise _Denied(401, "UNAUTHORIZED", "incorrect username or password")

    def _check_service(self, params: Mapping[str, list[str]]) -> None:
        # The spec makes `service` required; a client must echo the challenge's.
        if params.get("service", [""])[0] != self.service:
            raise _Denied(400, "invalid_request", f"service must be {self.service!r}")

    def _new_refresh_token(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[token] = user
        return token

    def _refresh_token_owner(self, token: str) -> str:
        with self._lock:
            user = self._refresh_tokens.get(token)
        if user is None:
            raise _Denied(401, "invalid_grant", "unknown refresh token")
        return user

    def _grant(self, user: str | None, scopes: Iterable[str]) -> tuple[Access, ...]:
        granted = []
        for scope in scopes:
            access = _parse_scope(scope)
            if access is None:
                continue
            if user is None:
                if access.type != "repository" or access.name not in self._public:
                    continue
                access = Access(type=access.type, name=access.name,
                                actions=tuple(a for a in access.actions if a == "pull"))
            if access.actions:
                granted.append(access)
        return tuple(granted)

    def _token(self, user: str | None, granted: tuple[Access, ...]) -> dict[str, Any]:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": [a.claim() for a in granted],
        }
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = signing_input + "." + _b64url(signature)
        issued_at = datetime.datetime.fromtimestamp(now, datetime.UTC)
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class _TokenHandler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no thread waits on an idle one.
    timeout = _SOCKET_TIMEOUT
    tokens: TokenServer

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("tokenserver: " + format, *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/token":
            self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        params = parse_qs(url.query)
        credentials = _basic_credentials(self.headers.get("Authorization"))
        user = credentials[0] if credentials else None
        try:
            self.tokens._check_service(params)
            if credentials is not None:
                self.tokens._check_password(*credentials)
            granted = self.tokens._grant(user, _scopes(params))
        except _Denied as denied:
            self._deny(denied, params, credentials is not None, user)
            return
        extra = {}
        # spec/auth/token: `offline_token=true` asks for a refresh token
        # (what `docker login` stores as its identity token).
        if user is not None and params.get("offline_token", [""])[0] == "true":
            extra["refresh_token"] = self.tokens._new_refresh_token(user)
        self._issue(params, credentials is not None, user, granted, extra)

    def do_POST(self) -> None:
        # OAuth2 password and refresh_token grants (spec/auth/oauth).
        if urlsplit(self.path).path != "/token":
            self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": self.path}]})
            return
        length = int(self.headers.get("Content-Length") or 0)
        params = parse_qs(self.rfile.read(min(length, _MAX_BODY)).decode())
        basic = self.headers.get("Authorization") is not None
        user = params.get("username", [None])[0]
        try:
            self.tokens._check_service(params)
            user = self._oauth_user(params)
            granted = self.tokens._grant(user, _scopes(params))
        except _Denied as denied:
            self._deny(denied, params, basic, user)
            return
        extra = {}
        if params.get("access_type", [""])[0] == "offline":
            extra["refresh_token"] = self.tokens._new_refresh_token(user)
        self._issue(params, basic, user, granted, extra)

    def _oauth_user(self, params: Mapping[str, list[str]]) -> str:
        grant_type = params.get("grant_type", [""])[0]
        if grant_type == "password":
            user = params.get("username", [""])[0]
            self.tokens._check_password(user, params.get("password", [""])[0])
            return user
        if grant_type == "refresh_token":
            return self.tokens._refresh_token_owner(params.get("refresh_token", [""])[0])
        raise _Denied(400, "unsupported_grant_type", f"grant_type {grant_type!r}")

    def _issue(self, params: Mapping[str, list[str]], basic: bool, user: str | None,
               granted: tuple[Access, ...], extra: Mapping[str, str]) -> None:
        self.tokens._record(TokenRequest(
            method=self.command, params=_public_params(params), basic=basic,
            user=user, status=200, granted=granted,
        ))
        self._answer(200, {**self.tokens._token(user, granted), **extra})

    def _deny(self, denied: _Denied, params: Mapping[str, list[str]], basic: bool,
              user: str | None) -> None:
        self.tokens._record(TokenRequest(
            method=self.command, params=_public_params(params), basic=basic,
            user=user, status=denied.status, granted=(),
        ))
        self._answer(denied.status, {"errors": [{"code": denied.code, "message": denied.message}]})

    def _answer(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _scopes(params: Mapping[str, list[str]]) -> list[str]:
    """GET repeats `scope`; the OAuth2 form separates scopes by spaces."""
    return [s for value in params.get("scope", []) for s in value.split()]


def _public_params(params: Mapping[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in params.items() if k not in _SECRET_FIELDS}
