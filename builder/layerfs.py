"""Looking up a path in a stack of layer directories, as the merged overlay would show it.

COPY and WORKDIR need to know whether a destination exists in the image
and what it is, and where its symlinks lead, without mounting anything:
a cached or metadata-only step must stay cheap. The layers are searched
top down; an overlay whiteout (char device 0/0) hides what is below, an
opaque directory hides the lower layers' entries inside it. Symlinks are
resolved inside the image (an absolute target starts again at the image
root, ``..`` stops at it), never on the host.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from pybox.store.layers import is_opaque

__all__ = ["Found", "keep_metadata", "lookup"]

# Linux's MAXSYMLINKS.
_MAX_LINKS = 40


# What an image without layers (FROM scratch) shows at "/".
_EMPTY_ROOT = os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 1, 0, 0, 0, 0, 0, 0))


@dataclass(frozen=True, kw_only=True)
class Found:
    """``path`` with its symlinks resolved in the image, and the final entry's lstat (None: absent)."""

    path: str
    # From the layer that decides the entry.
    stat: os.stat_result | None = None

    @property
    def mode(self) -> int | None:
        return None if self.stat is None else self.stat.st_mode

    @property
    def is_dir(self) -> bool:
        return self.stat is not None and stat.S_ISDIR(self.stat.st_mode)


def lookup(layer_dirs: list[Path], path: str, *, follow: bool = True) -> Found:
    """Resolve absolute ``path`` in the image made of ``layer_dirs`` (bottom first).

    Symlinks in the parents are always followed; the last component only
    with ``follow``. A missing component ends the walk: the rest is joined
    as written and ``stat`` is None.
    """
    pending = [p for p in path.split("/") if p and p != "."]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join([*resolved, part])
        st, target = _top_entry(layer_dirs, candidate)
        if st is None:
            return Found(path=posixpath.join(candidate, *reversed(pending)))
        if stat.S_ISLNK(st.st_mode) and (pending or follow):
            links += 1
            if links > _MAX_LINKS:
                return Found(path=candidate)
            assert target is not None
            if target.startswith("/"):
                resolved = []
            pending.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        resolved.append(part)
        if not pending:
            return Found(path=candidate, stat=st)
    return Found(path="/", stat=os.lstat(layer_dirs[-1]) if layer_dirs else _EMPTY_ROOT)


def keep_metadata(layer: Path, layer_dirs: list[Path], path: str) -> None:
    """Give ``path`` and its parents in the new ``layer`` the owner, mode and mtime the image has for them.

    A COPY to /srv/x/ writes /srv and /srv/x into its layer only to hold
    what it copies; as the upper layer they would otherwise replace the
    image's own (a 1777 /tmp would become 0755 root's).
    """
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = posixpath.join(current, part)
        full = layer / current.lstrip("/")
        try:
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                return
        except FileNotFoundError:
            return
        found = lookup(layer_dirs, current, follow=False)
        if not found.is_dir:
            continue
        os.lchown(full, found.stat.st_uid, found.stat.st_gid)
        os.chmod(full, stat.S_IMODE(found.stat.st_mode))
        os.utime(full, ns=(found.stat.st_atime_ns, found.stat.st_mtime_ns), follow_symlinks=False)


def _top_entry(layer_dirs: list[Path], path: str) -> tuple[os.stat_result | None, str | None]:
    """The lstat (and link target) of ``path`` in the topmost layer that decides it."""
    relative = path.lstrip("/")
    for layer in reversed(layer_dirs):
        full = layer / relative
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            if _hidden_below(layer, relative):
                return None, None
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None, None  # a whiteout
        return st, (os.readlink(full) if stat.S_ISLNK(st.st_mode) else None)
    return None, None


def _hidden_below(layer: Path, relative: str) -> bool:
    """Whether a parent of ``relative`` in ``layer`` hides the lower layers: opaque, a whiteout or not a dir."""
    parent = posixpath.dirname(relative)
    while parent:
        full = layer / parent
        parent = posixpath.dirname(parent)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISDIR(st.st_mode) or is_opaque(full):
            return True
    return False
