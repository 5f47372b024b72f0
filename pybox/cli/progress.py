"""Pull progress: one tqdm bar per layer on a terminal, plain lines otherwise, nothing with ``-q``."""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["make_progress"]


class _Lines:
    """One line when a layer starts and one when it ends: readable in CI logs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def start(self, key: str, total: int | None) -> None:
        self._say(f"{key}: {'Downloading' if total is not None else 'Extracting'}")

    def advance(self, key: str, n: int) -> None:
        pass

    def finish(self, key: str, status: str) -> None:
        self._say(f"{key}: {status}")


class _Bars:
    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self, key: str, total: int | None) -> None:
        with self._lock:
            self._bars[key] = self._tqdm(
                total=total, desc=key, unit="B", unit_scale=True, unit_divisor=1000, leave=True,
                position=len(self._bars), dynamic_ncols=True,
            )

    def advance(self, key: str, n: int) -> None:
        bar = self._bars.get(key)
        if bar is not None:
            with self._lock:
                bar.update(n)

    def finish(self, key: str, status: str) -> None:
        with self._lock:
            bar = self._bars.get(key)
            if bar is None:
                self._tqdm.write(f"{key}: {status}")
                return
            bar.set_postfix_str(status, refresh=False)
            bar.close()


def make_progress(quiet: bool) -> Any:
    if quiet:
        from pybox.registry.progress import SilentProgress

        return SilentProgress()
    if sys.stdout.isatty():
        return _Bars()
    return _Lines()
