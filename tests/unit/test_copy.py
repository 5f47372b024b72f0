"""COPY/ADD into a layer directory: destination rules, metadata, --chown, --chmod, ADD's extraction."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pybox.builder.copy import copy_into_layer, parse_chmod, parse_chown
from support.skip import require_root

from pybox.errors import UsageError

MTIME = 1_600_000_000
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1001:\n"


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    root.mkdir()
    return root


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    root = tmp_path / "layer"
    root.mkdir()
    return root


def _file(path: Path, text: str = "data", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    os.utime(path, (MTIME, MTIME))
    return path


def _copy(layer: Path, sources: list[tuple[str, Path]], dest: str, **kw: object) -> None:
    args: dict[str, object] = {
        "workdir": "/",
        "chown": None,
        "chmod": None,
        "extract_archives": False,
        "dest_is_dir_in_image": False,
    }
    args.update(kw)
    copy_into_layer(sources=sources, dest=dest, layer=layer, **args)  # type: ignore[arg-type]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- destinations -----------------------------------------------------------


def test_file_into_directory_with_trailing_slash(ctx: Path, layer: Path) -> None:
    src = _file(ctx / "a.txt", "hello", 0o640)
    _copy(layer, [("a.txt", src)], "/app/")
    out = layer / "app" / "a.txt"
    assert out.read_text() == "hello"
    assert _mode(out) == 0o640
    assert os.lstat(out).st_mtime == MTIME
    assert _mode(layer / "app") == 0o755


def test_file_to_new_name_creates_parents(ctx: Path, layer: Path) -> None:
    src = _file(ctx / "a.txt")
    _copy(layer, [("a.txt", src)], "/opt/x/y/renamed")
    assert (layer / "opt/x/y/renamed").read_text() == "data"
    for parent in ("opt", "opt/x", "opt/x/y"):
        assert _mode(layer / parent) == 0o755
        assert os.lstat(layer / parent).st_uid == os.geteuid()


def test_existing_directory_in_image_receives_the_file(ctx: Path, layer: Path) -> None:
    src = _file(ctx / "a.txt")
    _copy(layer, [("a.txt", src)], "/srv", dest_is_dir_in_image=True)
    assert (layer / "srv" / "a.txt").is_file()


def test_relative_dest_is_below_workdir(ctx: Path, layer: Path) -> None:
    src = _file(ctx / "a.txt")
    _copy(layer, [("a.txt", src)], "sub/b.txt", workdir="/work/dir")
    assert (layer / "work/dir/sub/b.txt").is_file()
    _copy(layer, [("a.txt", src)], ".", workdir="/w")
    assert (layer / "w/a.txt").is_file()


def test_several_sources_need_a_trailing_slash(ctx: Path, layer: Path) -> None:
    a, b = _file(ctx / "a"), _file(ctx / "b")
    with pytest.raises(UsageError, match="must be a directory and end with a /"):
        _copy(layer, [("a", a), ("b", b)], "/dst")
    assert _tree(layer) == []
    _copy(layer, [("a", a), ("b", b)], "/dst/")
    assert _tree(layer) == ["dst", "dst/a", "dst/b"]


def test_no_source_is_an_error(layer: Path) -> None:
    with pytest.raises(UsageError):
        _copy(layer, [], "/x/")


# -- directories and symlinks -----------------------------------------------


def test_directory_copies_its_contents(ctx: Path, layer: Path) -> None:
    src = ctx / "dir"
    _file(src / "top.txt")
    _file(src / "nested/deeper/leaf.txt", "leaf", 0o755)
    os.chmod(src / "nested", 0o750)
    os.utime(src / "nested", (MTIME, MTIME))
    _copy(layer, [("dir", src)], "/app")
    assert _tree(layer) == [
        "app",
        "app/nested",
        "app/nested/deeper",
        "app/nested/deeper/leaf.txt",
        "app/top.txt",
    ]
    assert _mode(layer / "app/nested") == 0o750
    assert os.lstat(layer / "app/nested").st_mtime == MTIME
    assert _mode(layer / "app/nested/deeper/leaf.txt") == 0o755


def test_created_dest_takes_the_source_directory_mode(ctx: Path, layer: Path) -> None:
    src = ctx / "dir"
    _file(src / "f")
    os.chmod(src, 0o700)
    _copy(layer, [("dir", src)], "/new")
    assert _mode(layer / "new") == 0o700
    _copy(layer, [("dir", src)], "/old", dest_is_dir_in_image=True)
    assert _mode(layer / "old") == 0o755


def test_symlinks_inside_a_directory_are_kept(ctx: Path, layer: Path) -> None:
    src = ctx / "dir"
    _file(src / "real.txt")
    os.symlink("real.txt", src / "rel")
    os.symlink("/etc/passwd", src / "abs")
    _copy(layer, [("dir", src)], "/app/")
    assert os.readlink(layer / "app/rel") == "real.txt"
    assert os.readlink(layer / "app/abs") == "/etc/passwd"


def test_top_level_symlink_source_is_followed(ctx: Path, layer: Path) -> None:
    _file(ctx / "target.txt", "content")
    os.symlink("target.txt", ctx / "link")
    _file(ctx / "d/inside")
    os.symlink("d", ctx / "dirlink")
    _copy(layer, [("link", ctx / "link"), ("dirlink", ctx / "dirlink")], "/x/")
    out = layer / "x" / "link"
    assert not out.is_symlink()
    assert out.read_text() == "content"
    assert (layer / "x/inside").is_file()


def test_a_copied_symlink_is_never_written_through(ctx: Path, layer: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    one = ctx / "one"
    one.mkdir()
    os.symlink(str(outside), one / "sub")
    _file(ctx / "two/sub/file")
    _copy(layer, [("one", one), ("two", ctx / "two")], "/")
    assert list(outside.iterdir()) == []
    assert (layer / "sub").is_dir() and not (layer / "sub").is_symlink()
    assert (layer / "sub/file").is_file()


def test_hard_links_stay_linked(ctx: Path, layer: Path) -> None:
    _file(ctx / "d/a")
    os.link(ctx / "d/a", ctx / "d/b")
    _copy(layer, [("d", ctx / "d")], "/h")
    assert os.lstat(layer / "h/a").st_ino == os.lstat(layer / "h/b").st_ino


# -- --chown ---------------------------------------------------------------


def _reader(files: dict[str, str]) -> Callable[[str], str | None]:
    return files.get


def test_parse_chown() -> None:
    read = _reader({"/etc/passwd": PASSWD, "/etc/group": GROUP})
    assert parse_chown("1000:1000", read) == (1000, 1000)
    assert parse_chown("1234", read) == (1234, 1234)
    assert parse_chown("1000", read) == (1000, 1000)  # a number alone: gid = uid, passwd or not
    assert parse_chown("app", read) == (1000, 1001)  # a name alone: the primary group
    assert parse_chown("app:staff", read) == (1000, 50)
    assert parse_chown("0:app", read) == (0, 1001)
    for bad in ("nobody", "app:nogroup", "", ":50", "app:"):
        with pytest.raises(UsageError, match="--chown"):
            parse_chown(bad, read)


def test_chown_by_id(ctx: Path, layer: Path) -> None:
    require_root()
    src = ctx / "d"
    _file(src / "f", mode=0o4755)
    os.symlink("f", src / "l")
    _copy(layer, [("d", src), ("d", src)], "/c/", chown=(1000, 1001))
    for rel in ("c", "c/f", "c/l"):
        st = os.lstat(layer / rel)
        assert (st.st_uid, st.st_gid) == (1000, 1001), rel
    assert _mode(layer / "c/f") == 0o4755  # lchown cleared setuid; it is set again
    assert os.lstat(layer).st_uid == 0


def test_chown_by_name_through_passwd(ctx: Path, layer: Path) -> None:
    require_root()
    src = _file(ctx / "a")
    ids = parse_chown("app", _reader({"/etc/passwd": PASSWD, "/etc/group": GROUP}))
    _copy(layer, [("a", src)], "/p/q/", chown=ids)
    assert (os.lstat(layer / "p/q/a").st_uid, os.lstat(layer / "p/q/a").st_gid) == (1000, 1001)
    assert os.lstat(layer / "p/q").st_uid == 1000  # the dest dir this copy made
    assert (os.lstat(layer / "p").st_uid, os.lstat(layer / "p").st_gid) == (0, 0)  # a parent


def test_without_chown_entries_belong_to_root(ctx: Path, layer: Path) -> None:
    require_root()
    src = _file(ctx / "a")
    os.chown(src, 1234, 1234)
    _copy(layer, [("a", src)], "/r/")
    assert (os.lstat(layer / "r/a").st_uid, os.lstat(layer / "r/a").st_gid) == (0, 0)


# -- --chmod ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "mode", "is_dir", "expected"),
    [
        ("755", 0o600, False, 0o755),
        ("0644", 0o4777, False, 0o644),
        ("u+x", 0o644, False, 0o744),
        ("g-w", 0o664, False, 0o644),
        ("a=rX", 0o640, False, 0o444),
        ("a=rX", 0o740, False, 0o555),
        ("a=rX", 0o700, True, 0o555),
        ("u+x,g-w,o=", 0o666, False, 0o740),
        ("+x", 0o600, False, 0o711),
        ("go=u", 0o750, False, 0o777),
        ("u=rw,g+s", 0o755, True, 0o2655),
        ("o-rwx+t", 0o777, True, 0o1770),
    ],
)
def test_parse_chmod(spec: str, mode: int, is_dir: bool, expected: int) -> None:
    assert parse_chmod(spec)(mode, is_dir) == expected


@pytest.mark.parametrize("bad", ["888", "77777", "u+q", "z+x", "u", "u+x,", "+ux", ""])
def test_parse_chmod_rejects(bad: str) -> None:
    with pytest.raises(UsageError, match="--chmod"):
        parse_chmod(bad)


def test_chmod_octal_applies_to_files_and_dirs(ctx: Path, layer: Path) -> None:
    _file(ctx / "d/sub/f", mode=0o600)
    _copy(layer, [("d", ctx / "d")], "/m", chmod="750")
    assert _mode(layer / "m") == 0o750
    assert _mode(layer / "m/sub") == 0o750
    assert _mode(layer / "m/sub/f") == 0o750


def test_chmod_symbolic_capital_x(ctx: Path, layer: Path) -> None:
    _file(ctx / "d/plain", mode=0o640)
    _file(ctx / "d/tool", mode=0o700)
    _copy(layer, [("d", ctx / "d")], "/s/", chmod="a=rX")
    assert _mode(layer / "s") == 0o555
    assert _mode(layer / "s/plain") == 0o444
    assert _mode(layer / "s/tool") == 0o555


def test_chmod_symbolic_on_a_file(ctx: Path, layer: Path) -> None:
    src = _file(ctx / "run.sh", mode=0o664)
    _copy(layer, [("run.sh", src)], "/bin/run", chmod="u+x,g-w")
    assert _mode(layer / "bin/run") == 0o744
    assert _mode(layer / "bin") == 0o755  # a created parent is not the copy's


# -- ADD ------------------------------------------------------------------


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("pkg")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o711, MTIME
        tf.addfile(d)
        data = b"inside the archive"
        f = tarfile.TarInfo("pkg/file.txt")
        f.size, f.mode, f.mtime, f.uid, f.gid = len(data), 0o600, MTIME, 7, 8
        tf.addfile(f, io.BytesIO(data))
        s = tarfile.TarInfo("pkg/link")
        s.type, s.linkname = tarfile.SYMTYPE, "file.txt"
        tf.addfile(s)
    return buf.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda b: b,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


@pytest.mark.parametrize("codec", list(COMPRESSORS))
def test_add_extracts_archives_by_content(codec: str, ctx: Path, layer: Path) -> None:
    require_root()  # unpack sets the archive's owners
    src = ctx / "data.bin"  # the name says nothing: the content decides
    src.write_bytes(COMPRESSORS[codec](_tar_bytes()))
    _copy(layer, [("data.bin", src)], "/opt", extract_archives=True)
    assert _tree(layer) == ["opt", "opt/pkg", "opt/pkg/file.txt", "opt/pkg/link"]
    out = layer / "opt/pkg/file.txt"
    assert out.read_bytes() == b"inside the archive"
    st = os.lstat(out)
    assert (_mode(out), st.st_uid, st.st_gid, st.st_mtime) == (0o600, 7, 8, MTIME)
    assert _mode(layer / "opt/pkg") == 0o711
    assert os.readlink(layer / "opt/pkg/link") == "file.txt"
    assert [p.name for p in layer.parent.iterdir() if p.name.startswith(".add-")] == []


def test_add_extraction_merges_and_takes_chown(ctx: Path, layer: Path) -> None:
    require_root()
    _file(ctx / "extra.txt")
    (ctx / "a.tgz").write_bytes(gzip.compress(_tar_bytes()))
    _copy(
        layer,
        [("extra.txt", ctx / "extra.txt"), ("a.tgz", ctx / "a.tgz")],
        "/x/",
        extract_archives=True,
        chown=(1000, 1000),
    )
    assert _tree(layer) == ["x", "x/extra.txt", "x/pkg", "x/pkg/file.txt", "x/pkg/link"]
    for rel in ("x", "x/pkg", "x/pkg/file.txt", "x/pkg/link", "x/extra.txt"):
        assert os.lstat(layer / rel).st_uid == 1000, rel


def test_add_of_a_non_archive_copies_the_file(ctx: Path, layer: Path) -> None:
    (ctx / "fake.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    _file(ctx / "notes.tar", "plain text")
    _copy(
        layer,
        [("fake.tar.gz", ctx / "fake.tar.gz"), ("notes.tar", ctx / "notes.tar")],
        "/y/",
        extract_archives=True,
    )
    assert (layer / "y/fake.tar.gz").read_bytes() == b"\x1f\x8b not really gzip"
    assert (layer / "y/notes.tar").read_text() == "plain text"


def test_copy_never_extracts(ctx: Path, layer: Path) -> None:
    payload = gzip.compress(_tar_bytes())
    (ctx / "a.tar.gz").write_bytes(payload)
    _copy(layer, [("a.tar.gz", ctx / "a.tar.gz")], "/z/")
    assert _tree(layer) == ["z", "z/a.tar.gz"]
    assert (layer / "z/a.tar.gz").read_bytes() == payload
