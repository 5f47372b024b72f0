"""Image references: parsing and normalization, as Docker and Podman do it.

Users type ``alpine``; the store, the registry client and ``ref.name``
annotations need ``docker.io/library/alpine:latest``. Both directions must
agree with Docker exactly, or an image pulled by one tool is not found by
the name another tool gives it. So this module follows Go's
``github.com/distribution/reference`` (``reference.go``, ``regexp.go``,
``normalize.go``, ``helpers.go``) rule by rule, with go-digest's digest
checks, and is graded by that package's own test tables
(``../shared/conformance/reference``).

Every failure raises :class:`pybox.errors.InvalidReference` with the message
``invalid reference "<input>": <Go's error message>``, so a user sees what
they typed and a test can match Go's exact wording.

Only ``re``, ``dataclasses`` and ``functools`` are imported, and the regular
expressions are compiled on first use (as Go's ``lazyregexp`` does): every
pybox command imports this module, most never parse a reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache

from pybox.errors import InvalidReference, UsageError

__all__ = [
    "DEFAULT_DOMAIN",
    "LEGACY_DEFAULT_DOMAIN",
    "DOCKER_HUB_API_HOST",
    "NAME_TOTAL_LENGTH_MAX",
    "Reference",
    "parse",
    "parse_named",
    "parse_normalized_named",
    "parse_any_reference",
    "parse_docker_ref",
    "normalize",
    "with_name",
    "familiar_match",
]

DEFAULT_DOMAIN = "docker.io"
"""Docker Hub's name in references: ``alpine`` is ``docker.io/library/alpine``."""

LEGACY_DEFAULT_DOMAIN = "index.docker.io"
"""Docker Hub's old name; normalized to :data:`DEFAULT_DOMAIN`, still the credentials key."""

DOCKER_HUB_API_HOST = "registry-1.docker.io"
"""Where Docker Hub's registry API really answers (``docker.io`` only redirects)."""

NAME_TOTAL_LENGTH_MAX = 255
"""reference.go ``NameTotalLengthMax``: the longest repository path (domain not counted)."""

_OFFICIAL_REPO_PREFIX = "library/"  # normalize.go officialRepoPrefix
_DEFAULT_TAG = "latest"  # normalize.go defaultTag
_LOCALHOST = "localhost"  # regexp.go localhost: always a domain, never a path

# Go's error strings, verbatim: the conformance tables compare them exactly.
_ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
_ERR_TAG_INVALID_FORMAT = "invalid tag format"
_ERR_DIGEST_INVALID_FORMAT = "invalid digest format"
_ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
_ERR_NAME_EMPTY = "repository name must have at least one component"
_ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
_ERR_NAME_NOT_CANONICAL = "repository name must be canonical"
_ERR_CHECKSUM_FORMAT = "invalid checksum digest format"  # go-digest ErrDigestInvalidFormat
_ERR_CHECKSUM_LENGTH = "invalid checksum digest length"  # go-digest ErrDigestInvalidLength
_ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"  # go-digest ErrDigestUnsupported

# The grammar of reference.go's package comment, in the pieces regexp.go names.
# Python's \w and $ differ from Go's (Unicode, trailing newline): every pattern
# is compiled with re.ASCII and used with fullmatch().
_ALPHANUMERIC = r"[a-z0-9]+"
# One period, one or two underscores, or any number of dashes.
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
# IPv6 only in brackets, without zone (RFC 6874) or dotted IPv4 tail.
_IPV6_ADDRESS = r"\[[a-fA-F0-9:]+\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"


@cache
def _reference_re() -> re.Pattern[str]:
    """regexp.go referencePat, its name group split as anchoredNameRegexp splits it.

    Groups: domain (None if absent), path, tag, digest. The domain is tried
    first, so ``a/b`` has domain ``a``; only a name with a ``/`` has one.
    """
    return re.compile(
        rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII
    )


@cache
def _name_re() -> re.Pattern[str]:
    """regexp.go anchoredNameRegexp: groups domain (or None), path."""
    return re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)


@cache
def _tag_re() -> re.Pattern[str]:
    return re.compile(_TAG, re.ASCII)


