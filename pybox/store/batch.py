"""Staged writes that become visible together, after one ``syncfs``.

Writers put finished, verified content into ``tmp/`` and register it here
with the final name. :meth:`Batch.commit` flushes the filesystem once and
renames everything into place; until then nothing is visible, and a crash
leaves only ``tmp/`` entries behind. The per-digest locks the writers took
stay held until the batch ends, so no other process stages the same content
at the same time.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybox.store.fs import remove_tree, syncfs
from pybox.store.locks import FileLock

__all__ = ["Batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Move:
    tmp: Path
    final: Path
    after: Callable[[], None] | None


class Batch:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._moves: list[_Move] = []
        self._locks: list[FileLock] = []
        self._mutex = threading.Lock()

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        """Commit when the block ends normally; drop everything when it raises."""
        if kind is None:
            self.commit()
        else:
            self.abort()

    def hold(self, lock: FileLock) -> None:
        """Keep an acquired lock until the batch commits or aborts."""
        with self._mutex:
            self._locks.append(lock)

    def add(self, tmp: Path, final: Path, after: Callable[[], None] | None = None) -> None:
        """Rename ``tmp`` to ``final`` at commit, then call ``after``."""
        with self._mutex:
            self._moves.append(_Move(tmp, final, after))

    def commit(self) -> None:
        try:
            if self._moves:
                syncfs(self._root)
            for move in self._moves:
                try:
                    os.rename(move.tmp, move.final)
                except OSError as e:
                    # Another writer committed the same content first: it is
                    # content-addressed, so theirs is as good as ours.
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    log.debug("%s already present; dropping staged copy", move.final)
                    remove_tree(move.tmp)
                if move.after:
                    move.after()
            self._moves.clear()
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop whatever was staged and not committed; release the locks."""
        for move in self._moves:
            remove_tree(move.tmp)
        self._moves.clear()
        for lock in self._locks:
            lock.release()
        self._locks.clear()
