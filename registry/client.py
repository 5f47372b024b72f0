"""HTTP for the distribution API: the endpoint, authentication and error translation.

Every ``requests`` exception and every HTTP error status is turned into a
:mod:`pybox.errors` error here, with the host and the object in the message
and never a credential.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pybox.errors import (
    RegistryError,
    RemoteNotFound,
    TransportError,
    Unauthorized,
)
from pybox.image import ACCEPT_MANIFESTS, Descriptor
from pybox.store.verify import VerifiedReader
from pybox.registry.auth import Authenticator, Challenge, Credentials, parse_challenges

if TYPE_CHECKING:
    import requests

__all__ = ["RegistryClient", "RawBody", "CHUNK"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_TIMEOUT = (30, 120)


class RegistryClient:
    """Talks to one registry host.

    Loopback registries may speak plain HTTP (as Docker allows); any other
    host needs TLS unless ``tls_verify`` is off, which also permits HTTP.
    """

    def __init__(
        self,
        host: str,
        *,
        plain_http_ok: bool,
        tls_verify: bool = True,
        credentials: Credentials | None = None,
    ) -> None:
        import requests

        self.host = host
        self._plain_http_ok = plain_http_ok or not tls_verify
        self._verify = tls_verify
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "pybox/0.1"
        self._auth = Authenticator(self._session, verify=tls_verify, credentials=credentials)
        self._base: str | None = None
        self._challenge: Challenge | None = None

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------ endpoint

    def _ping(self) -> str:
        """Find the API base URL (https, else http where allowed) and its auth challenge."""
        import requests

        schemes = ["https", "http"] if self._plain_http_ok else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            base = f"{scheme}://{self.host}"
            try:
                resp = self._session.get(base + "/v2/", verify=self._verify, timeout=_TIMEOUT)
            except (requests.exceptions.SSLError, requests.exceptions.ConnectionError) as e:
                last = e
                continue
            except requests.RequestException as e:
                raise self._transport_error(e) from None
            resp.close()
            if resp.status_code == 401:
                self._challenge = self._pick_challenge(resp)
            elif resp.status_code >= 400 and resp.status_code != 404:
                raise RegistryError(f"{self.host} does not answer as a registry (HTTP {resp.status_code} for /v2/)")
            return base
        assert last is not None
        raise self._transport_error(last) from None

    @property
    def base(self) -> str:
        if self._base is None:
            self._base = self._ping()
        return self._base

    @staticmethod
    def _pick_challenge(resp: "requests.Response") -> Challenge | None:
        challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
        for preferred in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == preferred:
                    return c
        return challenges[0] if challenges else None

    def _transport_error(self, e: Exception) -> TransportError:
        import requests

        if isinstance(e, requests.exceptions.SSLError):
            return TransportError(
                f"TLS handshake with {self.host} failed ({_reason(e)}); "
                "if it uses a self-signed certificate, add its CA or pass --tls-verify=false"
            )
        text = str(e)
        if "Name or service not known" in text or "NameResolutionError" in text or "nodename nor servname" in text:
            return TransportError(f"cannot resolve registry host {self.host}")
        if isinstance(e, requests.exceptions.Timeout):
            return TransportError(f"timed out talking to {self.host}")
        if isinstance(e, requests.exceptions.ConnectionError):
            return TransportError(f"cannot connect to {self.host}: {_reason(e)}")
        return TransportError(f"error talking to {self.host}: {type(e).__name__}")

    # ------------------------------------------------------------ requests

    def request(self, method: str, path: str, *, scope: str, what: str, headers: dict[str, str] | None = None,
                stream: bool = False) -> "requests.Response":
        """Send a request, answering an auth challenge once; raise on error statuses."""
        import requests

        url = self.base + path
        hdrs = dict(headers or {})
        for attempt in range(2):
            if self._challenge is not None:
                hdrs["Authorization"] = self._auth.header(self._challenge, scope)
            try:
                resp = self._session.request(method, url, headers=hdrs, stream=stream, verify=self._verify,
                                             timeout=_TIMEOUT)
            except requests.RequestException as e:
                raise self._transport_error(e) from None
            if resp.status_code == 401 and attempt == 0:
                challenge = self._pick_challenge(resp)
                if challenge is not None:
                    # A new challenge, or a cached token the registry no longer takes.
                    resp.close()
                    self._auth.forget(challenge, scope)
                    self._challenge = challenge
                    continue
            if resp.status_code < 400:
                return resp
            self._raise_for(resp, what)
        raise AssertionError("unreachable")

    def _raise_for(self, resp: "requests.Response", what: str) -> None:
        detail = _error_detail(resp)
        resp.close()
        status = resp.status_code
        if status == 401:
            raise Unauthorized(f"{self.host} requires authentication for {what}{detail}")
        if status == 403:
            raise Unauthorized(f"{self.host} denied access to {what}{detail}")
        if status == 404:
            raise RemoteNotFound(f"{what} not found on {self.host}{detail}")
        raise RegistryError(f"{self.host} answered HTTP {status} for {what}{detail}")

    # ----------------------------------------------------------- endpoints

    def get_manifest(self, repo: str, ref: str, what: str) -> tuple[bytes, str]:
        """A manifest or index body and the media type the registry gave it."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", scope=_pull_scope(repo), what=what,
                            headers={"Accept": ACCEPT_MANIFESTS})
        try:
            body = resp.content
        finally:
            resp.close()
        return body, resp.headers.get("Content-Type", "")

    def open_blob(self, repo: str, digest: str, what: str) -> "requests.Response":
        """A streaming response for a blob (redirects followed; Authorization is not sent to another host)."""
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_pull_scope(repo), what=what, stream=True)

    def get_blob(self, repo: str, desc: Descriptor, what: str) -> bytes:
        """A small blob (a config), verified against its descriptor."""
        resp = self.open_blob(repo, desc.digest, what)
        chunks: list[bytes] = []
        try:
            reader = VerifiedReader(RawBody(resp), desc.digest, desc.size, what)
            while chunk := reader.read(CHUNK):
                chunks.append(chunk)
        finally:
            resp.close()
        return b"".join(chunks)


class RawBody:
    """A response body read in large chunks straight from the socket.

    ``iter_content()`` defaults to 1-byte chunks; ``raw.read(n)`` returns up
    to n bytes with the transfer encoding undone.
    """

    def __init__(self, resp: "requests.Response") -> None:
        self._raw = resp.raw

    def read(self, n: int = -1) -> bytes:
        return self._raw.read(None if n < 0 else n, decode_content=True) or b""


def _pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def _reason(e: Exception) -> str:
    """The innermost cause of a requests/urllib3 exception, without URLs full of parameters."""
    inner: BaseException = e
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    return text.split(": ", 1)[-1][:200]


def _error_detail(resp: "requests.Response") -> str:
    """The registry's own error text (distribution's ``{"errors": [...]}``), if any."""
    try:
        doc = resp.json()
        errors = doc.get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        return f" ({'; '.join(p for p in parts if p)})" if parts else ""
    except (ValueError, AttributeError):
        return ""
