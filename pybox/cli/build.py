"""``pybox build``, parsed with argparse: a cached rebuild should cost little more than hashing the context.

Progress goes to stderr, one line per step as BuildKit's plain mode
prints it (``#3 [stage-0 2/4] RUN make``, then ``#3 CACHED`` or
``#3 DONE 1.2s``); RUN's own output is streamed between. The image ID is
the last line on stdout; with ``-q`` it is all that is printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pybox.cli.argparsing import ArgumentError, Parser
from pybox.cli.common import fail, state

__all__ = ["build_command", "parser"]

_USAGE = "pybox build [OPTIONS] CONTEXT"


def parser() -> Parser:
    p = Parser(prog="pybox build", usage=_USAGE, add_help=False,
               description="Build an image from a Containerfile (or Dockerfile). RUN steps use the host's "
                           "network: pybox has no bridge networking yet.")
    add = p.add_argument
    add("-h", "--help", action="help", help="Show this message and exit.")
    add("-f", "--file", help="The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile).")
    add("-t", "--tag", action="append", default=[], help="Name the image; may be given more than once.")
    add("--build-arg", action="append", default=[], help="NAME=VALUE for an ARG, or NAME to take the host's value.")
    add("--target", help="Build this stage (by name) and the stages it needs, not the last one.")
    add("--no-cache", action="store_true", help="Run every step again (the results still fill the cache).")
    add("--pull", action="store_true", help="Pull the FROM images even when the store has them.")
    add("--platform", help="os/arch[/variant] of the image to build (FROM images are pulled for it).")
    add("-q", "--quiet", action="store_true", help="Print only the image ID; hide RUN output.")
    add("context", metavar="CONTEXT", help="The build context directory.")
    return p


class _Progress:
    """BuildKit's plain progress: numbered steps on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.output = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if quiet else None
        self.number = 0

    def step(self, label: str, text: str) -> None:
        self.number += 1
        self._say(f"#{self.number} [{label}] {text}" if label else f"#{self.number} {text}")

    def finish(self, *, cached: bool, seconds: float) -> None:
        self._say(f"#{self.number} CACHED" if cached else f"#{self.number} DONE {seconds:.1f}s")

    def warn(self, message: str) -> None:
        self._say(f"WARNING: {message}")

    def named(self, name: str) -> None:
        self._say(f"#{self.number} naming to {name} done")

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stderr, flush=True)


def build_command(args: list[str]) -> int:
    try:
        ns = parser().parse_args(args)
    except ArgumentError as e:
        return fail(f"{e} (see 'pybox build --help')")
    from pybox.builder.args import parse_build_args
    from pybox.builder.context import find_containerfile
    from pybox.builder.executor import BuildOptions, build
    from pybox.errors import UsageError

    context = Path(ns.context).absolute()
    if not context.is_dir():
        raise UsageError(f"build context {ns.context} is not a directory")
    options = BuildOptions(
        context=context, containerfile=find_containerfile(context, ns.file), tags=tuple(ns.tag),
        build_args=parse_build_args(ns.build_arg), target=ns.target, no_cache=ns.no_cache, pull=ns.pull,
        platform=ns.platform,
    )
    progress = _Progress(ns.quiet)
    result = build(state.store(), options, progress)
    for name in result.names:
        progress.named(name)
    print(result.image_id)
    return 0

