"""`pybox pull` from a real registry, checked against umoci's unpack of the same images.

Images come from the session's `registry` fixture, made by umoci and skopeo;
pybox is never the judge of its own output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.images import EVIL_OUTSIDE, SeededImage
from support.skip import require_root
from support.tree import diff_trees, snapshot, umoci_unpack


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def _mounted_tree(pybox, ref: str) -> dict:
    directory = Path(pybox("image", "mount", ref).stdout.strip())
    try:
        return snapshot(directory)
    finally:
        pybox("image", "umount", ref)


def _expected_tree(image: SeededImage, tmp_path: Path) -> dict:
    return snapshot(umoci_unpack(image, tmp_path / "umoci"))


@pytest.mark.parametrize("key", ["gzip", "schema2", "zstd", "features", "noeoa"])
def test_pulled_rootfs_equals_umoci_unpack(registry, pybox, tmp_path: Path, key: str) -> None:
    image = registry.images[key]
    pybox("pull", "-q", image.ref)
    differences = diff_trees(_expected_tree(image, tmp_path), _mounted_tree(pybox, image.ref))
    assert differences == [], "\n".join(differences)


def test_pull_output_and_inspect_document(registry, pybox) -> None:
    image = registry.images["gzip"]
    out = pybox("pull", image.ref).stdout
    assert "Pull complete" in out and "Status: Downloaded newer image for" in out
    (doc,) = json.loads(pybox("inspect", image.ref).stdout)
    assert doc["RepoTags"] == [image.ref]
    assert doc["Id"].startswith("sha256:") and len(doc["RootFS"]["Layers"]) == 1
    assert doc["Architecture"] == "amd64" and doc["Os"] == "linux"
    config = doc["Config"]
    assert config["Cmd"] == ["/bin/sh"]
    assert "PYBOX_TEST=busybox" in config["Env"]
    assert config["WorkingDir"] == "/work" and config["User"] == "nobody"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert doc["Size"] > 1_000_000
    # The same pull again downloads nothing.
    again = pybox("pull", image.ref).stdout
    assert "Already exists" in again and "Image is up to date" in again


def test_repo_digest_is_the_pulled_index_digest(registry, pybox) -> None:
    image = registry.images["multiarch"]
    index_digest = _registry_digest(registry, image.ref)
    pybox("pull", "-q", image.ref)
    (doc,) = json.loads(pybox("inspect", image.ref).stdout)
    repo = image.ref.rsplit(":", 1)[0]
    assert doc["RepoDigests"] == [f"{repo}@{index_digest}"]


def _registry_digest(registry, ref: str) -> str:
    import hashlib
    import urllib.request

    host, rest = ref.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    req = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        return "sha256:" + hashlib.sha256(resp.read()).hexdigest()


# None: this machine's platform, which the index has for x86_64 and aarch64 hosts.
_HOST = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)


@pytest.mark.parametrize(("platform", "expected"), [(None, _HOST), ("linux/arm64", "arm64"), ("linux/amd64", "amd64")])
def test_platform_is_chosen_from_the_index(registry, pybox, tmp_path: Path, platform, expected) -> None:
    image = registry.images["multiarch"]
    if expected is None:
        # Any other host: the index offers nothing it can run.
        proc = pybox("pull", image.ref, check=False)
        assert proc.returncode == 125 and "no image for platform" in proc.stderr
        return
    pybox("pull", "-q", *(["--platform", platform] if platform else []), image.ref)
    tree_dir = Path(pybox("image", "mount", image.ref).stdout.strip())
    try:
        assert (tree_dir / "platform").read_text().strip() == expected
    finally:
        pybox("image", "umount", image.ref)
    (doc,) = json.loads(pybox("inspect", image.ref).stdout)
    assert doc["Architecture"] == expected


def test_platform_missing_from_index_is_a_clear_error(registry, pybox) -> None:
    proc = pybox("pull", "--platform", "linux/s390x", registry.images["multiarch"].ref, check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip().splitlines() == [
        "pybox: error: no image for platform linux/s390x in the index (it offers: linux/amd64, linux/arm64/v8)"
    ]


def test_pull_by_digest_and_wrong_digest(registry, pybox) -> None:
    image = registry.images["gzip"]
    digest = _registry_digest(registry, image.ref)
    repo = image.ref.rsplit(":", 1)[0]
    pybox("pull", "-q", f"{repo}@{digest}")
    rows = json.loads(pybox("images", "--format", "json").stdout)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows] == [(repo, "<none>", digest)]
    wrong = "sha256:" + "0" * 64
    proc = pybox("pull", f"{repo}@{wrong}", check=False)
    assert proc.returncode == 125 and "not found" in proc.stderr


def test_layers_are_shared_between_images(registry, pybox, store_root: Path) -> None:
    pybox("pull", "-q", registry.images["gzip"].ref)
    pybox("pull", "-q", registry.images["schema2"].ref)
    pybox("pull", "-q", registry.images["features"].ref)
    # gzip, schema2 and the bottom layer of features are the same busybox tree.
    layers = sorted(os.listdir(store_root / "layers"))
    (gzip_doc,) = json.loads(pybox("inspect", registry.images["gzip"].ref).stdout)
    (features_doc,) = json.loads(pybox("inspect", registry.images["features"].ref).stdout)
    assert features_doc["RootFS"]["Layers"][0] == gzip_doc["RootFS"]["Layers"][0]
    assert len(layers) == len(set(features_doc["RootFS"]["Layers"]))

    # Removing two of the three images keeps the shared layer for the third.
    pybox("rmi", registry.images["features"].ref, registry.images["schema2"].ref)
    assert os.listdir(store_root / "layers") == [gzip_doc["RootFS"]["Layers"][0].removeprefix("sha256:")]
    pybox("rmi", registry.images["gzip"].ref)
    assert os.listdir(store_root / "layers") == []
    assert os.listdir(store_root / "blobs" / "sha256") == []
    assert [e for e in os.listdir(store_root / "l")] == []


@pytest.mark.parametrize("name", ["dotdot", "symlink-write", "relsymlink-write", "hardlink-out", "hardlink-abs"])
def test_malicious_layer_is_refused_and_nothing_lands_outside(registry, pybox, store_root: Path, name: str) -> None:
    assert not EVIL_OUTSIDE.exists()
    before = set(os.listdir(store_root.parent))
    proc = pybox("pull", registry.images[f"evil-{name}"].ref, check=False)
    assert proc.returncode == 125
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("pybox: error: ") and "layer" in line, line
    assert not EVIL_OUTSIDE.exists()
    assert set(os.listdir(store_root.parent)) - {"store"} == before
    assert not Path("/escape-dotdot").exists()
    assert os.listdir(store_root / "layers") == []
    assert os.listdir(store_root / "tmp") == []
    assert json.loads(pybox("images", "--format", "json").stdout) == []


def test_lying_diff_id_is_refused(registry, pybox, store_root: Path) -> None:
    proc = pybox("pull", registry.images["evil-bad-diffid"].ref, check=False)
    assert proc.returncode == 125
    assert "diff_id" in proc.stderr
    assert os.listdir(store_root / "layers") == [] and os.listdir(store_root / "tmp") == []
    assert json.loads(pybox("images", "--format", "json").stdout) == []


def test_other_tools_read_the_store(registry, pybox, store_root: Path, tmp_path: Path) -> None:
    image = registry.images["features"]
    pybox("pull", "-q", image.ref)
    from support.tools import run

    name = image.ref
    inspected = json.loads(run(["skopeo", "inspect", f"oci:{store_root}:{name}"]).stdout)
    assert inspected["Architecture"] == "amd64"
    run(["umoci", "unpack", "--image", f"{store_root}:{name}", str(tmp_path / "bundle")])
    differences = diff_trees(snapshot(umoci_unpack(image, tmp_path / "umoci")), snapshot(tmp_path / "bundle" / "rootfs"))
    assert differences == [], "\n".join(differences)


def test_concurrent_pulls_end_with_one_consistent_copy(registry, store_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    # Overlapping images: all share the busybox layer, two are the same image.
    refs = [registry.images[k].ref for k in ("features", "features", "gzip", "noeoa")]
    procs = [
        subprocess.Popen([sys.executable, "-I", "-m", "pybox", "--root", str(store_root), "pull", "-q", ref],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for ref in refs
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], results
    index = json.loads((store_root / "index.json").read_text())
    names = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert names == sorted(set(refs))
    assert os.listdir(store_root / "tmp") == []
    expected = snapshot(umoci_unpack(registry.images["features"], tmp_path / "umoci"))
    directory = Path(subprocess.run([sys.executable, "-I", "-m", "pybox", "--root", str(store_root), "image", "mount",
                                     refs[0]], capture_output=True, text=True, check=True).stdout.strip())
    try:
        differences = diff_trees(expected, snapshot(directory))
    finally:
        subprocess.run([sys.executable, "-I", "-m", "pybox", "--root", str(store_root), "image", "umount", refs[0]],
                       check=True, capture_output=True)
    assert differences == [], "\n".join(differences)


def test_deep_image_mounts_through_short_links(registry, pybox, tmp_path: Path) -> None:
    from support.images import DEEP_LAYERS

    image = registry.images["deep"]
    pybox("pull", "-q", image.ref)
    directory = Path(pybox("image", "mount", image.ref).stdout.strip())
    try:
        assert len(os.listdir(directory / "layers")) == DEEP_LAYERS
        differences = diff_trees(_expected_tree(image, tmp_path), snapshot(directory))
    finally:
        pybox("image", "umount", image.ref)
    assert differences == [], "\n".join(differences)
