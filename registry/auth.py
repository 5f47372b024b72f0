"""``WWW-Authenticate`` challenges and the tokens that answer them.

A registry answers an unauthenticated request with 401 and a challenge:
``Bearer realm="...",service="...",scope="..."`` (a token server issues a
token for that scope; anonymous for public images) or ``Basic realm="..."``.
Tokens are cached per realm, service and scope until they expire.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pybox.errors import RegistryError, TransportError, Unauthorized
from pybox.registry.credentials import Credentials

if TYPE_CHECKING:
    import requests

__all__ = ["Challenge", "parse_challenges", "Authenticator"]

log = logging.getLogger(__name__)

# auth-param = token BWS "=" BWS ( token / quoted-string )   (RFC 7235 section 2.1)
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME = re.compile(r"\s*,?\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s+|$)")
# Tokens without an expiry are good for 60 s (the distribution token spec's default).
_DEFAULT_TOKEN_LIFETIME = 60


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict, hash=False)


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value, in order."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if not m:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM.match(header, pos)
            if not p:
                break
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        out.append(Challenge(scheme, params))
    return out


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Answers challenges for one registry; holds tokens, never logs secrets."""

    def __init__(self, session: "requests.Session", *, host: str, verify: bool,
                 credentials: Credentials | None = None) -> None:
        self._host = host
        self._session = session
        self._verify = verify
        self._credentials = credentials
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        # Layer threads share one authenticator: fetch each token once.
        self._lock = threading.Lock()

    @property
    def credentials(self) -> Credentials | None:
        return self._credentials

    def who(self) -> str:
        return self._credentials.describe() if self._credentials else "no credentials (anonymous)"

    def _fetch_token(self, realm: str, service: str, scope: str) -> dict:
        """Ask the token server: OAuth2 with an identity token, else GET with Basic auth or anonymously.

        (distribution's token spec; Docker sends ``account`` with the user name.)
        """
        import requests

        creds = self._credentials
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "service": service, "client_id": "pybox"}
                if scope:
                    form["scope"] = scope
                resp = self._session.post(realm, data=form, verify=self._verify, timeout=30)
            else:
                params = {k: v for k, v in (("service", service), ("scope", scope)) if v}
                auth = None
                if creds is not None:
                    params["account"] = creds.username
                    auth = (creds.username, creds.password)
                resp = self._session.get(realm, params=params, auth=auth, verify=self._verify, timeout=30)
        except requests.RequestException as e:
            raise TransportError(f"cannot reach the token server {realm}: {type(e).__name__}") from None
        if resp.status_code in (401, 403):
            raise Unauthorized(
                f"the token server {realm} refused access to {scope or 'the registry'} with {self.who()}"
            )
        if resp.status_code != 200:
            raise RegistryError(f"the token server {realm} answered HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RegistryError(f"the token server {realm} did not answer with JSON")
        return doc

    def header(self, challenge: Challenge, scope: str) -> str:
        """The ``Authorization`` header value that answers ``challenge`` for ``scope``."""
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise Unauthorized(
                    f"{self._host} requires a user name and password (Basic auth): "
                    f"run 'pybox login {self._host}' or pass --creds"
                )
            pair = f"{self._credentials.username}:{self._credentials.password}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if challenge.scheme == "bearer":
            return "Bearer " + self._token(challenge, scope)
        raise RegistryError(f"unsupported authentication scheme {challenge.scheme!r}")

    def forget(self, challenge: Challenge, scope: str) -> None:
        """Drop a cached token the registry refused."""
        key = (challenge.params.get("realm", ""), challenge.params.get("service", ""),
               scope or challenge.params.get("scope", ""))
        with self._lock:
            self._tokens.pop(key, None)

    def _token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError("the registry's Bearer challenge names no token realm")
        service = challenge.params.get("service", "")
        scope = scope or challenge.params.get("scope", "")
        key = (realm, service, scope)
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached.expires > time.monotonic():
                return cached.value
            doc = self._fetch_token(realm, service, scope)
            return self._remember(key, doc, realm)

    def _remember(self, key: tuple[str, str, str], doc: dict, realm: str) -> str:
        try:
            value = doc.get("token") or doc.get("access_token")
            lifetime = int(doc.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (AttributeError, TypeError, ValueError):
            value, lifetime = None, 0
        if not value:
            raise RegistryError(f"the token server {realm} returned no token")
        # Renew a little early so a token does not expire in flight.
        self._tokens[key] = _Token(value, time.monotonic() + max(lifetime - 5, 1))
        log.debug("got a token for %s from %s", key[2], realm)
        return value
