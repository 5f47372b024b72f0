"""Where credentials for a registry come from, in Docker's and Podman's order.

1. ``--creds USER:PASS`` on the command line;
2. pybox's own auth file, written by ``pybox login`` (``--authfile``, else
   ``$XDG_CONFIG_HOME/pybox/auth.json``);
3. ``$XDG_RUNTIME_DIR/containers/auth.json`` and
   ``$XDG_CONFIG_HOME/containers/auth.json`` (Podman's);
4. ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``: a
   ``credHelpers`` entry for the host, else ``credsStore``, else ``auths``.

Secrets never go into argv (credential helpers read the host on stdin),
logs, exception messages or ``repr``; :class:`Credentials` says where it
came from so errors can name the source without the secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pybox.errors import StoreError, UsageError
from pybox.store.fs import atomic_write

__all__ = [
    "Credentials",
    "DOCKER_HUB_KEY",
    "own_auth_file",
    "parse_creds",
    "lookup",
    "store_login",
    "remove_login",
]

log = logging.getLogger(__name__)

# Docker keeps Docker Hub's credentials under its v1 index URL.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(default="", repr=False)
    # An OAuth2 refresh token (Docker's "identitytoken"), used instead of the password.
    identity_token: str = field(default="", repr=False)
    source: str = ""

    def describe(self) -> str:
        """Who and from where, for error messages: never the secret."""
        who = "an identity token" if self.identity_token else f"user {self.username!r}"
        return f"{who} from {self.source}" if self.source else who


def own_auth_file(option: str | None = None) -> Path:
    if option:
        return Path(option)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "pybox" / "auth.json"


def parse_creds(text: str) -> Credentials:
    """``USER:PASS`` (``USER`` alone is refused: pybox does not prompt in the middle of a pull)."""
    user, sep, password = text.partition(":")
    if not user or not sep:
        raise UsageError("--creds must be USER:PASSWORD")
    return Credentials(username=user, password=password, source="--creds")


def _host_keys(host: str) -> set[str]:
    return set(_HUB_ALIASES) if host in _HUB_ALIASES else {host}


def _normalize_key(key: str) -> str:
    """``https://host/v1/`` and ``host`` name the same registry (Docker's ConvertToHostname)."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


def _from_auth_entry(entry: object, source: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or ""
    encoded = entry.get("auth") or ""
    user, password = entry.get("username") or "", entry.get("password") or ""
    if encoded:
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            log.warning("ignoring an unreadable auth entry in %s", source)
            return None
    if not (user or token):
        return None
    return Credentials(username=user, password=password, identity_token=token, source=source)


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring %s: %s", path, e)
        return None
    return doc if isinstance(doc, dict) else None


def _from_auths(doc: dict, host: str, source: str) -> Credentials | None:
    keys = _host_keys(host)
    auths = doc.get("auths") or {}
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _normalize_key(key) in keys:
            creds = _from_auth_entry(entry, source)
            if creds:
                return creds
    return None


def _helper(name: str, host: str, source: str) -> Credentials | None:
    """Ask ``docker-credential-NAME get`` (the docker-credential-helpers protocol)."""
    program = f"docker-credential-{name}"
    server = DOCKER_HUB_KEY if host in _HUB_ALIASES else host
    try:
        proc = subprocess.run([program, "get"], input=server, capture_output=True, text=True,
                              timeout=_HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        log.warning("credential helper %s (named in %s) is not installed", program, source)
        return None
    except subprocess.TimeoutExpired:
        log.warning("credential helper %s did not answer within %d s", program, _HELPER_TIMEOUT)
        return None
    if proc.returncode != 0:
        # "credentials not found in native keychain" is the protocol's "none".
        log.debug("credential helper %s has no credentials for %s", program, server)
        return None
    try:
        doc = json.loads(proc.stdout)
        user, secret = doc.get("Username", ""), doc.get("Secret", "")
    except (ValueError, AttributeError):
        log.warning("credential helper %s answered something that is not its JSON", program)
        return None
    where = f"credential helper {program}"
    if user == "<token>":
        return Credentials(username="", identity_token=secret, source=where)
    return Credentials(username=user, password=secret, source=where) if user else None


def _docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def _candidates(host: str, authfile: Path) -> Iterator[Credentials | None]:
    doc = _read_json(authfile)
    if doc is not None:
        yield _from_auths(doc, host, str(authfile))
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    podman_files = ([Path(runtime_dir) / "containers" / "auth.json"] if runtime_dir else []) + [
        config_home / "containers" / "auth.json"
    ]
    for path in podman_files:
        doc = _read_json(path)
        if doc is not None:
            yield _from_auths(doc, host, str(path))
    docker_file = _docker_config_dir() / "config.json"
    doc = _read_json(docker_file)
    if doc is None:
        return
    helpers = doc.get("credHelpers") or {}
    for key, name in helpers.items() if isinstance(helpers, dict) else ():
        if _normalize_key(key) in _host_keys(host):
            yield _helper(str(name), host, str(docker_file))
            return
    if doc.get("credsStore"):
        yield _helper(str(doc["credsStore"]), host, str(docker_file))
        return
    yield _from_auths(doc, host, str(docker_file))


def lookup(host: str, *, explicit: Credentials | None = None, authfile: Path | None = None) -> Credentials | None:
    """The first credentials any source has for ``host`` (a registry's domain, e.g. ``docker.io``)."""
    if explicit is not None:
        return explicit
    for creds in _candidates(host, authfile or own_auth_file()):
        if creds is not None:
            log.debug("using %s for %s", creds.describe(), host)
            return creds
    return None


def _login_key(host: str) -> str:
    return "docker.io" if host in _HUB_ALIASES else host


def store_login(host: str, creds: Credentials, authfile: Path) -> None:
    """Record credentials in pybox's auth file (mode 0600, written atomically)."""
    doc = _read_json(authfile) or {}
    auths = doc.setdefault("auths", {})
    for key in [k for k in auths if _normalize_key(k) in _host_keys(host)]:
        del auths[key]
    pair = f"{creds.username}:{creds.password}".encode()
    auths[_login_key(host)] = {"auth": base64.b64encode(pair).decode()}
    _write_private(authfile, doc)


def remove_login(host: str, authfile: Path) -> bool:
    """Forget ``host``; False when pybox's auth file had nothing for it."""
    doc = _read_json(authfile)
    if not doc or not isinstance(doc.get("auths"), dict):
        return False
    keys = [k for k in doc["auths"] if _normalize_key(k) in _host_keys(host)]
    for key in keys:
        del doc["auths"][key]
    if keys:
        _write_private(authfile, doc)
    return bool(keys)


def _write_private(path: Path, doc: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps(doc, indent=2).encode() + b"\n", path.parent, mode=0o600)
    except OSError as e:
        raise StoreError(f"cannot write auth file {path}: {e.strerror}") from e
