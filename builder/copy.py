"""COPY and ADD: write the new layer directory directly, without a container (DESIGN.md §6).

The layer directory mirrors the container's filesystem (``/app/x`` is
``layer/app/x``) and holds only what this instruction writes; the caller
packs it. The rules are Docker's (BuildKit's ``dockerfile2llb`` and fsutil's
copy):

- a relative destination is relative to the working directory;
- several sources need a destination that ends in ``/`` (or is ``.``);
- a destination ending in ``/``, or a directory in the image, receives each
  source under its base name; a source directory gives its *contents*;
- a top-level source symlink is followed, symlinks inside a copied
  directory are copied as symlinks;
- modes and mtimes are kept, owners become root or ``--chown``'s ids;
  parents of the destination are created 0755 and owned by root;
- ADD extracts a local tar (plain, gzip, bzip2, xz: told by its content, not
  its name) into the destination directory.

The layer is this module's own fresh directory, but copied symlinks land in
it: a later write through such a symlink could leave the layer, so a path is
never followed inside it. A symlink or file where a directory is needed is
replaced by the directory, and every other entry replaces what was there.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pybox.runtime.users import resolve_user

from pybox.errors import ContentError, StoreError, UsageError
from pybox.store.unpack import unpack

__all__ = ["copy_into_layer", "parse_chmod", "parse_chown"]

# (mode bits, is a directory) -> new mode bits
ModeChange = Callable[[int, bool], int]

_CHUNK = 1 << 20
_DIR_MODE = 0o755

# Magic numbers, as Docker's archive.DetectCompression checks them.
# The file classes read multi-member/multi-stream files, as Go's readers do.
_COMPRESSED_OPENERS: tuple[tuple[bytes, Callable[[str], BinaryIO]], ...] = (
    (b"\x1f\x8b", gzip.GzipFile),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)
# What a damaged compressed stream raises from read().
_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError)

_OCTAL = re.compile(r"[0-7]{1,4}")
# chmod(1)'s symbolic clause: who, then one or more op + (permissions or a class to copy).
# [ugo] comes first so that "g=u" copies u instead of matching no permission.
_ACTION = r"([-+=])([ugo]|[rwxXst]*)"
_CLAUSE = re.compile(rf"([ugoa]*)((?:{_ACTION})+)")
_ACTION_RE = re.compile(_ACTION)
# The bits each class may change: its rwx, plus setuid (u), setgid (g), sticky (o).
_CLASS_MASK = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_CLASS_SHIFT = {"u": 6, "g": 3, "o": 0}
_PERM_BITS = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}


def parse_chown(text: str, read_file: Callable[[str], str | None]) -> tuple[int, int]:
    """``--chown``'s ``user[:group]`` as (uid, gid), names looked up in the stage's passwd/group.

    ``read_file(path)`` returns a file of the stage's filesystem or None. As
    in BuildKit: a name alone takes the user's primary group from passwd; a
    number alone is used for both ids, whether or not passwd lists it.
    """
    user, sep, group = text.partition(":")
    if not user or (sep and not group):
        raise UsageError(f"invalid --chown={text}: expected user[:group] with neither part empty")
    try:
        resolved = resolve_user(text, (), read_file)
    except UsageError as e:
        raise UsageError(f"invalid --chown={text}: {e}") from e
    if not sep and user.isdigit():
        return resolved.uid, resolved.uid
    return resolved.uid, resolved.gid


def parse_chmod(text: str) -> ModeChange:
    """``--chmod``'s octal ("755") or chmod(1) symbolic ("u+x,g-w", "a=rX") mode, as a function.

    A symbolic clause without a class means all of them: chmod(1) would mask
    it with the umask, but the mode in a layer must not depend on the
    builder's umask.
    """
    if _OCTAL.fullmatch(text):
        value = int(text, 8)
        return lambda _mode, _is_dir: value
    clauses: list[tuple[int, list[tuple[str, str]]]] = []
    for clause in text.split(","):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise UsageError(f"invalid --chmod={text}: {clause!r} is neither an octal nor a symbolic mode")
        who = match.group(1).replace("a", "ugo") or "ugo"
        mask = 0
        for cls in who:
            mask |= _CLASS_MASK[cls]
        clauses.append((mask, _ACTION_RE.findall(match.group(2))))

    def change(mode: int, is_dir: bool) -> int:
        for mask, actions in clauses:
            for op, perms in actions:
                bits = _perm_bits(perms, mode, is_dir) & mask
                if op == "+":
                    mode |= bits
                elif op == "-":
                    mode &= ~bits
                else:
                    mode = (mode & ~mask) | bits
        return mode

    return change


def _perm_bits(perms: str, mode: int, is_dir: bool) -> int:
    """The bits ``perms`` stands for in every class, before the clause's class mask."""
    if perms in _CLASS_SHIFT:  # "g=u": the rwx of another class, in every class
        return ((mode >> _CLASS_SHIFT[perms]) & 0o7) * 0o111
    bits = 0
    for p in perms:
        if p == "X":
            # chmod(1): execute only for a directory or what some class may already execute.
            if is_dir or mode & 0o111:
                bits |= 0o111
        else:
            bits |= _PERM_BITS[p]
    return bits


