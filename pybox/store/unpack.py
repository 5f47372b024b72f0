"""Unpack a layer's tar stream into a directory that becomes an overlayfs lower dir.

tarfile parses the headers (PAX, GNU long names, base-256 numbers); every
entry is written here with ``os`` calls, never with tarfile's extract, whose
filters drop device nodes, setuid bits and xattrs (DESIGN.md §3).

Safety: member names are cleaned the way Docker and umoci clean them, and
every parent directory is opened with openat2(2) ``RESOLVE_BENEATH`` from a
descriptor of the layer root, so a symlink in the layer (``etc -> /etc``,
``x -> ../..``) can never carry a write outside of it. The final component is
always handled relative to that parent descriptor without following it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from pybox.errors import ContentError, StoreError, UnsafeLayer

__all__ = ["UnpackStats", "unpack"]

_log = logging.getLogger(__name__)

_CHUNK = 1 << 20
# tarfile's stream buffer. It copies what is left of the buffer on every
# read, and a layer is mostly small reads (512-byte headers, small files), so
# a large buffer costs more than it saves; file data is read in _CHUNK pieces.
_TAR_BUFSIZE = 64 << 10
# Parent directory descriptors kept open at once. Threads unpack layers in
# parallel and share the process's descriptor table.
_MAX_CACHED_FDS = 64

_SYS_OPENAT2 = 437  # one number on every architecture (asm-generic table, Linux 5.6)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_EAGAIN_RETRIES = 64

# The umask can only be read by setting it; it is the process's, fixed here.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_EUID = os.geteuid()
_EGID = os.getegid()

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_XATTR_PAX = "SCHILY.xattr."
_OPAQUE_XATTR = b"trusted.overlay.opaque"
# overlayfs keeps its own state in trusted.overlay.* (redirect, metacopy,
# origin). Here it may only come from whiteouts: an image must not steer
# overlay lookups, so such xattrs in a header are dropped, as pybox drops
# them when it packs an upper dir (DESIGN.md §6).
_OVERLAY_XATTR_PAX = _XATTR_PAX + "trusted.overlay."

_NODE_FORMATS = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}

# A name needs posixpath.normpath only if it has "." or ".." components,
# doubled or trailing slashes; most names have none and skip it.
_UNCLEAN = re.compile(r"(?:^|/)\.{1,2}(?:/|$)|//|/$")


@dataclass(frozen=True, kw_only=True)
class UnpackStats:
    entries: int  # tar members handled, whiteouts included
    bytes: int  # regular file content written


def unpack(stream: BinaryIO, dest: Path | str) -> UnpackStats:
    """Unpack the uncompressed layer tar ``stream`` into the empty directory ``dest``.

    Reads up to the end-of-archive blocks, or to EOF once the last member's
    data is complete (umoci's ``insert`` writes layers without the end blocks
    and padding; Docker and Podman accept them). The rest of ``stream`` is
    left for the caller to drain; ``stream`` is only ever ``read()``.

    Whiteouts become overlayfs whiteouts. Raises UnsafeLayer for an entry
    that would land outside ``dest``, ContentError for a malformed or
    truncated archive and StoreError when the filesystem refuses a write. On
    error ``dest`` holds a partial tree for the caller to delete; nothing
    outside it has been touched.
    """
    try:
        root = os.open(dest, _DIR_FLAGS)
    except OSError as e:
        raise StoreError(f"cannot open layer directory {os.fspath(dest)!r}: {e.strerror}") from e
    unpacker = _Unpacker(root)
    try:
        return unpacker.run(stream)
    finally:
        unpacker.close()


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW = _OpenHow(_DIR_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_OpenHow), ctypes.c_size_t)


def _openat2_dir(dirfd: int, path: str) -> int:
    """Open directory ``path`` below ``dirfd``; symlinks are followed only while they stay below it.

    An absolute symlink or one climbing out fails with EXDEV (openat2(2)).
    """
    encoded = os.fsencode(path)
    for _ in range(_EAGAIN_RETRIES):
        fd = _syscall(_SYS_OPENAT2, dirfd, encoded, ctypes.byref(_HOW), ctypes.sizeof(_HOW))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        # EAGAIN: a rename or mount elsewhere raced with a ".." step; openat2(2) says retry.
        if err != errno.EAGAIN:
            break
    raise OSError(err, os.strerror(err), path)


def _clean(name: str) -> str | None:
    """``name`` relative to the layer root ("." is the root itself); None if it climbs out.

    Docker (``filepath.Clean``) and umoci (``CleanPath``) read member names
    as relative to the root: a leading "/" or "./" is dropped. Only a name
    that still climbs above the root is refused.
    """
    name = name.lstrip("/")
    if _UNCLEAN.search(name):
        name = posixpath.normpath(name)
        if name == ".." or name.startswith("../"):
            return None
    return name or "."


def _pax_ns(value: str, entry: str) -> int:
    """A PAX time ("1700000000.123456789") in nanoseconds, without float rounding."""
    try:
        return int(Decimal(value).scaleb(9))
    except (ArithmeticError, ValueError) as e:
        raise ContentError(f"layer entry {entry!r} has an invalid PAX time {value!r}") from e


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


class _Unpacker:
    def __init__(self, root: int) -> None:
        self._root = root
        self._fds: dict[str, int] = {}  # cleaned dir path -> O_PATH fd of what it resolves to
        self._stale = False  # a dir or symlink was removed: cached fds may be wrong
        self._dir_times: dict[str, tuple[int, int]] = {}
        self._bytes = 0
        # Directories with the setgid bit: files made in them take the
        # directory's group, so they always need their own chown.
        self._setgid_dirs: set[str] = set()

    def close(self) -> None:
        self._drop_fds()
        os.close(self._root)

    def _drop_fds(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._stale = False

    # -- the archive -------------------------------------------------------

    def run(self, stream: BinaryIO) -> UnpackStats:
        head = stream.read(tarfile.BLOCKSIZE)
        if not head:
            return UnpackStats(entries=0, bytes=0)  # an empty stream is an empty layer, as in Go's archive/tar
        try:
            tf = tarfile.open(
                fileobj=_Replay(head, stream),
                mode="r|",
                bufsize=_TAR_BUFSIZE,
                encoding="utf-8",
                errors="surrogateescape",
                tarinfo=_TarInfo,
            )
            member = tf.next()
        except tarfile.ReadError as e:
            raise ContentError(f"layer is not a tar archive: {e}") from e
        entries = 0
        while member is not None:
            # Stream mode keeps every member it has seen; nothing here needs them.
            tf.members.clear()
            if self._stale or len(self._fds) >= _MAX_CACHED_FDS:
                self._drop_fds()
            try:
                self._entry(tf, member)
            except OSError as e:
                raise StoreError(f"cannot unpack layer entry {member.name!r}: {e}") from e
            entries += 1
            if not _skip_padding(tf):
                break
            try:
                member = tf.next()
            except tarfile.ReadError as e:
                raise ContentError(f"layer tar is corrupt after entry {entries}: {e}") from e
        try:
            self._apply_dir_times()
        except OSError as e:
            raise StoreError(f"cannot set the times of the layer's directories: {e}") from e
        return UnpackStats(entries=entries, bytes=self._bytes)

    def _entry(self, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        name = _clean(ti.name)
        if name is None:
            raise UnsafeLayer(f"layer entry {ti.name!r} points outside the layer")
        if name == ".":
            if not ti.isdir():
                raise UnsafeLayer(f"layer entry {ti.name!r} would replace the layer root")
            self._metadata(self._root, ".", ti, name)
            return
        parent, _, base = name.rpartition("/")
        if base.startswith(_WHITEOUT):
            self._whiteout(tf, ti, name, parent, base)
            return
        kind = ti.type
        if kind in tarfile.REGULAR_TYPES:  # includes contiguous and GNU sparse files
            self._file(tf, ti, name, self._dir(parent, name), base)
        elif kind == tarfile.DIRTYPE:
            self._mkdir(ti, name, self._dir(parent, name), base)
        elif kind == tarfile.SYMTYPE:
            pfd = self._dir(parent, name)
            self._create(pfd, base, name, lambda: os.symlink(ti.linkname, base, dir_fd=pfd))
            self._metadata(pfd, base, ti, name)
        elif kind == tarfile.LNKTYPE:
            self._hardlink(ti, name, parent, base)
        elif kind in _NODE_FORMATS:
            pfd = self._dir(parent, name)
            fmt = _NODE_FORMATS[kind]
            device = os.makedev(ti.devmajor, ti.devminor) if kind != tarfile.FIFOTYPE else 0
            self._create(pfd, base, name, lambda: os.mknod(base, fmt | 0o600, device, dir_fd=pfd))
            self._metadata(pfd, base, ti, name)
        else:
            # Docker refuses them too ("unhandled tar header type").
            raise ContentError(f"layer entry {ti.name!r} has unsupported tar type {kind!r}")

    # -- entry types -------------------------------------------------------

    def _file(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, name: str, pfd: int, base: str) -> None:
        mode = ti.mode & 0o7777
        # Most files belong to root and have plain permission bits: created
        # with their final mode, they need neither chown nor chmod, two
        # syscalls of the six a file costs. The content is not readable by
        # anyone before the layer is renamed into place.
        plain = (
            ti.uid == _EUID
            and ti.gid == _EGID
            and not mode & (0o7000 | _UMASK)
            and name.rpartition("/")[0] not in self._setgid_dirs
        )
        create_mode = mode if plain else 0o600
        try:
            fd = os.open(base, _FILE_FLAGS, create_mode, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base, name)
            fd = os.open(base, _FILE_FLAGS, create_mode, dir_fd=pfd)
        try:
            if ti.size:
                _copy_content(tf, ti, fd)
                self._bytes += ti.size
            if not plain:
                # Order matters: chown clears setuid/setgid and security.capability.
                os.chown(fd, ti.uid, ti.gid)
                os.chmod(fd, mode)
            if ti.pax_headers:
                _set_xattrs(fd, ti, name)
            os.utime(fd, ns=_times(ti, name))
        finally:
            os.close(fd)

    def _mkdir(self, ti: tarfile.TarInfo, name: str, pfd: int, base: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            # A directory over a directory keeps it and its content (tar and
            # Docker do the same); anything else is replaced.
            if not stat.S_ISDIR(os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode):
                self._remove(pfd, base, name)
                os.mkdir(base, 0o700, dir_fd=pfd)
        self._metadata(pfd, base, ti, name)
        if ti.mode & stat.S_ISGID:
            self._setgid_dirs.add(name)
        else:
            self._setgid_dirs.discard(name)

    def _hardlink(self, ti: tarfile.TarInfo, name: str, parent: str, base: str) -> None:
        target = _clean(ti.linkname)
        if target is None or target == ".":
            raise UnsafeLayer(f"layer entry {name!r} is a hard link to {ti.linkname!r}, outside the layer")
        target_parent, _, target_base = target.rpartition("/")
        missing = f"layer entry {name!r} is a hard link to {ti.linkname!r}, which is not in the layer"
        try:
            target_pfd = self._dir(target_parent, name, create=False)
        except FileNotFoundError:
            raise UnsafeLayer(missing) from None
        pfd = self._dir(parent, name)
        # follow_symlinks=False: link the entry itself, as link(2) and GNU tar do.
        # The new name shares the target's inode and so its metadata: a link
        # entry carries none of its own to apply.
        try:
            self._create(
                pfd,
                base,
                name,
                lambda: os.link(target_base, base, src_dir_fd=target_pfd, dst_dir_fd=pfd, follow_symlinks=False),
            )
        except FileNotFoundError:
            raise UnsafeLayer(missing) from None
        except PermissionError as e:  # link(2) refuses directories with EPERM
            raise ContentError(f"layer entry {name!r}: cannot hard link to {ti.linkname!r}: {e.strerror}") from e

    def _whiteout(self, tf: tarfile.TarFile, ti: tarfile.TarInfo, name: str, parent: str, base: str) -> None:
        if ti.isreg() and ti.size:
            # Read past it, so the stream position stays right; a whiteout's content means nothing.
            sink = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            try:
                _copy_content(tf, ti, sink)
            finally:
                os.close(sink)
        if base == _OPAQUE:
            # overlayfs: an opaque dir hides the same dir in lower layers
            # (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories").
            pfd = self._dir(parent, name)
            os.setxattr(f"/proc/self/fd/{pfd}", _OPAQUE_XATTR, b"y")
            return
        if base.startswith(_WHITEOUT + _WHITEOUT):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless to overlayfs
        hidden = base[len(_WHITEOUT) :]
        if hidden in ("", ".", ".."):
            raise UnsafeLayer(f"layer entry {name!r} is a whiteout of no single entry")
        # overlayfs: a whiteout is a character device 0/0; its mode and owner
        # are not looked at, and it carries none of the header's metadata.
        pfd = self._dir(parent, name)
        hidden_name = f"{parent}/{hidden}" if parent else hidden
        self._create(pfd, hidden, hidden_name, lambda: os.mknod(hidden, stat.S_IFCHR, 0, dir_fd=pfd))

    # -- helpers -----------------------------------------------------------

    def _create(self, pfd: int, base: str, name: str, make: Callable[[], object]) -> None:
        """Run ``make`` (which creates ``base`` in ``pfd``); replace whatever is in the way."""
        try:
            make()
        except FileExistsError:
            self._remove(pfd, base, name)
            make()

    def _remove(self, pfd: int, base: str, name: str) -> None:
        mode = os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            # shutil.rmtree with dir_fd walks by descriptors and never follows symlinks.
            shutil.rmtree(base, dir_fd=pfd)
            self._dir_times.pop(name, None)
            self._stale = True
        else:
            os.unlink(base, dir_fd=pfd)
            self._stale |= stat.S_ISLNK(mode)

    def _metadata(self, pfd: int, base: str, ti: tarfile.TarInfo, name: str) -> None:
        """Apply owner, mode, xattrs and times to a non-regular entry ``base`` in ``pfd``."""
        os.chown(base, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        if not ti.issym():
            # The entry was just made (or is a directory kept): not a symlink,
            # so following the name is safe; Linux's fchmodat cannot avoid it.
            os.chmod(base, ti.mode & 0o7777, dir_fd=pfd)
        if ti.pax_headers:
            _set_xattrs(f"/proc/self/fd/{pfd}/{base}", ti, name)  # os has no setxattr with a dir_fd
        times = _times(ti, name)
        if ti.isdir():
            # Children change a directory's mtime: set it after the last entry.
            self._dir_times[name] = times
        else:
            os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)

    def _dir(self, rel: str, entry: str, *, create: bool = True) -> int:
        """An O_PATH fd of directory ``rel`` inside the layer, cached.

        Missing directories are made with mode 0755 (as Docker does) when
        ``create``; otherwise FileNotFoundError. The fd stays valid until the
        next entry starts.
        """
        if not rel:
            return self._root
        fd = self._fds.get(rel)
        if fd is not None:
            return fd
        try:
            fd = _openat2_dir(self._root, rel)
        except OSError as e:
            if e.errno == errno.ENOENT and create:
                fd = self._make_parent(rel, entry)
            elif e.errno == errno.EXDEV:
                raise UnsafeLayer(f"layer entry {entry!r} resolves outside the layer through a symlink") from e
            elif e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise ContentError(f"layer entry {entry!r}: {rel!r} is not a directory ({e.strerror})") from e
            else:
                raise
        self._fds[rel] = fd
        return fd

    def _make_parent(self, rel: str, entry: str) -> int:
        parent, _, base = rel.rpartition("/")
        pfd = self._dir(parent, entry)
        try:
            os.mkdir(base, 0o755, dir_fd=pfd)
        except FileExistsError:
            # It exists yet did not resolve: a symlink to nothing. Docker fails here too.
            raise ContentError(f"layer entry {entry!r}: {rel!r} is a dangling symlink") from None
        os.chmod(base, 0o755, dir_fd=pfd)  # not subject to this process's umask
        return os.open(base, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=pfd)

    def _apply_dir_times(self) -> None:
        self._drop_fds()  # the last entry may have left them stale
        for name, times in self._dir_times.items():
            if name == ".":
                os.utime(".", ns=times, dir_fd=self._root, follow_symlinks=False)
                continue
            parent, _, base = name.rpartition("/")
            try:
                pfd = self._dir(parent, name, create=False)
                os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
            except (FileNotFoundError, ContentError):
                # Removed later in the layer through another path (a symlinked
                # parent or a whiteout): nothing left to date.
                continue
            if len(self._fds) >= _MAX_CACHED_FDS:
                self._drop_fds()


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parsing, except that a damaged header is an error.

    tarfile ends the archive quietly at a header with a bad checksum, or one
    cut short, after the first member; Go's archive/tar (Docker, umoci)
    fails there, and so does this. A zero or empty block is still the end.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if not buf.strip(b"\0"):
                raise
            raise ContentError(f"layer tar has a damaged header: {e}") from e


class _Replay:
    """The caller's stream with the first block, read to spot an empty stream, put back."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int) -> bytes:
        if not self._head:
            return self._stream.read(size)
        out, self._head = self._head[:size], self._head[size:]
        return out


