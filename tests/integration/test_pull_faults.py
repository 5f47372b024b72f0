"""Pulls through a fault-injecting proxy in front of Docker's registry: errors, throttling,
broken and wrong bodies, registries that ignore Range, kill -9 and Ctrl-C mid-pull.

Every case ends with the store checked: the image complete and equal to
umoci's unpack, or absent with nothing half-done left visible.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.faultproxy import Fault, FaultProxy
from support.skip import require_root
from support.tree import diff_trees, snapshot, umoci_unpack

BUSYBOX_BLOB = "/blobs/sha256:"


@pytest.fixture
def proxy(registry) -> Iterator[FaultProxy]:
    require_root()
    with FaultProxy(registry.url) as p:
        yield p


def _ref(proxy: FaultProxy, registry, key: str) -> str:
    return registry.images[key].ref.replace(registry.host, proxy.host)


def _layer_paths(store_root: Path, pybox, ref: str) -> list[str]:
    (doc,) = json.loads(pybox("inspect", ref).stdout)
    return doc["RootFS"]["Layers"]


def _biggest_blob(registry, key: str) -> str:
    """The path of the image's largest layer blob (the busybox layer)."""
    layout = registry.images[key].layout
    index = json.loads((layout / "index.json").read_text())
    tag = registry.images[key].tag
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    biggest = max(manifest["layers"], key=lambda layer: layer["size"])
    return f"/blobs/{biggest['digest']}"


def _assert_image_equals_umoci(pybox, registry, key: str, ref: str, tmp_path: Path) -> None:
    expected = snapshot(umoci_unpack(registry.images[key], tmp_path / "umoci"))
    directory = Path(pybox("image", "mount", ref).stdout.strip())
    try:
        differences = diff_trees(expected, snapshot(directory))
    finally:
        pybox("image", "umount", ref)
    assert differences == [], "\n".join(differences)


def _store_is_clean(store_root: Path) -> None:
    """No half-unpacked layer and no stray temporary file (partial downloads may stay)."""
    leftovers = [n for n in os.listdir(store_root / "tmp") if not n.endswith(".partial")]
    assert leftovers == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(proxy: FaultProxy, registry, pybox, store_root: Path, tmp_path: Path,
                                   status: int) -> None:
    ref = _ref(proxy, registry, "gzip")
    proxy.add_fault(Fault(kind="status", status=status, match="/manifests/", times=2))
    proxy.add_fault(Fault(kind="status", status=status, match="/blobs/", times=2))
    pybox("pull", "-q", ref)
    assert proxy.count("/manifests/") >= 3
    _assert_image_equals_umoci(pybox, registry, "gzip", ref, tmp_path)
    _store_is_clean(store_root)


def test_429_with_retry_after_is_honoured(proxy: FaultProxy, registry, pybox) -> None:
    ref = _ref(proxy, registry, "gzip")
    blob = _biggest_blob(registry, "gzip")
    proxy.add_fault(Fault(kind="status", status=429, headers={"Retry-After": "1"}, match=blob, times=1))
    pybox("pull", "-q", ref)
    statuses = [r.status for r in proxy.requests if blob in r.path]
    assert statuses == [429, 200]


