"""Where credentials come from, in Docker's and Podman's order, and how they are stored."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pybox.errors import UsageError
from pybox.registry.credentials import Credentials, lookup, own_auth_file, parse_creds, remove_login, store_login


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture
def home() -> Path:
    return Path(os.environ["HOME"])


def test_nothing_configured_means_anonymous(home: Path) -> None:
    assert lookup("registry.example:5000") is None


def test_docker_hub_credentials_live_under_the_v1_index_url(home: Path) -> None:
    _write(home / ".docker" / "config.json", {"auths": {"https://index.docker.io/v1/": _auth("hubuser", "s3cret")}})
    creds = lookup("docker.io")
    assert creds is not None and (creds.username, creds.password) == ("hubuser", "s3cret")
    assert creds.source.endswith(".docker/config.json")
    assert lookup("registry.example") is None


def test_auth_keys_with_scheme_and_path_match_the_host(home: Path) -> None:
    _write(home / ".docker" / "config.json", {"auths": {"https://reg.example:5000/v2/": _auth("u", "p")}})
    creds = lookup("reg.example:5000")
    assert creds is not None and creds.username == "u"


def test_order_pybox_then_podman_then_docker(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    host = "reg.example"
    _write(home / ".docker" / "config.json", {"auths": {host: _auth("docker", "d")}})
    assert lookup(host).source.endswith("config.json")
    _write(home / ".config" / "containers" / "auth.json", {"auths": {host: _auth("podman-config", "c")}})
    assert lookup(host).username == "podman-config"
    _write(runtime / "containers" / "auth.json", {"auths": {host: _auth("podman-runtime", "r")}})
    assert lookup(host).username == "podman-runtime"
    store_login(host, Credentials(username="pybox", password="x"), own_auth_file())
    assert lookup(host).username == "pybox"
    explicit = parse_creds("cli:pw")
    assert lookup(host, explicit=explicit) is explicit


def test_docker_config_env_and_identity_token(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    _write(tmp_path / "dockercfg" / "config.json",
           {"auths": {"reg.example": {"auth": "", "identitytoken": "refresh-me"}}})
    creds = lookup("reg.example")
    assert creds is not None and creds.identity_token == "refresh-me" and creds.username == ""
    assert "refresh-me" not in repr(creds) and "refresh-me" not in creds.describe()


def _helper(bin_dir: Path, name: str, answers: dict[str, tuple[str, str]]) -> Path:
    """A docker-credential-NAME that answers `get` from a table and logs the servers asked."""
    log = bin_dir / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    table = json.dumps({k: {"Username": u, "Secret": p} for k, (u, p) in answers.items()})
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "read server\n"
        f'echo "$1 $server" >> {log}\n'
        f"exec python3 -c 'import json,sys; t=json.loads(sys.argv[1]); s=sys.argv[2]; "
        "print(json.dumps(dict(t[s], ServerURL=s))) if s in t else (print(\"credentials not found in native keychain\"), sys.exit(1))' "
        f"'{table}' \"$server\"\n"
    )
    script.chmod(0o755)
    return log


def test_cred_helpers_and_creds_store(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    per_host = _helper(bin_dir, "perhost", {"reg.example": ("helper-user", "helper-secret")})
    store = _helper(bin_dir, "store", {"https://index.docker.io/v1/": ("hub", "hubsecret"),
                                       "other.example": ("<token>", "identity")})
    _write(home / ".docker" / "config.json", {
        "credHelpers": {"reg.example": "perhost"},
        "credsStore": "store",
        "auths": {"other.example": _auth("ignored", "because-credsStore-wins")},
    })
    creds = lookup("reg.example")
    assert (creds.username, creds.password) == ("helper-user", "helper-secret")
    assert creds.source == "credential helper docker-credential-perhost"
    assert per_host.read_text().split() == ["get", "reg.example"]
    hub = lookup("docker.io")
    assert (hub.username, hub.password) == ("hub", "hubsecret")
    token = lookup("other.example")
    assert token.identity_token == "identity" and token.username == ""
    assert lookup("unknown.example") is None
    assert "get https://index.docker.io/v1/" in store.read_text()


def test_store_and_remove_login_keep_the_file_private(home: Path) -> None:
    path = own_auth_file()
    store_login("docker.io", Credentials(username="me", password="pw"), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["auths"]["docker.io"] == _auth("me", "pw")
    assert lookup("docker.io").username == "me"
    assert remove_login("docker.io", path) is True
    assert remove_login("docker.io", path) is False
    assert lookup("docker.io") is None


def test_creds_option_needs_user_and_password() -> None:
    assert parse_creds("a:b:c").password == "b:c"
    with pytest.raises(UsageError, match="USER:PASSWORD"):
        parse_creds("nopassword")
