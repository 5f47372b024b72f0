"""How a pull reports per-layer progress; the CLI draws it."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "SilentProgress"]


class Progress(Protocol):
    def start(self, key: str, total: int | None) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def finish(self, key: str, status: str) -> None: ...


class SilentProgress:
    """Reports nothing (``-q``, and pulls that ``pybox run`` makes)."""

    def start(self, key: str, total: int | None) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def finish(self, key: str, status: str) -> None:
        pass