@cache
def _digest_re() -> re.Pattern[str]:
    return re.compile(_DIGEST, re.ASCII)


@cache
def _identifier_re() -> re.Pattern[str]:
    """regexp.go identifier: an image ID, a sha256 digest without its algorithm."""
    return re.compile(r"[a-f0-9]{64}", re.ASCII)


@cache
def _go_digest_re() -> re.Pattern[str]:
    """go-digest DigestRegexp: looser than _DIGEST (lower-case algorithm, base64 tail)."""
    return re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)


def _invalid(shown: str, reason: str) -> InvalidReference:
    return InvalidReference(f'invalid reference "{shown}": {reason}')


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A parsed image reference: ``domain/path[:tag][@digest]``.

    Build one with the parse functions below, not directly: they validate,
    this class does not. Go has four types (repository, tagged, canonical,
    both); here ``tag`` and ``digest`` are simply optional.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository without tag or digest (reference.go repository.Name)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    @property
    def familiar_name(self) -> str:
        """The name as Docker prints it: ``alpine``, ``user/app`` (normalize.go familiarizeName).

        Only Docker Hub names shrink; ``library/`` goes only when no further
        namespace follows it (``library/foo/bar`` keeps it).
        """
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        remainder = self.path.removeprefix(_OFFICIAL_REPO_PREFIX)
        if remainder != self.path and "/" not in remainder:
            return remainder
        return self.path

    @property
    def familiar(self) -> str:
        """Docker's short form, tag and digest included (helpers.go FamiliarString).

        ``alpine:latest``, ``user/app:v1``, ``127.0.0.1:5000/x:y``: what
        ``docker images`` shows and what users type back.
        """
        return self.familiar_name + self._suffix()

    @property
    def api_host(self) -> str:
        """The host to send registry API calls to: Docker Hub's API is not at ``docker.io``."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag``; a digest is kept (reference.go WithTag)."""
        if not _tag_re().fullmatch(tag):
            raise _invalid(f"{self.name}:{tag}", _ERR_TAG_INVALID_FORMAT)
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """The same repository with ``digest``; a tag is kept (reference.go WithDigest).

        Like Go, this checks the digest's syntax only, not its length for the
        algorithm: it joins parts that were validated where they came from.
        """
        if not _digest_re().fullmatch(digest):
            raise _invalid(f"{self.name}@{digest}", _ERR_DIGEST_INVALID_FORMAT)
        return replace(self, digest=digest)

    @property
    def is_loopback(self) -> bool:
        """Whether the registry is on this machine, where Docker allows plain HTTP.

        Docker trusts ``localhost``, 127.0.0.0/8 and ::1 as insecure
        registries by default; the port does not matter.
        """
        if self.domain.startswith("["):
            host = self.domain[1:].partition("]")[0]
        else:
            host = self.domain.partition(":")[0]
        if host.lower() == _LOCALHOST:
            return True
        import ipaddress  # lazily: only the registry client asks this

        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def _digest_error(digest: str) -> str | None:
    """go-digest Digest.Validate with only sha256 registered, as Go's tests run.

    Returns Go's error message, or None when the digest is valid. sha512 is
    a real algorithm but unregistered there, hence "unsupported".
    """
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        return _ERR_CHECKSUM_FORMAT
    if algorithm != "sha256":
        # Algorithm.Available() is false: tell a malformed digest from an unknown algorithm.
        if _go_digest_re().fullmatch(digest):
            return _ERR_DIGEST_UNSUPPORTED
        return _ERR_CHECKSUM_FORMAT
    # Algorithm.Validate: the length first, then lower-case hex.
    if len(encoded) != 64:
        return _ERR_CHECKSUM_LENGTH
    if not _identifier_re().fullmatch(encoded):
        return _ERR_CHECKSUM_FORMAT
    return None


def _parse(s: str, shown: str) -> Reference:
    """reference.go Parse; errors name ``shown``, the string the user gave."""
    if not s:
        raise _invalid(shown, _ERR_NAME_EMPTY)
    match = _reference_re().fullmatch(s)
    if match is None:
        # A string that only fails for its capitals gets the clearer message.
        lower = s.lower()
        if lower != s and _reference_re().fullmatch(lower):
            raise _invalid(shown, _ERR_NAME_CONTAINS_UPPERCASE)
        raise _invalid(shown, _ERR_REFERENCE_INVALID_FORMAT)
    domain, path, tag, digest = match.groups()
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(shown, _ERR_NAME_TOO_LONG)
    if digest is not None and (error := _digest_error(digest)) is not None:
        raise _invalid(shown, error)
    return Reference(domain=domain or "", path=path, tag=tag, digest=digest)


def parse(s: str) -> Reference:
    """Parse ``s`` exactly as written, without defaults (Go ``Parse``).

    ``alpine`` stays ``alpine`` with domain ""; use :func:`normalize` for what
    a user typed. A digest must be a valid sha256 digest.
    """
    return _parse(s, s)


def with_name(name: str) -> Reference:
    """A repository from a bare name, no tag or digest allowed (Go ``WithName``)."""
    match = _name_re().fullmatch(name)
    if match is None:
        raise _invalid(name, _ERR_REFERENCE_INVALID_FORMAT)
    domain, path = match.groups()
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(name, _ERR_NAME_TOO_LONG)
    return Reference(domain=domain or "", path=path)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Domain and the rest of a familiar name (normalize.go splitDockerDomain).

    The first component is a domain only if it is ``localhost``, contains
    ``.`` or ``:``, or has capitals (paths may not); otherwise the name is on
    Docker Hub, where a single component lives under ``library/``.
    """
    first, slash, rest = name.partition("/")
    if slash and (
        first == _LOCALHOST or "." in first or ":" in first or first.lower() != first
    ):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_normalized_named(s: str) -> Reference:
    """Parse a name as a user types it into its full form (Go ``ParseNormalizedNamed``).

    ``alpine`` -> ``docker.io/library/alpine``; no tag is added. A bare
    64-hex string is refused: it is an image ID, not a repository.
    """
    if _identifier_re().fullmatch(s):
        raise _invalid(
            s, f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    # Go cuts at the first ':' whatever follows, digest included.
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise _invalid(
            s, f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    return _parse(f"{domain}/{remainder}", s)


def parse_named(s: str) -> Reference:
    """Parse a name that must already be in full form (Go ``ParseNamed``).

    For stored references (annotations, records), where a familiar name
    means the data was written wrongly.
    """
    named = parse_normalized_named(s)
    if str(named) != s:
        raise _invalid(s, _ERR_NAME_NOT_CANONICAL)
    return named


def parse_any_reference(s: str) -> Reference | str:
    """Parse an image ID, a digest or a name (Go ``ParseAnyReference``).

    A bare 64-hex ID becomes ``"sha256:<hex>"`` and a valid digest is
    returned as is (strings: they name content, not a repository);
    anything else is a normalized name. For ``pybox rmi``/``inspect`` args.
    """
    if _identifier_re().fullmatch(s):
        return f"sha256:{s}"
    if _digest_error(s) is None:
        return s
    return parse_normalized_named(s)


def parse_docker_ref(s: str) -> Reference:
    """Normalize as containerd does (Go ``ParseDockerRef``).

    Adds ``latest`` when there is neither tag nor digest, and drops the tag
    when both are given: the digest alone decides what is fetched.
    """
    named = parse_normalized_named(s)
    if named.tag is not None and named.digest is not None:
        return replace(named, tag=None)
    return _tag_name_only(named)


def _tag_name_only(named: Reference) -> Reference:
    """normalize.go TagNameOnly: ``latest`` for a bare name."""
    if named.tag is None and named.digest is None:
        return replace(named, tag=_DEFAULT_TAG)
    return named


def normalize(s: str) -> Reference:
    """The reference a pybox command means by ``s``: full name, and a tag or digest.

    ``alpine`` -> ``docker.io/library/alpine:latest``. Unlike
    :func:`parse_docker_ref`, ``name:tag@digest`` keeps both, as Docker and
    Podman show them (the digest still decides what is pulled).
    """
    return _tag_name_only(parse_normalized_named(s))


def familiar_match(pattern: str, ref: Reference | str) -> bool:
    """Whether a ``--filter reference=`` pattern matches (Go ``FamiliarMatch``).

    The pattern is matched against the familiar string (``foo/bar:tag``)
    and, failing that, the familiar name (``foo/bar``), so a pattern
    without a tag matches every tag. A malformed pattern raises UsageError.
    """
    try:
        if isinstance(ref, str):
            return _path_match(pattern, ref)
        return _path_match(pattern, ref.familiar) or _path_match(pattern, ref.familiar_name)
    except _BadPattern:
        message = f'invalid reference pattern "{pattern}": syntax error in pattern'
        raise UsageError(message) from None


class _BadPattern(Exception):
    """Go path.ErrBadPattern, inside the matcher; familiar_match names the pattern."""


def _path_match(pattern: str, name: str) -> bool:
    """Go ``path.Match``: ``*``, ``?``, ``[...]``, ``\\`` escapes; ``*``, ``?`` never match ``/``.

    Like Go, a malformed pattern is an error even when the name already
    failed to match, so a bad filter never passes silently.
    """
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            # A trailing '*' takes the rest, unless that crosses a '/'.
            return "/" not in name
        rest = _match_chunk(chunk, name)
        # The last chunk must use up the name; otherwise the star may skip ahead.
        if rest is not None and (pattern or not rest):
            name = rest
            continue
        if star and (rest := _match_after_star(chunk, name, last=not pattern)) is not None:
            name = rest
            continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return not name


def _match_after_star(chunk: str, name: str, *, last: bool) -> str | None:
    """Try ``chunk`` after a ``*`` that swallows 1, 2, ... characters, never a ``/``."""
    for i, char in enumerate(name):
        if char == "/":
            return None
        rest = _match_chunk(chunk, name[i + 1 :])
        if rest is not None and (not last or not rest):
            return rest
    return None


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    """Split off leading stars and the star-free chunk after them (path.scanChunk)."""
    chunk = pattern.lstrip("*")
    star = len(chunk) != len(pattern)
    in_range = False
    i = 0
    while i < len(chunk):
        char = chunk[i]
        if char == "\\" and i + 1 < len(chunk):
            i += 1  # the escaped character cannot end the chunk
        elif char == "[":
            in_range = True
        elif char == "]":
            in_range = False
        elif char == "*" and not in_range:
            break
        i += 1
    return star, chunk[:i], chunk[i:]


def _match_chunk(chunk: str, s: str) -> str | None:
    """Match a star-free chunk at the start of ``s``: the rest of ``s``, or None (path.matchChunk).

    After a mismatch it keeps reading the chunk, only to find syntax errors.
    """
    failed = False
    while chunk:
        failed = failed or not s
        char, chunk = chunk[0], chunk[1:]
        if char == "[":
            current = "" if failed else s[0]
            s = s if failed else s[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            matched, count = False, 0
            while not (chunk.startswith("]") and count):
                low, chunk = _get_esc(chunk)
                high = low
                if chunk.startswith("-"):
                    high, chunk = _get_esc(chunk[1:])
                matched = matched or (not failed and low <= current <= high)
                count += 1
            chunk = chunk[1:]
            failed = failed or matched == negated
        elif char == "?":
            failed = failed or s[0] == "/"
            s = s if failed else s[1:]
        else:
            if char == "\\":
                if not chunk:
                    raise _BadPattern
                char, chunk = chunk[0], chunk[1:]
            failed = failed or char != s[0]
            s = s if failed else s[1:]
    return None if failed else s


def _get_esc(chunk: str) -> tuple[str, str]:
    """One possibly escaped character of a ``[...]`` class, and what follows (path.getEsc)."""
    if not chunk or chunk[0] in "-]":
        raise _BadPattern
    if chunk[0] == "\\":
        chunk = chunk[1:]
    # The class must still be closed after this character.
    if len(chunk) < 2:
        raise _BadPattern
    return chunk[0], chunk[1:]
