"""Pack an overlayfs upper dir into a reproducible, gzip'd OCI layer tar.

The reverse of :mod:`pybox.store.unpack` (DESIGN.md §3 and §6): overlay
whiteouts (char devices 0/0) become ``.wh.NAME`` entries, an opaque
directory (``trusted.overlay.opaque=y``) gets a ``.wh..wh..opq`` entry, and
no other ``trusted.overlay.*`` xattr leaves the upper dir.

The same tree must give the same digest byte for byte, wherever it lies and
whatever its atimes, ctimes or inode numbers: entries are sorted, headers
carry numeric ids only and whole-second mtimes (clamped to
SOURCE_DATE_EPOCH when given), and the gzip header has no time nor name.
Both digests are computed while the stream is written, in one pass.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["PackResult", "pack_layer"]

_CHUNK = 1 << 20
_COMPRESSLEVEL = 6
# wbits 16 + 15: a gzip wrapper whose header zlib writes itself, always the
# same: mtime 0, no file name, no comment.
_GZIP_WBITS = 31

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_XATTR_PAX = "SCHILY.xattr."
# overlayfs bookkeeping (uuid on the upper root, origin, redirect, opaque,
# ...): meaningless, or harmful, in another mount of the layer.
_OVERLAY_XATTR = "trusted.overlay."
_OPAQUE_XATTR = "trusted.overlay.opaque"

_NODE_TYPES = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}


@dataclass(frozen=True)
class PackResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    digest: str  # "sha256:<hex>" of the gzip stream
    size: int  # bytes of the gzip stream


def pack_layer(upper: Path, out: BinaryIO, *, source_date_epoch: int | None = None) -> PackResult:
    """Write the tree under ``upper`` (not ``upper`` itself) to ``out`` as a gzip'd layer tar.

    The root is left out, as Docker leaves it out of its layers: its
    metadata is the base image's. Sockets are left out too; tar cannot
    hold them. With ``source_date_epoch``, no mtime is later than it.
    """
    sink = _LayerSink(out)
    # PAX: long names, large ids and xattrs; surrogateescape keeps names and
    # xattr values that are not UTF-8 as their original bytes.
    with tarfile.TarFile(
        fileobj=sink,  # type: ignore[arg-type]  # tarfile needs write() and tell() only
        mode="w",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
        copybufsize=_CHUNK,
    ) as tf:
        _Packer(upper, tf, source_date_epoch).run()
    return sink.finish()


class _LayerSink:
    """The uncompressed tar goes in; gzip comes out to ``out``; both are hashed on the way."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._tar_hash = hashlib.sha256()
        self._gz_hash = hashlib.sha256()
        self._deflate = zlib.compressobj(_COMPRESSLEVEL, zlib.DEFLATED, _GZIP_WBITS)
        self._offset = 0
        self._size = 0

    def write(self, data: bytes) -> int:
        self._tar_hash.update(data)
        self._offset += len(data)
        self._emit(self._deflate.compress(data))
        return len(data)

    def tell(self) -> int:
        return self._offset

    def finish(self) -> PackResult:
        self._emit(self._deflate.flush())
        return PackResult(
            diff_id="sha256:" + self._tar_hash.hexdigest(),
            digest="sha256:" + self._gz_hash.hexdigest(),
            size=self._size,
        )

    def _emit(self, chunk: bytes) -> None:
        if chunk:
            self._gz_hash.update(chunk)
            self._out.write(chunk)
            self._size += len(chunk)


@dataclass(frozen=True)
class _Node:
    path: str  # relative to the upper dir, as on disk
    st: os.stat_result

    @property
    def whiteout(self) -> bool:
        # overlayfs marks a deleted name with a char device 0/0, whatever its mode.
        return stat.S_ISCHR(self.st.st_mode) and self.st.st_rdev == 0

    @property
    def name(self) -> str:
        """The entry's name in the tar."""
        if not self.whiteout:
            return self.path
        parent, _, base = self.path.rpartition("/")
        return f"{parent}/{_WHITEOUT}{base}" if parent else _WHITEOUT + base


