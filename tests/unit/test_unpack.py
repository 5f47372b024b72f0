"""unpack: every entry type and its metadata, whiteouts, odd archive ends, and the safety rules.

The tars are made with Python's tarfile writer; the results are checked with
os.lstat/getxattr as a user would look at them.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.skip import require, require_tool

from pybox.errors import ContentError, UnsafeLayer
from pybox.store.decompress import open_decompressed
from pybox.store.unpack import UnpackStats, unpack


require(os.geteuid() == 0, "unpack needs root: mknod, chown, trusted.* and security.* xattrs", module=True)

MTIME = 1_600_000_000
# A version-2 vfs_cap_data: effective flag, permitted = cap_net_bind_service and
# a few more; \xff is not UTF-8, so the PAX value round-trips through surrogateescape.
CAPABILITY = b"\x01\x00\x00\x02" + b"\xff\x04\x00\x00" + bytes(12)

Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, *, mode: int, uid: int, gid: int, mtime: float, pax: dict[str, str] | None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    if pax:
        ti.pax_headers = dict(pax)
    return ti


def file(name: str, data: bytes = b"", *, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: float = MTIME, pax: dict[str, str] | None = None) -> Member:
    ti = _info(name, tarfile.REGTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, pax=pax)
    ti.size = len(data)
    return ti, data


def directory(name: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: float = MTIME, pax: dict[str, str] | None = None) -> Member:
    return _info(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, pax=pax), None


def symlink(name: str, target: str, *, uid: int = 0, gid: int = 0, mtime: float = MTIME) -> Member:
    ti = _info(name, tarfile.SYMTYPE, mode=0o777, uid=uid, gid=gid, mtime=mtime, pax=None)
    ti.linkname = target
    return ti, None


def hardlink(name: str, target: str) -> Member:
    ti = _info(name, tarfile.LNKTYPE, mode=0o644, uid=0, gid=0, mtime=MTIME, pax=None)
    ti.linkname = target
    return ti, None


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, *, mode: int = 0o640, uid: int = 0, gid: int = 0) -> Member:
    ti = _info(name, kind, mode=mode, uid=uid, gid=gid, mtime=MTIME, pax=None)
    ti.devmajor, ti.devminor = major, minor
    return ti, None


def make_tar(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


class _Stream:
    """What the caller hands over (a hashing reader): read() only, with short reads."""

    def __init__(self, data: bytes, max_read: int = 100_000) -> None:
        self._data = io.BytesIO(data)
        self._max = max_read

    def read(self, size: int = -1) -> bytes:
        return self._data.read(self._max if size is None or size < 0 else min(size, self._max))

    def rest(self) -> bytes:
        return self._data.read()


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    dest = tmp_path / "layer"
    dest.mkdir()
    return dest


def run(dest: Path, *members: Member, fmt: int = tarfile.PAX_FORMAT) -> UnpackStats:
    return unpack(_Stream(make_tar(*members, fmt=fmt)), dest)


# -- entry types and metadata ------------------------------------------------


def test_regular_file_content_mode_owner_and_mtime(layer: Path) -> None:
    big = os.urandom(2_500_000) + b"tail"  # more than one 1 MiB read
    stats = run(
        layer,
        file("etc/hostname", b"box\n", mode=0o640, uid=1000, gid=1000),
        file("big.bin", big, mode=0o600, uid=1, gid=2, mtime=MTIME + 5),
        file("empty", b""),
    )
    assert stats == UnpackStats(entries=3, bytes=len(big) + 4)
    st = os.lstat(layer / "etc/hostname")
    assert (layer / "etc/hostname").read_bytes() == b"box\n"
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid, st.st_mtime) == (1000, 1000, MTIME)
    assert (layer / "big.bin").read_bytes() == big
    st = os.lstat(layer / "big.bin")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (1, 2, 0o600, MTIME + 5)
    assert (layer / "empty").read_bytes() == b""


def test_implicit_parent_directories_are_0755(layer: Path) -> None:
    old = os.umask(0o077)
    try:
        run(layer, file("a/b/c/f", b"x"))
    finally:
        os.umask(old)
    for d in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE(os.lstat(layer / d).st_mode) == 0o755


def test_setuid_setgid_sticky_survive_chown(layer: Path) -> None:
    run(
        layer,
        file("usr/bin/su", b"#!", mode=0o4755, uid=1000, gid=1000),
        file("usr/bin/wall", b"#!", mode=0o2755, uid=0, gid=5),
        directory("tmp", mode=0o1777),
        directory("srv", mode=0o2775, uid=1000, gid=1000),
    )
    assert stat.S_IMODE(os.lstat(layer / "usr/bin/su").st_mode) == 0o4755
    assert os.lstat(layer / "usr/bin/su").st_uid == 1000
    assert stat.S_IMODE(os.lstat(layer / "usr/bin/wall").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(layer / "tmp").st_mode) == 0o1777
    st = os.lstat(layer / "srv")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2775, 1000, 1000)


def test_directory_metadata_and_mtime_set_after_children(layer: Path) -> None:
    run(
        layer,
        directory("data", mode=0o750, uid=1000, gid=1000, mtime=MTIME - 100),
        directory("data/sub", mode=0o700, mtime=MTIME - 50),
        file("data/sub/f", b"1"),
        file("data/g", b"2"),
    )
    st = os.lstat(layer / "data")
    assert stat.S_ISDIR(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 1000, 1000, MTIME - 100)
    assert os.lstat(layer / "data/sub").st_mtime == MTIME - 50


def test_root_entry_sets_layer_root_metadata(layer: Path) -> None:
    run(layer, directory("./", mode=0o700, uid=1000, gid=1000, mtime=MTIME - 7), file("./f", b"x"))
    st = os.lstat(layer)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o700, 1000, 1000, MTIME - 7)
    assert (layer / "f").read_bytes() == b"x"


def test_symlinks_are_stored_verbatim_and_not_followed(layer: Path) -> None:
    run(
        layer,
        symlink("etc/mtab", "/proc/self/mounts", uid=1000, gid=1000, mtime=MTIME - 3),
        symlink("lib64", "usr/lib"),
        symlink("dangling", "../../nowhere"),
    )
    assert os.readlink(layer / "etc/mtab") == "/proc/self/mounts"
    assert os.readlink(layer / "lib64") == "usr/lib"
    assert os.readlink(layer / "dangling") == "../../nowhere"
    st = os.lstat(layer / "etc/mtab")
    assert stat.S_ISLNK(st.st_mode)
    assert (st.st_uid, st.st_gid, st.st_mtime) == (1000, 1000, MTIME - 3)


def test_hardlink_shares_inode(layer: Path) -> None:
    run(
        layer,
        file("usr/bin/python3.11", b"ELF", mode=0o755),
        hardlink("usr/bin/python3", "usr/bin/python3.11"),
        hardlink("bin/py", "/usr/bin/python3.11"),  # absolute link names are relative to the root too
    )
    a, b, c = (os.lstat(layer / p) for p in ("usr/bin/python3.11", "usr/bin/python3", "bin/py"))
    assert a.st_ino == b.st_ino == c.st_ino
    assert a.st_nlink == 3


def test_fifo_and_device_nodes(layer: Path) -> None:
    run(
        layer,
        node("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
        node("dev/sda", tarfile.BLKTYPE, 8, 0, mode=0o660, gid=6),
        node("dev/big", tarfile.CHRTYPE, 300, 70000, mode=0o600),
        node("run/fifo", tarfile.FIFOTYPE, mode=0o620, uid=1000, gid=1000),
    )
    st = os.lstat(layer / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = os.lstat(layer / "dev/sda")
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (8, 0)
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, 6)
    st = os.lstat(layer / "dev/big")
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (300, 70000)
    st = os.lstat(layer / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o620, 1000, 1000)


def test_contiguous_file_is_a_regular_file(layer: Path) -> None:
    ti, data = file("c", b"contiguous")
    ti.type = tarfile.CONTTYPE
    run(layer, (ti, data))
    assert (layer / "c").read_bytes() == b"contiguous"


@pytest.mark.parametrize("tar_format", [["--format=gnu"], ["--format=posix", "--sparse-version=0.1"], ["--format=posix", "--sparse-version=1.0"]])
def test_gnu_tar_sparse_file_content(layer: Path, tmp_path: Path, tar_format: list[str]) -> None:
    # Python's tarfile cannot write sparse members; GNU tar, as Debian ships it, can.
    require_tool("tar")
    gnu_tar = shutil.which("tar")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"A" * 5000)
        f.seek(3 << 20)
        f.write(b"B" * 7000)
        f.truncate(5 << 20)  # ends in a hole
    (src / "after").write_bytes(b"next member")
    blob = subprocess.run(
        [gnu_tar, "--sparse", *tar_format, "-cf", "-", "-C", str(src), "sparse", "after"],
        check=True,
        capture_output=True,
    ).stdout
    unpack(_Stream(blob), layer)
    assert (layer / "sparse").read_bytes() == (src / "sparse").read_bytes()
    assert (layer / "after").read_bytes() == b"next member"


def test_xattrs_from_pax_headers(layer: Path) -> None:
    cap = CAPABILITY.decode("utf-8", "surrogateescape")
    run(
        layer,
        directory("d", pax={"SCHILY.xattr.user.dir": "on a dir"}),
        file(
            "bin/ping",
            b"ELF",
            mode=0o4755,
            uid=1000,
            gid=1000,
            pax={"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.security.capability": cap},
        ),
        # overlayfs state may not come from an image
        file("sneaky", b"", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
    )
    ping = os.fspath(layer / "bin/ping")
    assert os.getxattr(ping, "user.foo") == b"bar"
    assert os.getxattr(ping, "security.capability") == CAPABILITY  # set after chown, which clears it
    assert stat.S_IMODE(os.lstat(ping).st_mode) == 0o4755
    assert os.getxattr(layer / "d", "user.dir") == b"on a dir"
    assert "trusted.overlay.redirect" not in os.listxattr(layer / "sneaky")


def test_pax_times_keep_nanoseconds(layer: Path) -> None:
    run(
        layer,
        directory("d", pax={"mtime": "1700000000.123456789"}),
        file("d/f", b"x", pax={"mtime": "1700000001.000000007", "atime": "1700000002.5"}),
    )
    assert os.lstat(layer / "d").st_mtime_ns == 1_700_000_000_123_456_789
    st = os.lstat(layer / "d/f")
    assert st.st_mtime_ns == 1_700_000_001_000_000_007
    assert st.st_atime_ns == 1_700_000_002_500_000_000


def test_gnu_format_long_names_and_base256_ids(layer: Path) -> None:
    long_dir = "/".join(["d" * 60] * 4)
    run(
        layer,
        file(f"{long_dir}/file", b"gnu", uid=3_000_000, gid=3_000_001),
        symlink("link", "t" * 300),
        fmt=tarfile.GNU_FORMAT,
    )
    st = os.lstat(layer / long_dir / "file")
    assert (st.st_uid, st.st_gid) == (3_000_000, 3_000_001)
    assert os.readlink(layer / "link") == "t" * 300


# -- whiteouts ---------------------------------------------------------------


def test_whiteout_becomes_overlay_char_device(layer: Path) -> None:
    run(
        layer,
        file("etc/shadow", b"in this layer"),
        file("etc/.wh.shadow", uid=1000),
        file("var/.wh.cache"),
        file(".wh.opt"),
    )
    for p in ("etc/shadow", "var/cache", "opt"):
        st = os.lstat(layer / p)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), p
        assert (st.st_uid, st.st_gid) == (0, 0)
    assert not (layer / "etc/.wh.shadow").exists()


def test_whiteout_removes_a_directory_of_this_layer(layer: Path) -> None:
    run(layer, directory("cache"), file("cache/x", b"1"), file(".wh.cache"))
    assert stat.S_ISCHR(os.lstat(layer / "cache").st_mode)


def test_opaque_marker_sets_overlay_xattr(layer: Path) -> None:
    run(layer, directory("etc"), file("etc/.wh..wh..opq"), file("etc/keep", b"k"), file("new/.wh..wh..opq"))
    assert os.getxattr(layer / "etc", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(layer / "new", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(layer / "etc")) == ["keep"]


def test_aufs_metadata_is_ignored(layer: Path) -> None:
    run(layer, directory(".wh..wh.plnk"), file(".wh..wh.aufs", b""), file("kept", b"k"))
    assert os.listdir(layer) == ["kept"]


# -- replacing entries -------------------------------------------------------


def test_directory_replaces_file_and_file_replaces_directory(layer: Path) -> None:
    run(
        layer,
        file("a", b"file first"),
        directory("a"),
        file("a/inside", b"1"),
        directory("b"),
        directory("b/deep"),
        file("b/deep/x", b"2"),
        file("b", b"file now"),
        symlink("c", "somewhere"),
        directory("c"),
    )
    assert (layer / "a/inside").read_bytes() == b"1"
    assert (layer / "b").read_bytes() == b"file now"
    assert stat.S_ISDIR(os.lstat(layer / "c").st_mode)


def test_directory_over_directory_keeps_content(layer: Path) -> None:
    run(layer, directory("d", mode=0o755), file("d/f", b"1"), directory("d", mode=0o700, uid=1000))
    st = os.lstat(layer / "d")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, 1000)
    assert (layer / "d/f").read_bytes() == b"1"


def test_later_file_overwrites_and_breaks_hardlink(layer: Path) -> None:
    run(layer, file("a", b"old"), hardlink("b", "a"), file("b", b"new"))
    assert (layer / "a").read_bytes() == b"old"
    assert (layer / "b").read_bytes() == b"new"


def test_symlink_replaced_by_directory_is_not_followed_afterwards(layer: Path) -> None:
    # The parent fd cache must not keep writing through the removed symlink.
    run(layer, directory("real"), symlink("s", "real"), file("s/a", b"1"), directory("s"), file("s/b", b"2"))
    assert sorted(os.listdir(layer / "real")) == ["a"]
    assert sorted(os.listdir(layer / "s")) == ["b"]


# -- names -------------------------------------------------------------------


def test_leading_slash_and_dot_slash_are_stripped(layer: Path) -> None:
    run(layer, file("/abs/f", b"1"), file("./rel/g", b"2"), file(".//x/./y/../z", b"3"))
    assert (layer / "abs/f").read_bytes() == b"1"
    assert (layer / "rel/g").read_bytes() == b"2"
    assert (layer / "x/z").read_bytes() == b"3"


def test_long_paths_and_long_link_names(layer: Path) -> None:
    deep = "/".join(f"component{i:03d}" for i in range(25))  # 324 characters
    assert len(deep) > 200
    run(
        layer,
        file(f"{deep}/file", b"deep"),
        symlink(f"{deep}/link", "../" * 20 + "x" * 250),
        hardlink(f"{deep}/hard", f"{deep}/file"),
    )
    assert (layer / deep / "file").read_bytes() == b"deep"
    assert os.readlink(layer / deep / "link") == "../" * 20 + "x" * 250
    assert os.lstat(layer / deep / "hard").st_ino == os.lstat(layer / deep / "file").st_ino


def test_relative_symlink_inside_the_layer_is_followed_for_parents(layer: Path) -> None:
    run(layer, directory("usr/lib"), symlink("lib", "usr/lib"), file("lib/x", b"via link"), symlink("up", "usr/../usr"), file("up/lib/y", b"y"))
    assert (layer / "usr/lib/x").read_bytes() == b"via link"
    assert (layer / "usr/lib/y").read_bytes() == b"y"
    assert os.readlink(layer / "lib") == "usr/lib"


def test_many_entries_in_few_directories(layer: Path) -> None:
    members = [directory(f"d{i}") for i in range(3)]
    members += [file(f"d{i % 3}/f{i}", str(i).encode()) for i in range(3000)]
    members += [file(f"spread/{i}/f", b"x") for i in range(200)]  # more parents than the fd cache holds
    stats = run(layer, *members)
    assert stats.entries == 3 + 3000 + 200
    assert len(os.listdir(layer / "d1")) == 1000
    assert (layer / "d2/f2999").read_bytes() == b"2999"
    assert len(os.listdir(layer / "spread")) == 200


# -- archive ends ------------------------------------------------------------


def _data_end(blob: bytes) -> int:
    """Offset of the end of the last member's data (before padding and end blocks)."""
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        last = tf.getmembers()[-1]
    return last.offset_data + last.size


