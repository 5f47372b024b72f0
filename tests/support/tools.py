"""Running the independent tools (umoci, skopeo, docker-registry) the tests trust."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["PROXY_VARIABLES", "run", "tool_env"]

PROXY_VARIABLES = (
    "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
    "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY",
)
# Variables that would point a tool at the developer's own credentials,
# registries or store instead of the test's.
_HOST_STATE_VARIABLES = ("PYBOX_ROOT", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE")


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a tool: the current one without proxies or host state.

    docker-registry also reads any REGISTRY_* variable as a config override,
    so those go too.
    """
    drop = set(PROXY_VARIABLES) | set(_HOST_STATE_VARIABLES)
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith("REGISTRY_")}
    env.update(extra or {})
    return env


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 60,
    cwd: Path | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool and fail with its full output when it exits non-zero."""
    argv = [os.fspath(a) for a in args]
    proc = subprocess.run(
        argv, cwd=cwd, input=input, capture_output=True, timeout=timeout,
        env=tool_env(), check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{argv} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout.decode(errors='replace')}\n"
            f"stderr:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc
