"""Where pybox keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_ROOT", "store_root"]

DEFAULT_ROOT = Path("/var/lib/pybox")


def store_root(option: str | os.PathLike[str] | None = None) -> Path:
    """``--root`` wins over ``PYBOX_ROOT``, which wins over the default."""
    value = option or os.environ.get("PYBOX_ROOT") or DEFAULT_ROOT
    return Path(value).absolute()
