"""Looking up paths in a stack of layer directories: the merged view, never the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.skip import require_root

from pybox.store.layerfs import lookup
from pybox.store.layers import LayerStore


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()  # whiteouts are device nodes, opaque dirs carry trusted.* xattrs


def _layer(root: Path, name: str, entries: dict[str, str]) -> Path:
    layer = root / name
    for path, kind in entries.items():
        full = layer / path
        full.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            full.mkdir(exist_ok=True)
        elif kind == "whiteout":
            os.mknod(full, 0o20000 | 0o600, 0)
        elif kind == "opaque":
            full.mkdir(exist_ok=True)
            os.setxattr(full, "trusted.overlay.opaque", b"y")
        elif kind.startswith("->"):
            os.symlink(kind[2:], full)
        else:
            full.write_text(kind)
    layer.mkdir(parents=True, exist_ok=True)
    return layer


def test_lookup_sees_the_merged_view(tmp_path: Path) -> None:
    bottom = _layer(tmp_path, "1", {"usr/local/bin": "dir", "etc/old": "x", "opt/kept": "x", "srv/a": "x",
                                    "link": "->/usr/local", "rel": "->usr/../opt"})
    top = _layer(tmp_path, "2", {"etc/old": "whiteout", "srv": "opaque", "srv/b": "x"})
    layers = [bottom, top]
    assert lookup(layers, "/usr/local/bin").is_dir
    assert lookup(layers, "/etc/old").mode is None
    assert lookup(layers, "/srv/a").mode is None and lookup(layers, "/srv/b").mode is not None
    # Symlinks resolve inside the image: an absolute target starts at its root.
    assert lookup(layers, "/link/bin").path == "/usr/local/bin"
    assert lookup(layers, "/rel/kept").path == "/opt/kept"
    assert lookup(layers, "/link", follow=False).path == "/link"
    assert lookup(layers, "/../../etc/../usr").path == "/usr"
    missing = lookup(layers, "/link/new/dir")
    assert missing.mode is None and missing.path == "/usr/local/new/dir"


def test_a_lower_layers_symlinked_parent_is_not_followed_on_the_host(tmp_path: Path) -> None:
    """An upper dir over a lower symlink hides the symlink, as overlayfs does; the host's /etc is never read."""
    bottom = _layer(tmp_path, "1", {"a": "->/etc"})
    top = _layer(tmp_path, "2", {"a/own": "x"})
    assert lookup([bottom, top], "/a/passwd").stat is None
    assert lookup([bottom, top], "/a/own").layer == top
    with pytest.raises(OSError, match="symbolic links"):
        lookup([_layer(tmp_path, "3", {"loop": "->/loop"})], "/loop/x")


def test_read_file_resolves_parents_inside_the_image(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    diff_ids = []
    for name, entries in (("1" * 64, {"real/passwd": "root:x:0:0::/:/bin/sh\n", "etc": "->real"}),
                          ("2" * 64, {"link-to-host": "->/etc/passwd"})):
        _layer(tmp_path / "layers" / name, "diff", entries)
        diff_ids.append("sha256:" + name)
    assert store.read_file(diff_ids, "/etc/passwd") == b"root:x:0:0::/:/bin/sh\n"
    assert store.read_file(diff_ids, "/link-to-host") is None  # a symlink as the file itself is not followed
    assert store.read_file(diff_ids, "/etc/missing") is None
