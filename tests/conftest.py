"""Fixtures shared by all of pybox's tests.

Helpers live in tests/support; this directory goes on sys.path so tests and
helpers import them as `support.*` (pytest runs with --import-mode=importlib,
which does not add test directories to sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.images import BUSYBOX, build_and_push  # noqa: E402
from support.containers import boxed, pull_into  # noqa: E402
from support.mounts import mounts_under  # noqa: E402
from support.registry import Registry  # noqa: E402
from support.skip import require, require_root, require_tool  # noqa: E402
from support.tools import PROXY_VARIABLES  # noqa: E402

PYBOX_TIMEOUT = 300

PyboxRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's store, credentials or proxies.

    HOME is an empty directory of the test's own, so ~/.docker/config.json
    and ~/.config/... are whatever the test puts there.
    """
    for name in ("PYBOX_ROOT", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
                 *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, nothing may stay mounted under pytest's temp dirs.

    A leftover mount means some pybox path forgot to unmount (or mounted in
    the host's namespace instead of the container's, DESIGN.md section 4).
    This fixture is set up first, so its check runs after every other
    fixture's teardown.
    """
    base = tmp_path_factory.getbasetemp()
    yield
    leftover = mounts_under(base)
    assert not leftover, f"mounts left under {base}:\n" + "\n".join(leftover)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    """A fresh, not yet created, pybox store root."""
    return tmp_path / "store"


@pytest.fixture
def pybox(store_root: Path) -> PyboxRunner:
    """Run the pybox CLI in a child process: `pybox("pull", ref)`.

    `env` adds to (overrides) the test's environment, which
    _clean_environment has already cleared of host state. With check=True a
    non-zero exit fails with the command's full output.
    """

    def run(
        *args: str,
        root: Path = store_root,
        input: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-I", "-m", "pybox", "--root", str(root), *args]
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True,
            timeout=PYBOX_TIMEOUT, env={**os.environ, **(env or {})}, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pybox {list(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A started docker-registry seeded with the images of support.images.

    `registry.images` maps keys (gzip, schema2, zstd, features, noeoa,
    multiarch, multiarch-amd64, multiarch-arm64, evil-<name>) to SeededImage.
    """
    require_root()
    for tool in ("docker-registry", "umoci", "skopeo"):
        require_tool(tool)
    require(BUSYBOX.is_file(), f"needs busybox-static at {BUSYBOX}")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    try:
        reg.images.update(build_and_push(reg.host, tmp_path_factory.mktemp("images")))
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def busybox_store(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(store root, image ref): a store with the busybox image pulled, shared by one module's tests."""
    require_root()
    root = tmp_path_factory.mktemp("busybox") / "store"
    ref = registry.images["gzip"].ref
    pull_into(root, ref)
    yield root, ref


@pytest.fixture
def box(busybox_store, pybox: PyboxRunner) -> Iterator[Callable[..., "subprocess.CompletedProcess[str]"]]:
    """`box("-u", "0", "--", "id")` runs `pybox run --rm IMAGE id` in busybox_store;
    afterwards no mount, cgroup or container record of the test may remain."""
    root, ref = busybox_store
    with boxed(pybox, root, ref) as run:
        yield run
