"""HTTP for the distribution API: endpoint, TLS, authentication, retries and errors.

Every ``requests`` exception and every HTTP error status is turned into a
:mod:`pybox.errors` error here, with the host and the object in the message
and never a credential. Transient failures (connection errors and resets,
5xx, 429) are retried with exponential backoff and full jitter, honouring
``Retry-After``; blob bodies that break off are resumed with ``Range``
(see :class:`BlobStream`).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
import requests
import urllib3
from requests.adapters import HTTPAdapter

from pybox.errors import RegistryError, RemoteNotFound, TransportError, Unauthorized
from pybox.image import ACCEPT_MANIFESTS, Descriptor
from pybox.registry.auth import Authenticator, Challenge, parse_challenges
from pybox.registry.credentials import Credentials
from pybox.registry.tls import registry_ssl_context
from pybox.store.verify import VerifiedReader

__all__ = ["RegistryClient", "RetryPolicy", "BlobStream", "CHUNK"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_TIMEOUT = (30, 120)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 5  # tries per request, the first included
    base: float = 0.25  # seconds; the n-th retry waits up to base * 2**n
    cap: float = 8.0
    retry_after_cap: float = 60.0  # a registry asking for longer than this is not waited for

    def backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
        # clients that failed together do not retry together.
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


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
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.host = host
        self.retry = retry
        self._plain_http_ok = plain_http_ok or not tls_verify
        self._verify = tls_verify
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "pybox/0.1"
        if tls_verify:
            self._session.mount("https://", _TrustAdapter(registry_ssl_context(host)))
        self._session.mount("http://", HTTPAdapter(pool_maxsize=16))
        self._auth = Authenticator(self._session, host=host, verify=tls_verify, credentials=credentials)
        self._base: str | None = None
        self._challenge: Challenge | None = None
        self._ping_lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------ endpoint

    def _ping(self) -> str:
        """Find the API base URL (https, else http where allowed) and its auth challenge."""
        schemes = ["https", "http"] if self._plain_http_ok else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            base = f"{scheme}://{self.host}"
            try:
                resp = self._send("GET", base + "/v2/", headers={}, stream=False, what="/v2/")
            except TransportError as e:
                cause = e.__cause__
                # A certificate that does not verify is a problem to report,
                # not a sign that the registry speaks plain HTTP.
                if isinstance(cause, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in repr(cause):
                    raise
                if isinstance(cause, (requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                    last = cause
                    continue
                raise
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
        with self._ping_lock:
            if self._base is None:
                self._base = self._ping()
            return self._base

    @staticmethod
    def _pick_challenge(resp: requests.Response) -> Challenge | None:
        challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
        for preferred in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == preferred:
                    return c
        return challenges[0] if challenges else None

    def _transport_error(self, e: Exception) -> TransportError:
        if isinstance(e, requests.exceptions.SSLError):
            return TransportError(
                f"TLS handshake with {self.host} failed ({_reason(e)}); if it uses a private CA, put its "
                f"certificate in /etc/containers/certs.d/{self.host}/ca.crt, or pass --tls-verify=false"
            )
        text = repr(e)
        if "Name or service not known" in text or "NameResolutionError" in text or "Temporary failure in name" in text:
            return TransportError(f"cannot resolve registry host {self.host}")
        if isinstance(e, requests.exceptions.Timeout):
            return TransportError(f"timed out talking to {self.host}")
        if isinstance(e, requests.exceptions.ConnectionError):
            return TransportError(f"cannot connect to {self.host}: {_reason(e)}")
        return TransportError(f"error talking to {self.host}: {_reason(e)}")

    # ------------------------------------------------------------ requests

    def _send(self, method: str, url: str, *, headers: dict[str, str], stream: bool,
              what: str) -> requests.Response:
        """One request with retries for transient failures; HTTP error statuses are returned."""
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                resp = self._session.request(method, url, headers=headers, stream=stream, verify=self._verify,
                                             timeout=_TIMEOUT)
            except (requests.exceptions.SSLError, requests.exceptions.InvalidURL) as e:
                raise self._transport_error(e) from e
            except requests.RequestException as e:
                if last or _refused(e) and url.endswith("/v2/"):
                    raise self._transport_error(e) from e
                log.info("%s %s failed (%s); retrying", method, what, _reason(e))
                time.sleep(self.retry.backoff(attempt))
                continue
            if resp.status_code not in _RETRY_STATUSES or last:
                return resp
            wait = _retry_after(resp) if resp.status_code in (429, 503) else None
            resp.close()
            if wait is not None and wait > self.retry.retry_after_cap:
                return resp
            log.info("%s %s: HTTP %d; retrying", method, what, resp.status_code)
            time.sleep(wait if wait is not None else self.retry.backoff(attempt))
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, *, scope: str, what: str, headers: dict[str, str] | None = None,
                stream: bool = False) -> requests.Response:
        """Send a request, answering an auth challenge once; raise on error statuses."""
        url = self.base + path
        hdrs = dict(headers or {})
        for attempt in range(2):
            if self._challenge is not None:
                hdrs["Authorization"] = self._auth.header(self._challenge, scope)
            resp = self._send(method, url, headers=hdrs, stream=stream, what=what)
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

    def _raise_for(self, resp: requests.Response, what: str) -> None:
        detail = _error_detail(resp)
        resp.close()
        status = resp.status_code
        tried = f"; tried {self._auth.who()}"
        if status == 401:
            raise Unauthorized(f"{self.host} requires authentication for {what}{detail}{tried}")
        if status == 403:
            raise Unauthorized(f"{self.host} denied access to {what}{detail}{tried}")
        if status == 404:
            raise RemoteNotFound(f"{what} not found on {self.host}{detail}")
        if status == 429:
            raise RegistryError(f"{self.host} keeps throttling requests for {what} (HTTP 429); try again later")
        raise RegistryError(f"{self.host} answered HTTP {status} for {what}{detail}")

    # ----------------------------------------------------------- endpoints

    def check_login(self) -> None:
        """Prove the credentials work: ``/v2/`` answers 200 once the challenge is met (``docker login``)."""
        self.request("GET", "/v2/", scope="", what="the registry's API root").close()

    def get_manifest(self, repo: str, ref: str, what: str) -> tuple[bytes, str]:
        """A manifest or index body and the media type the registry gave it."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", scope=_pull_scope(repo), what=what,
                            headers={"Accept": ACCEPT_MANIFESTS})
        try:
            body = resp.content
        except Exception as e:  # a body cut off mid-read: the whole request is retried by the caller
            raise self._transport_error(e) from e
        finally:
            resp.close()
        return body, resp.headers.get("Content-Type", "")

    def open_blob(self, repo: str, digest: str, what: str, offset: int = 0) -> requests.Response:
        """A streaming response for a blob from ``offset`` (redirects followed; Authorization is not
        sent to another host: requests drops it when a redirect changes the host)."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_pull_scope(repo), what=what,
                            headers=headers, stream=True)

    def get_blob(self, repo: str, desc: Descriptor, what: str) -> bytes:
        """A small blob (a config), verified against its descriptor."""
        chunks: list[bytes] = []
        with BlobStream(self, repo, desc, what) as body:
            reader = VerifiedReader(body, desc.digest, desc.size, what)
            while chunk := reader.read(CHUNK):
                chunks.append(chunk)
        return b"".join(chunks)


class BlobStream:
    """A blob's bytes from ``offset`` on, resumed with ``Range`` when the connection breaks.

    A registry that ignores ``Range`` answers 200 with the whole blob: the
    bytes already had are skipped. A body that ends before the descriptor's
    size is a broken connection too. Resumption is bounded by the client's
    retry policy; a digest mismatch is the caller's to detect, and is never
    retried here.
    """

    def __init__(self, client: RegistryClient, repo: str, desc: Descriptor, what: str, offset: int = 0) -> None:
        self._client = client
        self._repo = repo
        self._desc = desc
        self._what = what
        self.offset = offset
        self._resp: requests.Response | None = None
        self._failures = 0

    def _open(self) -> requests.Response:
        resp = self._client.open_blob(self._repo, self._desc.digest, self._what, self.offset)
        if self.offset and resp.status_code == 200:
            log.info("%s ignores Range; skipping %d bytes already downloaded", self._client.host, self.offset)
            skip = self.offset
            while skip:
                data = resp.raw.read(min(skip, CHUNK), decode_content=True)
                if not data:
                    resp.close()
                    raise RegistryError(f"{self._what}: the registry sent fewer bytes than before")
                skip -= len(data)
        elif self.offset and resp.status_code == 206:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-", 1)[0]
            if start.strip() != str(self.offset):
                resp.close()
                raise RegistryError(f"{self._what}: asked for bytes from {self.offset}, got Content-Range {start}")
        return resp

    def read(self, n: int = -1) -> bytes:
        size = CHUNK if n < 0 else n
        while True:
            if self.offset >= self._desc.size:
                return b""
            try:
                if self._resp is None:
                    self._resp = self._open()
                # read1: what has arrived, up to size. read() would wait for
                # the whole size and drop what it had when the connection breaks.
                data = self._resp.raw.read1(size, decode_content=True)
            except (urllib3.exceptions.HTTPError, requests.exceptions.ConnectionError, OSError) as e:
                self._broken(repr(e))
                continue
            if data:
                self.offset += len(data)
                return data
            self._broken("the body ended early")

    def _broken(self, why: str) -> None:
        """The connection failed mid-body: back off, then reopen from where it stopped."""
        self.close()
        self._failures += 1
        policy = self._client.retry
        if self._failures >= policy.attempts:
            raise TransportError(
                f"download of {self._what} from {self._client.host} kept failing at byte {self.offset}: {why}"
            )
        log.info("%s broke off at byte %d (%s); resuming", self._what, self.offset, why)
        time.sleep(policy.backoff(self._failures))

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __enter__(self) -> "BlobStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TrustAdapter(HTTPAdapter):
    """An adapter whose TLS context trusts the system CAs plus the registry's own (requests
    alone would trust only certifi's bundle)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(pool_maxsize=16)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


def _refused(e: Exception) -> bool:
    return "Connection refused" in repr(e)


def _pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def _reason(e: BaseException) -> str:
    """The innermost cause of a requests/urllib3 exception, without URLs full of parameters."""
    inner: BaseException = e
    seen = {id(e)}
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    for arg in getattr(inner, "args", ()):
        reason = getattr(arg, "reason", None)
        if reason is not None:
            inner = reason
    text = str(inner) or type(inner).__name__
    return text.split(": ", 1)[-1][:200]


def _error_detail(resp: requests.Response) -> str:
    """The registry's own error text (distribution's ``{"errors": [...]}``), if any."""
    try:
        doc = resp.json()
        errors = doc.get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        return f" ({'; '.join(p for p in parts if p)})" if parts else ""
    except (ValueError, AttributeError):
        return ""
