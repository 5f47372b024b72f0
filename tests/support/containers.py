"""Running pybox containers in tests, and checking that nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from support.mounts import mounts_under

CGROUP_ROOT = Path("/sys/fs/cgroup")


def container_cgroups() -> list[str]:
    """Every container cgroup (``pybox/<id>``) in every hierarchy."""
    found = []
    for hierarchy in CGROUP_ROOT.iterdir():
        parent = hierarchy / "pybox"
        if parent.is_dir():
            found += [str(p) for p in parent.iterdir() if p.is_dir()]
    return found


def assert_no_new_cgroups(before: set[str], timeout: float = 10.0) -> None:
    """No container cgroup left that was not there before.

    Another pybox on the same machine may be running a container right now:
    its cgroup goes away when it ends, a leaked one stays (bounded wait).
    """
    deadline = time.monotonic() + timeout
    while (new := set(container_cgroups()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not new, f"cgroups left behind: {sorted(new)}"


def pull_into(root: Path, ref: str) -> None:
    subprocess.run([sys.executable, "-I", "-m", "pybox", "--root", str(root), "pull", "-q", ref],
                   check=True, capture_output=True, timeout=300)


@contextmanager
def boxed(pybox: Callable, root: Path, ref: str) -> Iterator[Callable]:
    """A ``box(*options, "--", *command, rm=True, check=True)`` that runs ``pybox run`` on ``ref``;
    afterwards no mount under the store, no new cgroup and no new container record may remain."""
    records = set(os.listdir(root / "containers"))
    cgroups = set(container_cgroups())

    def run(*args: str, rm: bool = True, check: bool = True, **kw):
        split = args.index("--") if "--" in args else len(args)
        options, command = args[:split], args[split + 1 :]
        return pybox("run", *(["--rm"] if rm else []), *options, ref, *command, root=root, check=check, **kw)

    yield run
    assert mounts_under(root) == []
    assert_no_new_cgroups(cgroups)
    assert set(os.listdir(root / "containers")) == records
