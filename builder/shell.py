"""Word expansion for Containerfiles: BuildKit's shell lexer, rewritten from its behaviour.

The rules follow BuildKit's ``frontend/dockerfile/shell/lex.go`` as its test
tables (``envVarTest``, ``wordsTest``, ``lex_test.go``) pin them down:

* ``'...'`` is literal; ``"..."`` expands ``$`` and lets the escape character
  quote only ``"``, ``$`` and itself; outside quotes the escape character
  quotes anything, and a trailing one is dropped.
* ``$name``, ``${name}`` and the modifiers ``-``, ``:-``, ``+``, ``:+``,
  ``?``, ``:?``, ``#``, ``##``, ``%``, ``%%``, ``/`` and ``//``. ``=`` and
  ``:=`` are errors: a Dockerfile word cannot assign.
* Positional (``$1``) and special (``$@ $* $# $? $- $$ $! $0``) parameters
  are names like any other, and never set unless the environment has them.

The lexer records every name it looks up, set or not, so that the builder
can key its cache on the build arguments a word actually used (DESIGN 8.9).
This module imports nothing of the builder on purpose.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pybox.errors import UsageError

__all__ = ["ExpansionError", "ExpansionResult", "Lex"]


class ExpansionError(UsageError):
    """A word does not expand: bad syntax, or a ``${v?msg}`` on an unset variable."""


@dataclass(frozen=True, kw_only=True)
class ExpansionResult:
    """One processed word.

    ``used`` holds the names that were referenced and set, ``unmatched`` the
    names referenced but unset (BuildKit's ``Matched`` and ``Unmatched``).
    ``words`` is ``result`` split as the shell would split it.
    """

    result: str
    words: tuple[str, ...]
    used: frozenset[str]
    unmatched: frozenset[str]


_MODIFIERS = frozenset("-+?#%")

# Special parameters of POSIX sh, section 2.5.2.
_SPECIAL_PARAMETERS = frozenset("@*#?-$!0")

# Go's unicode.IsSpace; Python's isspace() also counts the ASCII separators
# U+001C..U+001F, which Go (and BuildKit) do not split on.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")


def _is_space(ch: str) -> bool:
    return ch.isspace() and ch not in _NOT_GO_SPACE


def _is_digit(ch: str) -> bool:
    # Go's unicode.IsDigit is category Nd only; str.isdigit() also takes '²'.
    return unicodedata.category(ch) == "Nd"


class _Words:
    """Collects the split words next to the unsplit result.

    Expansion results and plain characters split on white space; quoted text
    and escaped characters never do.
    """

    def __init__(self) -> None:
        self._words: list[str] = []
        self._word = ""
        self._in_word = False

    def add_char(self, ch: str) -> None:
        if not _is_space(ch):
            self.add_raw(ch)
        elif self._in_word and self._word:
            self._words.append(self._word)
            self._word = ""
            self._in_word = False

    def add_split(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        # An empty quoted string ("") marks a word as started, but BuildKit
        # still drops it when nothing else joins it.
        self._word += text
        self._in_word = True

    def finish(self) -> list[str]:
        if self._word:
            self._words.append(self._word)
            self._word = ""
            self._in_word = False
        return self._words


class _Expander:
    """One pass over one word; holds the position and the names looked up."""

    def __init__(self, lex: Lex, word: str, env: Mapping[str, str]) -> None:
        self._lex = lex
        self._text = word
        self._pos = 0
        self._env = env
        self._raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # -- scanning --------------------------------------------------------

    def _peek(self) -> str:
        """The next character, or "" at the end."""
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self._pos += len(ch)
        return ch

    def _get(self, name: str) -> str | None:
        value = self._env.get(name)
        (self.unmatched if value is None else self.matched).add(name)
        return value

    # -- words -----------------------------------------------------------

    def run(self) -> tuple[str, list[str]]:
        return self._until("", raw_escapes=self._raw_escapes)

    def _until(self, stop: str, *, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to ``stop`` (consumed), or to the end when ``stop`` is ""."""
        saved, self._raw_escapes = self._raw_escapes, raw_escapes
        try:
            return self._until_inner(stop)
        finally:
            self._raw_escapes = saved

    def _until_inner(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while ch := self._peek():
            if stop and ch == stop:
                self._next()
                return "".join(result), words.finish()
            handler = self._handler(ch)
            if handler is not None:
                text = handler()
                result.append(text)
                # Only expansion results are split; quoted text never is.
                (words.add_split if ch == "$" else words.add_raw)(text)
            elif not self._plain_char(result, words):
                break
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def _handler(self, ch: str) -> Callable[[], str] | None:
        if ch == "$":
            return self._dollar
        if self._lex.skip_process_quotes:
            return None
        return {"'": self._single_quote, '"': self._double_quote}.get(ch)

    def _plain_char(self, result: list[str], words: _Words) -> bool:
        """Copy one unquoted character; False when a trailing escape ends the word."""
        ch = self._next()
        if ch != self._lex.escape:
            words.add_char(ch)
            result.append(ch)
            return True
        if self._raw_escapes:
            words.add_raw(ch)
            result.append(ch)
        escaped = self._next()
        if not escaped:
            return False
        words.add_raw(escaped)
        result.append(escaped)
        return True

    def _single_quote(self) -> str:
        quote = self._next()
        out = [quote] if self._lex.raw_quotes else []
        while True:
            ch = self._next()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self._lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        quote = self._next()
        out = [quote] if self._lex.raw_quotes else []
        while True:
            ch = self._peek()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self._next()
                if self._lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            else:
                out.append(self._double_quoted_char())

    def _double_quoted_char(self) -> str:
        # sh(1): inside double quotes the backslash quotes only $ ` " \ and
        # newline; BuildKit keeps ", $ and the escape character.
        ch = self._next()
        if ch != self._lex.escape:
            return ch
        prefix = ch if self._raw_escapes else ""
        if self._peek() in ('"', "$", self._lex.escape):
            return prefix + self._next()
        if not self._peek():
            return prefix
        return prefix + ch

    # -- parameters ------------------------------------------------------

    def _name(self) -> str:
        """A name: letters, digits and _; or all leading digits; or one special character."""
        ch = self._peek()
        if ch and _is_digit(ch):
            start = self._pos
            while self._peek() and _is_digit(self._peek()):
                self._next()
            return self._text[start:self._pos]
        if ch in _SPECIAL_PARAMETERS:
            return self._next()
        start = self._pos
        while (ch := self._peek()) and (ch.isalpha() or _is_digit(ch) or ch == "_"):
            self._next()
        return self._text[start:self._pos]

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self._lookup(name, f"${name}")
        self._next()
        if not self._peek():
            raise ExpansionError("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        op = self._next()
        if not op:
            raise ExpansionError("syntax error: missing '}'")
        if op == "}":
            return self._lookup(name, f"${{{name}}}")
        if op == "/":
            return self._substitute(name)
        return self._modifier(name, op)

    def _lookup(self, name: str, original: str) -> str:
        value = self._get(name)
        if value is None:
            return original if self._lex.skip_unset_env else ""
        return value

    def _modifier(self, name: str, op: str) -> str:
        colon = op == ":"
        if colon:
            op += self._next()
        kind = op[-1:]
        # Rejects ${v=w} and ${v:=w} too: a Containerfile word cannot assign.
        if kind not in _MODIFIERS or (colon and kind in "#%"):
            raise ExpansionError(f"unsupported modifier ({op}) in substitution")
        # Patterns keep their escapes: a "\*" must reach the pattern as a literal star.
        word = self._delimited("}", "syntax error: missing '}'", raw_escapes=kind in "#%")
        value = self._get(name)
        if value is None and self._lex.skip_unset_env:
            return f"${{{name}{op}{word}}}"
        return _apply_modifier(name, kind, colon, value, word)

    def _substitute(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        pattern = self._delimited("/", "syntax error: missing '/' in ${}", raw_escapes=True)
        replacement = self._delimited("}", "syntax error: missing '}' in ${}", raw_escapes=True)
        value = self._get(name)
        if value is None:
            if self._lex.skip_unset_env:
                return f"${{{name}/{pattern}/{replacement}}}"
            value = ""
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _m: replacement, value, count=0 if replace_all else 1)

    def _delimited(self, stop: str, missing: str, *, raw_escapes: bool) -> str:
        """The text of a ${...} part up to ``stop``; ``missing`` names a word that ends first."""
        try:
            return self._until(stop, raw_escapes=raw_escapes)[0]
        except ExpansionError:
            if not self._peek():
                raise ExpansionError(missing) from None
            raise


def _apply_modifier(name: str, kind: str, colon: bool, value: str | None, word: str) -> str:
    """The value of ``${name<op>word}``; ``colon`` makes an empty value count as unset."""
    missing = value is None or (colon and value == "")
    if kind == "-":
        return word if missing else (value or "")
    if kind == "+":
        return "" if missing else word
    if kind == "?":
        if value is None:
            raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
        if missing:
            raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
        return value
    # '#'/'%' remove the shortest match, '##'/'%%' the longest.
    greedy = word[:1] == kind
    pattern = word[1:] if greedy else word
    if kind == "#":
        return _trim_prefix(pattern, value or "", greedy)
    return _trim_suffix(pattern, value or "", greedy)


# Characters that mean something to a regex but nothing to a shell pattern.
_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell pattern (``*``, ``?``, backslash escapes) as a regex."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i : i + 1]
            i += 1
            # "\}" and "\/" only kept the ${...} delimiters from ending the
            # pattern; they stand for the plain character.
            if following not in ("*", "?", "\\", "}", "/"):
                raise ExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'"
                )
            out.append(re.escape(following))
        else:
            out.append("\\" + ch if ch in _REGEX_SPECIAL else re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each escape in front of the character it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        step = 2 if pattern[i] == "\\" and i + 1 < len(pattern) else 1
        tokens.append(pattern[i : i + step])
        i += step
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match, not the shortest rightmost one, so
    # search the reversed value with the reversed pattern (as BuildKit does).
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


@dataclass(frozen=True, kw_only=True)
class Lex:
    """BuildKit's lexer settings.

    ``escape`` is the Containerfile's escape character (``# escape=`` makes
    it a backtick). ``raw_quotes`` and ``raw_escapes`` keep quotes and escape
    characters in the result, and ``skip_process_quotes`` treats quotes as
    plain text: BuildKit expands heredoc bodies that way, where the shell
    that runs the script still has to see them. ``skip_unset_env`` leaves
    references to unset names as written.
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_process_quotes: bool = False
    skip_unset_env: bool = False

    def process_word(self, word: str, env: Mapping[str, str]) -> ExpansionResult:
        """Expand ``word`` as one word (BuildKit's ProcessWord)."""
        expander = _Expander(self, word, env)
        result, words = expander.run()
        return ExpansionResult(
            result=result,
            words=tuple(words),
            used=frozenset(expander.matched),
            unmatched=frozenset(expander.unmatched),
        )

    def process_words(self, word: str, env: Mapping[str, str]) -> tuple[list[str], frozenset[str]]:
        """Expand ``word`` and split it into words (BuildKit's ProcessWords)."""
        expanded = self.process_word(word, env)
        return list(expanded.words), expanded.used
