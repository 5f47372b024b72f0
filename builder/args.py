"""Build arguments: ``--build-arg`` values, ARG scopes and the predefined names.

Docker's rules (Dockerfile reference, "ARG"):

- ARGs before the first FROM are global: FROM lines see them, stages do
  not, unless a stage declares ``ARG NAME`` again (then it gets the global
  value, or the ``--build-arg`` one).
- In a stage, ``ARG NAME[=default]`` makes NAME visible from that line on;
  ``--build-arg NAME=v`` overrides the default. ENV of the same name wins
  over an ARG in expansion and in RUN's environment.
- The proxy names are predefined: usable in a stage without ARG, and left
  out of the history and of cache keys (they hold credentials and hosts).
- TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT and their BUILD*
  counterparts are set in the global scope, and in a stage once declared.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pybox.builder.instructions import ArgDeclaration
from pybox.errors import UsageError
from pybox.image import Platform

__all__ = ["PROXY_ARGS", "BuildArgs", "Scope", "parse_build_args", "platform_args"]

PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


def parse_build_args(items: list[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``--build-arg K=V`` pairs; ``K`` alone takes the caller's environment value, or is dropped."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {item!r}: expected NAME=VALUE or NAME")
        if sep:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    out = {}
    for prefix, platform in (("TARGET", target), ("BUILD", build)):
        out[f"{prefix}PLATFORM"] = str(platform)
        out[f"{prefix}OS"] = platform.os
        out[f"{prefix}ARCH"] = platform.architecture
        out[f"{prefix}VARIANT"] = platform.variant
    return out


@dataclass
class BuildArgs:
    """What ``--build-arg`` gave, and which of it some ARG (or a proxy use) consumed."""

    given: dict[str, str]
    automatic: dict[str, str]
    consumed: set[str] = field(default_factory=set)

    def value(self, decl: ArgDeclaration, globals_: Mapping[str, str | None] | None) -> str | None:
        if decl.name in self.given:
            self.consumed.add(decl.name)
            return self.given[decl.name]
        if decl.default is not None:
            return decl.default
        if globals_ is not None and globals_.get(decl.name) is not None:
            return globals_[decl.name]
        return self.automatic.get(decl.name)

    def proxies(self) -> dict[str, str]:
        found = {k: v for k, v in self.given.items() if k in PROXY_ARGS}
        self.consumed.update(found)
        return found

    def unused(self) -> list[str]:
        # The proxy names need no ARG: they are never "unused".
        return sorted(set(self.given) - self.consumed - PROXY_ARGS)


@dataclass
class Scope:
    """The ARGs visible at one point: name -> value (None: declared, no value)."""

    values: dict[str, str | None] = field(default_factory=dict)

    def declare(self, decl: ArgDeclaration, args: BuildArgs, globals_: Mapping[str, str | None] | None) -> None:
        self.values[decl.name] = args.value(decl, globals_)

    def set(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if v is not None}
