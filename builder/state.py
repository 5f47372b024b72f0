"""The image a build stage has made so far: its config, layers and history.

Every step takes one :class:`ImageState` and gives the next; the final
state of the target stage becomes the image. ``identity`` is what the cache
keys the next step on: the content (layers and config), not the way it was
reached, so a step that is run again and gives other bytes invalidates
every step after it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pybox.image import MT, Descriptor, Platform

__all__ = ["HISTORY_COMMENT", "ImageState", "config_document", "history_entry", "layer_descriptor", "now"]

HISTORY_COMMENT = "pybox build"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def history_entry(created_by: str, *, empty_layer: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"created": now(), "created_by": created_by, "comment": HISTORY_COMMENT}
    if empty_layer:
        entry["empty_layer"] = True
    return entry


@dataclass(frozen=True, kw_only=True)
class ImageState:
    platform: Platform
    # The image config's "config" object (Env, Cmd, User, ...), never mutated in place.
    config: dict[str, Any] = field(default_factory=dict, hash=False)
    diff_ids: tuple[str, ...] = ()
    layers: tuple[Descriptor, ...] = ()
    history: tuple[dict[str, Any], ...] = ()
    author: str = ""

    @property
    def env(self) -> dict[str, str]:
        out = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def identity(self) -> str:
        doc = {"diff_ids": list(self.diff_ids), "config": self.config, "platform": str(self.platform),
               "author": self.author}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def with_config(self, **changes: Any) -> ImageState:
        """A copy whose config has ``changes`` (None removes a field)."""
        config = copy.deepcopy(self.config)
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        return replace(self, config=config)

    def with_env(self, pairs: list[tuple[str, str]]) -> ImageState:
        env = self.env
        for key, value in pairs:
            env.pop(key, None)  # a redefined name moves to the end, as in Docker
            env[key] = value
        return self.with_config(Env=[f"{k}={v}" for k, v in env.items()])

    def add_history(self, entry: dict[str, Any]) -> ImageState:
        return replace(self, history=(*self.history, entry))

    def add_layer(self, diff_id: str, layer: Descriptor) -> ImageState:
        return replace(self, diff_ids=(*self.diff_ids, diff_id), layers=(*self.layers, layer))


def config_document(state: ImageState) -> dict[str, Any]:
    """The OCI image config of ``state``; ``created`` is its last history entry's time."""
    doc: dict[str, Any] = {
        "created": state.history[-1]["created"] if state.history else "1970-01-01T00:00:00Z",
        "architecture": state.platform.architecture,
        "os": state.platform.os,
    }
    if state.platform.variant:
        doc["variant"] = state.platform.variant
    if state.author:
        doc["author"] = state.author
    doc["config"] = state.config
    doc["rootfs"] = {"type": "layers", "diff_ids": list(state.diff_ids)}
    doc["history"] = list(state.history)
    return doc


def layer_descriptor(digest: str, size: int) -> Descriptor:
    return Descriptor(media_type=MT.OCI_LAYER_GZIP, digest=digest, size=size)
