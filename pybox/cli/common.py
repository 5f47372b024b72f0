"""What every command shares, without typer: the store root, logging, and how errors reach the user.

Every error pybox reports is one line, ``pybox: error: ...``, exit status
125 (Docker's convention for the tool's own failures); ``--debug`` adds the
traceback. Kept free of typer so ``pybox run`` can start without it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pybox.errors import PyboxError

__all__ = ["state", "configure", "guarded", "fail", "install_signal_handlers", "interrupted", "main_without_typer",
           "EXIT_PYBOX"]

EXIT_PYBOX = 125


@dataclass
class _State:
    root: Path | None = None
    debug: bool = False

    def store(self):  # noqa: ANN201 - lazily imported type
        from pybox.store import Store

        assert self.root is not None
        return Store.open(self.root)


state = _State()
_interrupted = False


def configure(root: str | None, debug: bool) -> None:
    from pybox.paths import store_root

    state.root = store_root(root)
    state.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="pybox: %(levelname)s: %(name)s: %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.INFO if debug else logging.WARNING)


def fail(message: str, code: int = EXIT_PYBOX) -> int:
    if (state.debug or "--debug" in sys.argv) and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(f"pybox: error: {message}", file=sys.stderr)
    return code


def interrupted() -> bool:
    return _interrupted


def _interrupt(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    # SIGTERM stops pybox as Ctrl-C does: staged work is dropped, partial downloads kept.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def guarded(body: Callable[[], int]) -> int:
    """Run ``body``; every exception becomes one line and an exit status."""
    try:
        return body()
    except PyboxError as e:
        return fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        return fail(f"{e.strerror or e}{where}")
    except Exception as e:  # a bug: still one line, the traceback with --debug
        return fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")


def main_without_typer(command: Callable[[list[str]], int], args: list[str], root: str | None,
                       debug: bool) -> NoReturn:
    """Run a command that has its own argparse parser (run, build) and exit with its status."""
    install_signal_handlers()
    configure(root, debug)
    code = guarded(lambda: command(args))
    sys.stdout.flush()
    sys.stderr.flush()
    # Nothing is left to clean up: skip the interpreter's teardown of every
    # module (tens of milliseconds, more than some containers live).
    os._exit(code)
