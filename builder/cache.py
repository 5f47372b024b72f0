"""The build cache: what a step made, keyed by what it depended on (DESIGN section 6).

A key is the sha256 of the parent state's identity, the instruction after
expansion, the build args it used and, for COPY/ADD, a hash of the sources'
content. The entry under ``cache/build/<key>.json`` is the step's effect:
the config after it, its history entry and the layer it added, if any. An
entry whose layer has since been removed from the store (``image prune``,
``rmi``) is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from pybox.builder.state import ImageState
from pybox.image import Descriptor
from pybox.store import Store
from pybox.store.fs import atomic_write

__all__ = ["BuildCache", "cache_key"]

# Part of every key: raised when what a step makes changes, so that entries
# an older pybox wrote are not replayed as if this one had made them.
_VERSION = 2


def cache_key(parent: ImageState, instruction: dict[str, Any], used_args: dict[str, str], extra: str = "") -> str:
    doc = [_VERSION, parent.identity(), instruction, sorted(used_args.items()), extra]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class BuildCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._dir = store.root / "cache" / "build"

    def get(self, key: str, parent: ImageState) -> ImageState | None:
        """The state after the step ``key`` on ``parent``, or None on a miss."""
        try:
            doc = json.loads((self._dir / f"{key}.json").read_bytes())
            layer = doc.get("layer")
            state = replace(parent, config=doc["config"], author=doc["author"])
            if layer is not None:
                descriptor = Descriptor.from_dict(layer["descriptor"])
                if not (self._store.layers.has(layer["diff_id"]) and self._store.blobs.has(descriptor.digest)):
                    return None
                state = state.add_layer(layer["diff_id"], descriptor)
            return state.add_history(doc["history"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, parent: ImageState, result: ImageState) -> None:
        """Record that the step ``key`` turned ``parent`` into ``result``."""
        added = result.diff_ids[len(parent.diff_ids):]
        doc: dict[str, Any] = {
            "config": result.config,
            "author": result.author,
            "history": result.history[-1],
            "layer": {"diff_id": added[0], "descriptor": result.layers[-1].to_dict()} if added else None,
        }
        self._dir.mkdir(exist_ok=True)
        atomic_write(self._dir / f"{key}.json", json.dumps(doc).encode(), self._store.tmp_dir, sync=False)
