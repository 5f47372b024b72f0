"""Named and anonymous volumes: ``volumes/<name>/_data`` under the store root, as Docker lays them out.

A volume outlives its containers. The first container that mounts an empty
volume over a path where its image has content gets that content copied in
(Docker's copy-up), unless ``volume-nocopy`` is given.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pybox.errors import Conflict, NotFound, UsageError
from pybox.runtime.containers import now
from pybox.store import Store
from pybox.store.fs import atomic_write, remove_tree
from pybox.store.locks import FileLock

__all__ = ["Volume", "VolumeStore", "VOLUME_NAME"]

# Docker's rule for volume names (volume/local: validNameRegex).
VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


@dataclass(kw_only=True)
class Volume:
    name: str
    created: str = field(default_factory=now)
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    mountpoint: str = ""

    def inspect(self) -> dict[str, object]:
        return {
            "CreatedAt": self.created,
            "Driver": "local",
            "Labels": self.labels,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": {},
            "Scope": "local",
            "Anonymous": self.anonymous,
        }


class VolumeStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.dir = store.root / "volumes"
        self.dir.mkdir(exist_ok=True)
        self._lock = store.root / "locks" / "volumes.lock"

    def _meta(self, name: str) -> Path:
        return self.dir / name / "volume.json"

    def data(self, name: str) -> Path:
        return self.dir / name / "_data"

    def _load(self, name: str) -> Volume:
        try:
            doc = json.loads(self._meta(name).read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None
        volume = Volume(**doc)
        volume.mountpoint = str(self.data(name))
        return volume

    def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
               anonymous: bool = False) -> tuple[Volume, bool]:
        """The volume ``name`` (a random name when None), and whether it was created now."""
        if name is None:
            name, anonymous = secrets.token_hex(32), True
        elif not VOLUME_NAME.fullmatch(name):
            raise UsageError(f"invalid volume name {name!r}: use letters, digits, '_', '.', '-' "
                             "(at least two characters, not starting with a symbol)")
        with FileLock(self._lock):
            if self._meta(name).exists():
                return self._load(name), False
            self.data(name).mkdir(parents=True, mode=0o755)
            volume = Volume(name=name, labels=dict(labels or {}), anonymous=anonymous)
            doc = {k: v for k, v in asdict(volume).items() if k != "mountpoint"}
            atomic_write(self._meta(name), json.dumps(doc).encode(), self._store.tmp_dir, sync=False)
        return self._load(name), True

    def get(self, name: str) -> Volume:
        return self._load(name)

    def list(self) -> list[Volume]:
        out = []
        for name in sorted(os.listdir(self.dir)):
            try:
                out.append(self._load(name))
            except (NotFound, ValueError, TypeError):
                continue
        return out

    def users(self) -> dict[str, list[str]]:
        """Volume name -> names of the containers whose records mount it."""
        out: dict[str, list[str]] = {}
        for cid, doc in self._store.container_configs():
            for volume in doc.get("Volumes") or []:
                out.setdefault(volume, []).append(doc.get("Name", cid[:12]))
        return out

    def remove(self, name: str, *, force: bool = False) -> None:
        with FileLock(self._lock):
            self._load(name)
            users = self.users().get(name)
            if users and not force:
                raise Conflict(f"volume {name} is in use by container {users[0]}")
            remove_tree(self.dir / name)

    def prune(self, *, all_volumes: bool = False) -> list[str]:
        """Unused volumes: the anonymous ones, or all with ``all_volumes`` (Docker 23's rule)."""
        removed = []
        with FileLock(self._lock):
            used = self.users()
            for volume in self.list():
                if volume.name in used or not (all_volumes or volume.anonymous):
                    continue
                remove_tree(self.dir / volume.name)
                removed.append(volume.name)
        return removed