@pytest.mark.parametrize("size", [1000, 1024])
@pytest.mark.parametrize("cut", ["no-end-blocks", "no-padding"])
def test_archive_without_end_blocks_or_padding_is_accepted(layer: Path, size: int, cut: str) -> None:
    blob = make_tar(file("a", b"A" * 700), file("dir/last", b"L" * size))
    end = _data_end(blob)
    if cut == "no-end-blocks":
        end += -end % tarfile.BLOCKSIZE
    stats = unpack(_Stream(blob[:end]), layer)
    assert stats.entries == 2
    assert (layer / "dir/last").read_bytes() == b"L" * size


def test_unpack_stops_at_end_of_archive_and_leaves_the_rest(layer: Path) -> None:
    blob = make_tar(file("a", b"x"))
    stream = _Stream(blob, max_read=512)
    unpack(stream, layer)
    assert set(stream.rest()) <= {0}  # only zero blocks were left unread, for the caller to hash


def test_empty_stream_and_empty_archive(layer: Path) -> None:
    assert unpack(_Stream(b""), layer) == UnpackStats(entries=0, bytes=0)
    assert unpack(_Stream(bytes(1024)), layer) == UnpackStats(entries=0, bytes=0)
    assert os.listdir(layer) == []


@pytest.mark.parametrize("missing", [1, 300, 699])
def test_truncated_member_data_raises(layer: Path, missing: int) -> None:
    blob = make_tar(file("a", b"A" * 700), file("b", b"B" * 700))
    with pytest.raises(ContentError, match="'b' is truncated"):
        unpack(_Stream(blob[: _data_end(blob) - missing]), layer)