def copy_into_layer(
    *,
    sources: list[tuple[str, Path]],
    dest: str,
    workdir: str,
    layer: Path,
    chown: tuple[int, int] | None,
    chmod: str | None,
    extract_archives: bool,
    dest_is_dir_in_image: bool,
    visible: Callable[[Path], bool] | None = None,
) -> None:
    """Write what COPY/ADD ``sources`` to ``dest`` produce into the empty directory ``layer``.

    ``sources`` are (name as written, host path checked by the caller), globs
    already expanded. ``extract_archives`` is ADD's: a tar source is
    extracted instead of copied. ``dest_is_dir_in_image``: ``dest`` is a
    directory in the stage's filesystem, so sources go inside it.
    ``visible(host_path)`` says whether an entry inside a copied directory
    is part of the sources at all (the context's ignore rules).
    """
    if not sources:
        raise UsageError("COPY/ADD needs at least one source")
    marked_dir = dest == "." or dest.endswith("/")
    if len(sources) > 1 and not marked_dir:
        raise UsageError("When using COPY with more than one source file, the destination must be a directory and end with a /")
    mode_change = parse_chmod(chmod) if chmod else None
    dest_path = _container_path(workdir, dest)
    into_dir = marked_dir or dest_is_dir_in_image
    # The destination directory is this copy's own (so --chown's) unless the
    # image has it; the layer root is never changed.
    owns_dest = not dest_is_dir_in_image and dest_path != "/"
    copier = _Copier(chown, mode_change, visible)
    for name, host in sources:
        # Docker follows a source symlink given by name (or glob) at the top level.
        real = Path(os.path.realpath(host))
        try:
            st = os.lstat(real)
            if extract_archives and stat.S_ISREG(st.st_mode) and (opener := _archive_opener(real)):
                target = _dest_dir(layer, dest_path, chown if owns_dest else None)
                _extract(name, real, opener, target, layer.parent, chown)
            elif stat.S_ISDIR(st.st_mode):
                target = _dest_dir(layer, dest_path, None)
                copier.contents(real, target)
                if owns_dest:
                    # The destination stands for the source directory itself.
                    copier.metadata(target, st)
            elif into_dir:
                target = _dest_dir(layer, dest_path, chown if owns_dest else None)
                copier.node(real, st, target / posixpath.basename(posixpath.normpath(name)))
            else:
                parent, _, base = dest_path.rpartition("/")
                copier.node(real, st, _dest_dir(layer, parent or "/", None) / base)
        except OSError as e:
            raise StoreError(f"cannot copy {name!r} to {dest!r}: {e}") from e


def _container_path(workdir: str, dest: str) -> str:
    """``dest`` as a clean absolute path; a relative one is below ``workdir``."""
    path = posixpath.normpath(posixpath.join("/", workdir, dest))
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined).
    return "/" + path.lstrip("/")


def _dest_dir(layer: Path, path: str, chown: tuple[int, int] | None) -> Path:
    """Make directory ``path`` and its parents in ``layer`` (0755, root's); ``chown`` the last one."""
    current = layer
    for part in path.split("/"):
        if part:
            current = current / part
            _make_dir(current)
    if chown is not None:
        os.lchown(current, *chown)
    return current


