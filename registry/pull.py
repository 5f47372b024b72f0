"""``pybox pull``: manifests, config and layers from a registry into the store.

Layers download in a bounded pool of threads; each thread streams its blob
into ``tmp/`` and, in the same pass, through the decompressor into the
layer's unpack directory, so download, decompression and unpacking overlap
(zlib, zstandard and hashlib release the GIL). Nothing becomes visible until
every digest checked out; then one ``syncfs`` and the renames (see
:mod:`pybox.store.batch`), and last the name in ``index.json``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Protocol

from pybox import reference
from pybox.errors import InvalidDocument, PlatformMismatch
from pybox.image import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    check_digest,
    parse_config,
    parse_manifest_or_index,
    sha256_digest,
)
from pybox.registry.client import CHUNK, RawBody, RegistryClient
from pybox.store import Store
from pybox.store.batch import Batch
from pybox.store.blobs import BlobWriter
from pybox.store.fs import remove_tree
from pybox.store.layout import INDEX_DIGEST, PULLED_DIGEST, Entry

__all__ = ["PullOptions", "PullResult", "Progress", "pull"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PullOptions:
    platform: Platform | None = None  # None: this machine's, and any single-platform image is taken
    tls_verify: bool = True
    jobs: int = 4


@dataclass(frozen=True, kw_only=True)
class PullResult:
    name: str
    image_id: str
    pulled_digest: str
    manifest_digest: str
    new_layers: int


class Progress(Protocol):
    """How a pull reports per-layer progress; the CLI draws it."""

    def start(self, key: str, total: int | None) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def finish(self, key: str, status: str) -> None: ...


class _Cancelled(Exception):
    """Another layer failed or the user interrupted: stop this one quietly."""


class _Tee:
    """Reads a blob from the network, writes it to its tmp file, reports progress."""

    def __init__(self, body: RawBody, writer: BlobWriter, progress: Progress, key: str, cancel: threading.Event):
        self._body = body
        self._writer = writer
        self._progress = progress
        self._key = key
        self._cancel = cancel

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled()
        data = self._body.read(CHUNK if n < 0 else max(n, 1))
        if data:
            self._writer.write(data)
            self._progress.advance(self._key, len(data))
        return data


class _Puller:
    def __init__(self, store: Store, client: RegistryClient, repo: str, progress: Progress, batch: Batch):
        self.store = store
        self.client = client
        self.repo = repo
        self.progress = progress
        self.batch = batch
        self.cancel = threading.Event()
        self.new_layers = 0
        self._count_lock = threading.Lock()

    def layer(self, desc: Descriptor, diff_id: str) -> None:
        key = desc.hex[:12]
        layer_lock = self.store.digest_lock("layer", diff_id.removeprefix("sha256:"))
        blob_lock = self.store.digest_lock("blob", desc.hex)
        layer_lock.acquire()
        self.batch.hold(layer_lock)
        blob_lock.acquire()
        self.batch.hold(blob_lock)
        need_blob = not self.store.blobs.has(desc.digest)
        need_layer = not self.store.layers.has(diff_id)
        if not need_blob and not need_layer:
            self.progress.finish(key, "Already exists")
            return
        self.progress.start(key, desc.size if need_blob else None)
        what = f"layer {desc.digest}"
        if need_blob:
            staged = None
            writer = self.store.blobs.writer(desc.digest, desc.size, what)
            resp = self.client.open_blob(self.repo, desc.digest, what)
            try:
                tee = _Tee(RawBody(resp), writer, self.progress, key, self.cancel)
                if need_layer:
                    staged = self.store.layers.unpack(tee, desc.media_type, diff_id)
                else:
                    while tee.read(CHUNK):
                        pass
                writer.finish(self.batch)
            except BaseException:
                writer.discard()
                if staged is not None:
                    remove_tree(staged.tmp)
                raise
            finally:
                resp.close()
        else:
            with self.store.blobs.open(desc.digest, desc.size) as blob:
                staged = self.store.layers.unpack(blob, desc.media_type, diff_id)
        if staged is not None:
            self.store.layers.stage(staged, self.batch)
            with self._count_lock:
                self.new_layers += 1
        self.progress.finish(key, "Pull complete")


def _fetch_manifest(client: RegistryClient, repo: str, ref: str, what: str) -> tuple[bytes, Manifest | Index, str]:
    raw, content_type = client.get_manifest(repo, ref, what)
    if ref.startswith("sha256:"):
        check_digest(raw, ref, what)
    return raw, parse_manifest_or_index(raw, content_type), sha256_digest(raw)


def _resolve(client: RegistryClient, ref: reference.Reference, options: PullOptions,
             batch: Batch, store: Store) -> tuple[Descriptor, bytes, Manifest, str, str | None]:
    """The platform manifest for ``ref``: its descriptor, body, parsed form, the pulled digest, the index digest."""
    what = f"manifest {ref}"
    raw, doc, pulled = _fetch_manifest(client, ref.path, ref.digest or ref.tag or "latest", what)
    if isinstance(doc, Index):
        store.blobs.put(raw, batch, pulled)
        chosen = doc.choose(options.platform or Platform.host())
        what = f"manifest {chosen.digest} ({chosen.platform}) of {ref}"
        body, manifest, _ = _fetch_manifest(client, ref.path, chosen.digest, what)
        if not isinstance(manifest, Manifest):
            raise InvalidDocument(f"{what}: an index entry points to another index")
        desc = Descriptor(media_type=manifest.media_type, digest=chosen.digest, size=len(body),
                          platform=chosen.platform)
        return desc, body, manifest, pulled, pulled
    assert isinstance(doc, Manifest)
    desc = Descriptor(media_type=doc.media_type, digest=pulled, size=len(raw))
    return desc, raw, doc, pulled, None


def _check_platform(config_platform: Platform, wanted: Platform | None, name: str) -> None:
    """A single-platform image must match an explicit ``--platform`` (Docker refuses it too)."""
    if wanted is not None and not any(config_platform.matches(c) for c in wanted.candidates()):
        raise PlatformMismatch(f"image {name} is for {config_platform}, not the requested {wanted}")


def _pull_layers(puller: _Puller, manifest: Manifest, diff_ids: list[str], jobs: int) -> None:
    pairs = list(zip(manifest.layers, diff_ids))
    if not pairs:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pairs))), thread_name_prefix="pull")
    futures = [pool.submit(puller.layer, desc, diff_id) for desc, diff_id in pairs]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            puller.cancel.set()
            wait(futures)
            errors = [f.exception() for f in futures if f.exception() is not None]
            # Report the real failure, not a sibling's cancellation.
            raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])  # type: ignore[misc]
    except BaseException:
        puller.cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pull_locked(store: Store, client: RegistryClient, ref: reference.Reference, options: PullOptions,
                 progress: Progress, batch: Batch) -> tuple[PullResult, Entry]:
    desc, body, manifest, pulled, index_digest = _resolve(client, ref, options, batch, store)
    config_raw = client.get_blob(ref.path, manifest.config, f"config {manifest.config.digest} of {ref}")
    config = parse_config(config_raw)
    if index_digest is None:
        _check_platform(Platform.from_dict(config.raw), options.platform, str(ref))
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidDocument(
            f"image {ref}: the manifest has {len(manifest.layers)} layers but the config lists "
            f"{len(config.diff_ids)} diff_ids"
        )
    for layer in manifest.layers:
        layer.hex  # only sha256 content can be stored; fail before downloading anything
    store.blobs.put(config_raw, batch, manifest.config.digest)
    store.blobs.put(body, batch, desc.digest)
    puller = _Puller(store, client, ref.path, progress, batch)
    _pull_layers(puller, manifest, config.diff_ids, options.jobs)
    annotations = {PULLED_DIGEST: pulled}
    if index_digest:
        annotations[INDEX_DIGEST] = index_digest
    entry = Entry(descriptor=replace(desc, annotations=annotations))
    result = PullResult(name=str(ref), image_id=manifest.config.digest, pulled_digest=pulled,
                        manifest_digest=desc.digest, new_layers=puller.new_layers)
    return result, entry


def pull(store: Store, text: str, options: PullOptions, progress: Progress) -> PullResult:
    """Pull ``text`` (a reference as users type it) into ``store``."""
    ref = reference.normalize(text)
    client = RegistryClient(ref.api_host, plain_http_ok=ref.is_loopback, tls_verify=options.tls_verify)
    try:
        with store.lock():
            batch = store.batch()
            try:
                result, entry = _pull_locked(store, client, ref, options, progress, batch)
                batch.commit()
            except BaseException:
                batch.abort()
                raise
            store.index.set_name(result.name, entry)
            return result
    finally:
        client.close()
