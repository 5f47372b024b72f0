"""Credentials against Docker's own registry: htpasswd (Basic) and token auth (Bearer).

The images are the session's umoci-made busybox, pushed by skopeo with
credentials. No secret may reach pybox's output, even with --debug.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.auth import credential_helper, helper_calls, htpasswd_config
from support.registry import Registry
from support.skip import require_root
from support.tokenserver import TokenServer
from support.tools import run

BASIC_PASSWORD = "correct-horse-battery-staple"
TOKEN_PASSWORD = "tr0ub4dor&3"


@dataclass(frozen=True)
class AuthRegistry:
    registry: Registry
    ref: str
    user: str
    password: str
    public_ref: str = ""
    tokens: TokenServer | None = None


def _push(image, ref: str, creds: str) -> None:
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds,
         f"oci:{image.layout}:{image.tag}", f"docker://{ref}"], timeout=120)


@pytest.fixture(scope="module")
def basic_registry(registry, tmp_path_factory) -> Iterator[AuthRegistry]:
    require_root()
    work = tmp_path_factory.mktemp("basic-registry")
    reg = Registry(work, auth=htpasswd_config(work, {"alice": BASIC_PASSWORD}))
    reg.start()
    try:
        ref = f"{reg.host}/private/busybox:v1"
        _push(registry.images["gzip"], ref, f"alice:{BASIC_PASSWORD}")
        yield AuthRegistry(registry=reg, ref=ref, user="alice", password=BASIC_PASSWORD)
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def token_registry(registry, tmp_path_factory) -> Iterator[AuthRegistry]:
    require_root()
    work = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(work / "tokens", users={"bob": TOKEN_PASSWORD}, public=("public/busybox",))
    tokens.start()
    reg = Registry(work / "registry", auth=tokens.registry_auth_config())
    try:
        reg.start()
        ref, public = f"{reg.host}/private/busybox:v1", f"{reg.host}/public/busybox:v1"
        for target in (ref, public):
            _push(registry.images["gzip"], target, f"bob:{TOKEN_PASSWORD}")
        yield AuthRegistry(registry=reg, ref=ref, user="bob", password=TOKEN_PASSWORD, public_ref=public,
                           tokens=tokens)
    finally:
        reg.stop()
        tokens.stop()


def _no_secret(proc, *secrets: str) -> None:
    for secret in secrets:
        for stream in (proc.stdout, proc.stderr):
            assert secret not in stream
            assert base64.b64encode(secret.encode()).decode()[:12] not in stream


def _docker_config(doc: dict) -> None:
    path = Path(os.environ["HOME"]) / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# ------------------------------------------------------------------- Basic


def test_basic_without_credentials_says_so(basic_registry: AuthRegistry, pybox) -> None:
    proc = pybox("pull", basic_registry.ref, check=False)
    assert proc.returncode == 125
    host = basic_registry.registry.host
    assert proc.stderr.strip() == (
        f"pybox: error: {host} requires a user name and password (Basic auth): "
        f"run 'pybox login {host}' or pass --creds"
    )


def test_basic_with_creds_flag(basic_registry: AuthRegistry, pybox) -> None:
    proc = pybox("--debug", "pull", "--creds", f"alice:{BASIC_PASSWORD}", basic_registry.ref)
    assert "Status: Downloaded newer image" in proc.stdout
    _no_secret(proc, BASIC_PASSWORD)


def test_basic_wrong_password_names_the_user_not_the_secret(basic_registry: AuthRegistry, pybox) -> None:
    proc = pybox("--debug", "pull", "--creds", "alice:wrong-Pa55word", basic_registry.ref, check=False)
    assert proc.returncode == 125
    last = proc.stderr.strip().splitlines()[-1]
    assert "requires authentication" in last and "user 'alice' from --creds" in last
    _no_secret(proc, "wrong-Pa55word")


def test_login_checks_stores_privately_and_logout_forgets(basic_registry: AuthRegistry, pybox) -> None:
    host = basic_registry.registry.host
    bad = pybox("login", "-u", "alice", "--password-stdin", host, input="nope\n", check=False)
    assert bad.returncode == 125 and "user 'alice'" in bad.stderr
    authfile = Path(os.environ["HOME"]) / ".config" / "pybox" / "auth.json"
    assert not authfile.exists()

    ok = pybox("--debug", "login", "-u", "alice", "--password-stdin", host, input=BASIC_PASSWORD + "\n")
    assert ok.stdout.strip() == "Login Succeeded!"
    _no_secret(ok, BASIC_PASSWORD)
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    assert host in json.loads(authfile.read_text())["auths"]

    pybox("pull", "-q", basic_registry.ref)
    assert pybox("logout", host).stdout.strip() == f"Removed login credentials for {host}"
    pybox("rmi", basic_registry.ref)
    assert pybox("pull", basic_registry.ref, check=False).returncode == 125
    again = pybox("logout", host, check=False)
    assert again.returncode == 125 and "not logged in" in again.stderr


def test_docker_config_auths_are_used(basic_registry: AuthRegistry, pybox) -> None:
    _docker_config({"auths": {f"https://{basic_registry.registry.host}/v2/": _auth("alice", BASIC_PASSWORD)}})
    pybox("pull", "-q", basic_registry.ref)


# ------------------------------------------------------------------- Bearer


def test_anonymous_token_for_a_public_repository(token_registry: AuthRegistry, pybox) -> None:
    pybox("pull", "-q", token_registry.public_ref)
    assert token_registry.tokens is not None
    anonymous = [r for r in token_registry.tokens.requests if r.user is None and r.granted]
    assert anonymous and all(a.name == "public/busybox" for r in anonymous for a in r.granted)


def test_private_repository_needs_credentials(token_registry: AuthRegistry, pybox) -> None:
    proc = pybox("pull", token_registry.ref, check=False)
    assert proc.returncode == 125
    assert "tried no credentials (anonymous)" in proc.stderr or "anonymous" in proc.stderr


def test_token_with_credentials_from_a_credential_helper(token_registry: AuthRegistry, pybox,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = token_registry.registry.host
    helper = credential_helper(tmp_path / "bin", "pyboxtest", {host: ("bob", TOKEN_PASSWORD)})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    _docker_config({"credHelpers": {host: "pyboxtest"}})
    proc = pybox("--debug", "pull", token_registry.ref)
    assert "Status: Downloaded newer image" in proc.stdout
    _no_secret(proc, TOKEN_PASSWORD)
    assert helper_calls(helper) == [("get", host)]
    assert token_registry.tokens is not None
    mine = [r for r in token_registry.tokens.requests if r.user == "bob"]
    assert mine and mine[-1].params.get("account") == ("bob",)
    assert any(a.name == "private/busybox" and "pull" in a.actions for r in mine for a in r.granted)


def test_identity_token_is_exchanged_with_oauth2(token_registry: AuthRegistry, pybox) -> None:
    import requests

    assert token_registry.tokens is not None
    # What `docker login` stores when the token server hands out a refresh token.
    answer = requests.post(token_registry.tokens.realm, timeout=10, data={
        "grant_type": "password", "username": "bob", "password": TOKEN_PASSWORD,
        "service": token_registry.tokens.service, "client_id": "test", "access_type": "offline",
    }).json()
    refresh = answer["refresh_token"]
    _docker_config({"auths": {token_registry.registry.host: {"identitytoken": refresh}}})
    proc = pybox("--debug", "pull", "-q", token_registry.ref)
    _no_secret(proc, refresh, TOKEN_PASSWORD)
    posts = [r for r in token_registry.tokens.requests if r.method == "POST" and r.granted]
    assert posts and posts[-1].params.get("grant_type") == ("refresh_token",)


def test_login_against_a_token_registry(token_registry: AuthRegistry, pybox) -> None:
    host = token_registry.registry.host
    pybox("login", "-u", "bob", "--password-stdin", host, input=TOKEN_PASSWORD + "\n")
    pybox("pull", "-q", token_registry.ref)
    wrong = pybox("login", "-u", "bob", "-p", "not-it", host, check=False)
    assert wrong.returncode == 125 and "refused" in wrong.stderr and "not-it" not in wrong.stderr
