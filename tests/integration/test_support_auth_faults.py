"""Self-test of the auth and fault helpers: htpasswd, token server, fault proxy, credential helper.

The registry-client tests trust these helpers to make a real registry ask
for credentials and to break its answers in precise ways; so each helper is
checked here with plain `requests` and `http.client`, never with pybox.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPResponse, IncompleteRead
from pathlib import Path
from typing import Any

import pytest
import requests

from support.auth import credential_helper, helper_calls, htpasswd_config
from support.faultproxy import Fault, FaultProxy
from support.registry import Registry
from support.skip import require_root, require_tool
from support.tokenserver import Access, TokenServer
from support.tools import run

ALICE, ALICE_PASSWORD = "alice", "alice-Pa55word"
BLOB_SIZE = 1 << 20
BIG_BLOB_SIZE = 110 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_TIMEOUT = 30
_THREAD_GRACE = 2.0


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    """Whatever a test starts (servers, client threads) is joined by its end."""
    before = set(threading.enumerate())
    yield
    # A module-scoped server's connection thread may still be closing the
    # socket of an answer the test already read: give it a moment to end.
    deadline = time.monotonic() + _THREAD_GRACE
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    leftover = [t.name for t in threading.enumerate() if t not in before]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # loopback only; never a proxy
    with session:
        yield session


def _registry_tools() -> None:
    require_root()
    require_tool("docker-registry")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload(session: requests.Session, base: str, repo: str, data: Any, digest: str) -> str:
    """Push a blob in two steps (POST, then PUT with the body); returns the POST's Location."""
    started = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=_TIMEOUT)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    done = session.put(f"{location}{separator}digest={digest}", data=data, timeout=_TIMEOUT,
                       headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return location


# --- a small image pushed with skopeo ----------------------------------------------

@pytest.fixture(scope="module")
def small_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout with tag `v1`: one layer holding /hello, made by umoci."""
    require_root()
    require_tool("umoci")
    work = tmp_path_factory.mktemp("small")
    layout = work / "layout"
    payload = work / "hello"
    payload.write_text("hello from the auth tests\n")
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:v1"])
    run(["umoci", "insert", "--image", f"{layout}:v1", payload, "/hello"])
    return layout


def _skopeo_push(layout: Path, dest: str, creds: str) -> None:
    require_tool("skopeo")
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-creds", creds,
         "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{dest}"], timeout=120)


# --- htpasswd ------------------------------------------------------------------------

def test_htpasswd_registry_wants_basic_credentials(tmp_path: Path, http: requests.Session) -> None:
    _registry_tools()
    auth = htpasswd_config(tmp_path / "auth", {ALICE: ALICE_PASSWORD, "bob": "bob-secret"})
    assert auth["htpasswd"]["realm"] == "pybox-test"
    assert ALICE_PASSWORD not in Path(auth["htpasswd"]["path"]).read_text()
    with Registry(tmp_path / "registry", auth=auth) as reg:
        anonymous = http.get(f"{reg.url}/v2/", timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="pybox-test"'
        assert http.get(f"{reg.url}/v2/", auth=(ALICE, ALICE_PASSWORD), timeout=5).status_code == 200
        assert http.get(f"{reg.url}/v2/", auth=("bob", "bob-secret"), timeout=5).status_code == 200
        assert http.get(f"{reg.url}/v2/", auth=(ALICE, "wrong"), timeout=5).status_code == 401
    assert not reg.running()


# --- token server -------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _TokenSetup:
    tokens: TokenServer
    registry: Registry


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory: pytest.TempPathFactory, small_layout: Path) -> Iterator[_TokenSetup]:
    """A registry with token auth: `private/small:v1` and `public/small:v1` pushed by skopeo."""
    _registry_tools()
    work = tmp_path_factory.mktemp("token")
    tokens = TokenServer(work / "tokens", users={ALICE: ALICE_PASSWORD},
                         public=["public/small"], expires_in=120)
    registry = Registry(work / "registry", auth=tokens.registry_auth_config())
    with tokens, registry:
        for repo in ("private/small", "public/small"):
            _skopeo_push(small_layout, f"{registry.host}/{repo}:v1", f"{ALICE}:{ALICE_PASSWORD}")
        yield _TokenSetup(tokens=tokens, registry=registry)
    assert not tokens.running() and not registry.running()


def _token(http: requests.Session, tokens: TokenServer, scope: str,
           auth: tuple[str, str] | None = None) -> requests.Response:
    return http.get(tokens.realm, params={"service": tokens.service, "scope": scope},
                    auth=auth, timeout=5)


def _manifest(http: requests.Session, registry_url: str, repo: str,
              token: str | None) -> requests.Response:
    headers = {"Accept": OCI_MANIFEST}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http.get(f"{registry_url}/v2/{repo}/manifests/v1", headers=headers, timeout=5)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_token_registry_challenges_with_the_realm(token_setup: _TokenSetup,
                                                  http: requests.Session) -> None:
    tokens = token_setup.tokens
    response = http.get(f"{token_setup.registry.url}/v2/", timeout=5)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{tokens.realm}"' in challenge and f'service="{tokens.service}"' in challenge


def test_skopeo_push_got_push_access(token_setup: _TokenSetup) -> None:
    pushes = [r for r in token_setup.tokens.requests
              if any("push" in a.actions for a in r.granted)]
    assert pushes and all(r.user == ALICE and r.basic for r in pushes)
    assert {a.name for r in pushes for a in r.granted} >= {"private/small", "public/small"}


def test_user_token_reads_private_manifest(token_setup: _TokenSetup, http: requests.Session) -> None:
    tokens, reg = token_setup.tokens, token_setup.registry
    answer = _token(http, tokens, "repository:private/small:pull", auth=(ALICE, ALICE_PASSWORD))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 120
    assert body["issued_at"].endswith("Z") and "refresh_token" not in body
    claims = _claims(body["token"])
    assert (claims["iss"], claims["aud"], claims["sub"]) == (tokens.issuer, tokens.service, ALICE)
    assert claims["exp"] - claims["iat"] == 120
    assert claims["access"] == [{"type": "repository", "name": "private/small", "actions": ["pull"]}]

    assert _manifest(http, reg.url, "private/small", body["token"]).status_code == 200
    assert _manifest(http, reg.url, "private/small", None).status_code == 401
    # Pull access to one repository is not access to another.
    assert _manifest(http, reg.url, "public/small", body["token"]).status_code == 401


def test_wrong_password_gets_no_token(token_setup: _TokenSetup, http: requests.Session) -> None:
    tokens = token_setup.tokens
    answer = _token(http, tokens, "repository:private/small:pull", auth=(ALICE, "not-the-password"))
    assert answer.status_code == 401
    record = tokens.requests[-1]
    assert (record.status, record.basic, record.user, record.granted) == (401, True, ALICE, ())
    assert "not-the-password" not in repr(record)


def test_token_needs_the_service(token_setup: _TokenSetup, http: requests.Session) -> None:
    tokens = token_setup.tokens
    answer = http.get(tokens.realm, params={"service": "elsewhere",
                                            "scope": "repository:public/small:pull"}, timeout=5)
    assert answer.status_code == 400


def test_anonymous_token_only_for_public(token_setup: _TokenSetup, http: requests.Session) -> None:
    tokens, reg = token_setup.tokens, token_setup.registry
    public = _token(http, tokens, "repository:public/small:pull,push").json()["token"]
    # Anonymous clients may pull a public repository, never push to it.
    assert _claims(public)["access"] == [
        {"type": "repository", "name": "public/small", "actions": ["pull"]}]
    assert _manifest(http, reg.url, "public/small", public).status_code == 200
    record = tokens.requests[-1]
    assert (record.basic, record.user) == (False, None)
    assert record.granted == (Access(type="repository", name="public/small", actions=("pull",)),)

    private = _token(http, tokens, "repository:private/small:pull")
    assert private.status_code == 200 and _claims(private.json()["token"])["access"] == []
    assert _manifest(http, reg.url, "private/small", private.json()["token"]).status_code in (401, 403)


def test_oauth2_password_and_refresh_grants(token_setup: _TokenSetup, http: requests.Session) -> None:
    tokens, reg = token_setup.tokens, token_setup.registry
    form = {"grant_type": "password", "username": ALICE, "password": ALICE_PASSWORD,
            "service": tokens.service, "client_id": "pybox-tests", "access_type": "offline",
            "scope": "repository:private/small:pull repository:public/small:pull"}
    first = http.post(tokens.realm, data=form, timeout=5)
    assert first.status_code == 200, first.text
    refresh_token = first.json()["refresh_token"]
    assert {a["name"] for a in _claims(first.json()["access_token"])["access"]} == {
        "private/small", "public/small"}

    refreshed = http.post(tokens.realm, timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "service": tokens.service,
        "client_id": "pybox-tests", "scope": "repository:private/small:pull"})
    assert refreshed.status_code == 200, refreshed.text
    assert "refresh_token" not in refreshed.json()
    assert _manifest(http, reg.url, "private/small", refreshed.json()["access_token"]).status_code == 200
    assert tokens.requests[-1].user == ALICE

    unknown = http.post(tokens.realm, timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": "forged", "service": tokens.service})
    assert unknown.status_code == 401
    wrong = http.post(tokens.realm, data={**form, "password": "nope"}, timeout=5)
    assert wrong.status_code == 401

    records = repr(tokens.requests)
    for secret in (ALICE_PASSWORD, refresh_token, "forged", "nope"):
        assert secret not in records


def test_offline_token_gives_a_refresh_token(token_setup: _TokenSetup,
                                            http: requests.Session) -> None:
    tokens = token_setup.tokens
    answer = http.get(tokens.realm, auth=(ALICE, ALICE_PASSWORD), timeout=5,
                      params={"service": tokens.service, "offline_token": "true"})
    assert answer.status_code == 200, answer.text
    refreshed = http.post(tokens.realm, timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": answer.json()["refresh_token"],
        "service": tokens.service, "scope": "repository:private/small:pull"})
    assert refreshed.status_code == 200, refreshed.text
    assert _claims(refreshed.json()["token"])["sub"] == ALICE
    # Only a user can have one.
    anonymous = http.get(tokens.realm, timeout=5,
                         params={"service": tokens.service, "offline_token": "true"})
    assert anonymous.status_code == 200 and "refresh_token" not in anonymous.json()


def test_proxy_keeps_the_token_challenge(token_setup: _TokenSetup, http: requests.Session) -> None:
    tokens, reg = token_setup.tokens, token_setup.registry
    direct = http.get(f"{reg.url}/v2/", timeout=5).headers["WWW-Authenticate"]
    token = _token(http, tokens, "repository:private/small:pull", auth=(ALICE, ALICE_PASSWORD))
    with FaultProxy(reg.url) as proxy:
        assert http.get(f"{proxy.url}/v2/", timeout=5).headers["WWW-Authenticate"] == direct
        assert _manifest(http, proxy.url, "private/small", token.json()["token"]).status_code == 200
        assert proxy.authorizations() == [f"Bearer {token.json()['token']}"]
    assert not proxy.running()


# --- fault proxy ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _Blob:
    registry: Registry
    repo: str
    data: bytes
    digest: str

    @property
    def path(self) -> str:
        return f"/v2/{self.repo}/blobs/{self.digest}"


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Blob]:
    """A registry without auth holding one random 1 MiB blob."""
    _registry_tools()
    data = random.Random(1).randbytes(BLOB_SIZE)
    with Registry(tmp_path_factory.mktemp("plain")) as registry, requests.Session() as session:
        session.trust_env = False
        _upload(session, registry.url, "faults/blob", data, _digest(data))
        yield _Blob(registry=registry, repo="faults/blob", data=data, digest=_digest(data))
    assert not registry.running()


@pytest.fixture
def proxy(blob: _Blob) -> Iterator[FaultProxy]:
    with FaultProxy(blob.registry.url) as started:
        yield started
    assert not started.running()


@contextmanager
def _get(proxy: FaultProxy, path: str) -> Iterator[HTTPResponse]:
    """GET with http.client, which shows resets and short bodies as they are."""
    conn = HTTPConnection(proxy.host, timeout=_TIMEOUT)
    try:
        conn.request("GET", path)
        yield conn.getresponse()
    finally:
        conn.close()


def test_proxy_forwards_unchanged(proxy: FaultProxy, blob: _Blob, http: requests.Session) -> None:
    response = http.get(proxy.url + blob.path, timeout=_TIMEOUT)
    assert response.status_code == 200 and response.content == blob.data
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert http.head(proxy.url + blob.path, timeout=5).headers["Content-Length"] == str(BLOB_SIZE)
    assert http.get(f"{proxy.url}/v2/faults/blob/blobs/sha256:{'0' * 64}",
                    timeout=5).status_code == 404
    assert [(r.method, r.status) for r in proxy.requests] == [("GET", 200), ("HEAD", 200), ("GET", 404)]
    assert proxy.count("/blobs/") == 3 and proxy.count("/blobs/", method="HEAD") == 1
    assert proxy.count(r"/blobs/sha256:0{64}$") == 1


def test_status_fault_answers_without_upstream(tmp_path: Path, http: requests.Session) -> None:
    # Nothing listens on the upstream port: only the fault can answer.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        upstream = f"http://127.0.0.1:{unused.getsockname()[1]}"
    with FaultProxy(upstream) as proxy:
        proxy.add_fault(Fault(kind="status", status=429, headers={"Retry-After": "1"}, times=2))
        for _ in range(2):
            answer = http.get(f"{proxy.url}/v2/", timeout=5)
            assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
        assert http.get(f"{proxy.url}/v2/", timeout=5).status_code == 502
        assert [r.status for r in proxy.requests] == [429, 429, 502]
    assert not proxy.running()


def test_status_fault_matches_method_and_path(proxy: FaultProxy, blob: _Blob,
                                              http: requests.Session) -> None:
    proxy.add_fault(Fault(kind="status", status=503, match="/blobs/"))
    assert http.get(f"{proxy.url}/v2/", timeout=5).status_code == 200
    assert http.head(proxy.url + blob.path, timeout=5).status_code == 200
    assert http.get(proxy.url + blob.path, timeout=5).status_code == 503
    assert http.get(proxy.url + blob.path, timeout=5).status_code == 503  # times=None: always
    proxy.clear_faults()
    assert http.get(proxy.url + blob.path, timeout=5).status_code == 200


def test_reset_mid_body(proxy: FaultProxy, blob: _Blob) -> None:
    proxy.add_fault(Fault(kind="reset", match="/blobs/", after_bytes=1000, times=1))
    with _get(proxy, blob.path) as response:
        assert response.status == 200
        assert response.getheader("Content-Length") == str(BLOB_SIZE)
        assert response.read(1000) == blob.data[:1000]
        with pytest.raises(ConnectionResetError):
            response.read()
    with _get(proxy, blob.path) as response:
        assert response.read() == blob.data  # times=1: used up


def test_body_faults_spare_error_answers(proxy: FaultProxy, blob: _Blob) -> None:
    proxy.add_fault(Fault(kind="reset", match="/blobs/", after_bytes=10, times=1))
    with _get(proxy, f"/v2/{blob.repo}/blobs/sha256:{'1' * 64}") as response:
        assert response.status == 404 and b"BLOB_UNKNOWN" in response.read()
    with _get(proxy, blob.path) as response:
        assert response.read(10) == blob.data[:10]
        with pytest.raises(ConnectionResetError):
            response.read()


def test_truncate_closes_early(proxy: FaultProxy, blob: _Blob) -> None:
    proxy.add_fault(Fault(kind="truncate", match="/blobs/", after_bytes=5000, times=1))
    with _get(proxy, blob.path) as response:
        assert response.getheader("Content-Length") == str(BLOB_SIZE)
        with pytest.raises(IncompleteRead) as short:
            response.read()
    assert short.value.partial == blob.data[:5000]


def test_corrupt_flips_one_byte(proxy: FaultProxy, blob: _Blob, http: requests.Session) -> None:
    offset = BLOB_SIZE - 7
    proxy.add_fault(Fault(kind="corrupt", match="/blobs/", after_bytes=offset, times=1))
    body = http.get(proxy.url + blob.path, timeout=_TIMEOUT).content
    assert len(body) == BLOB_SIZE and _digest(body) != blob.digest
    assert [i for i in range(BLOB_SIZE) if body[i] != blob.data[i]] == [offset]


def test_ignore_range_sends_everything(proxy: FaultProxy, blob: _Blob, http: requests.Session) -> None:
    url, wanted = proxy.url + blob.path, {"Range": "bytes=100-"}
    proxy.add_fault(Fault(kind="ignore_range", match="/blobs/", times=1))
    # A request without Range leaves the fault armed.
    assert http.get(url, timeout=_TIMEOUT).status_code == 200
    ignored = http.get(url, headers=wanted, timeout=_TIMEOUT)
    assert ignored.status_code == 200 and ignored.content == blob.data
    honoured = http.get(url, headers=wanted, timeout=_TIMEOUT)
    assert honoured.status_code == 206 and honoured.content == blob.data[100:]
    assert proxy.ranges("/blobs/") == ["bytes=100-", "bytes=100-"]


def _fetch_in_thread(url: str) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        with requests.Session() as session:
            session.trust_env = False
            try:
                outcome["body"] = session.get(url, timeout=_TIMEOUT).content
            except requests.RequestException as error:
                outcome["error"] = error

    thread = threading.Thread(target=fetch, name="test-fetch")
    thread.start()
    return thread, outcome


def test_stall_until_release(proxy: FaultProxy, blob: _Blob) -> None:
    proxy.add_fault(Fault(kind="stall", match="/blobs/", after_bytes=4096, times=1))
    thread, outcome = _fetch_in_thread(proxy.url + blob.path)
    try:
        assert proxy.wait_stalled(10)
        thread.join(0.3)
        assert thread.is_alive() and not outcome
    finally:
        proxy.release()
        thread.join(_TIMEOUT)
    assert not thread.is_alive()
    assert outcome == {"body": blob.data}


def test_stall_ends_when_the_proxy_stops(blob: _Blob) -> None:
    proxy = FaultProxy(blob.registry.url)
    proxy.start()
    proxy.add_fault(Fault(kind="stall", after_bytes=4096))
    thread, outcome = _fetch_in_thread(proxy.url + blob.path)
    try:
        assert proxy.wait_stalled(10)
    finally:
        proxy.stop()
        thread.join(_TIMEOUT)
    assert not thread.is_alive() and not proxy.running()
    assert isinstance(outcome.get("error"), requests.RequestException)


def test_throttle_is_slow(proxy: FaultProxy, blob: _Blob, http: requests.Session) -> None:
    size, rate = 128 << 10, 128 << 10
    headers = {"Range": f"bytes=0-{size - 1}"}
    proxy.add_fault(Fault(kind="throttle", match="/blobs/", rate=rate, times=1))
    started = time.monotonic()
    body = http.get(proxy.url + blob.path, headers=headers, timeout=_TIMEOUT).content
    # About a second at that rate; only a generous lower bound is checked.
    assert body == blob.data[:size] and time.monotonic() - started > 0.4 * size / rate


def test_stop_cuts_idle_keepalive_connections(blob: _Blob) -> None:
    proxy = FaultProxy(blob.registry.url)
    proxy.start()
    with _get(proxy, "/v2/") as response:
        assert response.status == 200
        response.read()
        proxy.stop()  # asserts its threads are gone although `conn` is still open
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(proxy.host.rsplit(":", 1)[1])), timeout=2).close()
    proxy.stop()  # idempotent


def test_unstarted_proxy_frees_its_port(blob: _Blob) -> None:
    proxy = FaultProxy(blob.registry.url)
    port = int(proxy.host.rsplit(":", 1)[1])
    proxy.stop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def _pseudo_random_chunks(seed: int, size: int, sha: Any) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(size // (1 << 20)):
        chunk = rng.randbytes(1 << 20)
        sha.update(chunk)
        yield chunk


def test_large_blob_streams_through(blob: _Blob, tmp_path: Path) -> None:
    expected = hashlib.sha256()
    for _ in _pseudo_random_chunks(7, BIG_BLOB_SIZE, expected):
        pass
    digest = "sha256:" + expected.hexdigest()
    tracemalloc.start()
    try:
        with FaultProxy(blob.registry.url) as proxy, requests.Session() as session:
            session.trust_env = False
            # A generator body goes out chunked: the proxy decodes and re-encodes it.
            location = _upload(session, proxy.url, "faults/big",
                               _pseudo_random_chunks(7, BIG_BLOB_SIZE, hashlib.sha256()), digest)
            assert location.startswith(proxy.url + "/v2/faults/big/blobs/uploads/")
            got = hashlib.sha256()
            with session.get(f"{proxy.url}/v2/faults/big/blobs/{digest}", stream=True,
                             timeout=_TIMEOUT) as response:
                assert response.status_code == 200
                while chunk := response.raw.read(1 << 20):
                    got.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "sha256:" + got.hexdigest() == digest
    assert peak < 32 << 20, f"{peak} bytes traced at peak for a {BIG_BLOB_SIZE}-byte blob"


# --- credential helper --------------------------------------------------------------

def _helper(script: Path, action: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script, action], input=stdin, capture_output=True, text=True,
                          timeout=_TIMEOUT, check=False)


def test_credential_helper_get_and_log(tmp_path: Path) -> None:
    store = {"127.0.0.1:5000": (ALICE, ALICE_PASSWORD),
             "https://index.docker.io/v1/": ("hubuser", "hub-token")}
    script = credential_helper(tmp_path / "bin", "pyboxtest", store)
    assert script.name == "docker-credential-pyboxtest" and script.stat().st_mode & 0o111

    found = _helper(script, "get", "127.0.0.1:5000\n")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {
        "ServerURL": "127.0.0.1:5000", "Username": ALICE, "Secret": ALICE_PASSWORD}
    hub = json.loads(_helper(script, "get", "https://index.docker.io/v1/").stdout)
    assert (hub["Username"], hub["Secret"]) == ("hubuser", "hub-token")

    missing = _helper(script, "get", "127.0.0.1:6000")
    assert missing.returncode == 1
    assert missing.stdout.strip() == "credentials not found in native keychain"
    assert _helper(script, "store", json.dumps({"ServerURL": "x", "Secret": "s"})).returncode == 1

    assert helper_calls(script) == [
        ("get", "127.0.0.1:5000"), ("get", "https://index.docker.io/v1/"),
        ("get", "127.0.0.1:6000"), ("store", ""),
    ]
    log = script.with_name(script.name + ".log").read_text()
    assert ALICE_PASSWORD not in log and "hub-token" not in log
