""".dockerignore / .containerignore: which context paths a build sends.

The semantics are moby's ``patternmatcher`` and ``dockerignore.ReadAll`` as
docker-py's ``ExcludePathsTest`` exercises them:

* ``#`` starts a comment line; blank lines are skipped; a leading ``!``
  re-includes what earlier lines excluded, and the last matching line wins.
* Patterns are cleaned like Go's ``filepath.Clean``: ``.`` parts and leading
  or trailing ``/`` go, and ``..`` removes the part before it (or nothing, at
  the root: a context has no parent to reach).
* ``*`` and ``?`` stay within one path part, ``**`` spans any number of them,
  ``[...]`` is a class and ``\\`` escapes the next character.
* A pattern that matches a directory matches everything under it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pybox.errors import UsageError

__all__ = ["IgnorePatternError", "IgnoreRule", "IgnoreRules", "walk"]


class IgnorePatternError(UsageError):
    """A line of an ignore file is not a valid pattern (an unclosed ``[``)."""


@dataclass(frozen=True, kw_only=True)
class IgnoreRule:
    """One cleaned line: ``pattern`` is ``/``-separated and relative to the context."""

    pattern: str
    exclusion: bool
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, line: str) -> IgnoreRule | None:
        """The rule of one ignore-file line, or None when the line names nothing."""
        text = line.strip()
        exclusion = text.startswith("!")
        if exclusion:
            text = text[1:].strip()
        pattern = _clean(text)
        if not pattern:
            return None
        return cls(pattern=pattern, exclusion=exclusion, regex=_compile(pattern))

    def matches(self, path: str) -> bool:
        """True when the rule names ``path`` or one of its parent directories."""
        if self.regex.match(path):
            return True
        parts = path.split("/")
        return any(self.regex.match("/".join(parts[:n])) for n in range(1, len(parts)))


@dataclass(frozen=True)
class IgnoreRules:
    """The rules of one ignore file, in file order."""

    rules: tuple[IgnoreRule, ...] = ()

    @classmethod
    def parse(cls, lines: Iterable[str]) -> IgnoreRules:
        """Read ignore-file lines (comments and blank lines are skipped)."""
        rules: list[IgnoreRule] = []
        for number, line in enumerate(lines):
            if number == 0:
                line = line.removeprefix("\ufeff")
            # moby checks for '#' before trimming: " #x" is a pattern.
            if line.startswith("#"):
                continue
            rule = IgnoreRule.parse(line)
            if rule is not None:
                rules.append(rule)
        return cls(tuple(rules))

    def including(self, paths: Iterable[str]) -> IgnoreRules:
        """These rules with ``!path`` lines appended, so ``paths`` are never excluded."""
        extra = (IgnoreRule.parse("!" + path) for path in paths)
        return IgnoreRules((*self.rules, *(rule for rule in extra if rule is not None)))

    def matches(self, path: str) -> bool:
        """True when ``path`` (relative, ``/``-separated) is excluded."""
        excluded = False
        for rule in self.rules:
            # Only a rule that would flip the answer needs to be tried.
            if rule.exclusion == excluded and rule.matches(path):
                excluded = not rule.exclusion
        return excluded

    def may_reinclude_under(self, directory: str) -> bool:
        """True when a ``!`` line could re-include something inside an excluded ``directory``.

        moby's archive walk (and docker-py's) only look for a ``!`` pattern
        that starts with the directory's path, so ``['*', '!*/b.py']`` sends
        nothing: the wildcard ``*/`` does not start with ``a/``.
        """
        prefix = directory + "/"
        return any(
            rule.exclusion and (rule.pattern + "/").startswith(prefix) for rule in self.rules
        )


def walk(
    context_dir: Path,
    rules: IgnoreRules,
    *,
    always_include: Iterable[str] = ("Dockerfile", ".dockerignore"),
) -> list[str]:
    """The relative paths (files and directories, sorted) that a build sends.

    ``always_include`` (the Containerfile and the ignore file) are sent even
    when a line excludes them, as docker-py and the Docker CLI do by
    appending ``!Dockerfile`` and ``!.dockerignore`` to the rules. A
    re-included file is listed while its excluded parent directories are
    not. Symbolic links are listed, never followed.
    """
    effective = rules.including(always_include)
    return sorted(_walk(context_dir, "", effective))


def _walk(root: Path, relative: str, rules: IgnoreRules) -> Iterator[str]:
    for entry in sorted((root / relative).iterdir()):
        path = f"{relative}/{entry.name}" if relative else entry.name
        excluded = rules.matches(path)
        if not excluded:
            yield path
        descend = not excluded or rules.may_reinclude_under(path)
        if descend and entry.is_dir() and not entry.is_symlink():
            yield from _walk(root, path, rules)


def _clean(pattern: str) -> str:
    """Go's filepath.Clean, relative to the context: no '.', no leading '..', no outer '/'."""
    parts: list[str] = []
    for part in pattern.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _compile(pattern: str) -> re.Pattern[str]:
    """Translate a pattern to a regex the way moby's patternmatcher does."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*" and pattern[i : i + 1] == "*":
            i += 1
            # "**/" is "**"; a trailing "**" matches everything below (as .gitignore).
            if pattern[i : i + 1] == "/":
                i += 1
            out.append(".*" if i >= len(pattern) else "(?:.*/)?")
        elif ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            i = _character_class(pattern, i, out)
        elif ch == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def _character_class(pattern: str, start: int, out: list[str]) -> int:
    """Append the regex of the ``[...]`` opened before ``start``; return the index after ``]``."""
    end = pattern.find("]", start + 1 if pattern[start : start + 1] in ("!", "^") else start)
    if end < 0:
        raise IgnorePatternError(f"syntax error in pattern {pattern!r}: unclosed '['")
    body = pattern[start:end]
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    # Escape what a regex class treats specially, but keep the '-' of ranges.
    escaped = re.sub(r"([\\\]\[^])", r"\\\1", body)
    out.append(f"[{'^' if negate else ''}{escaped}]")
    return end + 1
