"""TLS trust for a registry: the system's CAs plus the registry's own.

Docker reads ``/etc/docker/certs.d/<host>/`` and Podman
``/etc/containers/certs.d/<host>/``: ``*.crt`` files are extra CA
certificates, and a ``*.cert`` with the ``*.key`` of the same name is a
client certificate (docker docs, "Verify repository client with
certificates").
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from pybox.errors import TransportError

__all__ = ["CERTS_DIRS", "registry_ssl_context"]

log = logging.getLogger(__name__)

CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


def registry_ssl_context(host: str, certs_dirs: tuple[Path, ...] = CERTS_DIRS) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for base in certs_dirs:
        directory = base / host
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            try:
                if path.suffix == ".crt":
                    context.load_verify_locations(cafile=str(path))
                    log.debug("trusting %s for %s", path, host)
                elif path.suffix == ".cert":
                    key = path.with_suffix(".key")
                    if not key.exists():
                        raise TransportError(f"client certificate {path} has no key {key.name} beside it")
                    context.load_cert_chain(str(path), str(key))
            except (ssl.SSLError, OSError) as e:
                raise TransportError(f"cannot load {path} for {host}: {e}") from e
    return context
