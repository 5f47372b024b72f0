"""Performing :class:`~pybox.store.mounts.Mount` data with real mounts."""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from pybox.runtime.linux import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, Linux
from pybox.store.mounts import Mount

__all__ = ["perform", "overlay_options"]

_OVERLAY_PARAMETERS = "/sys/module/overlay/parameters"
# Features that would make an upper dir depend on this host's lower dirs
# (inode index, redirects, metadata-only copy-up): off, where the kernel has them.
_OFF_FEATURES = ("index", "redirect_dir", "metacopy")


def perform(linux: Linux, m: Mount) -> None:
    flags = MS_RDONLY if "ro" in m.options else 0
    if m.type == "bind":
        rec = MS_REC if "rbind" in m.options else 0
        linux.mount(m.source, m.target, None, MS_BIND | rec)
        if flags:
            _make_readonly(linux, m.target, recursive=bool(rec))
        return
    data = ",".join(o for o in m.options if o != "ro")
    if m.cwd is None:
        linux.mount(m.source, m.target, m.type, flags, data)
        return
    # Relative lower dirs resolve against the working directory at mount time.
    previous = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(m.cwd)
        linux.mount(m.source, m.target, m.type, flags, data)
    finally:
        os.fchdir(previous)
        os.close(previous)


def _make_readonly(linux: Linux, target: str, *, recursive: bool) -> None:
    """A bind mount ignores MS_RDONLY on creation; it takes a remount, or mount_setattr for its submounts too."""
    if recursive:
        try:
            linux.make_readonly_recursive(target)
            return
        except OSError as e:
            # Kernels before 5.12: the bind itself is read-only, its submounts not.
            if e.errno not in (errno.ENOSYS, errno.EINVAL):
                raise
    linux.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def overlay_options(m: Mount) -> Mount:
    """``m`` with ``index=off,redirect_dir=off,metacopy=off`` for each feature this kernel knows."""
    if m.type != "overlay":
        return m
    extra = tuple(f"{name}=off" for name in _OFF_FEATURES if os.path.exists(f"{_OVERLAY_PARAMETERS}/{name}"))
    return replace(m, options=m.options + extra)