def _make_dir(path: Path) -> None:
    """Make ``path`` a real directory, replacing a symlink or file there (never following it)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkdir(path)
    os.chmod(path, _DIR_MODE)  # mkdir's mode would go through the umask


def _remove(path: Path) -> None:
    """Remove whatever is at ``path`` (a directory with its content), without following it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class _Copier:
    """Copies host entries into the layer with COPY's metadata rules.

    Files hard-linked to each other in the sources stay linked in the layer,
    as with fsutil's copy.
    """

    def __init__(self, chown: tuple[int, int] | None, chmod: ModeChange | None,
                 visible: Callable[[Path], bool] | None = None) -> None:
        self._chown = chown
        self._chmod = chmod
        self._visible = visible
        self._links: dict[tuple[int, int], Path] = {}

    def contents(self, src: Path, dst: Path) -> None:
        """Copy the entries of directory ``src`` into the directory ``dst``."""
        with os.scandir(src) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = Path(entry.path)
            if self._visible is None or self._visible(path):
                self.node(path, entry.stat(follow_symlinks=False), dst / entry.name)

    def node(self, src: Path, st: os.stat_result, dst: Path) -> None:
        """Copy ``src`` (not followed; ``st`` is its lstat) to ``dst``, replacing what is there."""
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            _make_dir(dst)  # a directory over a directory merges into it
            self.contents(src, dst)
        else:
            key = (st.st_dev, st.st_ino)
            _remove(dst)
            if st.st_nlink > 1 and key in self._links:
                # The first copy already has the metadata: the inode is shared.
                os.link(self._links[key], dst)
                return
            if kind == stat.S_IFREG:
                _copy_file(src, dst)
            elif kind == stat.S_IFLNK:
                os.symlink(os.readlink(src), dst)
            else:  # fifo, socket, device
                os.mknod(dst, kind | 0o600, st.st_rdev)
            if st.st_nlink > 1:
                self._links[key] = dst
        self.metadata(dst, st)

    def metadata(self, dst: Path, st: os.stat_result) -> None:
        """Owner, mode and times of ``dst`` from the source's ``st`` and the flags.

        Without --chown nothing is changed: the builder runs as root, so what
        it creates is root's already, which is Docker's default owner.
        """
        if self._chown is not None:
            os.lchown(dst, *self._chown)
        if not stat.S_ISLNK(st.st_mode):  # Linux has no symlink modes
            mode = stat.S_IMODE(st.st_mode)
            if self._chmod is not None:
                mode = self._chmod(mode, stat.S_ISDIR(st.st_mode))
            # After lchown, which clears setuid and setgid.
            os.chmod(dst, mode)
        # Last: writing into a directory changes its mtime.
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: Path, dst: Path) -> None:
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while os.sendfile(dst_fd, src_fd, None, _CHUNK):
                pass
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _archive_opener(path: Path) -> Callable[[str], BinaryIO] | None:
    """How to open ``path`` as an uncompressed tar stream, or None if it is no tar.

    As Docker's ``isArchivePath``: decompress by magic number, then the first
    block must be a valid tar header. A damaged compressed file is no
    archive and gets copied as it is.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    opener: Callable[[str], BinaryIO] = _open_plain
    for magic, compressed in _COMPRESSED_OPENERS:
        if head.startswith(magic):
            opener = compressed
    try:
        with opener(os.fspath(path)) as stream:
            block = stream.read(tarfile.BLOCKSIZE)
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except (*_DECOMPRESS_ERRORS, tarfile.HeaderError):
        return None
    return opener


def _open_plain(path: str) -> BinaryIO:
    return open(path, "rb")


def _extract(
    name: str,
    archive: Path,
    opener: Callable[[str], BinaryIO],
    dest: Path,
    scratch: Path,
    chown: tuple[int, int] | None,
) -> None:
    """Extract ``archive`` into ``dest`` with unpack's safety rules, merging with what is there.

    unpack wants an empty directory, and ``dest`` may hold earlier sources:
    extract beside the layer (same filesystem), then move the entries in.
    --chown applies to extracted entries as BuildKit's untar ChownOpts do;
    --chmod does not, BuildKit does not pass it to the untar either.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".add-", dir=scratch))
    try:
        try:
            with opener(os.fspath(archive)) as stream:
                unpack(stream, tmp)
        except _DECOMPRESS_ERRORS as e:
            raise ContentError(f"ADD {name}: the archive is damaged: {e}") from e
        if chown is not None:
            _chown_tree(tmp, chown)
        _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _chown_tree(root: Path, chown: tuple[int, int]) -> None:
    """Give every entry below ``root`` to ``chown``, keeping setuid/setgid bits that lchown clears."""
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            mode = os.lstat(path).st_mode
            os.lchown(path, *chown)
            if not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode))


def _merge(src: Path, dst: Path) -> None:
    """Move the entries of ``src`` into ``dst``: a directory merges into a directory, anything else replaces.

    A merged directory takes the archive's metadata, as untarring over an
    existing directory does.
    """
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge(Path(entry.path), target)
            st = entry.stat(follow_symlinks=False)
            os.lchown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            _remove(target)
            os.rename(entry.path, target)