def _copy_content(tf: tarfile.TarFile, ti: tarfile.TarInfo, fd: int) -> None:
    """Write the data of regular member ``ti`` to ``fd``; ContentError if the stream ends first."""
    if ti.sparse is not None:
        # extractfile fills the holes with zeros: the content is right, the
        # file is just not sparse on disk.
        member = tf.extractfile(ti)
        assert member is not None  # a regular member always has a reader
        read = member.read
    else:
        # The data follows the header in the stream: read it from there. This
        # skips extractfile's two wrapper objects and copies per member, a
        # fifth of the time of a layer of small files.
        assert tf.fileobj is not None
        read = tf.fileobj.read
    remaining = ti.size
    try:
        while remaining:
            data = read(min(remaining, _CHUNK))
            if not data:
                break
            _write_all(fd, data)
            remaining -= len(data)
    except tarfile.ReadError as e:  # tarfile's "unexpected end of data" (sparse members)
        raise ContentError(f"layer entry {ti.name!r} is truncated") from e
    if remaining:
        raise ContentError(f"layer entry {ti.name!r} is truncated")


def _skip_padding(tf: tarfile.TarFile) -> bool:
    """Read past the padding after a member's data; False if the stream ends in it.

    The member's data has been read in full by now, so an end here is a
    layer without padding or end-of-archive blocks (umoci insert): complete.
    tarfile itself would call it "unexpected end of data".
    """
    stream = tf.fileobj
    assert stream is not None
    gap = tf.offset - stream.tell()
    return gap <= 0 or len(stream.read(gap)) == gap