class _Packer:
    def __init__(self, upper: Path, tf: tarfile.TarFile, epoch: int | None) -> None:
        self._upper = upper
        self._tf = tf
        self._epoch = epoch
        # (st_dev, st_ino) -> tar name of the first path seen, for hard link entries.
        self._links: dict[tuple[int, int], str] = {}

    def run(self) -> None:
        for node in self._walk():
            self._entry(node)

    def _walk(self) -> Iterator[_Node]:
        """Every node below the root, depth first, siblings sorted by tar name.

        Parents come before children. A stack rather than recursion: a path
        may be deeper than Python's recursion limit.
        """
        stack = self._children("")
        while stack:
            node = stack.pop()
            yield node
            if stat.S_ISDIR(node.st.st_mode):
                stack.extend(self._children(node.path))

    def _children(self, rel: str) -> list[_Node]:
        """The nodes in directory ``rel``, in reverse order, ready for the stack."""
        with os.scandir(self._upper / rel if rel else self._upper) as it:
            nodes = [_Node(f"{rel}/{e.name}" if rel else e.name, e.stat(follow_symlinks=False)) for e in it]
        # Bytes order: the same for any locale, and for names that are not UTF-8.
        nodes.sort(key=lambda n: os.fsencode(n.name), reverse=True)
        return nodes

    def _entry(self, node: _Node) -> None:
        mode = node.st.st_mode
        if node.whiteout:
            self._whiteout(node)
        elif stat.S_ISSOCK(mode):
            return  # a socket is only meaningful to a running process; Docker skips them too
        elif stat.S_ISDIR(mode):
            self._directory(node)
        elif not self._hardlink(node):
            self._other(node)

    def _whiteout(self, node: _Node) -> None:
        # overlayfs makes all whiteouts hard links of one node: they must
        # never become hard link entries, each is its own ".wh." file.
        ti = self._header(node, node.name, tarfile.REGTYPE)
        ti.mode = 0o600  # as Docker writes them; the device's mode means nothing
        self._tf.addfile(ti)

    def _directory(self, node: _Node) -> None:
        xattrs = self._xattrs(node.path)
        ti = self._header(node, node.name, tarfile.DIRTYPE, xattrs)
        self._tf.addfile(ti)
        if xattrs.get(_OPAQUE_XATTR) == b"y":
            # Right after its directory, as Docker places it; it takes the
            # directory's owner, permissions and time.
            opaque = self._header(node, f"{node.name}/{_OPAQUE}", tarfile.REGTYPE)
            opaque.mode &= 0o777
            self._tf.addfile(opaque)

    def _hardlink(self, node: _Node) -> bool:
        """Write a hard link entry if ``node``'s inode was written already; else remember it."""
        if node.st.st_nlink < 2:
            return False
        key = (node.st.st_dev, node.st.st_ino)
        target = self._links.get(key)
        if target is None:
            self._links[key] = node.name
            return False
        # The link shares the target's inode, so its xattrs come with the target.
        ti = self._header(node, node.name, tarfile.LNKTYPE)
        ti.linkname = target
        self._tf.addfile(ti)
        return True

    def _other(self, node: _Node) -> None:
        """A regular file, symlink, fifo or device node."""
        mode = node.st.st_mode
        xattrs = self._xattrs(node.path)
        if stat.S_ISREG(mode):
            ti = self._header(node, node.name, tarfile.REGTYPE, xattrs)
            ti.size = node.st.st_size
            self._add_content(ti, node.path)
            return
        if stat.S_ISLNK(mode):
            ti = self._header(node, node.name, tarfile.SYMTYPE, xattrs)
            ti.linkname = os.readlink(self._upper / node.path)
        else:
            ti = self._header(node, node.name, _NODE_TYPES[stat.S_IFMT(mode)], xattrs)
            ti.devmajor = os.major(node.st.st_rdev)
            ti.devminor = os.minor(node.st.st_rdev)
        self._tf.addfile(ti)

    def _add_content(self, ti: tarfile.TarInfo, rel: str) -> None:
        # O_NOFOLLOW: the node was a regular file when listed; never read through a symlink put in its place.
        fd = os.open(self._upper / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb", buffering=0) as f:
            # tarfile copies ti.size bytes in copybufsize chunks, and fails if the file shrank.
            self._tf.addfile(ti, f)

    def _header(
        self, node: _Node, name: str, kind: bytes, xattrs: dict[str, bytes] | None = None
    ) -> tarfile.TarInfo:
        """A header with ``node``'s owner, mode and mtime, and the xattrs that belong in a layer."""
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = stat.S_IMODE(node.st.st_mode)  # setuid, setgid and sticky included
        ti.uid = node.st.st_uid
        ti.gid = node.st.st_gid
        ti.uname = ti.gname = ""  # numeric ids only: names depend on the host's /etc/passwd
        ti.mtime = self._mtime(node.st)
        if xattrs:
            ti.pax_headers = _xattr_records(xattrs)
        return ti

    def _mtime(self, st: os.stat_result) -> int:
        # Whole seconds (Docker truncates too): sub-second times make PAX records, and noise.
        mtime = st.st_mtime_ns // 1_000_000_000
        return mtime if self._epoch is None else min(mtime, self._epoch)

    def _xattrs(self, rel: str) -> dict[str, bytes]:
        path = self._upper / rel
        return {
            name: os.getxattr(path, name, follow_symlinks=False)
            for name in os.listxattr(path, follow_symlinks=False)
        }


def _xattr_records(xattrs: dict[str, bytes]) -> dict[str, str]:
    """PAX records for ``xattrs``, sorted, without overlayfs's own.

    Values are bytes (security.capability is binary): decoded with
    surrogateescape, tarfile writes them back as the same bytes.
    """
    return {
        _XATTR_PAX + name: xattrs[name].decode("utf-8", "surrogateescape")
        for name in sorted(xattrs)
        if not name.startswith(_OVERLAY_XATTR)
    }
