"""``pybox login`` / ``logout``: check credentials against a registry, then remember them."""

from __future__ import annotations

from pathlib import Path

from pybox import reference
from pybox.errors import NotFound, UsageError
from pybox.registry.client import RegistryClient
from pybox.registry.credentials import Credentials, remove_login, store_login

__all__ = ["registry_host", "login", "logout"]


def registry_host(text: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``; Docker Hub's names -> ``docker.io``."""
    host = text.strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0]
    if not host:
        raise UsageError(f"invalid registry {text!r}")
    if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        return reference.DEFAULT_DOMAIN
    return host


def _ref_for(host: str) -> reference.Reference:
    return reference.Reference(domain=host, path="library/x")


def login(host: str, creds: Credentials, *, authfile: Path, tls_verify: bool = True) -> None:
    """Raise :class:`~pybox.errors.Unauthorized` unless the registry takes ``creds``; then store them."""
    ref = _ref_for(host)
    client = RegistryClient(ref.api_host, plain_http_ok=ref.is_loopback, tls_verify=tls_verify, credentials=creds)
    try:
        client.check_login()
    finally:
        client.close()
    store_login(host, creds, authfile)


def logout(host: str, *, authfile: Path) -> None:
    if not remove_login(host, authfile):
        raise NotFound(f"not logged in to {host} (nothing in {authfile})")
