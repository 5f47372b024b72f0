"""The store's contracts: verified, idempotent blobs; staged visibility; the image index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pybox import validate
from pybox.errors import DigestMismatch
from pybox.image import MT, Descriptor, sha256_digest
from pybox.store import Store
from pybox.store.layout import PULLED_DIGEST, REF_NAME, Entry
from pybox.store.locks import FileLock


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


def _entry(n: int) -> Entry:
    digest = "sha256:" + f"{n:x}" * 64
    return Entry(descriptor=Descriptor(media_type=MT.OCI_MANIFEST, digest=digest, size=100,
                                       annotations={PULLED_DIGEST: digest}))


def test_new_store_is_a_valid_oci_layout(store: Store) -> None:
    validate.validate_layout(json.loads((store.root / "oci-layout").read_bytes()))
    validate.validate_index(json.loads((store.root / "index.json").read_bytes()))
    assert os.stat(store.root).st_mode & 0o777 == 0o700


def test_blob_is_invisible_until_the_batch_commits(store: Store) -> None:
    batch = store.batch()
    digest = store.blobs.put(b"hello", batch)
    assert digest == sha256_digest(b"hello")
    assert not store.blobs.has(digest)
    batch.commit()
    assert store.blobs.read(digest) == b"hello"
    assert os.listdir(store.tmp_dir) == []


def test_put_is_idempotent(store: Store) -> None:
    for _ in range(2):
        batch = store.batch()
        store.blobs.put(b"same", batch)
        batch.commit()
    assert list(store.blobs.digests()) == [sha256_digest(b"same")]


def test_put_with_wrong_digest_is_refused(store: Store) -> None:
    batch = store.batch()
    with pytest.raises(DigestMismatch):
        store.blobs.put(b"content", batch, digest=sha256_digest(b"other"))
    batch.commit()
    assert list(store.blobs.digests()) == []


@pytest.mark.parametrize(("payload", "message"), [(b"abc", "got 3 bytes"), (b"abcdefgh", "more than")])
def test_writer_checks_size_both_ways(store: Store, payload: bytes, message: str) -> None:
    expected = b"abcde"
    w = store.blobs.writer(sha256_digest(expected), len(expected), "blob x")
    batch = store.batch()
    with pytest.raises(DigestMismatch, match=message):
        w.write(payload)
        w.finish(batch)
    w.discard()
    batch.commit()
    assert list(store.blobs.digests()) == [] and os.listdir(store.tmp_dir) == []


def test_abort_removes_staged_content(store: Store) -> None:
    batch = store.batch()
    store.blobs.put(b"x", batch)
    assert os.listdir(store.tmp_dir)
    batch.abort()
    assert os.listdir(store.tmp_dir) == [] and list(store.blobs.digests()) == []


def test_corrupted_blob_fails_on_read(store: Store) -> None:
    batch = store.batch()
    digest = store.blobs.put(b"precious", batch)
    batch.commit()
    store.blobs.path(digest).write_bytes(b"tampered")
    with pytest.raises(DigestMismatch, match="digest is"):
        store.blobs.read(digest)


def test_moving_a_name_leaves_the_old_image_dangling(store: Store) -> None:
    store.index.set_name("docker.io/library/a:latest", _entry(1))
    store.index.set_name("docker.io/library/a:latest", _entry(2))
    entries = store.index.load()
    assert [(e.name, e.manifest_digest[-1]) for e in entries] == [(None, "1"), ("docker.io/library/a:latest", "2")]
    # A new name for the dangling manifest replaces the nameless entry.
    store.index.set_name("docker.io/library/b:v1", _entry(1))
    assert sorted(e.name or "" for e in store.index.load()) == ["docker.io/library/a:latest", "docker.io/library/b:v1"]


def test_index_json_keeps_ref_names_for_other_tools(store: Store) -> None:
    store.index.set_name("docker.io/library/a:latest", _entry(3))
    doc = json.loads((store.root / "index.json").read_bytes())
    validate.validate_index(doc)
    assert doc["manifests"][0]["annotations"][REF_NAME] == "docker.io/library/a:latest"


def test_flock_excludes_a_second_open_file_description(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    with FileLock(path):
        other = FileLock(path)
        assert not other.acquire(blocking=False)
        shared = FileLock(path, shared=True)
        assert not shared.acquire(blocking=False)
    assert other.acquire(blocking=False)
    other.release()
