"""Skipping that turns into failure under CI.

DESIGN.md section 7: a test that lacks root or a tool skips on a developer
laptop, but `.ci/run` sets PYBOX_TEST_STRICT=1 and then the same skip is a
failure, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require", "require_root", "require_tool", "strict"]


def strict() -> bool:
    return os.environ.get("PYBOX_TEST_STRICT") == "1"


def require(condition: bool, reason: str, *, module: bool = False) -> None:
    """Skip the current test (the whole module with ``module``; fail in strict mode) unless `condition` holds."""
    if condition:
        return
    if strict():
        pytest.fail(f"strict mode: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")


def require_tool(name: str) -> None:
    require(shutil.which(name) is not None, f"needs {name} on PATH")