def _times(ti: tarfile.TarInfo, name: str) -> tuple[int, int]:
    """(atime, mtime) in ns; PAX times keep their nanoseconds, atime defaults to mtime."""
    pax = ti.pax_headers
    mtime = pax.get("mtime") if pax else None
    mtime_ns = _pax_ns(mtime, name) if mtime else int(ti.mtime) * 1_000_000_000
    atime = pax.get("atime") if pax else None
    return (_pax_ns(atime, name) if atime else mtime_ns), mtime_ns


def _set_xattrs(target: int | str, ti: tarfile.TarInfo, name: str) -> None:
    """Set the xattrs of ``ti``'s PAX header on ``target``: an fd, or a path not followed at its end.

    tarfile decodes PAX values as UTF-8 with surrogateescape (binary values
    such as security.capability included); encoding back the same way gives
    the original bytes.
    """
    for key, value in ti.pax_headers.items():
        if not key.startswith(_XATTR_PAX) or key.startswith(_OVERLAY_XATTR_PAX):
            continue
        attr = key[len(_XATTR_PAX) :].encode("utf-8", "surrogateescape")
        try:
            if isinstance(target, int):
                os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"))
            else:
                os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except PermissionError as e:
            # e.g. user.* on a symlink or a device node. Docker warns and goes
            # on (moby pkg/archive createTarFile ignores EPERM).
            _log.warning("layer entry %r: xattr %r not set: %s", name, attr, e.strerror)
