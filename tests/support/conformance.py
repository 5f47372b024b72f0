"""Other projects' published test data in ../shared/conformance, and what a test does without it.

CI has the data beside the project; on a laptop without it the tests
skip, and under PYBOX_TEST_STRICT=1 (CI) that skip is a failure, as for a
missing tool (support.skip).
"""

from __future__ import annotations

from pathlib import Path

from support.skip import require

__all__ = ["CONFORMANCE", "require_data"]

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


def require_data(path: Path) -> None:
    """Skip (fail under PYBOX_TEST_STRICT=1) unless the conformance file or folder ``path`` exists."""
    require(path.exists(), f"needs the conformance data {path.relative_to(CONFORMANCE.parent)}")
