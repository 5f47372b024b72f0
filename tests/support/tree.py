"""Comparing directory trees: what pybox unpacked against what umoci unpacked."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from support.images import SeededImage
from support.tools import run

__all__ = ["Entry", "EntryType", "diff_trees", "snapshot", "umoci_unpack"]

EntryType = Literal["file", "dir", "symlink", "fifo", "char", "block", "socket"]

_TYPES: tuple[tuple[int, EntryType], ...] = (
    (stat.S_IFREG, "file"), (stat.S_IFDIR, "dir"), (stat.S_IFLNK, "symlink"),
    (stat.S_IFIFO, "fifo"), (stat.S_IFCHR, "char"), (stat.S_IFBLK, "block"),
    (stat.S_IFSOCK, "socket"),
)
# overlayfs keeps its bookkeeping (opaque, origin, uuid, ...) here; it is
# not image content (DESIGN.md section 6).
_IGNORED_XATTR_PREFIX = "trusted.overlay."
_UNPACK_TIMEOUT = 120


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One path's metadata. Times are left out: unpackers may differ there.

    `nlink` (regular files only) catches hardlinks unpacked as copies.
    """

    type: EntryType
    mode: int  # stat.S_IMODE: permissions plus setuid, setgid, sticky
    uid: int
    gid: int
    size: int = 0  # files only
    sha256: str | None = None  # files only
    link: str | None = None  # symlink target
    rdev: tuple[int, int] | None = None  # (major, minor) for devices
    nlink: int = 0  # files only
    xattrs: dict[str, bytes] = field(default_factory=dict)


def _type(st: os.stat_result) -> EntryType:
    fmt = stat.S_IFMT(st.st_mode)
    for bits, name in _TYPES:
        if fmt == bits:
            return name
    raise ValueError(f"unknown file type {fmt:#o}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _xattrs(path: Path) -> dict[str, bytes]:
    return {
        name: os.getxattr(path, name, follow_symlinks=False)
        for name in sorted(os.listxattr(path, follow_symlinks=False))
        if not name.startswith(_IGNORED_XATTR_PREFIX)
    }


def _entry(path: Path) -> Entry:
    st = path.lstat()
    kind = _type(st)
    is_file = kind == "file"
    return Entry(
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if is_file else 0,
        sha256=_sha256(path) if is_file else None,
        link=os.readlink(path) if kind == "symlink" else None,
        rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else None,
        nlink=st.st_nlink if is_file else 0,
        xattrs=_xattrs(path),
    )


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under `root` (itself as "/"), keyed "/a/b"; symlinks not followed."""
    tree = {"/": _entry(root)}
    # os.walk lists a symlink to a directory among dirnames but, with
    # followlinks=False, does not descend into it.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            tree["/" + path.relative_to(root).as_posix()] = _entry(path)
    return tree


def _show(name: str, value: object) -> str:
    return oct(value) if name == "mode" and isinstance(value, int) else repr(value)


def diff_trees(expected: dict[str, Entry], actual: dict[str, Entry]) -> list[str]:
    """Readable differences, one per line; empty when the trees agree."""
    lines = [f"missing: {p}" for p in sorted(expected.keys() - actual.keys())]
    lines += [f"unexpected: {p} ({actual[p].type})" for p in sorted(actual.keys() - expected.keys())]
    for path in sorted(expected.keys() & actual.keys()):
        want, got = expected[path], actual[path]
        for name in (f.name for f in fields(Entry)):
            a, b = getattr(want, name), getattr(got, name)
            if a != b:
                lines.append(f"{path}: {name} expected {_show(name, a)}, got {_show(name, b)}")
    return lines


def umoci_unpack(image: SeededImage, dest: Path) -> Path:
    """Unpack `image` from its umoci layout into the bundle `dest`; return its rootfs.

    Needs root, as umoci then applies owners, device nodes and xattrs.
    """
    run(["umoci", "unpack", "--image", f"{image.layout}:{image.tag}", dest],
        timeout=_UNPACK_TIMEOUT)
    return dest / "rootfs"
