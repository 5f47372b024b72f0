"""``pybox pull``: manifests, config and layers from a registry into the store.

Layers download in a bounded pool of threads; each thread streams its blob
into ``tmp/`` and, in the same pass, through the decompressor into the
layer's unpack directory, so download, decompression and unpacking overlap
(zlib, zstandard and hashlib release the GIL). A layer becomes visible once
its digests checked out (one ``syncfs``, then renames: see
:mod:`pybox.store.batch`); the manifest, index and config follow when every
layer is in, and last the name in ``index.json``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from pybox import reference
from pybox.errors import ContentError, InvalidDocument, PlatformMismatch
from pybox.image import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    check_digest,
    digest_hex,
    parse_config,
    parse_manifest_or_index,
    sha256_digest,
)
from pybox.registry.client import CHUNK, BlobStream, RegistryClient
from pybox.registry.credentials import Credentials, lookup
from pybox.registry.progress import Progress
from pybox.store import Store
from pybox.store.batch import Batch
from pybox.store.blobs import BlobWriter
from pybox.store.fs import remove_tree
from pybox.store.layers import StagedLayer
from pybox.store.layout import INDEX_DIGEST, PULLED_DIGEST, Entry

__all__ = ["PullOptions", "PullResult", "pull"]

log = logging.getLogger(__name__)

# Seconds an interrupted pull waits for its layer threads to notice.
_STOP_GRACE = 2.0


@dataclass(frozen=True, kw_only=True)
class PullOptions:
    platform: Platform | None = None  # None: this machine's, and any single-platform image is taken
    tls_verify: bool = True
    jobs: int = 4
    credentials: Credentials | None = None  # --creds; else looked up for the registry
    authfile: Path | None = None


@dataclass(frozen=True, kw_only=True)
class PullResult:
    name: str
    image_id: str
    pulled_digest: str
    manifest_digest: str
    new_layers: int


class _Cancelled(Exception):
    """Another layer failed or the user interrupted: stop this one quietly."""


class _Tee:
    """A layer blob as one stream: what an earlier attempt left in ``tmp/``, then the network.

    Network bytes are appended to the partial file as they pass; everything
    is verified on the way and reported as progress.
    """

    def __init__(self, writer: BlobWriter, body: BlobStream, progress: Progress, key: str,
                 cancel: threading.Event) -> None:
        self._writer = writer
        self._body = body
        self._progress = progress
        self._key = key
        self._cancel = cancel

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled()
        size = CHUNK if n < 0 else max(n, 1)
        data = self._writer.read_existing(size)
        if not data:
            data = self._body.read(size)
            if data:
                self._writer.write(data)
        if data:
            self._progress.advance(self._key, len(data))
        return data


class _Puller:
    """Pulls layers; each layer commits on its own as soon as it is complete.

    A layer's locks are held only until its own commit: were they held until
    the whole image was in, two pulls of overlapping images could each hold
    a layer the other waits for. A committed layer is content-addressed and
    unreferenced until the image's name is written, so it is harmless if the
    rest of the pull fails, and the next pull reuses it.
    """

    def __init__(self, store: Store, client: RegistryClient, repo: str, progress: Progress):
        self.store = store
        self.client = client
        self.repo = repo
        self.progress = progress
        self.cancel = threading.Event()
        self.new_layers = 0
        self._count_lock = threading.Lock()

    def _lock(self, batch: Batch, kind: str, hex_: str) -> None:
        """Wait for another pull of the same content to finish, unless this pull is cancelled."""
        lock = self.store.digest_lock(kind, hex_)
        while not lock.acquire(blocking=False):
            if self.cancel.wait(0.05):
                raise _Cancelled()
        batch.hold(lock)

    def layer(self, desc: Descriptor, diff_id: str) -> None:
        with self.store.batch() as batch:
            status = self._layer(desc, diff_id, batch)
        self.progress.finish(desc.hex[:12], status)

    def _layer(self, desc: Descriptor, diff_id: str, batch: Batch) -> str:
        key = desc.hex[:12]
        # Always the layer's lock before the blob's, so two pulls never wait on each other in a circle.
        self._lock(batch, "layer", digest_hex(diff_id))
        self._lock(batch, "blob", desc.hex)
        need_blob = not self.store.blobs.has(desc.digest)
        need_layer = not self.store.layers.has(diff_id)
        if not need_blob and not need_layer:
            return "Already exists"
        if need_layer:
            self.store.layers.discard_stale(diff_id)
        self.progress.start(key, desc.size if need_blob else None)
        if need_blob:
            staged = self._download(desc, diff_id, key, batch, unpack=need_layer)
        else:
            with self.store.blobs.open(desc.digest, desc.size) as blob:
                staged = self.store.layers.unpack(blob, desc.media_type, diff_id)
        if staged is not None:
            self.store.layers.stage(staged, batch)
            with self._count_lock:
                self.new_layers += 1
        return "Pull complete"

    def _download(self, desc: Descriptor, diff_id: str, key: str, batch: Batch, *,
                  unpack: bool) -> StagedLayer | None:
        """Download (resuming a partial one) and, in the same pass, unpack a layer blob."""
        what = f"layer {desc.digest}"
        writer = self.store.blobs.writer(desc.digest, desc.size, what, resumable=True)
        staged = None
        try:
            with BlobStream(self.client, self.repo, desc, what, offset=writer.existing) as body:
                tee = _Tee(writer, body, self.progress, key, self.cancel)
                if unpack:
                    staged = self.store.layers.unpack(tee, desc.media_type, diff_id)
                else:
                    while tee.read(CHUNK):
                        pass
            writer.finish(batch)
        except ContentError:
            # Wrong bytes, or a layer refused: resuming would give the same.
            writer.discard()
            if staged is not None:
                remove_tree(staged.tmp)
            raise
        except BaseException:
            # Interrupted or the network gave up: keep the bytes for next time.
            writer.suspend()
            if staged is not None:
                remove_tree(staged.tmp)
            raise
        return staged


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
    """Pull layers in ``jobs`` threads; the first failure, or Ctrl-C, cancels the rest.

    Daemon threads rather than a ThreadPoolExecutor: the executor's exit
    hook joins its workers, so an interrupted pull would wait for a stuck
    socket read; here the main thread gives the workers a moment to stop at
    their next chunk and then leaves.
    """
    pending = list(zip(manifest.layers, diff_ids))
    errors: list[BaseException] = []
    mutex = threading.Lock()

    def work() -> None:
        while not puller.cancel.is_set():
            with mutex:
                if not pending:
                    return
                desc, diff_id = pending.pop(0)
            try:
                puller.layer(desc, diff_id)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                with mutex:
                    errors.append(e)
                puller.cancel.set()
                return

    threads = [threading.Thread(target=work, name=f"pull-{i}", daemon=True)
               for i in range(max(1, min(jobs, len(pending))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        puller.cancel.set()
        for t in threads:
            t.join(_STOP_GRACE)
        puller.store.clean_own_tmp()
        raise
    if errors:
        # Report the real failure, not a sibling's cancellation.
        raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])


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
    puller = _Puller(store, client, ref.path, progress)
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
    creds = lookup(ref.domain, explicit=options.credentials, authfile=options.authfile)
    client = RegistryClient(ref.api_host, plain_http_ok=ref.is_loopback, tls_verify=options.tls_verify,
                            credentials=creds)
    try:
        with store.lock():
            store.clean_tmp()
            with store.batch() as batch:
                result, entry = _pull_locked(store, client, ref, options, progress, batch)
            store.index.set_name(result.name, entry)
            return result
    finally:
        client.close()

