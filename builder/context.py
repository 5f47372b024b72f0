"""The build context: which Containerfile, which ignore file, what COPY sees.

* ``find_containerfile``: ``-f FILE`` (relative to the current directory, as
  the Docker CLI resolves it), else ``Containerfile``, else ``Dockerfile``
  in the context.
* ``ignore_rules``: BuildKit's and Podman's lookup, a per-file ignore file
  beside the Containerfile before the context's own.
* ``BuildContext.select``: a COPY/ADD source as BuildKit resolves it. Globs
  are Go's ``filepath.Match`` over the path below the first part that has a
  wildcard (``**`` is two ``*``, nothing special), and files the ignore
  rules exclude are invisible, as they would be absent from the context
  BuildKit receives. The Containerfile and ignore file get no special
  treatment: they are copied unless excluded, as with BuildKit.
* ``content_hash``: the cache's view of COPY sources, content and mode only.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pybox.builder.ignore import IgnoreRules
from pybox.errors import UsageError

__all__ = ["BuildContext", "content_hash", "find_containerfile", "ignore_rules"]

_DEFAULT_NAMES = ("Containerfile", "Dockerfile")
_IGNORE_SUFFIXES = (".containerignore", ".dockerignore")
_ROOT = "."


def find_containerfile(context: Path, file: str | None) -> Path:
    """The Containerfile a build reads; ``file`` is the ``-f`` argument, if any."""
    if file is not None:
        if file == "-":
            raise UsageError("-f -: reading the Containerfile from standard input is not supported")
        # The Docker CLI resolves -f against the current directory, not the context.
        path = Path(file).absolute()
        if not path.is_file():
            raise UsageError(f"Containerfile not found: {file} (looked for {path})")
        return path
    for name in _DEFAULT_NAMES:
        path = context / name
        if path.is_file():
            return path
    raise UsageError(
        f"no Containerfile or Dockerfile in build context {context} (use -f to name another file)"
    )


def ignore_rules(context: Path, containerfile: Path) -> IgnoreRules:
    """The rules of the ignore file that applies to ``containerfile``; none: empty rules."""
    # A file-specific ignore file (app.Containerfile.dockerignore) lets one
    # context serve several Containerfiles, so it wins over the context's own.
    candidates = [containerfile.with_name(containerfile.name + s) for s in _IGNORE_SUFFIXES]
    candidates += [context / suffix for suffix in _IGNORE_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return IgnoreRules.parse(candidate.read_text(encoding="utf-8").splitlines())
    return IgnoreRules()


@dataclass(frozen=True)
class BuildContext:
    """A context directory and its ignore rules; paths are relative and ``/``-separated.

    ``"."`` is the context root itself (``COPY . /app``).
    """

    root: Path
    rules: IgnoreRules

    def select(self, source: str) -> list[str]:
        """The context paths a COPY/ADD ``source`` names, in walk order.

        A source without wildcards must exist and be visible. A wildcard
        that matches nothing gives ``[]``: BuildKit allows empty wildcards
        (the ``COPY requirements.tx[t] .`` idiom relies on it).
        """
        # A leading "/" is the context root, as in BuildKit.
        cleaned = posixpath.normpath(source.lstrip("/") or _ROOT)
        if cleaned == ".." or cleaned.startswith("../"):
            raise UsageError(f"COPY failed: forbidden path outside the build context: {source}")
        prefix, pattern = _split_wildcards(cleaned)
        if pattern is None:
            if not (self._inside(cleaned) and self._visible(cleaned)):
                raise UsageError(
                    "COPY failed: file not found in build context or excluded by "
                    f".dockerignore: stat {cleaned}: no such file"
                )
            return [cleaned]
        if not (self._inside(prefix) and self._visible(prefix)):
            return []
        depth = pattern.count("/") + 1
        regex = _match_regex(pattern, source)
        matches: list[str] = []
        # filepath.Match never lets '*' cross a '/', so only paths with as
        # many parts as the pattern can match: no need to walk deeper.
        for path, relative in self._walk_limited(prefix, depth):
            if relative.count("/") + 1 == depth and regex.match(relative):
                matches.append(path)
        return matches

    def walk(self, path: str) -> Iterator[str]:
        """``path`` and, for a directory, everything visible below it, parents first, sorted."""
        yield path
        full = self.host_path(path)
        if full.is_dir() and not full.is_symlink():
            yield from self._children(path)

    def _children(self, directory: str) -> Iterator[str]:
        for entry in _sorted_entries(self.host_path(directory)):
            path = _join(directory, entry.name)
            is_dir = entry.is_dir(follow_symlinks=False)
            if not self.rules.matches(path):
                yield path
                if is_dir:
                    yield from self._children(path)
            elif is_dir and self.rules.may_reinclude_under(path):
                # An excluded directory with re-included files is sent as
                # their parent (BuildKit's context transfer does the same).
                below = list(self._children(path))
                if below:
                    yield path
                    yield from below

    def _walk_limited(self, prefix: str, depth: int) -> Iterator[tuple[str, str]]:
        """(path, path relative to ``prefix``) for visible paths at most ``depth`` parts below."""
        stack = [(prefix, "")]
        while stack:
            directory, relative = stack.pop()
            children: list[tuple[str, str]] = []
            full = self.host_path(directory)
            if not full.is_dir() or full.is_symlink():
                continue
            for entry in _sorted_entries(full):
                path = _join(directory, entry.name)
                sub = f"{relative}/{entry.name}" if relative else entry.name
                if not self._visible(path):
                    continue
                yield path, sub
                if sub.count("/") + 1 < depth:
                    children.append((path, sub))
            # Reversed so the stack pops them in sorted order (Go's Walk order).
            stack.extend(reversed(children))

    def _visible(self, path: str) -> bool:
        """True when ``path`` exists in the context that BuildKit would receive."""
        if path == _ROOT:
            return True
        parts = path.split("/")
        for n in range(1, len(parts)):
            ancestor = "/".join(parts[:n])
            # moby's walk only enters an excluded directory when a "!" line
            # starts with its path; elsewhere nothing below it is sent.
            if self.rules.matches(ancestor) and not self.rules.may_reinclude_under(ancestor):
                return False
        full = self.host_path(path)
        if not os.path.lexists(full):
            return False
        if not self.rules.matches(path):
            return True
        is_dir = full.is_dir() and not full.is_symlink()
        # Excluded, but sent as the parent of a re-included file.
        return (
            is_dir
            and self.rules.may_reinclude_under(path)
            and next(self._children(path), None) is not None
        )

    def visible_host_path(self, host: Path) -> bool:
        """Whether the host path ``host``, below the root, is part of the context (the ignore rules)."""
        return self._visible(host.relative_to(self.root).as_posix())

    def _inside(self, path: str) -> bool:
        """True when no symbolic link among ``path``'s parents leads out of the context."""
        root = os.path.realpath(self.root)
        parent = os.path.realpath(self.host_path(posixpath.dirname(path) or _ROOT))
        return parent == root or parent.startswith(root + os.sep)

    def host_path(self, path: str) -> Path:
        """Where the context path ``path`` lies on the host."""
        return self.root if path == _ROOT else self.root / path