def test_not_a_tar_raises(layer: Path) -> None:
    with pytest.raises(ContentError, match="damaged header"):
        unpack(_Stream(b"this is no tar archive" * 100), layer)


@pytest.mark.parametrize("damage", ["checksum", "cut"])
def test_damaged_header_after_first_member_raises(layer: Path, damage: str) -> None:
    # tarfile alone would end the archive there and drop the rest of the layer.
    blob = bytearray(make_tar(file("a", b"A" * 700), file("b", b"B"), fmt=tarfile.USTAR_FORMAT))
    second = 512 + 1024
    if damage == "checksum":
        blob[second + 148 : second + 156] = b"0000000\0"
    else:
        del blob[second + 300 :]
    with pytest.raises(ContentError, match="damaged header"):
        unpack(_Stream(bytes(blob)), layer)


def test_hardlink_to_directory_raises(layer: Path) -> None:
    with pytest.raises(ContentError, match="'h'"):
        run(layer, directory("d"), hardlink("h", "d"))


def test_gzip_layer_end_to_end(layer: Path) -> None:
    blob = gzip.compress(make_tar(file("hello", b"world"), symlink("l", "hello")))
    unpack(open_decompressed(io.BytesIO(blob), "application/vnd.oci.image.layer.v1.tar+gzip"), layer)
    assert (layer / "l").read_bytes() == b"world"


