"""pack_layer: an overlayfs upper dir made by hand becomes a reproducible gzip'd layer tar.

The tar is read back with Python's tarfile and unpacked with pybox's own
unpacker; the tree that comes back is compared with the original.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from pybox.builder.layers import PackResult, pack_layer
from support.skip import require_root
from support.tree import diff_trees, snapshot

from pybox.store.unpack import unpack

MTIME = 1_600_000_000
EPOCH = 1_500_000_000
# A version-2 vfs_cap_data (cap_net_bind_service and more); \xff is not
# UTF-8, so the PAX value must come back as the same bytes.
CAPABILITY = b"\x01\x00\x00\x02" + b"\xff\x04\x00\x00" + bytes(12)
BIG = 3 * (1 << 20) + 12345  # more than one copy chunk, not a multiple of 512
WHITEOUT_DEV = os.makedev(0, 0)


@pytest.fixture()
def upper(tmp_path: Path) -> Path:
    """An upper dir as a RUN step leaves it, with every kind of entry."""
    require_root()  # mknod, chown, trusted.* and security.* xattrs
    root = tmp_path / "upper"
    root.mkdir()
    os.setxattr(root, "trusted.overlay.uuid", bytes(range(16)))
    (root / "etc").mkdir()
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    os.setxattr(root / "etc" / "hosts", "trusted.overlay.origin", b"\x00\xfb")
    (root / "etc" / "link").symlink_to("hosts")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(os.urandom(BIG))
    os.link(root / "bin" / "tool", root / "bin" / "tool2")
    (root / "bin" / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin" / "suid", 0o4755)
    (root / "bin" / "ping").write_bytes(b"ping")
    os.setxattr(root / "bin" / "ping", "security.capability", CAPABILITY)
    (root / "home").mkdir()
    os.chmod(root / "home", 0o1777)
    (root / "home" / "user").write_text("mine")
    os.chown(root / "home" / "user", 1000, 1000)
    (root / "home" / "attr").write_text("x")
    os.setxattr(root / "home" / "attr", "user.x", b"value")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    # overlayfs makes one whiteout node and hard links every later whiteout to it.
    os.mknod(root / "gone", stat.S_IFCHR, WHITEOUT_DEV)
    os.link(root / "gone", root / "etc" / "gone2")
    (root / "opq").mkdir()
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    (root / "opq" / "kept").write_text("kept")
    _set_times(root)
    return root


def _set_times(root: Path) -> None:
    """Whole-second mtimes everywhere, directories after their content."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in (*filenames, *dirnames):
            os.utime(Path(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


def _pack(upper: Path, epoch: int | None = None) -> tuple[bytes, PackResult]:
    out = io.BytesIO()
    result = pack_layer(upper, out, source_date_epoch=epoch)
    return out.getvalue(), result


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:",
                      encoding="utf-8", errors="surrogateescape") as tf:
        return tf.getmembers()


def _by_name(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in members}


def test_entries_and_headers(upper: Path) -> None:
    data, _ = _pack(upper)
    members = _by_name(_members(data))
    assert set(members) == {
        "bin", "bin/ping", "bin/suid", "bin/tool", "bin/tool2",
        "etc", "etc/.wh.gone2", "etc/hosts", "etc/link",
        "fifo", ".wh.gone", "home", "home/attr", "home/user", "loop", "null",
        "opq", "opq/.wh..wh..opq", "opq/kept",
    }
    assert members["bin"].isdir()
    assert members["bin/tool"].isreg() and members["bin/tool"].size == BIG
    assert members["bin/tool2"].islnk() and members["bin/tool2"].linkname == "bin/tool"
    assert members["bin/suid"].mode == 0o4755
    assert members["home"].mode == 0o1777
    assert (members["home/user"].uid, members["home/user"].gid) == (1000, 1000)
    assert members["etc/link"].issym() and members["etc/link"].linkname == "hosts"
    assert members["fifo"].isfifo()
    assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (1, 3)
    assert members["loop"].isblk() and (members["loop"].devmajor, members["loop"].devminor) == (7, 0)
    for m in members.values():
        assert m.uname == "" and m.gname == "", m.name
        assert m.mtime == MTIME, m.name


def test_whiteouts_are_files_never_links(upper: Path) -> None:
    data, _ = _pack(upper)
    members = _by_name(_members(data))
    for name in (".wh.gone", "etc/.wh.gone2", "opq/.wh..wh..opq"):
        assert members[name].isreg() and members[name].size == 0, name
    assert not any(m.ischr() and m.devmajor == m.devminor == 0 for m in members.values())
    assert not any(m.islnk() and "gone" in m.linkname for m in members.values())


def test_xattrs_as_pax_records(upper: Path) -> None:
    data, _ = _pack(upper)
    members = _by_name(_members(data))
    assert members["home/attr"].pax_headers["SCHILY.xattr.user.x"] == "value"
    cap = members["bin/ping"].pax_headers["SCHILY.xattr.security.capability"]
    assert cap.encode("utf-8", "surrogateescape") == CAPABILITY
    for m in members.values():
        overlay = [k for k in m.pax_headers if k.startswith("SCHILY.xattr.trusted.overlay.")]
        assert not overlay, (m.name, overlay)


def test_sorted_parents_first_opaque_after_its_dir(upper: Path) -> None:
    data, _ = _pack(upper)
    names = [m.name for m in _members(data)]
    opq = names.index("opq/.wh..wh..opq")
    assert names[opq - 1] == "opq"
    rest = [n for n in names if not n.endswith("/.wh..wh..opq")]
    # Component-wise order is depth-first order with sorted siblings: parents first.
    assert rest == sorted(rest, key=lambda n: [os.fsencode(c) for c in n.split("/")])


def test_round_trip_through_unpack(upper: Path, tmp_path: Path) -> None:
    data, _ = _pack(upper)
    dest = tmp_path / "unpacked"
    dest.mkdir()
    unpack(io.BytesIO(gzip.decompress(data)), dest)
    # snapshot leaves trusted.overlay.* out and compares everything else,
    # content and hard link counts included.
    assert diff_trees(snapshot(upper), snapshot(dest)) == []
    for path in ("gone", "etc/gone2"):
        st = os.lstat(dest / path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == WHITEOUT_DEV, path
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.origin" not in os.listxattr(dest / "etc" / "hosts")
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            if path.name not in ("gone", "gone2"):  # a whiteout carries no metadata
                assert path.lstat().st_mtime == MTIME, path


def test_source_date_epoch_clamps_mtimes(upper: Path) -> None:
    os.utime(upper / "etc" / "hosts", (EPOCH - 5, EPOCH - 5))
    data, _ = _pack(upper, EPOCH)
    mtimes = {m.name: m.mtime for m in _members(data)}
    assert mtimes.pop("etc/hosts") == EPOCH - 5
    assert set(mtimes.values()) == {EPOCH}


@pytest.mark.parametrize("epoch", [None, EPOCH])
def test_reproducible(upper: Path, tmp_path: Path, epoch: int | None) -> None:
    first, result = _pack(upper, epoch)
    again, result_again = _pack(upper, epoch)
    assert (again, result_again) == (first, result)

    copy = tmp_path / "elsewhere" / "copy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", "--", upper, copy], check=True)
    for dirpath, dirnames, filenames in os.walk(copy):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            os.utime(path, ns=(12345, path.lstat().st_mtime_ns), follow_symlinks=False)
    copied, result_copied = _pack(copy, epoch)
    assert result_copied == result
    assert copied == first


def test_gzip_header_has_no_time_nor_name(upper: Path) -> None:
    data, _ = _pack(upper)
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] & 0x08 == 0  # FLG.FNAME
    assert data[4:8] == bytes(4)  # MTIME


def test_digests_and_size(upper: Path) -> None:
    data, result = _pack(upper)
    assert result.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    assert result.size == len(data)


def test_empty_upper_is_an_empty_tar(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    data, _ = _pack(empty)
    assert _members(data) == []
