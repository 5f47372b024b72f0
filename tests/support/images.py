"""Test images made by independent tools only: umoci builds, skopeo pushes.

pybox must never grade itself, so no image here passes through pybox.
Python writes files into a root filesystem that umoci then packs (that is
ordinary image content, not image building), and takes over only where no
tool can make the thing; each such place says so.

Every image is built from an OCI layout made by umoci, kept on disk, so a
test gets the expected root filesystem with `umoci unpack` (see
support.tree.umoci_unpack).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.tools import run

__all__ = [
    "BUSYBOX",
    "EVIL_OUTSIDE",
    "FEATURES_LONG_LINK_TARGET",
    "FEATURES_LONG_PATH",
    "SeededImage",
    "build_and_push",
]

# Debian busybox-static: a static binary runs in an image with no libc.
BUSYBOX = Path("/usr/bin/busybox")
# Where the symlink-escape images try to write on the host.
EVIL_OUTSIDE = Path("/tmp/pybox-evil-outside")

# 200 characters, relative to the root, whose last component (150) is too
# long for ustar's 100-byte name field even with the 155-byte prefix, so the
# tar needs a PAX `path` record.
FEATURES_LONG_PATH = "long/" + "d" * 44 + "/" + "f" * 150
# 120 characters: more than ustar's 100-byte linkname, so a PAX `linkpath`.
FEATURES_LONG_LINK_TARGET = "/" + "t" * 119

_BUSYBOX_APPLETS = (
    "sh", "ash", "cat", "chmod", "cp", "echo", "env", "false", "grep", "head",
    "id", "kill", "ln", "ls", "mkdir", "mv", "ps", "pwd", "rm", "sed", "sleep",
    "stat", "test", "touch", "true", "wc",
)
_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
# VFS_CAP_REVISION_2 (magic 0x02000001), permitted = CAP_NET_RAW (bit 13),
# effective flag set: what `setcap cap_net_raw+ep` writes (linux/capability.h).
_CAP_NET_RAW_EP = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)

_SKOPEO_TIMEOUT = 120


@dataclass(frozen=True, kw_only=True)
class SeededImage:
    """An image in the test registry and the umoci layout it was pushed from.

    `ref` is the full reference (`127.0.0.1:PORT/test/busybox:gzip`);
    `layout:tag` names the source in the OCI layout on disk.
    """

    ref: str
    layout: Path
    tag: str
    description: str


# --- OCI layout plumbing (umoci does the work; JSON only for reading) -------

def _umoci(*args: str | os.PathLike[str]) -> None:
    run(["umoci", *args])


def _image(layout: Path, tag: str) -> str:
    return f"{layout}:{tag}"


def _new_layout(layout: Path) -> None:
    _umoci("init", "--layout", layout)


def _edit_rootfs(
    layout: Path, src_tag: str, dst_tag: str, edit: Callable[[Path], None]
) -> None:
    """Unpack `src_tag`, let `edit` change the root filesystem, repack as `dst_tag`.

    umoci repack writes the difference as one new layer (go-mtree diff).
    """
    bundle = layout.parent / f"bundle-{layout.name}-{dst_tag}"
    _umoci("unpack", "--image", _image(layout, src_tag), bundle)
    try:
        edit(bundle / "rootfs")
        _umoci("repack", "--image", _image(layout, dst_tag), bundle)
    finally:
        shutil.rmtree(bundle)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def _index_entry(layout: Path, tag: str) -> dict[str, Any]:
    for entry in _read_json(layout / "index.json")["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return entry
    raise KeyError(f"no tag {tag!r} in {layout}")


def _manifest(layout: Path, tag: str) -> dict[str, Any]:
    return _read_json(_blob(layout, _index_entry(layout, tag)["digest"]))


# Hand-editing a layout: only for what no tool writes (a lying diff_id, an
# index with platforms). umoci and skopeo read the result like any layout.

def _put_blob(layout: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _set_tag(layout: Path, tag: str, descriptor: dict[str, Any]) -> None:
    index_path = layout / "index.json"
    index = _read_json(index_path)
    entry = {**descriptor, "annotations": {"org.opencontainers.image.ref.name": tag}}
    index["manifests"] = [
        m for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ] + [entry]
    index_path.write_text(json.dumps(index))


# --- root filesystem content ------------------------------------------------

def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def _busybox_rootfs(root: Path) -> None:
    for name, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700),
                       ("tmp", 0o1777), ("work", 0o755), ("data", 0o755)):
        (root / name).mkdir()
        (root / name).chmod(mode)  # mkdir's mode is cut by the umask
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in _BUSYBOX_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    _write(root / "etc/passwd", _PASSWD)
    _write(root / "etc/group", _GROUP)


def _features_base(root: Path) -> None:
    """What the next layer deletes or replaces."""
    _write(root / "deleted-file", "deleted in a later layer\n")
    _write(root / "replaced-dir/old-a", "old a\n")
    _write(root / "replaced-dir/old-b", "old b\n")
    _write(root / "opaque-dir/old-a", "old a\n")
    _write(root / "opaque-dir/sub/old-b", "old b\n")


def _set_capability(path: Path) -> None:
    if shutil.which("setcap"):
        run(["setcap", "cap_net_raw+ep", path])
    else:
        os.setxattr(path, "security.capability", _CAP_NET_RAW_EP)


def _features_top(root: Path) -> None:
    # umoci repack writes `.wh.deleted-file`.
    (root / "deleted-file").unlink()
    # A directory deleted and made again: umoci repack sees a directory that
    # still exists and writes `.wh.old-a` and `.wh.old-b`, not an opaque
    # marker (the opaque case comes from `umoci insert --opaque`).
    shutil.rmtree(root / "replaced-dir")
    _write(root / "replaced-dir/new", "new\n")

    _write(root / "hardlinks/a", "shared by three names\n")
    os.link(root / "hardlinks/a", root / "hardlinks/b")
    (root / "hardlinks/sub").mkdir()
    os.link(root / "hardlinks/a", root / "hardlinks/sub/c")

    (root / "symlinks").mkdir()
    (root / "symlinks/relative").symlink_to("../hardlinks/a")
    (root / "symlinks/absolute").symlink_to("/hardlinks/a")
    (root / "symlinks/dangling").symlink_to("/does/not/exist")
    (root / "symlinks/to-dir").symlink_to("../hardlinks")
    (root / "symlinks/long-target").symlink_to(FEATURES_LONG_LINK_TARGET)

    _write(root / "modes/setuid", "#!/bin/sh\n", 0o4755)
    _write(root / "modes/private", "secret\n", 0o600)
    _write(root / "modes/empty", "")
    _write(root / "modes/setgid", "#!/bin/sh\n")
    os.chown(root / "modes/setgid", 0, 456)
    os.chmod(root / "modes/setgid", 0o2755)  # after chown, which clears it
    (root / "modes/sticky").mkdir()
    (root / "modes/sticky").chmod(0o1777)

    (root / "special").mkdir()
    os.mkfifo(root / "special/fifo")
    os.chmod(root / "special/fifo", 0o644)  # mkfifo's mode is cut by the umask
    os.mknod(root / "special/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(root / "special/null", 0o666)

    _write(root / "owners/user-1000", "1000:1000\n")
    os.chown(root / "owners/user-1000", 1000, 1000)
    _write(root / "owners/user-123-456", "123:456\n")
    os.chown(root / "owners/user-123-456", 123, 456)
    (root / "owners/dir-1000").mkdir()
    os.chown(root / "owners/dir-1000", 1000, 1000)

    _write(root / "xattrs/user", "has user.pybox\n")
    os.setxattr(root / "xattrs/user", "user.pybox", b"test")
    _write(root / "xattrs/capability", "#!/bin/sh\n", 0o755)
    _set_capability(root / "xattrs/capability")

    _write(root / FEATURES_LONG_PATH, "long path\n")


# --- the images ---------------------------------------------------------------

def _build_busybox(layout: Path, work: Path) -> None:
    """Tags `busybox`, `features` and `noeoa`, all on the busybox layer."""
    _new_layout(layout)
    _umoci("new", "--image", _image(layout, "empty"))
    _edit_rootfs(layout, "empty", "busybox", _busybox_rootfs)
    _umoci(
        "config", "--image", _image(layout, "busybox"),
        "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin",
        "--config.env", "PYBOX_TEST=busybox",
        "--config.cmd", "/bin/sh",
        "--config.workingdir", "/work",
        "--config.user", "nobody",
        "--config.exposedports", "8080/tcp",
        "--config.exposedports", "53/udp",
        "--config.label", "org.opencontainers.image.title=pybox test busybox",
        "--config.label", "org.example.pybox=test",
        "--config.volume", "/data",
        "--config.stopsignal", "SIGQUIT",
        "--author", "pybox tests",
    )

    _edit_rootfs(layout, "busybox", "features", _features_base)
    _edit_rootfs(layout, "features", "features", _features_top)
    # umoci repack never writes `.wh..wh..opq`; only `umoci insert --opaque`
    # does. Its layer also lacks tar's end-of-archive blocks.
    opaque_src = work / "opaque-src"
    _write(opaque_src / "new", "only this survives\n")
    _umoci("insert", "--image", _image(layout, "features"), "--opaque", opaque_src, "/opaque-dir")
    _umoci("config", "--image", _image(layout, "features"), "--config.user", "root")

    # umoci insert writes its layer without the two zero blocks that end a
    # tar archive, and without padding after the last member's data.
    noeoa_src = work / "noeoa-src"
    _write(noeoa_src / "a", "inserted by umoci insert\n")
    _write(noeoa_src / "b", "the last member, 25 bytes\n")
    _umoci("insert", "--image", _image(layout, "busybox"), "--tag", "noeoa",
           noeoa_src, "/inserted")


DEEP_LAYERS = 130


def _build_deep(layout: Path, work: Path) -> None:
    """An image of DEEP_LAYERS one-file layers: with absolute lower dirs its
    overlay options would not fit in the page the kernel takes them in."""
    _new_layout(layout)
    _umoci("new", "--image", _image(layout, "deep"))
    payload = work / "payload"
    for i in range(DEEP_LAYERS):
        _write(payload, f"layer {i}\n")
        _umoci("insert", "--image", _image(layout, "deep"), payload, f"/layers/{i:03d}")


def _build_multiarch(layout: Path) -> None:
    """Tags `amd64`, `arm64`, `attestation` and `v1`, the index of all three."""
    _new_layout(layout)
    for arch in ("amd64", "arm64"):
        _umoci("new", "--image", _image(layout, arch))
        # umoci 0.4.7 sets architecture and os but has no flag for the
        # config's `variant`; arm64's "v8" is only in the index below.
        _umoci("config", "--image", _image(layout, arch), "--architecture", arch, "--os", "linux")
        _edit_rootfs(layout, arch, arch,
                     lambda root, arch=arch: _write(root / "platform", arch + "\n"))

    # Shaped like BuildKit's attestation manifests (platform unknown/unknown,
    # pointing at the image it describes); a client choosing a platform must
    # pass over it. Unlike BuildKit's, its layer is a tar, not in-toto JSON.
    # Its platform is set after repacking: umoci cannot unpack os "unknown".
    _umoci("new", "--image", _image(layout, "attestation"))
    _edit_rootfs(layout, "attestation", "attestation",
                 lambda root: _write(root / "attestation.json", '{"_type": "test"}\n'))
    _umoci("config", "--image", _image(layout, "attestation"),
           "--architecture", "unknown", "--os", "unknown")

    # No tool here writes an image index with platforms from manifests, so
    # the index alone is written as JSON from umoci's manifest descriptors.
    amd64 = _index_entry(layout, "amd64")
    platforms = (
        ("amd64", {"architecture": "amd64", "os": "linux"}, {}),
        ("arm64", {"architecture": "arm64", "os": "linux", "variant": "v8"}, {}),
        ("attestation", {"architecture": "unknown", "os": "unknown"}, {
            "vnd.docker.reference.digest": amd64["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        }),
    )
    manifests = []
    for tag, platform, extra_annotations in platforms:
        entry = _index_entry(layout, tag)
        descriptor = {k: entry[k] for k in ("mediaType", "digest", "size")}
        manifests.append({**descriptor, "platform": platform,
                          **({"annotations": extra_annotations} if extra_annotations else {})})
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }
    _set_tag(layout, "v1", _put_blob(
        layout, json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json"))


# --- malicious layers -----------------------------------------------------------
# No tool writes malicious tars (that is the point of tools), so these layers
# are crafted with Python's tarfile; umoci then adds each one verbatim as the
# only layer of an image (`umoci raw add-layer`), computing the diff_id itself.

_PWNED = b"written outside the root by a malicious layer\n"


def _file(name: str, data: bytes = _PWNED) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    return info, b""


_EVIL_LAYERS: dict[str, tuple[str, Sequence[tuple[tarfile.TarInfo, bytes]]]] = {
    "dotdot": ("a regular file named ../../escape-dotdot",
               [_file("../../escape-dotdot")]),
    "symlink-write": (f"etc -> {EVIL_OUTSIDE} (absolute symlink), then a file etc/evil",
                      [_link("etc", str(EVIL_OUTSIDE), tarfile.SYMTYPE), _file("etc/evil")]),
    "relsymlink-write": (f"up -> ../../../../../..{EVIL_OUTSIDE} (relative), then a file up/evil",
                         [_link("up", "../../../../../.." + str(EVIL_OUTSIDE), tarfile.SYMTYPE),
                          _file("up/evil")]),
    "hardlink-out": ("a hardlink h to ../../../etc/hostname",
                     [_link("h", "../../../etc/hostname", tarfile.LNKTYPE)]),
    "hardlink-abs": ("a hardlink h to /etc/passwd, which the layer does not contain",
                     [_link("h", "/etc/passwd", tarfile.LNKTYPE)]),
}


def _tar(members: Sequence[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _add_layer(layout: Path, work: Path, tag: str, layer: bytes) -> None:
    path = work / f"{tag}.tar"
    path.write_bytes(layer)
    _umoci("raw", "add-layer", "--image", _image(layout, "empty"), "--tag", tag, path)


def _lie_about_diff_id(layout: Path, tag: str) -> None:
    """Replace the config's diff_id with the digest of something else.

    umoci always records the true diff_id, so this is JSON surgery: new
    config blob, new manifest blob, tag moved to it.
    """
    manifest = _manifest(layout, tag)
    config = _read_json(_blob(layout, manifest["config"]["digest"]))
    config["rootfs"]["diff_ids"] = [
        "sha256:" + hashlib.sha256(b"not the layer's content").hexdigest()
    ]
    manifest["config"] = _put_blob(layout, json.dumps(config).encode(),
                                   manifest["config"]["mediaType"])
    _set_tag(layout, tag, _put_blob(layout, json.dumps(manifest).encode(),
                                    "application/vnd.oci.image.manifest.v1+json"))


def _build_evil(layout: Path, work: Path) -> dict[str, str]:
    """One tag per malicious image; returns tag -> description."""
    _new_layout(layout)
    _umoci("new", "--image", _image(layout, "empty"))
    descriptions = {}
    for name, (description, members) in _EVIL_LAYERS.items():
        _add_layer(layout, work, name, _tar(members))
        descriptions[name] = description
    _add_layer(layout, work, "bad-diffid", _tar([_file("hello", b"hello\n")]))
    _lie_about_diff_id(layout, "bad-diffid")
    descriptions["bad-diffid"] = "a valid layer whose config diff_id is another digest"
    return descriptions


# --- pushing ----------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _Push:
    key: str
    layout: Path
    tag: str
    repo: str
    description: str
    # skopeo flags for a conversion (format, compression) made before the push.
    convert: tuple[str, ...] = ()
    all: bool = False


def _skopeo_copy(*args: str) -> None:
    # --insecure-policy: the host's /etc/containers/policy.json must not
    # decide what a test may copy into its own loopback registry.
    run(["skopeo", "--insecure-policy", "copy", "--quiet", *args], timeout=_SKOPEO_TIMEOUT)


def _push(host: str, stage_root: Path, push: _Push) -> SeededImage:
    ref = f"{host}/{push.repo}"
    source = f"oci:{push.layout}:{push.tag}"
    if push.convert:
        # Convert into a local dir first and push that as it is. Converting
        # on the way to the registry is not reliable with skopeo 1.9.3: once
        # the registry has the gzip blob of the same content, skopeo reuses
        # it and silently ignores --dest-compress-format zstd.
        staged = stage_root / push.key
        _skopeo_copy(*push.convert, source, f"dir:{staged}")
        source = f"dir:{staged}"
    # --preserve-digests forbids that reuse too (a blob of another
    # compression swapped in), so the registry holds exactly these bytes.
    args = ("--preserve-digests", "--dest-tls-verify=false", *(("--all",) if push.all else ()),
            source, f"docker://{ref}")
    # distribution 2.8's filesystem driver sometimes answers 500 when two
    # pushes upload the same blob at once (the images share layers and are
    # pushed in parallel); a second try finds the blob in place.
    for attempt in range(3):
        try:
            _skopeo_copy(*args)
            break
        except AssertionError:
            if attempt == 2:
                raise
    return SeededImage(ref=ref, layout=push.layout, tag=push.tag, description=push.description)


def build_and_push(host: str, workdir: Path) -> dict[str, SeededImage]:
    """Build every test image under `workdir` and push it to the registry at `host`."""
    busybox, multiarch, evil = workdir / "busybox", workdir / "multiarch", workdir / "evil"
    deep = workdir / "deep"
    for sub in ("busybox-work", "evil-work", "deep-work", "staged"):
        (workdir / sub).mkdir()
    # Independent layouts: build them side by side (umoci is a
    # separate process; the threads only wait).
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(_build_busybox, busybox, workdir / "busybox-work"),
            pool.submit(_build_multiarch, multiarch),
            pool.submit(_build_evil, evil, workdir / "evil-work"),
            pool.submit(_build_deep, deep, workdir / "deep-work"),
        ]
        results = [f.result() for f in futures]
    evil_descriptions: dict[str, str] = results[2]

    pushes = [
        _Push(key="gzip", layout=busybox, tag="busybox", repo="test/busybox:gzip",
              description="busybox, OCI media types, gzip layers"),
        _Push(key="schema2", layout=busybox, tag="busybox", repo="test/busybox:schema2",
              description="busybox as Docker schema2", convert=("--format", "v2s2")),
        _Push(key="zstd", layout=busybox, tag="busybox", repo="test/busybox:zstd",
              # umoci 0.4.7 cannot read zstd layers: `layout` is the gzip
              # source skopeo recompressed, with the same root filesystem.
              description="busybox, OCI, zstd layers",
              convert=("--dest-compress", "--dest-compress-format", "zstd")),
        _Push(key="features", layout=busybox, tag="features", repo="test/features:v1",
              description="busybox plus whiteouts, opaque dir, links, modes, devices, xattrs"),
        _Push(key="noeoa", layout=busybox, tag="noeoa", repo="test/noeoa:v1",
              description="busybox plus a umoci-insert layer without end-of-archive blocks"),
        _Push(key="deep", layout=deep, tag="deep", repo="test/deep:v1",
              description=f"{DEEP_LAYERS} layers of one file each"),
        _Push(key="multiarch", layout=multiarch, tag="v1", repo="test/multiarch:v1",
              description="index: linux/amd64, linux/arm64/v8, unknown/unknown attestation",
              all=True),
        _Push(key="multiarch-amd64", layout=multiarch, tag="amd64", repo="test/multiarch:amd64",
              description="the linux/amd64 image of the multiarch index"),
        _Push(key="multiarch-arm64", layout=multiarch, tag="arm64", repo="test/multiarch:arm64",
              description="the linux/arm64 image of the multiarch index"),
        *(
            _Push(key=f"evil-{name}", layout=evil, tag=name, repo=f"test/evil:{name}",
                  description=description)
            for name, description in evil_descriptions.items()
        ),
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        images = list(pool.map(lambda p: _push(host, workdir / "staged", p), pushes))
    return {push.key: image for push, image in zip(pushes, images)}
