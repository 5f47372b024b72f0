"""Errors that pybox reports to its user.

    PyboxError                      anything pybox itself reports (CLI exit 125)
    ├── UsageError                  a flag or argument the user gave is wrong
    │   └── InvalidReference        an image reference does not parse
    ├── NotFound                    a named thing does not exist
    │   ├── ImageNotFound           ... in the local store
    │   └── RemoteNotFound          ... on the registry (manifest or blob 404)
    ├── Conflict                    the request collides with existing state
    ├── RegistryError               the registry refused or broke the protocol
    │   ├── Unauthorized            401/403: credentials missing or rejected
    │   ├── TransportError          connection, TLS or DNS failure
    │   └── UnsupportedManifest     schema 1, unknown media types
    ├── PlatformMismatch            no manifest in an index fits the platform
    ├── StepFailed                  a build's RUN step exited non-zero (CLI exit 1)
    ├── ContentError                content does not match what was promised
    │   ├── DigestMismatch          size or digest differs from the descriptor
    │   ├── InvalidDocument         a manifest, index or config is malformed
    │   └── UnsafeLayer             a layer tries to write outside its root
    └── StoreError                  the on-disk store is unusable

Foreign exceptions (requests, OSError, json) are translated where they enter
pybox, with ``raise ... from e``, so the CLI only ever sees this tree.
"""

from __future__ import annotations

__all__ = [
    "PyboxError",
    "UsageError",
    "InvalidReference",
    "NotFound",
    "ImageNotFound",
    "RemoteNotFound",
    "Conflict",
    "RegistryError",
    "Unauthorized",
    "TransportError",
    "UnsupportedManifest",
    "PlatformMismatch",
    "StepFailed",
    "ContentError",
    "DigestMismatch",
    "InvalidDocument",
    "UnsafeLayer",
    "StoreError",
]


class PyboxError(Exception):
    """Base of every error pybox reports; ``str()`` is the one-line message.

    ``where`` names the place in the user's input the error is about
    (``Containerfile:3``); ``str()`` puts it first.
    """

    # Docker's convention: 125 is the tool's own failure.
    exit_code = 125
    where = ""

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.where}: {message}" if self.where else message


class UsageError(PyboxError):
    pass


class InvalidReference(UsageError):
    pass


class NotFound(PyboxError):
    pass


class ImageNotFound(NotFound):
    pass


class RemoteNotFound(NotFound):
    pass


class Conflict(PyboxError):
    pass


class RegistryError(PyboxError):
    pass


class Unauthorized(RegistryError):
    pass


class TransportError(RegistryError):
    pass


class UnsupportedManifest(RegistryError):
    pass


class PlatformMismatch(PyboxError):
    pass


class StepFailed(PyboxError):
    # As docker build and buildah: the build failed, not pybox.
    exit_code = 1


class ContentError(PyboxError):
    pass


class DigestMismatch(ContentError):
    pass


class InvalidDocument(ContentError):
    pass


class UnsafeLayer(ContentError):
    pass


class StoreError(PyboxError):
    pass
