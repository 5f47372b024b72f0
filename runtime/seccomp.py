"""Seccomp profiles: Docker's JSON format in, a libseccomp filter out.

Translate purely, apply once (DESIGN.md section 8, rule 3):

    parse_docker_profile(text)  -> Profile   Docker's format, conditions unresolved
    default_profile()           -> Profile   pybox's copy of Docker's default (seccomp_default.py)
    build(profile, caps=..., native_arch=..., kernel=...) -> Filter
                                             conditions resolved for one container: pure data
    load(filter, no_new_privs=...)           the only step that touches libseccomp and the kernel

``build`` is moby's ``setupSeccomp`` (moby/profiles ``seccomp/seccomp_linux.go``)
followed by the rule expansion of runc's ``InitSeccomp``/``matchCall``
(runc ``libcontainer/seccomp/seccomp_linux.go``); ``load`` is the rest of
``InitSeccomp``. When it runs relative to the privilege drop is
:func:`pybox.runtime.security.drop_privileges`' business.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, cast, get_args

from pybox.errors import PyboxError, UsageError
from pybox.runtime import libseccomp as S

__all__ = [
    "Action",
    "ArchGroup",
    "Arg",
    "Condition",
    "Filter",
    "Op",
    "Profile",
    "Rule",
    "SyscallRule",
    "build",
    "default_profile",
    "host_arch",
    "host_kernel",
    "load",
    "compile_bpf",
    "filter_key",
    "parse_docker_profile",
    "read_docker_profile",
    "to_docker_json",
]

log = logging.getLogger(__name__)

# SCMP_ACT_NOTIFY is not here: it needs a seccomp agent (listenerPath), which pybox does not run.
Action = Literal["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                 "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"]
Op = Literal["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ"]

_OPS: Mapping[str, int] = MappingProxyType({
    "SCMP_CMP_NE": S.SCMP_CMP_NE,
    "SCMP_CMP_LT": S.SCMP_CMP_LT,
    "SCMP_CMP_LE": S.SCMP_CMP_LE,
    "SCMP_CMP_EQ": S.SCMP_CMP_EQ,
    "SCMP_CMP_GE": S.SCMP_CMP_GE,
    "SCMP_CMP_GT": S.SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": S.SCMP_CMP_MASKED_EQ,
})

# The names profiles use in includes/excludes "arches", and the libseccomp
# architecture each stands for (moby/profiles seccomp_linux.go nativeToSeccomp).
_NATIVE_ARCHES: Mapping[str, str] = MappingProxyType({
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "x32": "SCMP_ARCH_X32",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips": "SCMP_ARCH_MIPS",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32",  # sic, moby's spelling
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
})

# uname(2) machine -> the name above (moby maps Go's GOARCH the same way, goToNative).
_MACHINES: Mapping[str, str] = MappingProxyType({
    "x86_64": "amd64",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "loongarch64": "loong64",
    "mips": "mips",
    "mips64": "mips64",
    "ppc": "ppc",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390": "s390",
    "s390x": "s390x",
})

_MAX_ARGS = 6  # a syscall has at most six arguments


@dataclass(frozen=True, kw_only=True)
class Arg:
    """A comparison of syscall argument ``index`` (0-5) with ``value`` (and ``value_two``, the mask's operand)."""

    index: int
    op: Op
    value: int
    value_two: int = 0


@dataclass(frozen=True, kw_only=True)
class Condition:
    """Docker's ``includes``/``excludes``: capability names, profile arch names, a (major, minor) kernel."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class SyscallRule:
    """One entry of a profile's ``syscalls``: applies only when ``includes`` holds and ``excludes`` does not."""

    names: tuple[str, ...]
    action: Action
    errno_ret: int | None = None  # for ERRNO and TRACE; None means EPERM (runc)
    args: tuple[Arg, ...] = ()
    includes: Condition = Condition()
    excludes: Condition = Condition()


@dataclass(frozen=True, kw_only=True)
class ArchGroup:
    """An ``archMap`` entry: when ``arch`` is native, the filter covers ``sub_arches`` as well."""

    arch: str
    sub_arches: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Profile:
    """A seccomp profile as Docker's JSON states it, before it is resolved for a container."""

    default_action: Action
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()  # SCMP_ARCH_* added whatever the native arch (Docker's "architectures")
    arch_map: tuple[ArchGroup, ...] = ()
    syscalls: tuple[SyscallRule, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One libseccomp rule: ``syscall`` with every comparison in ``args`` true gets ``action`` (an SCMP_ACT_* value)."""

    syscall: str
    action: int
    args: tuple[Arg, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Filter:
    """What :func:`load` installs: the result of :func:`build`, no conditions left."""

    default_action: int
    architectures: tuple[str, ...]  # SCMP_ARCH_* names added beside the native one
    rules: tuple[Rule, ...]


# --- the host --------------------------------------------------------------


def host_arch() -> str:
    """This machine's architecture under the name profiles use (``amd64``, ``arm64`` ...)."""
    machine = os.uname().machine
    try:
        return _MACHINES[machine]
    except KeyError:
        raise PyboxError(f"seccomp: unsupported machine architecture {machine!r}") from None


def host_kernel() -> tuple[int, int]:
    """The running kernel's (major, minor): ``6.1.0-18-amd64`` -> (6, 1), as moby's ``parseRelease``
    (``Sscanf(release, "%d.%d")``: ``3.12-1-amd64`` is (3, 12) too)."""
    release = os.uname().release
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        raise PyboxError(f"seccomp: cannot parse the kernel release {release!r}")
    return int(match[1]), int(match[2])


# --- Docker's JSON -> Profile ----------------------------------------------


class _Doc:
    """A JSON object being read, with its path for error messages (``syscalls[3].args[0]``)."""

    def __init__(self, source: str, path: str, value: object) -> None:
        self.source, self.path = source, path
        if not isinstance(value, dict):
            self.fail(f"expected a JSON object, got {_kind(value)}")
        self.value: dict[str, Any] = value

    def fail(self, message: str, key: str | None = None) -> NoReturn:
        where = self.path if key is None else f"{self.path}.{key}" if self.path else key
        raise UsageError(f"seccomp profile {self.source}: {where or 'top level'}: {message}")

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        """The value at ``key`` if it is a ``kind``; ``default`` when absent or null (Go leaves the zero value)."""
        value = self.value.get(key)
        if value is None:
            return default
        # A JSON true is not an integer, though Python's bool is an int.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.fail(f"expected {_KINDS[kind]}, got {_kind(value)}", key)
        return value

    def uint(self, key: str, *, maximum: int, default: int | None = None) -> int | None:
        value: int | None = self.get(key, int, default)
        if value is not None and not 0 <= value <= maximum:
            self.fail(f"{value} is out of range 0..{maximum}", key)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        if not all(isinstance(v, str) and v for v in values):
            self.fail("expected a list of non-empty strings", key)
        return tuple(values)

    def objects(self, key: str) -> Iterator[_Doc]:
        prefix = f"{self.path}." if self.path else ""
        for i, item in enumerate(self.get(key, list, [])):
            yield _Doc(self.source, f"{prefix}{key}[{i}]", item)

    def child(self, key: str) -> _Doc | None:
        value = self.value.get(key)
        prefix = f"{self.path}." if self.path else ""
        return None if value is None else _Doc(self.source, prefix + key, value)


_KINDS: dict[type, str] = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
                           list: "a list", dict: "an object"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _action(doc: _Doc, key: str) -> Action:
    name = doc.get(key, str)
    if name is None:
        doc.fail("is required", key)
    if name == "SCMP_ACT_NOTIFY":
        doc.fail("SCMP_ACT_NOTIFY needs a seccomp agent, which pybox does not support", key)
    if name not in get_args(Action):
        doc.fail(f"unknown action {name!r} (expected one of {', '.join(get_args(Action))})", key)
    return cast(Action, name)


def _arch(doc: _Doc, key: str, name: str) -> str:
    if name not in S.ARCHES:
        doc.fail(f"unknown architecture {name!r}", key)
    return name


def _min_kernel(doc: _Doc) -> tuple[int, int] | None:
    # moby seccomp.go KernelVersion.UnmarshalJSON: "<kernel>.<major>", each 0-255, not "0.0".
    text = doc.get("minKernel", str, "")
    if not text:
        return None
    parts = text.split(".")
    if len(parts) != 2 or not all(p.isdigit() and int(p) <= 255 for p in parts) or text == "0.0":
        doc.fail(f'invalid kernel version {text!r}, expected "<kernel>.<major>" such as "4.8"', "minKernel")
    return int(parts[0]), int(parts[1])


def _condition(doc: _Doc | None) -> Condition:
    if doc is None:
        return Condition()
    return Condition(caps=doc.strings("caps"), arches=doc.strings("arches"), min_kernel=_min_kernel(doc))


def _arg(doc: _Doc) -> Arg:
    index = doc.uint("index", maximum=_MAX_ARGS - 1)
    op = doc.get("op", str)
    if index is None:
        doc.fail("is required", "index")
    if op is None:
        doc.fail("is required", "op")
    if op not in _OPS:
        doc.fail(f"unknown operator {op!r} (expected one of {', '.join(_OPS)})", "op")
    value = doc.uint("value", maximum=2**64 - 1, default=0)
    value_two = doc.uint("valueTwo", maximum=2**64 - 1, default=0)
    return Arg(index=index, op=cast(Op, op), value=cast(int, value), value_two=cast(int, value_two))


def _syscall_rule(doc: _Doc) -> SyscallRule:
    names = doc.strings("names")
    legacy = doc.get("name", str)  # moby still reads the old single "name"
    if legacy and names:
        doc.fail("both 'name' and 'names' are given; use one")
    if legacy:
        names = (legacy,)
    if not names:
        doc.fail("no syscall names ('names' is empty)")
    return SyscallRule(names=names, action=_action(doc, "action"),
                       errno_ret=doc.uint("errnoRet", maximum=0xFFFF),
                       args=tuple(_arg(a) for a in doc.objects("args")),
                       includes=_condition(doc.child("includes")), excludes=_condition(doc.child("excludes")))


def _arch_group(doc: _Doc) -> ArchGroup:
    arch = doc.get("architecture", str)
    if arch is None:
        doc.fail("is required", "architecture")
    return ArchGroup(arch=_arch(doc, "architecture", arch),
                     sub_arches=tuple(_arch(doc, "subArchitectures", a) for a in doc.strings("subArchitectures")))


def parse_docker_profile(text: str, *, source: str = "<profile>") -> Profile:
    """Docker's ``--security-opt seccomp=PROFILE.json`` format -> :class:`Profile`.

    Keys as moby/profiles ``seccomp/seccomp.go`` (``Seccomp``, ``Syscall``,
    ``Filter``) and the runtime spec's ``LinuxSeccomp``; unknown keys are
    ignored, as Go's JSON decoder does. ``source`` names the file in errors.
    """
    try:
        top = _Doc(source, "", json.loads(text))
    except json.JSONDecodeError as e:
        raise UsageError(f"seccomp profile {source}: not valid JSON: {e}") from e
    for unsupported in ("listenerPath", "flags"):
        if top.value.get(unsupported):
            top.fail("is not supported by pybox", unsupported)
    architectures = tuple(_arch(top, "architectures", a) for a in top.strings("architectures"))
    arch_map = tuple(_arch_group(g) for g in top.objects("archMap"))
    if architectures and arch_map:
        # moby setupSeccomp refuses the same.
        top.fail("both 'architectures' and 'archMap' are given; use one")
    return Profile(default_action=_action(top, "defaultAction"),
                   default_errno_ret=top.uint("defaultErrnoRet", maximum=0xFFFF),
                   architectures=architectures, arch_map=arch_map,
                   syscalls=tuple(_syscall_rule(s) for s in top.objects("syscalls")))


def read_docker_profile(path: Path) -> Profile:
    """:func:`parse_docker_profile` of a file; an unreadable file is a :class:`UsageError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read seccomp profile {path}: {e}") from e
    return parse_docker_profile(text, source=str(path))


def _condition_json(condition: Condition) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if condition.caps:
        out["caps"] = list(condition.caps)
    if condition.arches:
        out["arches"] = list(condition.arches)
    if condition.min_kernel:
        out["minKernel"] = "{}.{}".format(*condition.min_kernel)
    return out


def _syscall_json(rule: SyscallRule) -> dict[str, Any]:
    out: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
    if rule.errno_ret is not None:
        out["errnoRet"] = rule.errno_ret
    if rule.args:
        out["args"] = [{"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op} for a in rule.args]
    for key, condition in (("includes", rule.includes), ("excludes", rule.excludes)):
        if condition != Condition():
            out[key] = _condition_json(condition)
    return out


def to_docker_json(profile: Profile) -> dict[str, Any]:
    """``profile`` in Docker's JSON shape (``json.dumps`` it); :func:`parse_docker_profile` reads it back equal."""
    out: dict[str, Any] = {"defaultAction": profile.default_action}
    if profile.default_errno_ret is not None:
        out["defaultErrnoRet"] = profile.default_errno_ret
    if profile.architectures:
        out["architectures"] = list(profile.architectures)
    if profile.arch_map:
        # Docker writes null for no sub-architectures.
        out["archMap"] = [{"architecture": g.arch, "subArchitectures": list(g.sub_arches) or None}
                          for g in profile.arch_map]
    out["syscalls"] = [_syscall_json(rule) for rule in profile.syscalls]
    return out


def default_profile() -> Profile:
    """pybox's copy of Docker's default profile (runtime/seccomp_default.py)."""
    # Imported here: the table is only needed when the default profile is, and it imports this module's types.
    from pybox.runtime.seccomp_default import DEFAULT

    return DEFAULT


# --- Profile -> Filter -----------------------------------------------------


_FIXED_ACTIONS: Mapping[str, int] = MappingProxyType({
    "SCMP_ACT_KILL": S.SCMP_ACT_KILL,
    "SCMP_ACT_KILL_THREAD": S.SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": S.SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": S.SCMP_ACT_TRAP,
    "SCMP_ACT_ALLOW": S.SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": S.SCMP_ACT_LOG,
})


def _scmp_action(action: Action, errno_ret: int | None) -> int:
    """runc ``getAction``: ERRNO and TRACE without errnoRet answer EPERM; KILL kills the thread."""
    code = errno.EPERM if errno_ret is None else errno_ret
    if action == "SCMP_ACT_ERRNO":
        return S.SCMP_ACT_ERRNO(code)
    if action == "SCMP_ACT_TRACE":
        return S.SCMP_ACT_TRACE(code)
    return _FIXED_ACTIONS[action]


def _holds(rule: SyscallRule, caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    """moby ``setupSeccomp``: excluded by *any* listed cap or arch or a new enough kernel;
    included only with *every* listed cap, one of the listed arches and a new enough kernel."""
    ex, inc = rule.excludes, rule.includes
    if arch in ex.arches or any(c in caps for c in ex.caps):
        return False
    if ex.min_kernel is not None and kernel >= ex.min_kernel:
        return False
    if inc.arches and arch not in inc.arches:
        return False
    if not all(c in caps for c in inc.caps):
        return False
    return inc.min_kernel is None or kernel >= inc.min_kernel


def _arg_groups(args: tuple[Arg, ...]) -> list[tuple[Arg, ...]]:
    """runc ``matchCall``: comparisons are ANDed into one rule, unless two test the same
    argument; then each becomes a rule of its own (ORed, runc issue 2735)."""
    indexes = [a.index for a in args]
    if len(set(indexes)) == len(indexes):
        return [args]
    return [(a,) for a in args]


def _architectures(profile: Profile, arch: str) -> tuple[str, ...]:
    native = _NATIVE_ARCHES[arch]
    mapped = next(((g.arch, *g.sub_arches) for g in profile.arch_map if g.arch == native), ())
    return profile.architectures + mapped


def _rules(profile: Profile, default_action: int, caps: frozenset[str], arch: str,
           kernel: tuple[int, int]) -> Iterable[Rule]:
    for entry in profile.syscalls:
        if not _holds(entry, caps, arch, kernel):
            continue
        action = _scmp_action(entry.action, entry.errno_ret)
        if action == default_action:
            continue  # runc: redundant, and libseccomp refuses it with EACCES (seccomp_rule_add(3))
        for name in entry.names:
            for args in _arg_groups(entry.args):
                yield Rule(syscall=name, action=action, args=args)


def build(profile: Profile, *, caps: frozenset[str], native_arch: str, kernel: tuple[int, int]) -> Filter:
    """Resolve ``profile`` for a container with bounding set ``caps`` on ``native_arch``
    (``amd64``, ``arm64`` ...: :func:`host_arch`) and ``kernel`` (:func:`host_kernel`). Pure.

    Syscall names are kept whether or not libseccomp knows them; :func:`load`
    skips the ones it cannot resolve, as runc does.
    """
    if native_arch not in _NATIVE_ARCHES:
        raise ValueError(f"unknown architecture {native_arch!r}; expected one of {', '.join(_NATIVE_ARCHES)}")
    default_action = _scmp_action(profile.default_action, profile.default_errno_ret)
    # dict.fromkeys: the same rule from two entries (syslog under CAP_SYS_ADMIN and CAP_SYSLOG) once, in order.
    rules = tuple(dict.fromkeys(_rules(profile, default_action, caps, native_arch, kernel)))
    return Filter(default_action=default_action, architectures=_architectures(profile, native_arch), rules=rules)


# --- Filter -> kernel ------------------------------------------------------

# runc enables libseccomp's binary-tree layout above this many rules: each
# syscall then costs a few comparisons instead of a walk down the list.
_OPTIMIZE_ABOVE = 32


def _comparisons(args: tuple[Arg, ...]) -> list[S.ArgCmp]:
    return [(a.index, _OPS[a.op], a.value, a.value_two) for a in args]


def _add_arch(lib: S.LibSeccomp, ctx: S.FilterContext, name: str) -> None:
    try:
        lib.arch_add(ctx, S.ARCHES[name])
    except OSError as e:
        if e.errno != errno.EEXIST:  # the native arch is in every new filter
            raise


def _add_rule(lib: S.LibSeccomp, ctx: S.FilterContext, rule: Rule) -> None:
    number = lib.syscall_resolve_name(rule.syscall)
    if number is None:
        # runc matchCall: a syscall this libseccomp does not know is most likely
        # one the kernel does not have either; Docker's profile lists newer ones.
        log.debug("seccomp: unknown syscall %r skipped", rule.syscall)
        return
    try:
        lib.rule_add_array(ctx, rule.action, number, _comparisons(rule.args))
    except OSError as e:
        raise OSError(e.errno, f"rule for {rule.syscall}: {e.strerror}") from e


def _open(lib: S.LibSeccomp | None) -> S.LibSeccomp:
    try:
        return lib or S.LibSeccomp()
    except OSError as e:
        raise PyboxError(f"seccomp: cannot use {S.SONAME} (Debian package libseccomp2): {e}") from e


def _context(filter: Filter, *, no_new_privs: bool, lib: S.LibSeccomp) -> S.FilterContext:
    ctx = lib.init(filter.default_action)
    try:
        # Kernel errors as they are, not libseccomp's catch-all ECANCELED (seccomp_attr_set(3)).
        lib.attr_set(ctx, S.SCMP_FLTATR_API_SYSRAWRC, 1)
        if not no_new_privs:
            lib.attr_set(ctx, S.SCMP_FLTATR_CTL_NNP, 0)
        if len(filter.rules) > _OPTIMIZE_ABOVE:
            lib.attr_set(ctx, S.SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for name in filter.architectures:
            _add_arch(lib, ctx, name)
        for rule in filter.rules:
            _add_rule(lib, ctx, rule)
    except BaseException:
        lib.release(ctx)
        raise
    return ctx


def load(filter: Filter, *, no_new_privs: bool, lib: S.LibSeccomp | None = None) -> None:
    """Install ``filter`` for the calling thread (and what it execs); raises :class:`PyboxError`.

    Without ``no_new_privs`` the kernel demands CAP_SYS_ADMIN (seccomp(2)),
    so the caller loads while it still has it; libseccomp's NNP attribute is
    switched off then, or it would set no_new_privs itself (runc does the same).
    With ``no_new_privs`` libseccomp sets it if the caller has not.
    ``lib``: open :class:`~pybox.runtime.libseccomp.LibSeccomp` before
    ``pivot_root``, as the host's library is gone after it.
    """
    lib = _open(lib)
    try:
        ctx = _context(filter, no_new_privs=no_new_privs, lib=lib)
    except OSError as e:
        raise PyboxError(f"seccomp: cannot load the filter: {e}") from e
    try:
        lib.load(ctx)
    except OSError as e:
        raise PyboxError(f"seccomp: cannot load the filter: {e}") from e
    finally:
        lib.release(ctx)


def compile_bpf(filter: Filter, *, lib: S.LibSeccomp | None = None) -> bytes:
    """The BPF program libseccomp generates for ``filter``, without installing it.

    Generating it is most of a filter's cost (libseccomp's optimiser); the
    program depends only on the filter, so the runtime caches it and loads it
    with :func:`pybox.runtime.linux.Linux.load_seccomp_program`.
    """
    lib = _open(lib)
    try:
        ctx = _context(filter, no_new_privs=True, lib=lib)
    except OSError as e:
        raise PyboxError(f"seccomp: cannot generate the filter: {e}") from e
    fd = os.memfd_create("pybox-seccomp", os.MFD_CLOEXEC)
    try:
        lib.export_bpf(ctx, fd)
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    except OSError as e:
        raise PyboxError(f"seccomp: cannot generate the filter: {e}") from e
    finally:
        os.close(fd)
        lib.release(ctx)


def filter_key(filter: Filter) -> str:
    """A name for ``filter``'s compiled program: equal filters, equal keys."""
    import hashlib

    return hashlib.sha256(repr((S.SONAME, filter)).encode()).hexdigest()
