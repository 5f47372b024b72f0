"""The image model: media types, digests, descriptors, platforms, manifests, indexes, configs.

These are the OCI image-spec documents (and Docker's schema2 equivalents) as
frozen dataclasses. Parsing validates through :mod:`pybox.validate` first
(imported only then: reading the store's own documents skips it), so a
document that reaches these classes is well-formed; anything beyond the shape
(is this the platform I want? does this digest match?) is decided here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pybox.errors import DigestMismatch, InvalidDocument, UnsupportedManifest

__all__ = [
    "DEFAULT_PATH",
    "MT",
    "MANIFEST_TYPES",
    "INDEX_TYPES",
    "ACCEPT_MANIFESTS",
    "sha256_digest",
    "digest_hex",
    "check_digest",
    "Descriptor",
    "Platform",
    "Manifest",
    "Index",
    "ImageConfig",
    "parse_manifest_or_index",
    "parse_config",
]


# The PATH Docker and BuildKit give a container or image whose environment has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class MT:
    """Media types pybox reads and writes."""

    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_LAYOUT = "application/vnd.oci.layout.header.v1+json"
    OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


MANIFEST_TYPES = frozenset({MT.OCI_MANIFEST, MT.DOCKER_MANIFEST})
INDEX_TYPES = frozenset({MT.OCI_INDEX, MT.DOCKER_LIST})
_SCHEMA1_TYPES = frozenset({MT.DOCKER_SCHEMA1, MT.DOCKER_SCHEMA1_SIGNED})

# What a pull asks for, most preferred first (containers/image sends the same set).
ACCEPT_MANIFESTS = ", ".join(
    [MT.OCI_INDEX, MT.OCI_MANIFEST, MT.DOCKER_LIST, MT.DOCKER_MANIFEST]
)

_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    """The hex part of a sha256 digest; the store only holds sha256 content."""
    if not _SHA256_RE.fullmatch(digest):
        raise InvalidDocument(f"unsupported digest {digest!r}: pybox stores sha256 content only")
    return digest[7:]


def check_digest(data: bytes, digest: str, what: str) -> None:
    actual = sha256_digest(data)
    if actual != digest:
        raise DigestMismatch(f"{what}: expected digest {digest}, got {actual}")


# ---------------------------------------------------------------- platforms

# Kernel machine names to OCI architecture names (Go's GOARCH values).
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "armhf": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True, kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """``os/arch[/variant]`` as ``--platform`` takes it (containerd's normalization)."""
        from pybox.errors import UsageError

        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
        os_, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else ""
        if parts[1] == "armv7l":
            variant = variant or "v7"
        elif parts[1] == "armv6l":
            variant = variant or "v6"
        return cls(os=os_, architecture=arch, variant=_normalize_variant(arch, variant))

    @classmethod
    def host(cls) -> "Platform":
        machine = os.uname().machine.lower()
        arch = _ARCH_ALIASES.get(machine, machine)
        variant = {"armv7l": "v7", "armv6l": "v6"}.get(machine, "")
        return cls(os="linux", architecture=arch, variant=_normalize_variant(arch, variant))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Platform":
        arch = _ARCH_ALIASES.get(d.get("architecture", ""), d.get("architecture", ""))
        return cls(
            os=d.get("os", ""),
            architecture=arch,
            variant=_normalize_variant(arch, d.get("variant", "") or ""),
            os_version=d.get("os.version", "") or "",
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def candidates(self) -> list["Platform"]:
        """Platforms that can run here, best first (containerd's platforms.Only).

        arm64 runs any arm64 variant up to its own (v8 also takes an entry with
        no variant); 32-bit arm runs older variants; amd64 micro-architecture
        levels fall back to lower levels and to plain amd64.
        """
        out = [self]
        arch, v = self.architecture, self.variant
        if arch == "arm" and v.startswith("v") and v[1:].isdigit():
            out += [Platform(os=self.os, architecture="arm", variant=f"v{n}") for n in range(int(v[1:]) - 1, 4, -1)]
        elif arch == "arm64":
            out.append(Platform(os=self.os, architecture="arm64", variant=""))
        elif arch == "amd64" and v.startswith("v") and v[1:].isdigit():
            out += [Platform(os=self.os, architecture="amd64", variant=f"v{n}") for n in range(int(v[1:]) - 1, 0, -1)]
            out.append(Platform(os=self.os, architecture="amd64", variant=""))
        return out

    def matches(self, other: "Platform") -> bool:
        return (self.os, self.architecture, self.variant) == (other.os, other.architecture, other.variant)


def _normalize_variant(arch: str, variant: str) -> str:
    # containerd normalizes arm64's default variant to v8 and amd64's v1 to none.
    if arch == "arm64" and variant in ("", "8", "v8"):
        return "v8"
    if arch == "amd64" and variant in ("v1",):
        return ""
    if arch == "arm" and variant.isdigit():
        return "v" + variant
    return variant


# -------------------------------------------------------------- descriptors


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: Platform | None = None
    artifact_type: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Descriptor":
        return cls(
            media_type=d["mediaType"],
            digest=d["digest"],
            size=d["size"],
            urls=tuple(d.get("urls") or ()),
            annotations=dict(d.get("annotations") or {}),
            platform=Platform.from_dict(d["platform"]) if d.get("platform") else None,
            artifact_type=d.get("artifactType", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            p: dict[str, Any] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @property
    def hex(self) -> str:
        return digest_hex(self.digest)


# --------------------------------------------------------------- manifests


@dataclass(frozen=True, kw_only=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def choose(self, wanted: Platform) -> Descriptor:
        """The manifest for ``wanted``, by containerd's fallback order.

        Attestation manifests (BuildKit marks them ``unknown/unknown``) are not
        images and never match.
        """
        from pybox.errors import PlatformMismatch

        images = [
            d
            for d in self.manifests
            if d.platform is not None
            and d.media_type in MANIFEST_TYPES
            and not (d.platform.os == "unknown" and d.platform.architecture == "unknown")
        ]
        for candidate in wanted.candidates():
            for d in images:
                if d.platform is not None and d.platform.matches(candidate):
                    return d
        offered = ", ".join(sorted({str(d.platform) for d in images if d.platform})) or "none"
        raise PlatformMismatch(f"no image for platform {wanted} in the index (it offers: {offered})")


def _guess_media_type(doc: dict[str, Any]) -> str:
    """Media type of a document that does not name its own (containers/image's GuessMIMEType)."""
    if doc.get("schemaVersion") == 1:
        return MT.DOCKER_SCHEMA1_SIGNED if "signatures" in doc else MT.DOCKER_SCHEMA1
    config = doc.get("config")
    if isinstance(config, dict) and config.get("mediaType") == MT.DOCKER_CONFIG:
        return MT.DOCKER_MANIFEST
    if doc.get("manifests"):
        return MT.OCI_INDEX
    return MT.OCI_MANIFEST


def parse_manifest_or_index(raw: bytes, content_type: str = "", *, trusted: bool = False) -> Manifest | Index:
    """Parse a manifest or index body; ``content_type`` is what the registry said it is.

    The body's own ``mediaType`` must agree with the Content-Type (a registry
    that serves one document as another is either broken or lying).
    ``trusted`` skips the schema check for documents the store validated when they came in.
    """
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise InvalidDocument(f"manifest is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidDocument("manifest is not a JSON object")
    declared = doc.get("mediaType") or ""
    media_type = declared or _guess_media_type(doc)
    content_type = content_type.split(";")[0].strip()
    if media_type in _SCHEMA1_TYPES or content_type in _SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise UnsupportedManifest(
            "this image uses Docker's deprecated schema 1 manifest, which pybox does not support; "
            "push it again with a current Docker or skopeo to convert it"
        )
    known = MANIFEST_TYPES | INDEX_TYPES
    if content_type in known and declared and declared != content_type:
        raise InvalidDocument(f"registry served a {content_type} whose body says it is {declared}")
    if content_type in known and not declared:
        media_type = content_type
    if media_type in MANIFEST_TYPES:
        if not trusted:
            from pybox import validate

            validate.validate_manifest(doc)
        return Manifest(
            media_type=media_type,
            config=Descriptor.from_dict(doc["config"]),
            layers=tuple(Descriptor.from_dict(x) for x in doc.get("layers") or ()),
            annotations=dict(doc.get("annotations") or {}),
        )
    if media_type in INDEX_TYPES:
        if not trusted:
            from pybox import validate

            validate.validate_index(doc)
        return Index(
            media_type=media_type,
            manifests=tuple(Descriptor.from_dict(x) for x in doc["manifests"]),
            annotations=dict(doc.get("annotations") or {}),
        )
    raise UnsupportedManifest(f"unsupported manifest media type {media_type!r}")


# ------------------------------------------------------------------ config


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """An image config; ``raw`` keeps every field, including ones pybox does not model."""

    raw: dict[str, Any] = field(hash=False, compare=False)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.raw.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def architecture(self) -> str:
        return self.raw.get("architecture", "")

    @property
    def os(self) -> str:
        return self.raw.get("os", "")

    @property
    def variant(self) -> str:
        return self.raw.get("variant", "") or ""

    @property
    def created(self) -> str:
        return self.raw.get("created", "") or ""

    @property
    def config(self) -> dict[str, Any]:
        return self.raw.get("config") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.raw.get("history") or [])


def parse_config(raw: bytes, *, trusted: bool = False) -> ImageConfig:
    if trusted:
        return ImageConfig(raw=json.loads(raw))
    from pybox import validate

    doc = validate.validate_document(MT.OCI_CONFIG, raw)
    assert isinstance(doc, dict)
    rootfs = doc.get("rootfs") or {}
    if rootfs.get("type") != "layers":
        raise InvalidDocument("image config: rootfs.type must be \"layers\"")
    for d in rootfs.get("diff_ids") or []:
        digest_hex(d)
    return ImageConfig(raw=doc)

