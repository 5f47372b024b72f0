"""A stack of layers, mounted read-only for one function call, in a private mount namespace.

``COPY --from`` reads another stage's (or image's) merged filesystem. The
mount is made in a forked child that first unshares its mount namespace:
it is never visible on the host, and vanishes with the child even when
pybox is killed. The function runs in the child; what it writes to the
host's filesystem (the new layer directory) stays, and an exception it
raises is re-raised in the caller.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from pybox.errors import PyboxError, StoreError
from pybox.runtime.linux import CLONE_NEWNS, MS_PRIVATE, MS_REC, Linux
from pybox.runtime.mounts import perform
from pybox.store import Store
from pybox.store.fs import make_temp_name, remove_tree
from pybox.store.mounts import rootfs_mount

__all__ = ["with_layers_mounted"]


def with_layers_mounted(store: Store, diff_ids: list[str], fn: Callable[[Path], None],
                        linux: Linux | None = None) -> None:
    """Call ``fn(root)`` in a child process that sees ``diff_ids`` merged read-only at ``root``."""
    linux = linux or Linux()
    if threading.active_count() != 1:
        raise PyboxError(f"internal error: {threading.active_count()} threads alive before fork")
    target = make_temp_name(store.tmp_dir, "view")
    target.mkdir()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(linux, store, diff_ids, target, fn, write_fd)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as reader:
            report = reader.read()
        _, status = os.waitpid(pid, 0)
    finally:
        remove_tree(target)
    if report:
        raise pickle.loads(report)
    if os.waitstatus_to_exitcode(status) != 0:
        raise StoreError(f"reading layers {', '.join(d[7:19] for d in diff_ids)} failed (status {status})")


def _child(linux: Linux, store: Store, diff_ids: list[str], target: Path, fn: Callable[[Path], None],
           write_fd: int) -> None:
    code = 0
    try:
        linux.unshare(CLONE_NEWNS)
        # Nothing mounted here may propagate back to the host's namespace.
        linux.mount(None, "/", None, MS_REC | MS_PRIVATE)
        perform(linux, rootfs_mount(store.layers, diff_ids, target))
        fn(target)
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        code = 1
        error = e if isinstance(e, PyboxError) else StoreError(f"{type(e).__name__}: {e}")
        try:
            data = pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an exception that does not pickle still has a message
            data = pickle.dumps(StoreError(str(error)))
        os.write(write_fd, data)
    finally:
        os._exit(code)
