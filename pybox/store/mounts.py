"""Layers as mount *data*: what to mount for a stack of layers, not the act of mounting.

None: an empty directory; one: a read-only bind of its diff dir (overlay
without an upper dir needs at least two lower dirs); more: overlay with the
lower dirs named relative to the store root, top layer first (overlayfs
takes the uppermost lower dir first, the reverse of ``rootfs.diff_ids``).
The runtime performs these mounts, with its working directory at the store
root so the relative lower dirs resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pybox.errors import StoreError
from pybox.store.layers import LayerStore

__all__ = ["Mount", "rootfs_mount", "EMPTY_DIR"]

EMPTY_DIR = "empty"


@dataclass(frozen=True, kw_only=True)
class Mount:
    type: str  # "overlay" or "bind"
    source: str
    target: str
    options: tuple[str, ...] = ()
    cwd: str | None = None  # where relative paths in source/options resolve


def rootfs_mount(layers: LayerStore, diff_ids: list[str], target: Path, *, upper: Path | None = None,
                 work: Path | None = None) -> Mount:
    """The mount that shows ``diff_ids`` (bottom first) at ``target``; read-only without ``upper``."""
    for d in diff_ids:
        if not layers.has(d):
            raise StoreError(f"layer {d} is missing from the store; pull the image again")
    root = str(layers.root)
    # No layers (FROM scratch): one empty directory stands in for them.
    lowers = [layers.ensure_link(d) for d in reversed(diff_ids)] or [EMPTY_DIR]
    if not diff_ids:
        (layers.root / EMPTY_DIR).mkdir(mode=0o755, exist_ok=True)
    if upper is None and len(lowers) < 2:
        return Mount(type="bind", source=str(layers.root / lowers[0]), target=str(target), options=("rbind", "ro"))
    options = ["lowerdir=" + ":".join(lowers)]
    if upper is not None:
        assert work is not None, "an overlay with an upper dir needs a work dir"
        options += [f"upperdir={upper}", f"workdir={work}"]
    else:
        options.append("ro")
    return Mount(type="overlay", source="overlay", target=str(target), options=tuple(options), cwd=root)
