"""Looking up a path in a stack of layer directories, as the merged overlay would show it.

Reading an image's /etc/passwd, a build step's destination, or a mount
point in a container's merged root (a stack of one directory): each needs
to know what a path is and where its symlinks lead, without mounting
anything and without ever leaving the image. The layers are searched
top down; an overlay whiteout (char device 0/0) hides what is below, an
opaque directory hides the lower layers' entries inside it. Symlinks are
resolved inside the image (an absolute target starts again at the image
root, ``..`` stops at it), never on the host.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

__all__ = ["Found", "is_opaque", "lookup"]

# Linux's MAXSYMLINKS.
_MAX_LINKS = 40
_OPAQUE_XATTR = "trusted.overlay.opaque"
# What an image without layers (FROM scratch) shows at "/".
_EMPTY_ROOT = os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 1, 0, 0, 0, 0, 0, 0))


# A NamedTuple, not a dataclass: `pybox run` defines it at start-up, where a dataclass costs five times more.
class Found(NamedTuple):
    """``path`` with its symlinks resolved in the image; the final entry's lstat and the layer that has it.

    ``stat`` and ``layer`` are None when the entry is absent.
    """

    path: str
    stat: os.stat_result | None = None
    layer: Path | None = None

    @property
    def mode(self) -> int | None:
        return None if self.stat is None else self.stat.st_mode

    @property
    def is_dir(self) -> bool:
        return self.stat is not None and stat.S_ISDIR(self.stat.st_mode)


def is_opaque(directory: Path) -> bool:
    """Whether ``directory`` in a layer hides the lower layers' entries (an overlay opaque dir)."""
    try:
        return os.getxattr(directory, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def lookup(layer_dirs: list[Path], path: str, *, follow: bool = True) -> Found:
    """Resolve absolute ``path`` in the image made of ``layer_dirs`` (bottom first).

    Symlinks in the parents are always followed; the last component only
    with ``follow``; more than 40 of them raise OSError(ELOOP), as the
    kernel would. Below a missing component the rest is joined as written
    (``..`` stopping at the root) and ``stat`` is None.
    """
    pending = [p for p in path.split("/") if p and p != "."]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    missing = False
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join([*resolved, part])
        if missing:
            # Below an absent entry nothing exists: the rest is joined as
            # written, ".." still stopping at the root.
            resolved.append(part)
            continue
        st, target, layer = _top_entry(layer_dirs, candidate)
        if st is None:
            missing = True
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (pending or follow):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links in the image", path)
            assert target is not None
            if target.startswith("/"):
                resolved = []
            pending.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        resolved.append(part)
        if not pending:
            return Found(path=candidate, stat=st, layer=layer)
    if missing:
        return Found(path="/" + "/".join(resolved))
    if not layer_dirs:
        return Found(path="/", stat=_EMPTY_ROOT)
    return Found(path="/", stat=os.lstat(layer_dirs[-1]), layer=layer_dirs[-1])


def _top_entry(layer_dirs: list[Path], path: str) -> tuple[os.stat_result | None, str | None, Path | None]:
    """The lstat, link target and layer of ``path`` in the topmost layer that decides it.

    Each layer is walked a component at a time, never through its own
    symlinks: a parent that is not a directory there (a whiteout, a file,
    a symlink) hides everything below it in the lower layers, as does an
    opaque directory, as overlayfs merges them.
    """
    parts = path.strip("/").split("/")
    for layer in reversed(layer_dirs):
        current = layer
        hides = False
        for index, part in enumerate(parts):
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None, None, None  # a whiteout
            if index == len(parts) - 1:
                return st, (os.readlink(current) if stat.S_ISLNK(st.st_mode) else None), layer
            if not stat.S_ISDIR(st.st_mode):
                return None, None, None
            hides = hides or is_opaque(current)
        if hides:
            return None, None, None
    return None, None, None
