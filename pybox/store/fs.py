"""Filesystem primitives the store's crash-safety rests on.

The store writes into ``tmp/``, flushes the whole filesystem once with
``syncfs`` and then renames into place, so a crash leaves either the old or
the new state and never costs one fsync per file.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["syncfs", "atomic_write", "remove_tree", "make_temp_name", "sha256_names"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.syncfs.restype = ctypes.c_int


def syncfs(path: Path) -> None:
    """Flush every dirty page of the filesystem holding ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def make_temp_name(tmp_dir: Path, prefix: str) -> Path:
    return tmp_dir / f"{prefix}-{os.getpid()}-{os.urandom(4).hex()}"


def atomic_write(path: Path, data: bytes, tmp_dir: Path, *, sync: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    ``mode`` holds from the first byte (a secret is never briefly readable).
    """
    tmp = make_temp_name(tmp_dir, path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree or file; missing is fine.

    Layer trees contain directories without write permission and immutable
    owners; rmtree as root handles those, and nothing here follows symlinks.
    """
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def sha256_names(directory: Path) -> Iterator[str]:
    """``sha256:<name>`` for each entry of a directory named by digest; none if it is missing."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        yield "sha256:" + name