# -- safety ------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(layer dir, sibling "outside" dir); checks afterwards that nothing beside the layer changed."""
    dest = tmp_path / "layer"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "file").write_bytes(b"secret")
    before = _snapshot(tmp_path, skip=dest)
    yield dest, outside
    assert _snapshot(tmp_path, skip=dest) == before
    assert (outside / "file").read_bytes() == b"secret"
    assert os.listxattr(outside) == []


def _snapshot(top: Path, skip: Path) -> dict[str, tuple[int, int, int, int]]:
    seen = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in [*dirnames, *filenames]:
            st = os.lstat(Path(dirpath, name))
            seen[os.path.join(dirpath, name)] = (st.st_mode, st.st_size, st.st_nlink, st.st_mtime_ns)
    return seen


def _refused(dest: Path, entry: str, *members: Member) -> None:
    with pytest.raises(UnsafeLayer) as raised:
        run(dest, *members)
    assert repr(entry) in str(raised.value)


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/../escape", "./../outside/file"])
def test_names_climbing_out_are_refused(sandbox: tuple[Path, Path], name: str) -> None:
    dest, _ = sandbox
    with pytest.raises(UnsafeLayer, match="escape|outside"):
        run(dest, file(name, b"pwned"))


def test_write_through_absolute_symlink_is_refused(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    _refused(dest, "etc/passwd", symlink("etc", str(outside)), file("etc/passwd", b"pwned"))


@pytest.mark.parametrize("target", ["../outside", "../../outside", "a/../../outside", "../layer/../outside"])
def test_write_through_relative_symlink_escaping_is_refused(sandbox: tuple[Path, Path], target: str) -> None:
    dest, _ = sandbox
    _refused(dest, "x/f", directory("a"), symlink("x", target), file("x/f", b"pwned"))


def test_write_through_symlink_chain_is_refused(sandbox: tuple[Path, Path]) -> None:
    dest, _ = sandbox
    _refused(dest, "a/outside/f", symlink("b", ".."), symlink("a", "b"), file("a/outside/f", b"pwned"))


@pytest.mark.parametrize(
    "member",
    [
        directory("x/newdir"),
        symlink("x/newlink", "/"),
        node("x/fifo", tarfile.FIFOTYPE),
        file("x/.wh.file"),
        file("x/.wh..wh..opq"),
    ],
    ids=["dir", "symlink", "fifo", "whiteout", "opaque"],
)
def test_other_entry_types_through_escaping_symlink_are_refused(sandbox: tuple[Path, Path], member: Member) -> None:
    dest, _ = sandbox
    _refused(dest, member[0].name, symlink("x", "../outside"), member)


def test_hardlink_to_outside_file_is_refused(sandbox: tuple[Path, Path]) -> None:
    dest, _ = sandbox
    _refused(dest, "h", hardlink("h", "../outside/file"))


def test_hardlink_through_escaping_symlink_is_refused(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    _refused(dest, "h", symlink("x", str(outside)), hardlink("h", "x/file"))


def test_hardlink_to_absolute_target_not_in_layer_is_refused(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    _refused(dest, "passwd", hardlink("passwd", str(outside / "file")))
    _refused(dest, "shadow", directory("etc"), hardlink("shadow", "/etc/shadow"))


def test_file_in_a_setgid_directory_keeps_the_headers_group(tmp_path: Path) -> None:
    """A new file takes a setgid directory's group; the header's group must win."""
    dest = tmp_path / "dest"
    dest.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("shared")
        d.type, d.mode, d.uid, d.gid = tarfile.DIRTYPE, 0o2775, 0, 456
        tar.addfile(d)
        f = tarfile.TarInfo("shared/file")
        f.mode, f.uid, f.gid, f.size = 0o644, 0, 0, 2
        tar.addfile(f, io.BytesIO(b"hi"))
    buf.seek(0)
    unpack(buf, dest)
    st = os.stat(dest / "shared" / "file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert os.stat(dest / "shared").st_gid == 456
