"""Reading the mount table, to catch mounts a test left behind."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["mounts_under"]

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (proc(5)).
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(root: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or below `root`, as the kernel lists them."""
    prefix = str(root.resolve())
    found = []
    for line in mountinfo.read_text().splitlines():
        # Fields: id, parent id, major:minor, root, mount point, ...
        mount_point = _unescape(line.split(" ")[4])
        if mount_point == prefix or mount_point.startswith(prefix + "/"):
            found.append(mount_point)
    return found
