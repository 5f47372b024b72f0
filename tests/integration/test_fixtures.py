"""Self-test of the test infrastructure: the registry, the seeded images, the helpers.

If these fail, every test that uses them is meaningless; so they check what
the images claim to contain with the tools that made them, not with pybox.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests

from support.images import EVIL_OUTSIDE, FEATURES_LONG_LINK_TARGET, FEATURES_LONG_PATH
from support.mounts import mounts_under
from support.registry import Registry, registry_config
from support.skip import require, require_root, require_tool
from support.tools import PROXY_VARIABLES, run
from support.tree import Entry, diff_trees, snapshot, umoci_unpack

SEEDED_KEYS = (
    "gzip", "schema2", "zstd", "features", "noeoa", "deep",
    "multiarch", "multiarch-amd64", "multiarch-arm64",
    "evil-dotdot", "evil-symlink-write", "evil-relsymlink-write",
    "evil-hardlink-out", "evil-hardlink-abs", "evil-bad-diffid",
)
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
EOA = bytes(1024)  # tar's end of archive: two zero blocks


@pytest.fixture
def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only; never a proxy
    return session


def _inspect(ref: str, *flags: str) -> Any:
    out = run(["skopeo", "inspect", "--tls-verify=false", *flags, f"docker://{ref}"]).stdout
    return json.loads(out)


def _raw_manifest(ref: str) -> dict[str, Any]:
    return _inspect(ref, "--raw")


def _blob(http: requests.Session, registry: Registry, repo: str, digest: str) -> bytes:
    response = http.get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=30)
    response.raise_for_status()
    assert hashlib.sha256(response.content).hexdigest() == digest.split(":", 1)[1]
    return response.content


def _repo(ref: str) -> str:
    """`127.0.0.1:PORT/test/x:tag` -> `test/x`."""
    return ref.split("/", 1)[1].rsplit(":", 1)[0]


def _layer_members(http: requests.Session, registry: Registry, key: str) -> list[list[tarfile.TarInfo]]:
    ref = registry.images[key].ref
    layers = _raw_manifest(ref)["layers"]
    return [
        _members(gzip.decompress(_blob(http, registry, _repo(ref), layer["digest"])))
        for layer in layers
    ]


def _members(tar: bytes) -> list[tarfile.TarInfo]:
    # Python's tarfile cannot read umoci insert's layers, whose last member
    # is neither padded nor followed by end-of-archive blocks: add both.
    padded = tar + bytes(-len(tar) % 512) + EOA
    return tarfile.open(fileobj=io.BytesIO(padded)).getmembers()


# --- registry -------------------------------------------------------------------

def test_registry_serves_v2(registry: Registry, http: requests.Session) -> None:
    response = http.get(f"{registry.url}/v2/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.host == f"127.0.0.1:{registry.port}"


def test_seeded_keys(registry: Registry) -> None:
    assert sorted(registry.images) == sorted(SEEDED_KEYS)


@pytest.mark.parametrize("key", SEEDED_KEYS)
def test_seeded_image_is_listed(registry: Registry, key: str) -> None:
    image = registry.images[key]
    assert image.ref.startswith(registry.host + "/test/")
    assert (image.layout / "index.json").is_file()
    assert image.description
    info = _inspect(image.ref)
    assert info["Digest"].startswith("sha256:")
    assert info["Layers"]


def test_gzip_is_oci(registry: Registry) -> None:
    manifest = _raw_manifest(registry.images["gzip"].ref)
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_GZIP]


def test_gzip_config(registry: Registry) -> None:
    config = _inspect(registry.images["gzip"].ref, "--config")["config"]
    assert config["Cmd"] == ["/bin/sh"]
    assert "PYBOX_TEST=busybox" in config["Env"]
    assert config["WorkingDir"] == "/work"
    assert config["User"] == "nobody"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert config["Labels"]["org.example.pybox"] == "test"
    assert set(config["Volumes"]) == {"/data"}
    assert config["StopSignal"] == "SIGQUIT"


def test_schema2_has_docker_media_types(registry: Registry) -> None:
    manifest = _raw_manifest(registry.images["schema2"].ref)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_GZIP]


def test_zstd_has_zstd_layers(registry: Registry, http: requests.Session) -> None:
    ref = registry.images["zstd"].ref
    layers = _raw_manifest(ref)["layers"]
    assert [layer["mediaType"] for layer in layers] == [OCI_ZSTD]
    # The media type is not enough: the bytes must be a zstd frame.
    blob = _blob(http, registry, _repo(ref), layers[0]["digest"])
    assert blob[:4] == b"\x28\xb5\x2f\xfd"


def test_noeoa_layer_lacks_end_of_archive(registry: Registry, http: requests.Session) -> None:
    ref = registry.images["noeoa"].ref
    top = _raw_manifest(ref)["layers"][-1]
    tar = gzip.decompress(_blob(http, registry, _repo(ref), top["digest"]))
    assert not tar.endswith(EOA)
    assert len(tar) % 512 != 0, "umoci insert does not pad the last member either"
    # The busybox layer under it, written by umoci repack, is a complete tar.
    bottom = _raw_manifest(ref)["layers"][0]
    assert gzip.decompress(_blob(http, registry, _repo(ref), bottom["digest"])).endswith(EOA)


def test_multiarch_index_has_both_platforms(registry: Registry) -> None:
    ref = registry.images["multiarch"].ref
    index = _raw_manifest(ref)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {
        (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")): m
        for m in index["manifests"]
    }
    assert set(platforms) == {("linux", "amd64", None), ("linux", "arm64", "v8"),
                              ("unknown", "unknown", None)}
    repo_ref = ref.rsplit(":", 1)[0]
    for os_name, arch, _ in platforms:
        digest = platforms[(os_name, arch, _)]["digest"]
        config = _inspect(f"{repo_ref}@{digest}", "--config")
        assert (config["os"], config["architecture"]) == (os_name, arch)
    attestation = platforms[("unknown", "unknown", None)]["annotations"]
    assert attestation["vnd.docker.reference.digest"] == platforms[("linux", "amd64", None)]["digest"]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_multiarch_platform_file(registry: Registry, tmp_path: Path, arch: str) -> None:
    rootfs = umoci_unpack(registry.images[f"multiarch-{arch}"], tmp_path / "bundle")
    assert (rootfs / "platform").read_text() == f"{arch}\n"


# --- features ----------------------------------------------------------------------

def test_features_layers_as_umoci_wrote_them(registry: Registry, http: requests.Session) -> None:
    base, top, opaque = _layer_members(http, registry, "features")[1:]
    assert {m.name for m in base} >= {"deleted-file", "replaced-dir/old-a", "opaque-dir/old-a"}
    names = {m.name for m in top}
    # umoci repack: one whiteout per deleted file, even for a recreated dir.
    assert {".wh.deleted-file", "replaced-dir/.wh.old-a", "replaced-dir/.wh.old-b"} <= names
    assert not any(n.endswith(".wh..wh..opq") for n in names)
    # umoci insert --opaque: the opaque marker.
    assert "opaque-dir/.wh..wh..opq" in {m.name for m in opaque}
    pax = {m.name: m.pax_headers for m in top}
    assert pax[FEATURES_LONG_PATH]["path"] == FEATURES_LONG_PATH
    assert pax["symlinks/long-target"]["linkpath"] == FEATURES_LONG_LINK_TARGET
    hardlinks = {m.name: m.linkname for m in top if m.islnk()}
    assert len(hardlinks) == 2 and set(hardlinks.values()) <= {"hardlinks/a", "hardlinks/b", "hardlinks/sub/c"}


def test_features_unpacked_by_umoci(registry: Registry, tmp_path: Path) -> None:
    rootfs = umoci_unpack(registry.images["features"], tmp_path / "bundle")
    tree = snapshot(rootfs)

    for gone in ("/deleted-file", "/replaced-dir/old-a", "/opaque-dir/old-a", "/opaque-dir/sub"):
        assert gone not in tree
    assert "/replaced-dir/new" in tree and "/opaque-dir/new" in tree

    assert tree["/modes/setuid"].mode == 0o4755
    assert (tree["/modes/setgid"].mode, tree["/modes/setgid"].gid) == (0o2755, 456)
    assert tree["/modes/sticky"] == Entry(type="dir", mode=0o1777, uid=0, gid=0)
    assert tree["/modes/private"].mode == 0o600
    assert tree["/modes/empty"].size == 0
    assert tree["/special/fifo"].type == "fifo"
    assert (tree["/special/null"].type, tree["/special/null"].rdev) == ("char", (1, 3))
    assert (tree["/owners/user-1000"].uid, tree["/owners/user-1000"].gid) == (1000, 1000)
    assert (tree["/owners/user-123-456"].uid, tree["/owners/user-123-456"].gid) == (123, 456)
    assert (tree["/owners/dir-1000"].type, tree["/owners/dir-1000"].uid) == ("dir", 1000)

    inodes = {os.lstat(rootfs / p).st_ino for p in ("hardlinks/a", "hardlinks/b", "hardlinks/sub/c")}
    assert len(inodes) == 1 and tree["/hardlinks/a"].nlink == 3
    assert tree["/symlinks/relative"].link == "../hardlinks/a"
    assert tree["/symlinks/absolute"].link == "/hardlinks/a"
    assert tree["/symlinks/long-target"].link == FEATURES_LONG_LINK_TARGET
    assert len(FEATURES_LONG_LINK_TARGET) == 120
    assert tree["/symlinks/to-dir"].type == "symlink"

    assert tree["/xattrs/user"].xattrs == {"user.pybox": b"test"}
    capability = tree["/xattrs/capability"].xattrs["security.capability"]
    assert capability[:4] == (0x02000001).to_bytes(4, "little")
    assert len(FEATURES_LONG_PATH) == 200 and tree["/" + FEATURES_LONG_PATH].type == "file"
    assert tree["/bin/sh"].link == "busybox"


# --- malicious images -------------------------------------------------------------

@pytest.mark.parametrize(("key", "expected"), [
    ("evil-dotdot", [("../../escape-dotdot", tarfile.REGTYPE, "")]),
    ("evil-symlink-write", [("etc", tarfile.SYMTYPE, str(EVIL_OUTSIDE)),
                            ("etc/evil", tarfile.REGTYPE, "")]),
    ("evil-relsymlink-write", [("up", tarfile.SYMTYPE, "../../../../../../tmp/pybox-evil-outside"),
                               ("up/evil", tarfile.REGTYPE, "")]),
    ("evil-hardlink-out", [("h", tarfile.LNKTYPE, "../../../etc/hostname")]),
    ("evil-hardlink-abs", [("h", tarfile.LNKTYPE, "/etc/passwd")]),
])
def test_evil_layer_entries(
    registry: Registry, http: requests.Session, key: str, expected: list[tuple[str, bytes, str]]
) -> None:
    [members] = _layer_members(http, registry, key)
    assert [(m.name, m.type, m.linkname) for m in members] == expected


def test_bad_diffid_lies(registry: Registry, http: requests.Session) -> None:
    ref = registry.images["evil-bad-diffid"].ref
    [layer] = _raw_manifest(ref)["layers"]
    uncompressed = gzip.decompress(_blob(http, registry, _repo(ref), layer["digest"]))
    [diff_id] = _inspect(ref, "--config")["rootfs"]["diff_ids"]
    assert diff_id != "sha256:" + hashlib.sha256(uncompressed).hexdigest()
    assert [m.name for m in _members(uncompressed)] == ["hello"]


# --- lifecycle ----------------------------------------------------------------------

def _registry_tools() -> None:
    require_root()
    require_tool("docker-registry")


def test_stop_leaves_no_process(tmp_path: Path, http: requests.Session) -> None:
    _registry_tools()
    reg = Registry(tmp_path)
    reg.start()
    pid = reg.pid
    assert pid is not None and reg.running()
    reg.stop()
    assert not reg.running()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", reg.port), timeout=2).close()
    reg.stop()  # idempotent


def test_registry_with_auth_answers_401(tmp_path: Path, http: requests.Session) -> None:
    _registry_tools()
    # distribution 2.8 creates a missing htpasswd file with a random user;
    # enough to see the auth section applied verbatim.
    auth = {"htpasswd": {"realm": "pybox-test", "path": str(tmp_path / "htpasswd")}}
    with Registry(tmp_path, auth=auth) as reg:
        response = http.get(f"{reg.url}/v2/", timeout=5)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pybox-test"'


def test_registry_config_places_auth_verbatim(tmp_path: Path) -> None:
    auth = {"token": {"realm": "https://auth.example/token", "service": "s",
                      "issuer": "i", "rootcertbundle": "/x.pem"}}
    config = registry_config(port=5000, storage=tmp_path, auth=auth)
    assert config["auth"] == auth
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["storage"]["delete"] == {"enabled": True}
    assert "auth" not in registry_config(port=5000, storage=tmp_path)


# --- helpers without root -----------------------------------------------------------

def test_environment_is_clean() -> None:
    for name in ("PYBOX_ROOT", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", *PROXY_VARIABLES):
        assert name not in os.environ


def test_require(monkeypatch: pytest.MonkeyPatch) -> None:
    require(True, "never raised")
    monkeypatch.delenv("PYBOX_TEST_STRICT", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no frobnicator"):
        require(False, "no frobnicator")
    monkeypatch.setenv("PYBOX_TEST_STRICT", "1")
    with pytest.raises(pytest.fail.Exception, match="strict mode: no frobnicator"):
        require(False, "no frobnicator")


def test_store_root_is_fresh(store_root: Path, tmp_path: Path) -> None:
    assert store_root == tmp_path / "store"
    assert not store_root.exists()


def test_pybox_runs_the_cli(pybox: Any) -> None:
    assert "Usage" in pybox("--help").stdout


def test_pybox_reports_failures(pybox: Any) -> None:
    with pytest.raises(AssertionError, match=r"exited [1-9]") as failure:
        pybox("--no-such-option")
    assert "stderr:" in str(failure.value)
    assert pybox("--no-such-option", check=False).returncode != 0


def test_mounts_under(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /proc rw - proc proc rw\n"
        "90 22 0:50 / /t/a\\040b rw - tmpfs tmpfs rw\n"
        "91 22 0:51 / /t/ab rw - tmpfs tmpfs rw\n"
        "92 22 0:52 / /tx rw - tmpfs tmpfs rw\n"
    )
    assert mounts_under(Path("/t/a b"), mountinfo) == ["/t/a b"]
    assert mounts_under(Path("/t"), mountinfo) == ["/t/a b", "/t/ab"]


def test_snapshot_and_diff(tmp_path: Path) -> None:
    for side in ("a", "b"):
        (tmp_path / side / "d").mkdir(parents=True)
        (tmp_path / side / "d/f").write_text("same\n")
        (tmp_path / side / "l").symlink_to("d/f")
        os.mkfifo(tmp_path / side / "p")
    (tmp_path / "a/only-a").write_text("")
    (tmp_path / "b/d/f").chmod(0o600)
    (tmp_path / "b/l").unlink()
    (tmp_path / "b/l").symlink_to("elsewhere")

    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert a["/l"].type == "symlink" and a["/p"].type == "fifo" and a["/d/f"].size == 5
    assert a["/d/f"].sha256 == hashlib.sha256(b"same\n").hexdigest()
    assert diff_trees(a, b) == [
        "missing: /only-a",
        f"/d/f: mode expected {oct(a['/d/f'].mode)}, got 0o600",
        "/l: link expected 'd/f', got 'elsewhere'",
    ]
    assert diff_trees(a, a) == []
