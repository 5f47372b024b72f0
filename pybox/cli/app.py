"""The ``pybox`` command: global options, command groups, and how errors reach the user.

Every error pybox reports is one line, ``pybox: error: ...``, exit status
125 (Docker's convention for the tool's own failures); ``--debug`` adds the
traceback. Typer's pretty tracebacks are off: they print local variables,
which may hold tokens and passwords.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from pybox.errors import PyboxError

__all__ = ["app", "run", "state"]

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

app = typer.Typer(
    name="pybox",
    help="Pull, build and run OCI container images.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    root: Optional[str] = typer.Option(
        None, "--root", envvar="PYBOX_ROOT", help="Store directory (default /var/lib/pybox).", show_envvar=True
    ),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks."),
) -> None:
    from pybox.paths import store_root

    state.root = store_root(root)
    state.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="pybox: %(levelname)s: %(name)s: %(message)s",
    )
    # urllib3 logs full URLs with query strings at DEBUG; token requests carry scopes there, never secrets,
    # but keep it quiet unless asked.
    logging.getLogger("urllib3").setLevel(logging.INFO if debug else logging.WARNING)


def _register() -> None:
    from pybox.cli import auth, containers, images, system, volumes

    containers.register(app)
    images.register(app)
    volumes.register(app)
    auth.register(app)
    system.register(app)


def _fail(message: str, code: int = EXIT_PYBOX) -> int:
    if (state.debug or "--debug" in sys.argv) and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(f"pybox: error: {message}", file=sys.stderr)
    return code


_interrupted = False


def _interrupt(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def run(argv: list[str] | None = None) -> None:
    # SIGTERM stops pybox as Ctrl-C does: staged work is dropped, partial downloads kept.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    _register()
    try:
        result = app(args=argv, prog_name="pybox", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if _interrupted:
            # Typer turns KeyboardInterrupt into a plain 130 before it reaches us.
            code = _fail("interrupted", 130)
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        code = _fail("aborted", 130)
    except typer.TyperException as e:
        # Flag and argument errors from the parser: say which, and how to get help.
        format_message = getattr(e, "format_message", None)
        text = format_message() if format_message else str(e)
        code = _fail(f"{text} (see 'pybox --help')")
    except PyboxError as e:
        code = _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        code = _fail("interrupted", 130)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        code = _fail(f"{e.strerror or e}{where}")
    except Exception as e:  # a bug: still one line, the traceback with --debug
        code = _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
    sys.stdout.flush()
    sys.exit(code)
