"""Containerfile parser: text -> instruction nodes, the same as BuildKit's.

This is step one of the builder (DESIGN rule 9): it only splits the file into
instructions, with their flags, arguments, heredocs and line numbers, and
knows nothing of what an instruction means. ``dump()`` writes the nodes in
BuildKit's AST dump format, which the conformance tests compare byte for byte.

The rules follow moby/buildkit's frontend/dockerfile/parser: parser
directives at the top, comments, continuation with the escape character
(comment and blank lines inside a continuation are skipped), a per-keyword
argument parser (JSON-or-string, name=value pairs, whitespace-split words,
ONBUILD, HEALTHCHECK), leading ``--flags`` and heredocs for RUN, COPY, ADD.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pybox.builder.goquote import quote

from pybox.errors import UsageError

__all__ = [
    "ContainerfileError",
    "Heredoc",
    "Node",
    "Result",
    "chomp_heredoc_content",
    "dump",
    "dump_node",
    "extract_builder_flags",
    "heredocs_from_line",
    "parse",
    "parse_heredoc",
    "parse_json",
    "parse_name_val",
    "parse_words",
    "split_command",
]


class ContainerfileError(UsageError):
    """A Containerfile that does not parse; ``str()`` is ``FILE:LINE: message``.

    The line helpers raise it without a location (``file`` empty, ``line`` 0);
    ``parse()`` re-raises it with the file name and line filled in.
    """

    def __init__(self, message: str, file: str = "", line: int = 0) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.where = f"{file}:{line}" if file else ""
        super().__init__(message)


@dataclass
class Heredoc:
    """One ``<<NAME`` document; ``content`` is the raw body, tabs included."""

    name: str
    content: str = ""
    # False when any part of the word is quoted: the body is not expanded.
    expand: bool = True
    # True for ``<<-``: leading tabs are ignored on the terminator line and
    # stripped from the body later (chomp_heredoc_content).
    chomp: bool = False
    file_descriptor: int = 0


@dataclass
class Node:
    """One instruction. ``value`` is the lower-case keyword."""

    value: str
    original: str = ""
    flags: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    # ONBUILD's nested instruction (its only argument); empty otherwise.
    children: list[Node] = field(default_factory=list)
    heredocs: list[Heredoc] = field(default_factory=list)
    start_line: int = 0
    end_line: int = 0
    # The arguments came from a JSON array (exec form).
    json: bool = False


@dataclass
class Result:
    nodes: list[Node]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def start_line(self) -> int:
        return self.nodes[0].start_line

    @property
    def end_line(self) -> int:
        return self.nodes[-1].end_line


# Go's unicode.IsSpace: what strings.TrimSpace and the word splitters skip.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# BuildKit's reWhitespace: the separator between keyword and arguments,
# between whitespace-delimited words and in the old ``ENV key value`` form.
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_GO_WHITESPACE = re.compile(f"[{_GO_SPACE}]+")
# Go's \s is ASCII-only, unlike Python's.
_DIRECTIVE = re.compile(
    r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$"
)
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})
# bufio.Scanner's limit in BuildKit; longer lines are an error, not truncated.
_MAX_LINE_BYTES = 65535
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


def _trim_space(text: str) -> str:
    return text.strip(_GO_SPACE)


# --- directives ------------------------------------------------------------


class _Directives:
    """Parser directives; only lines before anything else can set them."""

    def __init__(self) -> None:
        self.done = False
        self.values: dict[str, str] = {}
        self.escape = "\\"
        self.continuation = self._continuation_regex("\\")

    @staticmethod
    def _continuation_regex(escape: str) -> re.Pattern[str]:
        # An escape at the end of the line continues it, unless it is itself
        # escaped (``C:\\``, docker/for-win#5254). A line of just the escape
        # character continues too.
        token = re.escape(escape)
        return re.compile(rf"(^|[^{token}]){token}[ \t]*\Z")

    def parse_line(self, line: str) -> None:
        if self.done:
            return
        match = _DIRECTIVE.match(line)
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            # The first line that is not a directive ends the directives.
            self.done = True
            return
        name, value = match.group(1).lower(), match.group(2)
        if name in self.values:
            raise ContainerfileError(f"only one {name} parser directive can be used")
        if name == "escape":
            self._set_escape(value)
        self.values[name] = value

    def _set_escape(self, value: str) -> None:
        if value not in ("\\", "`"):
            raise ContainerfileError(
                f"invalid escape token '{value}' does not match ` or \\"
            )
        self.escape = value
        self.continuation = self._continuation_regex(value)

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Drop a trailing escape; the bool says whether the line is complete."""
        if self.continuation.search(line):
            return self.continuation.sub(r"\1", line), False
        return line, True


# --- reading lines ---------------------------------------------------------


class _Scanner:
    """The file's lines with their ``\\n`` kept; ``number`` is 1-based."""

    def __init__(self, text: str) -> None:
        pieces = text.split("\n")
        self._lines = [p + "\n" for p in pieces[:-1]]
        if pieces[-1]:
            self._lines.append(pieces[-1])
        self.number = 0

    def next(self) -> str | None:
        if self.number >= len(self._lines):
            return None
        line = self._lines[self.number]
        self.number += 1
        if _too_long(line.rstrip("\n")):
            raise ContainerfileError(
                f"dockerfile line greater than max allowed size of {_MAX_LINE_BYTES}"
            )
        return line


def _too_long(line: str) -> bool:
    # A character is at most 4 bytes: skip encoding the common short lines.
    return (
        len(line) * 4 > _MAX_LINE_BYTES
        and len(line.encode("utf-8", "surrogateescape")) > _MAX_LINE_BYTES
    )


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return _trim_newline(line).lstrip(_GO_SPACE).startswith("#")


def _process_line(directives: _Directives, raw: str, strip_left: bool) -> str:
    """A line without newline (and left white space): empty if a comment."""
    line = _trim_newline(raw)
    if strip_left:
        line = line.lstrip(_GO_SPACE)
    directives.parse_line(line)
    return "" if _is_comment(line) else line


# --- the parser ------------------------------------------------------------


def parse(text: str, *, filename: str = "Containerfile") -> Result:
    """Parse a whole Containerfile; errors name ``filename`` and the line."""
    scanner = _Scanner(text.removeprefix("\ufeff"))
    directives = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    try:
        for node, warning in _instructions(scanner, directives):
            nodes.append(node)
            if warning:
                warnings.append(f"{filename}:{node.end_line}: {warning}")
    except ContainerfileError as err:
        # Instruction errors carry their first line; others are at the scanner.
        line = err.line or max(scanner.number, 1)
        raise ContainerfileError(err.message, filename, line) from None
    if not nodes:
        raise ContainerfileError(
            "file with no instructions", filename, max(scanner.number, 1)
        )
    return Result(nodes, directives.escape, dict(directives.values), warnings)


def _instructions(
    scanner: _Scanner, directives: _Directives
) -> Iterator[tuple[Node, str]]:
    """Yield each instruction with its warning ('' if none)."""
    while (raw := scanner.next()) is not None:
        start = scanner.number
        line, complete = directives.trim_continuation(
            _process_line(directives, raw, True)
        )
        if complete and not line:
            continue
        line, had_empty = _continue_line(scanner, directives, line, complete)
        try:
            node = _node_from_line(line, directives)
        except ContainerfileError as err:
            # Errors in the instruction point at its first line.
            raise ContainerfileError(err.message, line=start) from None
        if _can_contain_heredoc(node) and "<<" in line:
            node.heredocs = [
                _read_heredoc(scanner, doc, start) for doc in heredocs_from_line(line)
            ]
        node.start_line, node.end_line = start, scanner.number
        for child in node.children:
            child.start_line, child.end_line = start, scanner.number
        warning = (
            f"Empty continuation line found in: {line}"
            " (empty continuation lines will become errors in a future release)"
            if had_empty
            else ""
        )
        yield node, warning


def _continue_line(
    scanner: _Scanner, directives: _Directives, line: str, complete: bool
) -> tuple[str, bool]:
    """Join continuation lines; also say whether an empty one was skipped."""
    had_empty = False
    while not complete and (raw := scanner.next()) is not None:
        text = _process_line(directives, raw, False)
        if _is_comment(raw):
            continue
        if not text.lstrip(_GO_SPACE):
            # BuildKit warns: these will become errors in a future release.
            had_empty = True
            continue
        text, complete = directives.trim_continuation(text)
        line += text
    return line, had_empty


def _read_heredoc(scanner: _Scanner, doc: Heredoc, start: int) -> Heredoc:
    while (raw := scanner.next()) is not None:
        candidate = _trim_newline(raw)
        if doc.chomp:
            candidate = candidate.lstrip("\t")
        if candidate == doc.name:
            return doc
        doc.content += raw
    raise ContainerfileError("unterminated heredoc", line=start)


def _can_contain_heredoc(node: Node) -> bool:
    # ONBUILD RUN <<EOF takes heredocs too: look at the nested instruction.
    inner = node.children[0] if node.value == "onbuild" and node.children else node
    return inner.value in _HEREDOC_KEYWORDS and not inner.json


def _node_from_line(line: str, directives: _Directives) -> Node:
    keyword, flags, rest = split_command(line)
    value = keyword.lower()
    node = Node(value=value, original=line, flags=flags)
    _DISPATCH.get(value, _parse_ignore)(node, rest, directives)
    return node


