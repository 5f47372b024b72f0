"""The distribution protocol against a scripted registry on loopback.

Docker's registry does not issue tokens or redirect blobs by itself, so these
cases use a small registry written here: a Bearer challenge answered by an
anonymous token, and blobs redirected to another loopback address (as
registries redirect to object storage), which must never see the token.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from support.skip import require_root


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer() -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"served through a redirect\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)


@dataclass
class _Image:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifest: bytes = b""

    @classmethod
    def make(cls) -> "_Image":
        tar, layer = _layer()
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer),
                        "size": len(layer)}],
        }).encode()
        return cls(blobs={_digest(config): config, _digest(layer): layer}, manifest=manifest)


@dataclass
class _Scripted:
    image: _Image
    registry_port: int = 0
    blob_port: int = 0
    challenge: str = "bearer"
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    registry_auth: list[str] = field(default_factory=list)
    blob_auth: list[str | None] = field(default_factory=list)


def _registry_handler(state: _Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _challenge(self) -> None:
            if state.challenge == "basic":
                header = 'Basic realm="scripted"'
            else:
                header = (f'Bearer realm="http://127.0.0.1:{state.registry_port}/token",service="scripted",'
                          'scope="repository:test/app:pull"')
            self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                       {"WWW-Authenticate": header, "Content-Type": "application/json"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            if url.path == "/token":
                state.token_requests.append(parse_qs(url.query))
                self._send(200, json.dumps({"token": "T0KEN-anon", "expires_in": 300}).encode())
                return
            auth = self.headers.get("Authorization")
            if auth != "Bearer T0KEN-anon":
                self._challenge()
                return
            state.registry_auth.append(auth)
            if url.path == "/v2/":
                self._send(200, b"{}")
            elif url.path == "/v2/test/app/manifests/v1":
                self._send(200, state.image.manifest,
                           {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            elif url.path.startswith("/v2/test/app/blobs/"):
                digest = url.path.rsplit("/", 1)[1]
                self._send(307, b"", {"Location": f"http://127.0.0.2:{state.blob_port}/storage/{digest}"})
            else:
                self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}')

    return Handler


def _blob_handler(state: _Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            state.blob_auth.append(self.headers.get("Authorization"))
            body = state.image.blobs.get(self.path.rsplit("/", 1)[1], b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def scripted() -> Iterator[_Scripted]:
    require_root()
    state = _Scripted(image=_Image.make())
    registry = ThreadingHTTPServer(("127.0.0.1", 0), _registry_handler(state))
    blobs = ThreadingHTTPServer(("127.0.0.2", 0), _blob_handler(state))
    state.registry_port = registry.server_address[1]
    state.blob_port = blobs.server_address[1]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (registry, blobs)]
    for t in threads:
        t.start()
    try:
        yield state
    finally:
        for s in (registry, blobs):
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(timeout=5)
        assert not any(t.is_alive() for t in threads)


def test_anonymous_token_and_redirect_without_authorization(scripted: _Scripted, pybox) -> None:
    ref = f"127.0.0.1:{scripted.registry_port}/test/app:v1"
    pybox("pull", "-q", ref)
    assert scripted.token_requests, "the token server was never asked"
    assert all(q.get("scope") == ["repository:test/app:pull"] and q.get("service") == ["scripted"]
               for q in scripted.token_requests)
    assert scripted.registry_auth and set(scripted.registry_auth) == {"Bearer T0KEN-anon"}
    # Config and layer both came from the other host, and it never saw the token.
    assert len(scripted.blob_auth) == 2 and scripted.blob_auth == [None, None]
    directory = pybox("image", "mount", ref).stdout.strip()
    try:
        with open(f"{directory}/hello.txt") as f:
            assert f.read() == "served through a redirect\n"
    finally:
        pybox("image", "umount", ref)


def test_basic_challenge_without_credentials_is_unauthorized(scripted: _Scripted, pybox) -> None:
    scripted.challenge = "basic"
    proc = pybox("pull", f"127.0.0.1:{scripted.registry_port}/test/app:v1", check=False)
    assert proc.returncode == 125
    host = f"127.0.0.1:{scripted.registry_port}"
    assert proc.stderr.strip() == (
        f"pybox: error: {host} requires a user name and password (Basic auth): run 'pybox login {host}' or pass --creds"
    )


def test_unknown_repository_reports_the_registry_error(scripted: _Scripted, pybox) -> None:
    proc = pybox("pull", f"127.0.0.1:{scripted.registry_port}/test/other:v1", check=False)
    assert proc.returncode == 125
    assert "not found" in proc.stderr and "NAME_UNKNOWN" in proc.stderr


def test_plain_http_is_only_for_loopback_or_without_tls_verify(scripted: _Scripted) -> None:
    from pybox.errors import TransportError
    from pybox.registry.client import RegistryClient

    host = f"127.0.0.1:{scripted.registry_port}"
    # As if the host were not loopback: TLS only, and this server speaks HTTP.
    strict = RegistryClient(host, plain_http_ok=False)
    with pytest.raises(TransportError, match=rf"TLS handshake with {host} failed.*--tls-verify=false"):
        strict.base
    strict.close()
    relaxed = RegistryClient(host, plain_http_ok=False, tls_verify=False)
    assert relaxed.base == f"http://{host}"
    relaxed.close()