def test_persistent_errors_give_up_with_a_clear_message(proxy: FaultProxy, registry, pybox) -> None:
    ref = _ref(proxy, registry, "gzip")
    proxy.add_fault(Fault(kind="status", status=503, match="/manifests/"))
    proc = pybox("pull", ref, check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip().splitlines()[-1].startswith(f"pybox: error: {proxy.host} answered HTTP 503")
    assert proxy.count("/manifests/") == 5


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_broken_body_is_resumed_with_range(proxy: FaultProxy, registry, pybox, store_root: Path, tmp_path: Path,
                                           kind: str) -> None:
    ref = _ref(proxy, registry, "features")
    blob = _biggest_blob(registry, "features")
    proxy.add_fault(Fault(kind=kind, match=blob, after_bytes=300_000, times=1))
    pybox("pull", "-q", ref)
    ranges = proxy.ranges(blob)
    assert len(ranges) == 1 and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"
    assert int(ranges[0].removeprefix("bytes=").rstrip("-")) <= 300_000
    _assert_image_equals_umoci(pybox, registry, "features", ref, tmp_path)
    _store_is_clean(store_root)


def test_registry_ignoring_range_is_handled(proxy: FaultProxy, registry, pybox, tmp_path: Path) -> None:
    ref = _ref(proxy, registry, "features")
    blob = _biggest_blob(registry, "features")
    proxy.add_fault(Fault(kind="reset", match=blob, after_bytes=200_000, times=1))
    proxy.add_fault(Fault(kind="ignore_range", match=blob, times=1))
    pybox("pull", "-q", ref)
    assert [r.status for r in proxy.requests if blob in r.path] == [200, 200]
    _assert_image_equals_umoci(pybox, registry, "features", ref, tmp_path)


def test_wrong_bytes_are_never_stored(proxy: FaultProxy, registry, pybox, store_root: Path) -> None:
    ref = _ref(proxy, registry, "gzip")
    blob = _biggest_blob(registry, "gzip")
    proxy.add_fault(Fault(kind="corrupt", match=blob, after_bytes=5000))
    proc = pybox("pull", ref, check=False)
    assert proc.returncode == 125
    assert "pybox: error:" in proc.stderr
    assert os.listdir(store_root / "layers") == []
    assert not any(blob.endswith(name) for name in os.listdir(store_root / "blobs" / "sha256"))
    assert os.listdir(store_root / "tmp") == []
    assert json.loads(pybox("images", "--format", "json").stdout) == []
    proxy.clear_faults()
    pybox("pull", "-q", ref)


def _wait_partial(store_root: Path, blob: str, size: int, timeout: float = 30.0) -> None:
    """Wait until pybox has written ``size`` bytes of ``blob`` to its partial download."""
    path = store_root / "tmp" / f"blob-{blob.rsplit(':', 1)[1]}.partial"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {size} bytes")


def _spawn_pull(store_root: Path, ref: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-I", "-m", "pybox", "--root", str(store_root), "pull", "-q", ref],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("where", ["manifest", "first-layer", "second-layer"])
def test_kill_9_mid_pull_then_pull_again(proxy: FaultProxy, registry, pybox, store_root: Path, tmp_path: Path,
                                         where: str) -> None:
    ref = _ref(proxy, registry, "features")
    blob = _biggest_blob(registry, "features")
    if where == "manifest":
        proxy.add_fault(Fault(kind="stall", match="/manifests/", after_bytes=10, times=1))
    elif where == "first-layer":
        proxy.add_fault(Fault(kind="stall", match=blob, after_bytes=400_000, times=1))
    else:
        # Let the busybox layer finish, then stall in another one.
        proxy.add_fault(Fault(kind="stall", match=r"/blobs/sha256:(?!" + blob.split(":")[1] + ")",
                              after_bytes=1, times=1))
    proc = _spawn_pull(store_root, ref)
    try:
        assert proxy.wait_stalled(timeout=60), "the pull never reached the stall"
        if where == "first-layer":
            _wait_partial(store_root, blob, 400_000)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proxy.release()
        proxy.clear_faults()
    assert proc.returncode == -signal.SIGKILL
    before = len(proxy.requests)
    pybox("pull", "-q", ref)
    again = proxy.requests[before:]
    if where == "first-layer":
        # The partial download was resumed, not started over.
        assert [r.headers.get("Range") or r.headers.get("range") for r in again if blob in r.path][0] not in (
            None, "bytes=0-")
    _assert_image_equals_umoci(pybox, registry, "features", ref, tmp_path)
    assert os.listdir(store_root / "tmp") == []


def test_ctrl_c_stops_cleanly_and_the_next_pull_resumes(proxy: FaultProxy, registry, pybox, store_root: Path,
                                                        tmp_path: Path) -> None:
    ref = _ref(proxy, registry, "features")
    blob = _biggest_blob(registry, "features")
    proxy.add_fault(Fault(kind="stall", match=blob, after_bytes=400_000, times=1))
    proc = _spawn_pull(store_root, ref)
    try:
        assert proxy.wait_stalled(timeout=60)
        _wait_partial(store_root, blob, 400_000)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proxy.release()
        proxy.clear_faults()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "pybox: error: interrupted"
    leftovers = os.listdir(store_root / "tmp")
    assert [n for n in leftovers if not n.endswith(".partial")] == []
    assert any(n.endswith(".partial") for n in leftovers)
    assert json.loads(pybox("images", "--format", "json").stdout) == []
    pybox("pull", "-q", ref)
    assert any(r not in (None, "bytes=0-") for r in proxy.ranges(blob))
    _assert_image_equals_umoci(pybox, registry, "features", ref, tmp_path)
    assert os.listdir(store_root / "tmp") == []