def content_hash(ctx: BuildContext, paths: list[str]) -> str:
    """A sha256 (hex) of what COPY would read from ``paths``, for the build cache.

    Each entry contributes its path, type, permission bits (with setuid,
    setgid and sticky) and its content or link target. Owners and times are
    left out: COPY gives files root (or --chown) ownership and Docker's cache
    ignores them, and touching a file must not invalidate the cache.
    """
    digest = hashlib.sha256()
    for top in paths:
        for path in ctx.walk(top):
            info = os.lstat(ctx.host_path(path))
            kind = _kind(info.st_mode)
            # NUL cannot occur in a path or link target, so fields cannot run together.
            fields = [path, kind, f"{stat.S_IMODE(info.st_mode):o}"]
            if kind == "f":
                with open(ctx.host_path(path), "rb") as file:
                    fields.append(hashlib.file_digest(file, "sha256").hexdigest())
            elif kind == "l":
                fields.append(os.readlink(ctx.host_path(path)))
            elif kind in ("c", "b"):
                fields.append(f"{os.major(info.st_rdev)},{os.minor(info.st_rdev)}")
            digest.update(("\0".join(fields) + "\0\0").encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    if stat.S_ISFIFO(mode):
        return "p"
    return "s"


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    # Sorted by name so walks, matches and hashes do not depend on the filesystem's order.
    with os.scandir(directory) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def _join(directory: str, name: str) -> str:
    return name if directory == _ROOT else f"{directory}/{name}"


def _has_wildcard(part: str) -> bool:
    """BuildKit's containsWildcards: an unescaped ``*``, ``?`` or ``[``."""
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part[i] in "*?[":
            return True
        i += 1
    return False


def _split_wildcards(path: str) -> tuple[str, str | None]:
    """(the parts before the first with a wildcard, the rest); rest None without wildcards."""
    parts = path.split("/")
    for index, part in enumerate(parts):
        if _has_wildcard(part):
            return "/".join(parts[:index]) or _ROOT, "/".join(parts[index:])
    return path, None


def _match_regex(pattern: str, source: str) -> re.Pattern[str]:
    """Go's filepath.Match as a regex: ``*``/``?`` within one part, ``[^...]``, ``\\`` escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            i = _character_class(pattern, i, source, out)
        elif ch == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _character_class(pattern: str, start: int, source: str, out: list[str]) -> int:
    """Append the regex of the ``[...]`` opened before ``start``; return the index after ``]``."""
    negate = pattern[start : start + 1] == "^"
    i = start + 1 if negate else start
    body: list[str] = []
    while i < len(pattern) and pattern[i] != "]":
        ch = pattern[i]
        if ch == "\\":
            i += 1
            if i == len(pattern):
                break
            ch = pattern[i]
        # '-' keeps its range meaning; anything else is literal in the class.
        body.append("-" if ch == "-" and pattern[i - 1] != "\\" else re.escape(ch))
        i += 1
    if i >= len(pattern) or not body:
        # Go reports ErrBadPattern; saying so beats silently copying nothing.
        raise UsageError(f"COPY failed: syntax error in pattern: {source}")
    # A class never matches '/', so the walk can stop at the pattern's depth.
    out.append(f"[^/{''.join(body)}]" if negate else f"(?!/)[{''.join(body)}]")
    return i + 1
