"""The image commands a user types after a pull: images, tag, rmi, history, prune, df, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.skip import require_root


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def _repo(ref: str) -> str:
    return ref.rsplit(":", 1)[0]


def test_images_table_and_quiet(registry, pybox) -> None:
    ref = registry.images["gzip"].ref
    pybox("pull", "-q", ref)
    lines = pybox("images").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repo, tag, image_id = lines[1].split()[:3]
    assert (repo, tag) == (_repo(ref), "gzip") and len(image_id) == 12
    assert pybox("images", "-q").stdout.split() == [image_id]
    digests = pybox("images", "--digests").stdout.splitlines()
    assert digests[0].split()[2] == "DIGEST" and digests[1].split()[2].startswith("sha256:")


def test_tag_then_rmi_untags_before_deleting(registry, pybox, store_root: Path) -> None:
    ref = registry.images["gzip"].ref
    pybox("pull", "-q", ref)
    pybox("tag", ref, "localhost/mine:v1")
    (doc,) = json.loads(pybox("inspect", "localhost/mine:v1").stdout)
    assert sorted(doc["RepoTags"]) == sorted([ref, "localhost/mine:v1"])

    # By ID with two names: Docker refuses without -f.
    proc = pybox("rmi", doc["Id"], check=False)
    assert proc.returncode == 125 and "must be forced" in proc.stderr

    out = pybox("rmi", "localhost/mine:v1").stdout
    assert out.strip() == "Untagged: localhost/mine:v1"
    assert os.listdir(store_root / "layers")

    out = pybox("rmi", ref).stdout.splitlines()
    assert out == [f"Untagged: {ref}", f"Deleted: {doc['Id']}"]
    assert os.listdir(store_root / "layers") == []


def test_rmi_force_by_id_prefix(registry, pybox, store_root: Path) -> None:
    ref = registry.images["gzip"].ref
    image_id = pybox("pull", "-q", ref).stdout.strip()
    pybox("tag", ref, "localhost/other")
    pybox("rmi", "-f", image_id.removeprefix("sha256:")[:8])
    assert json.loads(pybox("images", "--format", "json").stdout) == []
    assert os.listdir(store_root / "blobs" / "sha256") == []


def test_history_lists_layers_newest_first(registry, pybox) -> None:
    ref = registry.images["features"].ref
    pybox("pull", "-q", ref)
    lines = pybox("image", "history", ref).stdout.splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "CREATED"]
    (doc,) = json.loads(pybox("inspect", ref).stdout)
    assert lines[1].startswith(doc["Id"].removeprefix("sha256:")[:12])
    assert all(line.startswith("<missing>") for line in lines[2:])
    assert len(lines) - 1 >= len(doc["RootFS"]["Layers"])


def test_repull_of_a_moved_tag_leaves_a_dangling_image_for_prune(registry, pybox, store_root: Path) -> None:
    gzip_ref = registry.images["gzip"].ref
    features_ref = registry.images["features"].ref
    pybox("pull", "-q", gzip_ref)
    pybox("tag", gzip_ref, "localhost/moving:latest")
    pybox("rmi", gzip_ref)
    pybox("pull", "-q", features_ref)
    pybox("tag", features_ref, "localhost/moving:latest")
    rows = json.loads(pybox("images", "--format", "json").stdout)
    assert sorted((r["Repository"], r["Tag"]) for r in rows) == sorted(
        [("<none>", "<none>"), (_repo(features_ref), "v1"), ("localhost/moving", "latest")]
    )
    out = pybox("image", "prune").stdout
    assert out.startswith("Deleted: sha256:") and "Total reclaimed space" in out
    rows = json.loads(pybox("images", "--format", "json").stdout)
    assert ("<none>", "<none>") not in [(r["Repository"], r["Tag"]) for r in rows]
    pybox("image", "prune", "-a")
    assert json.loads(pybox("images", "--format", "json").stdout) == []
    assert os.listdir(store_root / "layers") == []


def test_rmi_refuses_a_mounted_image(registry, pybox) -> None:
    ref = registry.images["gzip"].ref
    pybox("pull", "-q", ref)
    pybox("image", "mount", ref)
    try:
        proc = pybox("rmi", ref, check=False)
        assert proc.returncode == 125 and "is mounted" in proc.stderr
        df = pybox("system", "df").stdout.splitlines()
        assert df[1].split()[:3] == ["Images", "1", "1"]
    finally:
        pybox("image", "umount", ref)
    pybox("rmi", ref)


def test_system_df_counts_images(registry, pybox) -> None:
    pybox("pull", "-q", registry.images["gzip"].ref)
    lines = pybox("system", "df").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    images = lines[1].split()
    assert images[:3] == ["Images", "1", "0"] and images[3].endswith("MB")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pull", "Alpine"), 'invalid reference "Alpine": invalid reference format: repository name (library/Alpine) must be lowercase'),
        (("inspect", "nothing-here"), "no such image or container: nothing-here"),
        (("inspect", "--type", "image", "nothing-here"), "image 'nothing-here' is not in the store"),
        (("rmi", "nothing-here"), "image 'nothing-here' is not in the store"),
        (("pull", "--platform", "linux", "x"), "invalid platform 'linux'"),
        (("pull", "--tls-verify=maybe", "x"), "invalid value 'maybe' for --tls-verify"),
        (("images", "--bogus"), "No such option: --bogus"),
    ],
)
def test_errors_are_one_line_with_status_125(pybox, args, message: str) -> None:
    proc = pybox(*args, check=False)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("pybox: error: ") and message in proc.stderr


def test_missing_repository_and_unreachable_registry(registry, pybox) -> None:
    proc = pybox("pull", f"{registry.host}/no/such:thing", check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith("pybox: error: manifest") and "not found" in proc.stderr
    proc = pybox("pull", "127.0.0.1:1/x", check=False)
    assert proc.returncode == 125 and "cannot connect to 127.0.0.1:1" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_debug_adds_the_traceback(pybox) -> None:
    proc = pybox("--debug", "rmi", "nothing-here", check=False)
    assert proc.returncode == 125
    assert "Traceback" in proc.stderr and proc.stderr.rstrip().endswith("is not in the store (pull it first)")


def test_root_comes_from_pybox_root(registry, pybox, tmp_path: Path) -> None:
    import subprocess
    import sys

    other = tmp_path / "elsewhere"
    subprocess.run([sys.executable, "-I", "-m", "pybox", "pull", "-q", registry.images["gzip"].ref],
                   env={**os.environ, "PYBOX_ROOT": str(other)}, check=True, capture_output=True, timeout=300)
    assert (other / "index.json").is_file() and os.listdir(other / "layers")


def test_progress_bars_on_a_terminal_and_silence_with_quiet(registry, store_root: Path, pybox) -> None:
    import pty
    import subprocess
    import sys

    ref = registry.images["features"].ref
    import fcntl
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-I", "-m", "pybox", "--root", str(store_root), "pull", ref],
                            stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert proc.wait(timeout=300) == 0
    text = output.decode(errors="replace")
    # tqdm draws a bar per layer: a percentage, a bar and a byte count.
    assert "100%|" in text and "Pull complete" in text, text
    pybox("rmi", ref)
    quiet = pybox("pull", "-q", ref)
    assert quiet.stdout.strip().startswith("sha256:") and quiet.stdout.count("\n") == 1 and quiet.stderr == ""
