"""Human-readable sizes, ages and tables, as Docker prints them."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime

__all__ = ["human_size", "human_age", "table", "truncate"]

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float) -> str:
    """Decimal units with three significant digits (Docker's go-units HumanSize)."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_UNITS[i]}"


def _parse_time(text: str) -> float | None:
    if not text:
        return None
    # fromisoformat takes at most microseconds; Go writes nanoseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def human_age(created: str, now: float | None = None) -> str:
    """``3 days ago`` (Docker's go-units HumanDuration)."""
    ts = _parse_time(created)
    if ts is None:
        return "N/A"
    seconds = max(0, int((now or time.time()) - ts))
    if seconds < 1:
        return "Less than a second ago"
    if seconds == 1:
        return "1 second ago"
    if seconds < 60:
        return f"{seconds} seconds ago"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute ago"
    if minutes < 60:
        return f"{minutes} minutes ago"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour ago"
    if hours < 48:
        return f"{hours} hours ago"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days ago"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks ago"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months ago"
    return f"{hours // 24 // 365} years ago"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell and separated by three spaces (as docker's tabwriter)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = []
    for row in (headers, *rows):
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)
