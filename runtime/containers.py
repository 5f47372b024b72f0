"""Container records: ``containers/<id>/`` holds the spec, the state and the upper/work dirs.

The record is what later lifecycle commands (ps, inspect, rm, logs) read; a
``--rm`` container removes its whole directory when it ends.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pybox.errors import Conflict
from pybox.store import Store
from pybox.store.fs import atomic_write, remove_tree
from pybox.store.locks import FileLock

__all__ = [
    "ContainerState",
    "ContainerRecord",
    "new_id",
    "now",
    "create_record",
    "find_by_name",
    "resolve_container",
    "inspect_container",
]

Status = Literal["created", "running", "exited"]


def new_id() -> str:
    return secrets.token_hex(32)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(kw_only=True)
class ContainerState:
    status: Status = "created"
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    created: str = field(default_factory=now)
    started: str = ""
    finished: str = ""
    error: str = ""


class ContainerRecord:
    def __init__(self, store: Store, container_id: str) -> None:
        self.id = container_id
        self.dir = store.root / "containers" / container_id
        self._tmp = store.tmp_dir

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    def write_config(self, doc: dict[str, Any]) -> None:
        atomic_write(self.dir / "config.json", json.dumps(doc, indent=2).encode(), self._tmp, sync=False)

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.dir / "config.json").read_bytes())

    def write_state(self, state: ContainerState) -> None:
        atomic_write(self.dir / "state.json", json.dumps(asdict(state), indent=2).encode(), self._tmp, sync=False)

    def read_state(self) -> ContainerState:
        return ContainerState(**json.loads((self.dir / "state.json").read_bytes()))

    def write_file(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def remove(self) -> None:
        remove_tree(self.dir)


def find_by_name(store: Store, name: str) -> str | None:
    return next((cid for cid, doc in store.container_configs() if doc.get("Name") == name), None)


def create_record(store: Store, container_id: str, name: str | None, config: dict[str, Any]) -> ContainerRecord:
    """A new container directory with its upper, work and merged dirs; names are unique."""
    with FileLock(store.root / "locks" / "containers.lock"):
        chosen = name or f"pybox_{container_id[:12]}"
        if name and find_by_name(store, name):
            raise Conflict(f"the container name {name!r} is already in use; remove that container or pick another")
        record = ContainerRecord(store, container_id)
        record.dir.mkdir(parents=True, mode=0o700)
        # The upper dir's root is the container's "/": it must be traversable by any user.
        record.upper.mkdir(mode=0o755)
        record.work.mkdir(mode=0o700)
        record.merged.mkdir(mode=0o755)
        record.write_config({**config, "Id": container_id, "Name": chosen})
    record.write_state(ContainerState())
    return record


def resolve_container(store: Store, text: str) -> ContainerRecord:
    """A container by name, full id or unique id prefix."""
    from pybox.errors import NotFound

    base = store.root / "containers"
    by_name = find_by_name(store, text)
    if by_name:
        return ContainerRecord(store, by_name)
    hits = [cid for cid in os.listdir(base) if cid.startswith(text)] if len(text) >= 3 else []
    if len(hits) == 1:
        return ContainerRecord(store, hits[0])
    if len(hits) > 1:
        raise Conflict(f"container ID prefix {text!r} is ambiguous: it matches {len(hits)} containers")
    raise NotFound(f"no such container: {text}")


def inspect_container(record: ContainerRecord) -> dict[str, Any]:
    """Docker-shaped ``inspect`` of a container record."""
    config = record.read_config()
    state = record.read_state()
    return {
        "Id": record.id,
        "Name": config.get("Name", ""),
        "Image": config.get("Image", ""),
        "ImageName": config.get("ImageName", ""),
        "Args": config.get("Args", []),
        "Created": state.created,
        "State": {
            "Status": state.status,
            "Running": state.status == "running",
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "OOMKilled": state.oom_killed,
            "StartedAt": state.started,
            "FinishedAt": state.finished,
            "Error": state.error,
        },
        "Config": {"Labels": config.get("Labels", {}), "StopSignal": config.get("StopSignal", "")},
        "Mounts": config.get("Volumes", []),
        "Spec": config.get("Spec", {}),
    }
