"""``pybox image mount``: an image's merged root filesystem, read-only, on the host."""

from __future__ import annotations

import errno
from pathlib import Path

from pybox.errors import Conflict, StoreError
from pybox.runtime.linux import Linux
from pybox.runtime.mounts import perform
from pybox.store import Store
from pybox.store.images import Image
from pybox.store.mounts import rootfs_mount

__all__ = ["mount_image", "umount_image"]


def mount_image(store: Store, image: Image, linux: Linux | None = None) -> Path:
    """Mount ``image`` read-only and return the directory; mounting twice returns the same one."""
    linux = linux or Linux()
    target = store.mount_point(image.id)
    with store.lock():
        if image.id in store.mounted_image_ids():
            return target
        target.mkdir(parents=True, exist_ok=True)
        try:
            perform(linux, rootfs_mount(store.layers, image.config.diff_ids, target))
        except OSError as e:
            raise StoreError(f"cannot mount image {image.short_id} at {target}: {e.strerror}") from e
    return target


def umount_image(store: Store, image: Image, linux: Linux | None = None) -> Path:
    linux = linux or Linux()
    target = store.mount_point(image.id)
    if image.id not in store.mounted_image_ids():
        raise Conflict(f"image {image.short_id} is not mounted")
    try:
        linux.umount2(target)
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise Conflict(f"{target} is busy: a process is using it") from e
        raise StoreError(f"cannot unmount {target}: {e.strerror}") from e
    target.rmdir()
    target.parent.rmdir()
    return target