def split_command(line: str) -> tuple[str, list[str], str]:
    """Split a line into keyword, leading ``--flags`` and the rest."""
    parts = _WHITESPACE.split(_trim_space(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = extract_builder_flags(parts[1])
    return parts[0], flags, _trim_space(rest)


def extract_builder_flags(line: str) -> tuple[str, list[str]]:
    """Take the leading ``--flag`` words off ``line``: (rest, flags).

    Quotes inside a flag group and are removed, ``\\`` escapes one character,
    and a lone ``--`` ends the flags without being one.
    """
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos] in _GO_SPACE:
            pos += 1
        if not line.startswith("--", pos):
            return line[pos:], flags
        word, quoted, pos = _flag_word(line, pos)
        if word == "--":
            return line[pos:], flags
        if word or quoted:
            flags.append(word)
        if pos >= len(line):
            return "", flags


def _flag_word(line: str, pos: int) -> tuple[str, bool, int]:
    """Read one flag word from ``pos``: (word, had quotes, position after)."""
    chars: list[str] = []
    quote_char = ""
    quoted = False
    while pos < len(line):
        ch = line[pos]
        if not quote_char and ch in _GO_SPACE:
            break
        pos += 1
        if ch == quote_char:
            quote_char = ""
            continue
        if not quote_char and ch in ("'", '"'):
            quote_char, quoted = ch, True
            continue
        if ch == "\\":
            if pos == len(line):
                # A trailing backslash is dropped (and ends any quote).
                break
            ch = line[pos]
            pos += 1
        chars.append(ch)
    return "".join(chars), quoted, pos


# --- per-keyword argument parsers ------------------------------------------


def _parse_ignore(node: Node, rest: str, directives: _Directives) -> None:
    # Unknown keywords are kept, with one empty argument, as BuildKit does;
    # the next step reports them.
    node.args = [""]


def _parse_string(node: Node, rest: str, directives: _Directives) -> None:
    node.args = [rest] if rest else []


def _split_whitespace(rest: str) -> list[str]:
    return _WHITESPACE.split(rest) if rest else []


def _parse_whitespace_delimited(node: Node, rest: str, directives: _Directives) -> None:
    node.args = _split_whitespace(rest)


def _parse_maybe_json(node: Node, rest: str, directives: _Directives) -> None:
    if not rest:
        return
    array = parse_json(rest)
    node.json = array is not None
    node.args = array if array is not None else [rest]


def _parse_maybe_json_to_list(node: Node, rest: str, directives: _Directives) -> None:
    array = parse_json(rest)
    node.json = array is not None
    node.args = array if array is not None else _split_whitespace(rest)


def _parse_name_or_name_val(node: Node, rest: str, directives: _Directives) -> None:
    node.args = parse_words(rest, directives.escape)


def _parse_env(node: Node, rest: str, directives: _Directives) -> None:
    node.args = parse_name_val(rest, "ENV", directives.escape)


def _parse_label(node: Node, rest: str, directives: _Directives) -> None:
    node.args = parse_name_val(rest, "LABEL", directives.escape)


def _parse_sub_command(node: Node, rest: str, directives: _Directives) -> None:
    if rest:
        node.children = [_node_from_line(rest, directives)]


def _parse_health_config(node: Node, rest: str, directives: _Directives) -> None:
    """``HEALTHCHECK [flags] TYPE cmd...``: TYPE, then CMD's JSON-or-string."""
    parts = _GO_WHITESPACE.split(rest, maxsplit=1)
    if not parts[0]:
        return
    command = Node(value="")
    _parse_maybe_json(command, parts[1] if len(parts) > 1 else "", directives)
    node.args = [parts[0], *command.args]
    node.json = command.json


_Dispatcher = Callable[[Node, str, _Directives], None]
_DISPATCH: dict[str, _Dispatcher] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_whitespace_delimited,
    "from": _parse_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


def parse_json(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None if ``rest`` is not one.

    An array holding anything but strings is an error, not shell form.
    """
    rest = rest.lstrip(_GO_SPACE)
    if not rest.startswith("["):
        return None
    try:
        # Go's decoder has no NaN/Infinity: those make the text "not JSON".
        array = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(array, list):
        return None
    if not all(isinstance(item, str) for item in array):
        raise ContainerfileError(_NOT_STRINGS)
    return [_replace_surrogates(item) for item in array]


def _reject_constant(name: str) -> None:
    raise ValueError(name)


def _replace_surrogates(text: str) -> str:
    # Go's decoder turns bad UTF-8 and lone \uD800-style escapes into U+FFFD.
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def parse_words(rest: str, escape: str = "\\") -> list[str]:
    """Split on white space; quotes group words and are kept, as are escapes."""
    words: list[str] = []
    word: list[str] = []
    started = False  # a quote makes even an empty word count
    quote_char = ""
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        pos += 1
        if not quote_char and ch in _GO_SPACE:
            if word or started:
                words.append("".join(word))
            word, started = [], False
            continue
        if quote_char and ch == quote_char:
            quote_char = ""
        elif not quote_char and ch in ("'", '"'):
            quote_char, started = ch, True
        elif ch == escape and quote_char != "'":
            if pos == len(rest):
                # A trailing escape is dropped (and closes an open quote).
                break
            word.append(ch)
            ch = rest[pos]
            pos += 1
        word.append(ch)
    if word or started:
        words.append("".join(word))
    return words


def parse_name_val(rest: str, key: str, escape: str = "\\") -> list[str]:
    """ENV/LABEL arguments as (name, value, separator) triples, flattened.

    ``KEY name value`` (no ``=`` in the first word) is the old form: one
    pair with separator ``""``; otherwise every word is ``name=value``.
    Values keep their quotes and escapes.
    """
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ContainerfileError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""]
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise ContainerfileError(
                f"Syntax error - can't find = in {quote(word)}. Must be of the form: name=value"
            )
        name, value = word.split("=", 1)
        args += [name, value, "="]
    return args


# --- heredocs --------------------------------------------------------------


class _LexError(Exception):
    pass


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word such as ``<<-"EOF"`` opens, or None if not one."""
    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    try:
        plain = _shell_words(rest, raw_quotes=False, raw_escapes=False)
        if len(plain) != 1:
            return None
        raw = _shell_words(rest, raw_quotes=True, raw_escapes=False)
    except _LexError as err:
        raise ContainerfileError(f"failed to process {quote(rest)}: {err}") from None
    # Quotes that vanish when unquoting mean part of the word was quoted.
    expand = _count_quotes(plain[0]) == _count_quotes(raw[0])
    return Heredoc(
        name=plain[0],
        expand=expand,
        chomp=match.group(2) == "-",
        file_descriptor=int(match.group(1) or 0),
    )


def _count_quotes(text: str) -> int:
    return text.count("'") + text.count('"')


def heredocs_from_line(line: str) -> list[Heredoc]:
    """The heredocs an instruction line opens, in order."""
    try:
        words = _shell_words(line, raw_quotes=True, raw_escapes=True)
    except _LexError:
        # BuildKit ignores lexing errors here: such a line opens no heredoc.
        return []
    docs: list[Heredoc] = []
    pos = 0
    while pos < len(words):
        word = words[pos]
        if word == "<<" and pos + 1 < len(words):
            # ``<<  EOF``: the lexer splits it, BuildKit still sees a heredoc.
            pos += 1
            word = "<< " + words[pos]
        doc = parse_heredoc(word)
        if doc:
            docs.append(doc)
        pos += 1
    return docs


def chomp_heredoc_content(content: str) -> str:
    """Strip leading tabs from every line (the ``<<-`` rule)."""
    return _LEADING_TABS.sub("", content)


def _shell_words(text: str, *, raw_quotes: bool, raw_escapes: bool) -> list[str]:
    """Split like BuildKit's shell lexer with an empty environment.

    Variables are left as written (the lexer skips unset ones). With
    ``raw_quotes`` the quote characters stay in the words, with
    ``raw_escapes`` the backslashes do.
    """
    words: list[str] = []
    word: list[str] = []
    started = False
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch in _GO_SPACE:
            if started:
                words.append("".join(word))
            word, started = [], False
            pos += 1
            continue
        started = True
        if ch == "\\":
            if pos + 1 < len(text):
                word.append(text[pos : pos + 2] if raw_escapes else text[pos + 1])
            pos += 2
        elif ch == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                raise _LexError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            word.append(text[pos : end + 1] if raw_quotes else text[pos + 1 : end])
            pos = end + 1
        elif ch == '"':
            body, pos = _double_quoted(text, pos + 1, raw_escapes)
            word.append(f'"{body}"' if raw_quotes else body)
        else:
            word.append(ch)
            pos += 1
    if started:
        words.append("".join(word))
    return words


def _double_quoted(text: str, pos: int, raw_escapes: bool) -> tuple[str, int]:
    """The body of a double-quoted string starting at ``pos``, and the end."""
    body: list[str] = []
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch == '"':
            return "".join(body), pos
        # Only \" \$ \\ are escapes inside double quotes.
        if ch == "\\" and pos < len(text) and text[pos] in '"$\\':
            if raw_escapes:
                body.append(ch)
            ch = text[pos]
            pos += 1
        body.append(ch)
    raise _LexError(
        "unexpected end of statement while looking for matching double-quote"
    )


# --- dump ------------------------------------------------------------------


def dump(result: Result) -> str:
    """The nodes in BuildKit's AST dump format, one line each, no final newline."""
    return "\n".join(dump_node(node) for node in result.nodes)


def dump_node(node: Node) -> str:
    """``(keyword ["--flag"] "arg" ...)``, with ONBUILD's instruction nested."""
    parts = [node.value]
    if node.flags:
        parts.append("[" + " ".join(quote(flag) for flag in node.flags) + "]")
    parts += [quote(arg) for arg in node.args]
    parts += [dump_node(child) for child in node.children]
    return "(" + " ".join(parts) + ")"
