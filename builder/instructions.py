"""Typed Containerfile instructions: step two of the builder (DESIGN rule 9).

``from_node`` turns one parser node into a frozen dataclass, checking its
flags and argument count the way BuildKit's
``frontend/dockerfile/instructions/parse.go`` does (same messages, except
that flags are named with their dashes). ``parse_stages`` splits a parsed
file into the global ARGs and the stages that start at each FROM.

Nothing here expands variables by itself. The instructions BuildKit
expands at build time (ADD, ARG, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR) have ``expand(fn)``, which returns a
copy with every word, flag values included, passed through ``fn``; RUN,
CMD, ENTRYPOINT, SHELL and HEALTHCHECK keep their text for the shell that
runs it, and ONBUILD keeps its trigger until an image built on it runs it.
``expander()`` makes such an ``fn`` from shell.py's lexer and collects the
names it used, so that a cache key holds only the ARGs a step depends on.
Heredoc bodies are not words: the executor expands them (when their
delimiter was unquoted) with a lexer that keeps quotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol, Self, TypedDict, runtime_checkable

from pybox.builder.goquote import quote
from pybox.builder.parser import (
    ContainerfileError,
    Node,
    Result,
    chomp_heredoc_content,
    parse_heredoc,
)
from pybox.builder.shell import Lex

__all__ = [
    "Add",
    "Arg",
    "ArgDeclaration",
    "Cmd",
    "Copy",
    "Entrypoint",
    "Env",
    "Expandable",
    "Expose",
    "From",
    "Healthcheck",
    "InlineFile",
    "Instruction",
    "Label",
    "Maintainer",
    "Onbuild",
    "Run",
    "Shell",
    "Stage",
    "Stopsignal",
    "User",
    "Volume",
    "Workdir",
    "expander",
    "from_node",
    "parse_stages",
]

Expand = Callable[[str], str]


# --- data ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InlineFile:
    """A heredoc body, with the ``<<-`` tab stripping already applied.

    ``expand`` is False when the delimiter was quoted (``<<'EOF'``).
    """

    name: str
    content: str
    expand: bool


@dataclass(frozen=True, kw_only=True)
class _Instruction:
    """Where an instruction came from: its first line and its text."""

    line: int
    original: str


@dataclass(frozen=True, kw_only=True)
class From(_Instruction):
    image: str
    # Lower-cased, as BuildKit matches stage names case-insensitively.
    stage_name: str | None = None
    platform: str | None = None

    def expand(self, fn: Expand) -> Self:
        # The stage name is never expanded (BuildKit validates it as written).
        return replace(self, image=fn(self.image), platform=_maybe(fn, self.platform))


@dataclass(frozen=True, kw_only=True)
class Run(_Instruction):
    # A tuple for the exec (JSON) form, a string for the shell form.
    command: tuple[str, ...] | str
    heredocs: tuple[InlineFile, ...] = ()
    # Raw ``--mount`` and ``--network`` values: their syntax is the executor's.
    mounts: tuple[str, ...] = ()
    network: str | None = None


@dataclass(frozen=True, kw_only=True)
class Cmd(_Instruction):
    command: tuple[str, ...] | str


@dataclass(frozen=True, kw_only=True)
class Entrypoint(_Instruction):
    command: tuple[str, ...] | str


@dataclass(frozen=True, kw_only=True)
class Label(_Instruction):
    pairs: tuple[tuple[str, str], ...]

    def expand(self, fn: Expand) -> Self:
        return replace(self, pairs=_expand_pairs(fn, self.pairs))


@dataclass(frozen=True, kw_only=True)
class Expose(_Instruction):
    ports: tuple[str, ...]

    def expand(self, fn: Expand) -> Self:
        return replace(self, ports=tuple(map(fn, self.ports)))


@dataclass(frozen=True, kw_only=True)
class Env(_Instruction):
    # Values keep their quotes until expanded: the lexer removes them.
    pairs: tuple[tuple[str, str], ...]

    def expand(self, fn: Expand) -> Self:
        return replace(self, pairs=_expand_pairs(fn, self.pairs))


@dataclass(frozen=True, kw_only=True)
class _FileInstruction(_Instruction):
    """What ADD and COPY share: sources (paths and heredocs), a destination, ownership and mode."""

    sources: tuple[str, ...]
    dest: str
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    heredocs: tuple[InlineFile, ...] = ()

    def expand(self, fn: Expand) -> Self:
        return replace(
            self,
            sources=tuple(map(fn, self.sources)),
            dest=fn(self.dest),
            chown=_maybe(fn, self.chown),
            chmod=_maybe(fn, self.chmod),
        )


@dataclass(frozen=True, kw_only=True)
class Add(_FileInstruction):
    keep_git_dir: bool = False
    checksum: str | None = None

    def expand(self, fn: Expand) -> Self:
        return replace(super().expand(fn), checksum=_maybe(fn, self.checksum))


@dataclass(frozen=True, kw_only=True)
class Copy(_FileInstruction):
    # A stage name, a stage index or an image reference.
    from_: str | None = None

    def expand(self, fn: Expand) -> Self:
        return replace(super().expand(fn), from_=_maybe(fn, self.from_))


@dataclass(frozen=True, kw_only=True)
class Volume(_Instruction):
    paths: tuple[str, ...]

    def expand(self, fn: Expand) -> Self:
        return replace(self, paths=tuple(map(fn, self.paths)))


@dataclass(frozen=True, kw_only=True)
class User(_Instruction):
    user: str

    def expand(self, fn: Expand) -> Self:
        return replace(self, user=fn(self.user))


@dataclass(frozen=True, kw_only=True)
class Workdir(_Instruction):
    path: str

    def expand(self, fn: Expand) -> Self:
        return replace(self, path=fn(self.path))


@dataclass(frozen=True, kw_only=True)
class ArgDeclaration:
    """One ``name`` or ``name=default`` of an ARG line."""

    name: str
    default: str | None = None


@dataclass(frozen=True, kw_only=True)
class Arg(_Instruction):
    # ``ARG a b=1`` declares several; history and the cache see one line.
    args: tuple[ArgDeclaration, ...]

    def expand(self, fn: Expand) -> Self:
        # BuildKit expands ARG names and defaults too (ArgCommand.Expand),
        # so ``ARG B=$A`` takes A's value.
        return replace(
            self,
            args=tuple(
                ArgDeclaration(name=fn(a.name), default=_maybe(fn, a.default))
                for a in self.args
            ),
        )


@dataclass(frozen=True, kw_only=True)
class Onbuild(_Instruction):
    # The nested instruction as written, heredocs appended, as BuildKit
    # stores it in the image config's OnBuild list.
    trigger: str


@dataclass(frozen=True, kw_only=True)
class Stopsignal(_Instruction):
    signal: str

    def expand(self, fn: Expand) -> Self:
        return replace(self, signal=fn(self.signal))


@dataclass(frozen=True, kw_only=True)
class Healthcheck(_Instruction):
    """``test`` is None for ``HEALTHCHECK NONE``, else ("CMD", ...) or ("CMD-SHELL", cmd).

    Durations are nanoseconds and ``retries`` a count, as in the image
    config; 0 means "not set", so the runtime's default applies.
    """

    test: tuple[str, ...] | None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class Shell(_Instruction):
    command: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Maintainer(_Instruction):
    name: str


Instruction = (
    From | Run | Cmd | Entrypoint | Label | Expose | Env | Add | Copy | Volume
    | User | Workdir | Arg | Onbuild | Stopsignal | Healthcheck | Shell | Maintainer
)


@runtime_checkable
class Expandable(Protocol):
    """The instructions whose words are expanded before they are executed."""

    def expand(self, fn: Expand) -> Self: ...


@dataclass(frozen=True, kw_only=True)
class Stage:
    """The instructions from one FROM up to the next."""

    name: str | None
    index: int
    base: From
    instructions: tuple[Instruction, ...]


def _maybe(fn: Expand, value: str | None) -> str | None:
    return None if value is None else fn(value)


def _expand_pairs(
    fn: Expand, pairs: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    return tuple((fn(key), fn(value)) for key, value in pairs)


# --- expansion -------------------------------------------------------------


def expander(env: Mapping[str, str], escape: str = "\\") -> tuple[Expand, set[str]]:
    """A word expander over ``env``, and the set it fills with the names used.

    Only names that were set count as used: an unset one expands to nothing
    whatever its (absent) value, so it cannot change the result.
    """
    lex = Lex(escape=escape)
    used: set[str] = set()

    def expand_word(word: str) -> str:
        expanded = lex.process_word(word, env)
        used.update(expanded.used)
        return expanded.result

    return expand_word, used


# --- flags -----------------------------------------------------------------

_FlagKind = Literal["string", "bool", "strings"]


class _Flags:
    """Flag values as BuildKit's BFlags reads them; bools are "true"/"false"."""

    def __init__(self, raw: list[str], spec: Mapping[str, _FlagKind]) -> None:
        self._values: dict[str, list[str]] = {}
        for flag in raw:
            self._add(flag, spec)

    def _add(self, flag: str, spec: Mapping[str, _FlagKind]) -> None:
        # The parser only hands over words that start with "--".
        name, has_value, value = flag[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise ContainerfileError(f"unknown flag: --{name}")
        if name in self._values and kind != "strings":
            raise ContainerfileError(f"Duplicate flag specified: --{name}")
        if kind == "bool":
            value = _bool_flag(name, value if has_value else "true")
        elif not has_value:
            raise ContainerfileError(f"Missing a value on flag: --{name}")
        self._values.setdefault(name, []).append(value)

    def string(self, name: str) -> str | None:
        # An empty value means unset, as in BuildKit (``--chown=`` is a no-op).
        values = self._values.get(name)
        return (values[-1] or None) if values else None

    def boolean(self, name: str) -> bool:
        return self.string(name) == "true"

    def strings(self, name: str) -> tuple[str, ...]:
        return tuple(self._values.get(name, ()))


def _bool_flag(name: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ContainerfileError(
            f"expecting boolean value for flag --{name}, not: {value}"
        )
    return lowered


# --- argument helpers ------------------------------------------------------


class _Location(TypedDict):
    line: int
    original: str


def _location(node: Node) -> _Location:
    return {"line": node.start_line, "original": node.original}


def _one_argument(node: Node, keyword: str) -> str:
    if len(node.args) != 1:
        raise ContainerfileError(f"{keyword} requires exactly one argument")
    return node.args[0]


def _at_least_one(node: Node, keyword: str) -> list[str]:
    if not node.args:
        raise ContainerfileError(f"{keyword} requires at least one argument")
    return node.args


def _command(node: Node) -> tuple[str, ...] | str:
    # BuildKit's handleJSONArgs: the shell form is one string.
    return tuple(node.args) if node.json else " ".join(node.args)


def _pairs(node: Node, keyword: str) -> tuple[tuple[str, str], ...]:
    """ENV/LABEL pairs from the parser's (name, value, separator) triples."""
    args = _at_least_one(node, keyword)
    pairs = tuple(zip(args[0::3], args[1::3]))
    if any(not name for name, _ in pairs):
        raise ContainerfileError(f"{keyword} names can not be blank")
    return pairs


def _heredoc_files(node: Node) -> tuple[InlineFile, ...]:
    return tuple(
        InlineFile(
            name=doc.name,
            content=chomp_heredoc_content(doc.content) if doc.chomp else doc.content,
            expand=doc.expand,
        )
        for doc in node.heredocs
    )


def _sources_and_dest(
    node: Node, keyword: str
) -> tuple[tuple[str, ...], str, tuple[InlineFile, ...]]:
    """Paths, destination and heredoc sources of ADD/COPY (parseSourcesAndDest)."""
    if len(node.args) < 2:
        raise ContainerfileError(
            f"{keyword} requires at least two arguments, but only one was provided."
            " Destination could not be determined"
        )
    *sources, dest = node.args
    if parse_heredoc(dest):
        raise ContainerfileError(f"{keyword} cannot accept a heredoc as a destination")
    files = {f.name: f for f in _heredoc_files(node)}
    paths: list[str] = []
    inline: list[InlineFile] = []
    for source in sources:
        doc = parse_heredoc(source)
        if doc is None:
            paths.append(source)
        else:
            inline.append(files[doc.name])
    return tuple(paths), dest, tuple(inline)


# --- one converter per keyword ---------------------------------------------

# BuildKit's validStageName.
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


def _from(node: Node, flags: _Flags) -> From:
    args = node.args
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise ContainerfileError(
                f"invalid name for build stage: {quote(args[2])},"
                " name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise ContainerfileError("FROM requires either one or three arguments")
    return From(
        **_location(node), image=args[0], stage_name=name, platform=flags.string("platform")
    )


def _run(node: Node, flags: _Flags) -> Run:
    return Run(
        **_location(node),
        command=_command(node),
        heredocs=_heredoc_files(node),
        mounts=flags.strings("mount"),
        network=flags.string("network"),
    )


def _cmd(node: Node, flags: _Flags) -> Cmd:
    return Cmd(**_location(node), command=_command(node))


def _entrypoint(node: Node, flags: _Flags) -> Entrypoint:
    return Entrypoint(**_location(node), command=_command(node))


def _label(node: Node, flags: _Flags) -> Label:
    return Label(**_location(node), pairs=_pairs(node, "LABEL"))


def _env(node: Node, flags: _Flags) -> Env:
    return Env(**_location(node), pairs=_pairs(node, "ENV"))


def _expose(node: Node, flags: _Flags) -> Expose:
    return Expose(**_location(node), ports=tuple(_at_least_one(node, "EXPOSE")))


def _add(node: Node, flags: _Flags) -> Add:
    sources, dest, heredocs = _sources_and_dest(node, "ADD")
    return Add(
        **_location(node),
        sources=sources,
        dest=dest,
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=flags.boolean("link"),
        keep_git_dir=flags.boolean("keep-git-dir"),
        checksum=flags.string("checksum"),
        heredocs=heredocs,
    )


def _copy(node: Node, flags: _Flags) -> Copy:
    sources, dest, heredocs = _sources_and_dest(node, "COPY")
    return Copy(
        **_location(node),
        sources=sources,
        dest=dest,
        from_=flags.string("from"),
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=flags.boolean("link"),
        heredocs=heredocs,
    )


def _volume(node: Node, flags: _Flags) -> Volume:
    paths = tuple(p.strip() for p in _at_least_one(node, "VOLUME"))
    if "" in paths:
        raise ContainerfileError("VOLUME specified can not be an empty string")
    return Volume(**_location(node), paths=paths)


def _user(node: Node, flags: _Flags) -> User:
    return User(**_location(node), user=_one_argument(node, "USER"))


def _workdir(node: Node, flags: _Flags) -> Workdir:
    return Workdir(**_location(node), path=_one_argument(node, "WORKDIR"))


def _arg_declaration(word: str) -> ArgDeclaration:
    name, has_default, default = word.partition("=")
    if has_default and not name:
        raise ContainerfileError("ARG names can not be blank")
    return ArgDeclaration(name=name, default=default if has_default else None)


def _arg(node: Node, flags: _Flags) -> Arg:
    words = _at_least_one(node, "ARG")
    return Arg(**_location(node), args=tuple(map(_arg_declaration, words)))


# Go's \\s is ASCII-only, unlike Python's.
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)


def _onbuild(node: Node, flags: _Flags) -> Onbuild:
    if not node.children:
        raise ContainerfileError("ONBUILD requires at least one argument")
    keyword = node.children[0].value.upper()
    if keyword == "ONBUILD":
        raise ContainerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if keyword in ("FROM", "MAINTAINER"):
        raise ContainerfileError(f"{keyword} isn't allowed as an ONBUILD trigger")
    # The trigger is parsed, checked and expanded only when it fires, in the
    # build that uses this image, as BuildKit does.
    trigger = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for doc in node.heredocs:
        trigger += "\n" + doc.content + doc.name
    return Onbuild(**_location(node), trigger=trigger)


def _stopsignal(node: Node, flags: _Flags) -> Stopsignal:
    return Stopsignal(**_location(node), signal=_one_argument(node, "STOPSIGNAL"))


def _shell(node: Node, flags: _Flags) -> Shell:
    if not node.args:
        raise ContainerfileError("SHELL requires at least one argument")
    if not node.json:
        raise ContainerfileError("SHELL requires the arguments to be in JSON form")
    return Shell(**_location(node), command=tuple(node.args))


def _maintainer(node: Node, flags: _Flags) -> Maintainer:
    return Maintainer(**_location(node), name=_one_argument(node, "MAINTAINER"))


def _healthcheck(node: Node, flags: _Flags) -> Healthcheck:
    kind, *args = _at_least_one(node, "HEALTHCHECK")
    kind = kind.upper()
    if kind == "NONE":
        if args:
            raise ContainerfileError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(**_location(node), test=None)
    if kind != "CMD":
        raise ContainerfileError(f"Unknown type {quote(kind)} in HEALTHCHECK (try CMD)")
    if not args:
        raise ContainerfileError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *args) if node.json else ("CMD-SHELL", " ".join(args))
    return Healthcheck(
        **_location(node),
        test=test,
        interval=_interval(flags, "interval"),
        timeout=_interval(flags, "timeout"),
        start_period=_interval(flags, "start-period"),
        start_interval=_interval(flags, "start-interval"),
        retries=_retries(flags.string("retries")),
    )


# --- HEALTHCHECK values, read as Go reads them -----------------------------

# Docker's container.MinimumDuration.
_MINIMUM_DURATION_NS = 1_000_000
_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_INT64_MAX = 2**63 - 1


def _interval(flags: _Flags, name: str) -> int:
    """parseOptInterval: unset or zero is 0, anything else at least 1ms."""
    value = flags.string(name)
    if value is None:
        return 0
    duration = _go_duration(value)
    if duration and duration < _MINIMUM_DURATION_NS:
        raise ContainerfileError(f'Interval "{name}" cannot be less than 1ms')
    return duration


def _go_duration(text: str) -> int:
    """Nanoseconds of a Go duration such as ``1m30s`` or ``1.5h`` (time.ParseDuration)."""
    invalid = ContainerfileError(f"time: invalid duration {quote(text)}")
    sign, rest = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        match = _DURATION_PART.match(rest)
        assert match is not None  # every group may be empty
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if not whole and not fraction:
            raise invalid
        if not unit:
            raise ContainerfileError(f"time: missing unit in duration {quote(text)}")
        if unit not in _UNITS_NS:
            raise ContainerfileError(f"time: unknown unit {quote(unit)} in duration {quote(text)}")
        scale = _UNITS_NS[unit]
        # Go truncates what is below a nanosecond.
        total += int(whole or 0) * scale + int(fraction or 0) * scale // 10 ** len(fraction)
        rest = rest[match.end():]
    if total > _INT64_MAX:
        raise invalid
    return sign * total


_INT = re.compile(r"[+-]?[0-9]+")


def _retries(value: str | None) -> int:
    """strconv.ParseInt(value, 10, 32), and not negative."""
    if value is None:
        return 0
    if not _INT.fullmatch(value):
        raise ContainerfileError(f"strconv.ParseInt: parsing {quote(value)}: invalid syntax")
    retries = int(value)
    if not -(2**31) <= retries < 2**31:
        raise ContainerfileError(f"strconv.ParseInt: parsing {quote(value)}: value out of range")
    if retries < 0:
        raise ContainerfileError(f"--retries cannot be negative ({retries})")
    return retries


# --- dispatch --------------------------------------------------------------

_Converter = Callable[[Node, _Flags], Instruction]
_NO_FLAGS: Mapping[str, _FlagKind] = {}
# keyword -> (the flags it takes, converter); flags as in BuildKit's parse.go.
_CONVERTERS: dict[str, tuple[Mapping[str, _FlagKind], _Converter]] = {
    "add": (
        {"chown": "string", "chmod": "string", "link": "bool",
         "keep-git-dir": "bool", "checksum": "string"},
        _add,
    ),
    "arg": (_NO_FLAGS, _arg),
    "cmd": (_NO_FLAGS, _cmd),
    "copy": (
        {"from": "string", "chown": "string", "chmod": "string", "link": "bool"},
        _copy,
    ),
    "entrypoint": (_NO_FLAGS, _entrypoint),
    "env": (_NO_FLAGS, _env),
    "expose": (_NO_FLAGS, _expose),
    "from": ({"platform": "string"}, _from),
    "healthcheck": (
        {"interval": "string", "timeout": "string", "start-period": "string",
         "start-interval": "string", "retries": "string"},
        _healthcheck,
    ),
    "label": (_NO_FLAGS, _label),
    "maintainer": (_NO_FLAGS, _maintainer),
    "onbuild": (_NO_FLAGS, _onbuild),
    "run": ({"mount": "strings", "network": "string"}, _run),
    "shell": (_NO_FLAGS, _shell),
    "stopsignal": (_NO_FLAGS, _stopsignal),
    "user": (_NO_FLAGS, _user),
    "volume": (_NO_FLAGS, _volume),
    "workdir": (_NO_FLAGS, _workdir),
}


def from_node(node: Node, *, filename: str) -> Instruction:
    """The typed instruction of one parser node; errors are ``FILE:LINE: message``."""
    try:
        entry = _CONVERTERS.get(node.value)
        if entry is None:
            # Name it as written; the parser lower-cased node.value.
            raise ContainerfileError(f"unknown instruction: {node.original.split()[0]}")
        spec, convert = entry
        return convert(node, _Flags(node.flags, spec))
    except ContainerfileError as err:
        raise ContainerfileError(err.message, filename, node.start_line) from None


def parse_stages(result: Result, *, filename: str) -> tuple[list[Arg], list[Stage]]:
    """The ARGs before the first FROM, and the stages in file order."""
    global_args: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for node in result.nodes:
        instruction = from_node(node, filename=filename)
        if isinstance(instruction, From):
            _check_stage_name(instruction, stages, filename)
            stages.append((instruction, []))
        elif stages:
            stages[-1][1].append(instruction)
        elif isinstance(instruction, Arg):
            global_args.append(instruction)
        else:
            raise ContainerfileError(
                "no build stage in current context", filename, instruction.line
            )
    if not stages:
        raise ContainerfileError(
            "dockerfile contains no stages to build", filename, result.end_line
        )
    return global_args, [
        Stage(name=base.stage_name, index=index, base=base, instructions=tuple(body))
        for index, (base, body) in enumerate(stages)
    ]


def _check_stage_name(
    base: From, stages: list[tuple[From, list[Instruction]]], filename: str
) -> None:
    # COPY --from and --target could not tell two stages of one name apart.
    if base.stage_name and any(s.stage_name == base.stage_name for s, _ in stages):
        raise ContainerfileError(
            f"duplicate stage name {quote(base.stage_name)}", filename, base.line
        )
