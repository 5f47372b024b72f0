"""Seccomp profiles as data: Docker's JSON, pybox's default, build() and load()'s calls.

The main check: pybox's own default profile (runtime/seccomp_default.py) and
Docker's (../shared/conformance/seccomp/docker-default.json, see the README
there) build the same filter for a matrix of capability sets, architectures
and kernels. Everything here is pure except the last section, which asks the
installed libseccomp about names and numbers (no filter is loaded).
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support.conformance import CONFORMANCE, require_data
from support.skip import require

from pybox.errors import PyboxError, UsageError
from pybox.runtime import libseccomp as S
from pybox.runtime import seccomp
from pybox.runtime.capabilities import CAPABILITIES, DOCKER_DEFAULT
from pybox.runtime.seccomp import (
    Arg,
    Filter,
    Profile,
    Rule,
    SyscallRule,
    build,
    default_profile,
    load,
    parse_docker_profile,
    to_docker_json,
)

DOCKER_PROFILE = CONFORMANCE / "seccomp" / "docker-default.json"

CAP_SETS = {
    "none": frozenset(),
    "docker-default": DOCKER_DEFAULT,
    "+SYS_ADMIN": DOCKER_DEFAULT | {"CAP_SYS_ADMIN"},
    "+SYS_PTRACE": DOCKER_DEFAULT | {"CAP_SYS_PTRACE"},
    "all": frozenset(CAPABILITIES),
}
# Every archMap arch Docker's profile names, and two that only get per-arch rules.
ARCHES = ("amd64", "arm64", "s390x", "riscv64", "loong64", "mips64", "ppc64le", "x86", "arm")
KERNELS = ((4, 4), (6, 1))

ERRNO_EPERM = S.SCMP_ACT_ERRNO(errno.EPERM)


@pytest.fixture(scope="module")
def docker_profile() -> Profile:
    require_data(DOCKER_PROFILE)
    return seccomp.read_docker_profile(DOCKER_PROFILE)


def _normalized(f: Filter) -> tuple[int, tuple[str, ...], frozenset[Rule]]:
    assert len(set(f.rules)) == len(f.rules), "duplicate rules"
    return f.default_action, f.architectures, frozenset(f.rules)


def _default(caps: frozenset[str] = DOCKER_DEFAULT, arch: str = "amd64", kernel: tuple[int, int] = (6, 1)) -> Filter:
    return build(default_profile(), caps=caps, native_arch=arch, kernel=kernel)


def _rules_for(f: Filter, name: str) -> list[Rule]:
    return [r for r in f.rules if r.syscall == name]


# --- pybox's default profile is Docker's ----------------------------------


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: "{}.{}".format(*k))
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=CAP_SETS.keys())
def test_default_builds_what_dockers_profile_builds(docker_profile: Profile, caps: frozenset[str], arch: str,
                                                    kernel: tuple[int, int]) -> None:
    ours = build(default_profile(), caps=caps, native_arch=arch, kernel=kernel)
    docker = build(docker_profile, caps=caps, native_arch=arch, kernel=kernel)
    assert _normalized(ours) == _normalized(docker)


def test_default_in_dockers_json_shape_reads_back_equal() -> None:
    profile = default_profile()
    assert parse_docker_profile(json.dumps(to_docker_json(profile))) == profile


def test_default_names_the_same_syscalls_as_docker(docker_profile: Profile) -> None:
    """A name in a rule no matrix cell selects would slip past the build comparison."""

    def names(profile: Profile) -> set[str]:
        return {name for rule in profile.syscalls for name in rule.names}

    assert names(default_profile()) == names(docker_profile)


# --- what the default does, in Docker's terms -----------------------------


def test_default_denies_with_eperm_and_covers_the_compat_abis() -> None:
    assert _default().default_action == ERRNO_EPERM
    assert _default().architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert _default(arch="arm64").architectures == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert _default(arch="ppc64le").architectures == ()  # not in the archMap: the native ABI only


def test_default_capabilities_keep_the_dangerous_syscalls_out() -> None:
    allowed = {r.syscall for r in _default().rules}
    for name in ("mount", "umount2", "unshare", "setns", "keyctl", "add_key", "kexec_load", "bpf", "reboot",
                 "swapon", "open_by_handle_at", "init_module", "perf_event_open"):
        assert name not in allowed, name
    assert {"read", "execve", "chroot", "arch_prctl"} <= allowed
    assert "arch_prctl" not in {r.syscall for r in _default(arch="arm64").rules}


def test_cap_sys_admin_opens_mount_and_unrestricted_clone() -> None:
    f = _default(caps=DOCKER_DEFAULT | {"CAP_SYS_ADMIN"})
    assert {"mount", "unshare", "setns", "bpf"} <= {r.syscall for r in f.rules}
    assert _rules_for(f, "clone") == [Rule(syscall="clone", action=S.SCMP_ACT_ALLOW)]
    assert _rules_for(f, "clone3") == [Rule(syscall="clone3", action=S.SCMP_ACT_ALLOW)]


def test_without_cap_sys_admin_clone_may_not_make_namespaces_and_clone3_says_enosys() -> None:
    mask = Arg(index=0, op="SCMP_CMP_MASKED_EQ", value=0x7E020000)
    assert _rules_for(_default(), "clone") == [Rule(syscall="clone", action=S.SCMP_ACT_ALLOW, args=(mask,))]
    assert _rules_for(_default(), "clone3") == [Rule(syscall="clone3", action=S.SCMP_ACT_ERRNO(errno.ENOSYS))]
    # s390's clone takes the flags second.
    assert _rules_for(_default(arch="s390x"), "clone")[0].args == (replace(mask, index=1),)


def test_ptrace_needs_linux_4_8_or_cap_sys_ptrace() -> None:
    assert _rules_for(_default(kernel=(4, 4)), "ptrace") == []
    assert _rules_for(_default(kernel=(4, 8)), "ptrace") == [Rule(syscall="ptrace", action=S.SCMP_ACT_ALLOW)]
    ptrace_cap = _default(caps=DOCKER_DEFAULT | {"CAP_SYS_PTRACE"}, kernel=(4, 4))
    assert {"ptrace", "kcmp", "process_vm_readv"} <= {r.syscall for r in ptrace_cap.rules}


def test_socket_families_alg_and_vsock_are_denied() -> None:
    values = {(a.op, a.value) for r in _rules_for(_default(), "socket") for a in r.args}
    assert values == {("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)}


def test_a_syscall_allowed_twice_is_one_rule() -> None:
    everything = _default(caps=frozenset(CAPABILITIES))
    assert len(_rules_for(everything, "syslog")) == 1  # CAP_SYS_ADMIN's and CAP_SYSLOG's


# --- build's own rules ------------------------------------------------------


def _profile(*syscalls: dict[str, Any], **top: Any) -> Profile:
    return parse_docker_profile(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", **top, "syscalls": list(syscalls)}))


def _build(profile: Profile, caps: frozenset[str] = frozenset()) -> Filter:
    return build(profile, caps=caps, native_arch="amd64", kernel=(6, 1))


def test_includes_need_every_cap_and_excludes_any() -> None:
    profile = _profile(
        {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_X", "CAP_Y"]}},
        {"names": ["b"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_X", "CAP_Y"]}},
    )
    assert [r.syscall for r in _build(profile, frozenset({"CAP_X"})).rules] == []
    assert [r.syscall for r in _build(profile, frozenset({"CAP_X", "CAP_Y"})).rules] == ["a"]
    assert [r.syscall for r in _build(profile).rules] == ["b"]


def test_min_kernel_compares_major_then_minor() -> None:
    profile = _profile({"names": ["new"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.10"}},
                       {"names": ["old"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}})

    def names(kernel: tuple[int, int]) -> list[str]:
        return [r.syscall for r in build(profile, caps=frozenset(), native_arch="amd64", kernel=kernel).rules]

    assert (names((5, 9)), names((5, 10)), names((6, 0))) == (["old"], ["new"], ["new"])


def test_comparisons_on_one_argument_become_separate_rules() -> None:
    """runc matchCall (runc issue 2735): two tests of one argument are ORed, different arguments ANDed."""
    same = {"names": ["s"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}
    different = {"names": ["d"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "valueTwo": 3, "op": "SCMP_CMP_NE"}]}
    rules = _build(_profile(same, different)).rules

    def eq(index: int, value: int) -> Arg:
        return Arg(index=index, op="SCMP_CMP_EQ", value=value)

    assert [r.args for r in rules] == [(eq(0, 1),), (eq(0, 2),),
                                      (eq(0, 1), Arg(index=1, op="SCMP_CMP_NE", value=2, value_two=3))]


def test_actions_as_runc_maps_them() -> None:
    profile = _profile(
        {"names": ["kill"], "action": "SCMP_ACT_KILL"},
        {"names": ["errno"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {"names": ["trace"], "action": "SCMP_ACT_TRACE"},
        {"names": ["same_as_default"], "action": "SCMP_ACT_ERRNO"},  # libseccomp would refuse it (EACCES)
        defaultAction="SCMP_ACT_ERRNO",
    )
    f = _build(profile)
    assert f.default_action == ERRNO_EPERM
    assert [(r.syscall, r.action) for r in f.rules] == [
        ("kill", S.SCMP_ACT_KILL_THREAD), ("errno", S.SCMP_ACT_ERRNO(errno.ENOSYS)),
        ("trace", S.SCMP_ACT_TRACE(errno.EPERM))]


def test_architectures_are_added_whatever_the_native_one() -> None:
    f = _build(_profile(architectures=["SCMP_ARCH_X86"]))
    assert f.architectures == ("SCMP_ARCH_X86",)


def test_legacy_single_name_is_read() -> None:
    assert _profile({"name": "getpid", "action": "SCMP_ACT_ALLOW"}).syscalls[0].names == ("getpid",)


@pytest.mark.parametrize(("release", "expected"), [("6.1.0-18-amd64", (6, 1)), ("3.12-1-amd64", (3, 12)),
                                                   ("4.8", (4, 8)), ("5.15.0+", (5, 15))])
def test_host_kernel_reads_major_and_minor(monkeypatch: pytest.MonkeyPatch, release: str,
                                           expected: tuple[int, int]) -> None:
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", release, "#1", "x86_64")))
    assert seccomp.host_kernel() == expected


@pytest.mark.parametrize(("machine", "expected"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("s390x", "s390x")])
def test_host_arch_uses_the_profiles_names(monkeypatch: pytest.MonkeyPatch, machine: str, expected: str) -> None:
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6.1", "#1", machine)))
    assert seccomp.host_arch() == expected


def test_unknown_native_arch_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="x86_64"):
        build(default_profile(), caps=frozenset(), native_arch="x86_64", kernel=(6, 1))


# --- parse errors name the file and the place ------------------------------

def _top(**top: Any) -> str:
    return json.dumps({"defaultAction": "SCMP_ACT_ALLOW", **top})


def _one_rule(**rule: Any) -> str:
    return _top(syscalls=[{"names": ["a"], "action": "SCMP_ACT_ERRNO", **rule}])


def _one_arg(**arg: Any) -> str:
    return _one_rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", **arg}])


BAD_PROFILES = {
    "not json": ("{", "not valid JSON"),
    "not an object": ("[]", "top level: expected a JSON object, got a list"),
    "no default": ('{"syscalls": []}', "defaultAction: is required"),
    "unknown action": (_top(defaultAction="SCMP_ACT_MAYBE"), "defaultAction: unknown action 'SCMP_ACT_MAYBE'"),
    "notify": (_top(defaultAction="SCMP_ACT_NOTIFY"), "defaultAction: SCMP_ACT_NOTIFY needs a seccomp agent"),
    "errno range": (_top(defaultErrnoRet=-1), "defaultErrnoRet: -1 is out of range"),
    "both arch lists": (_top(architectures=["SCMP_ARCH_X86"], archMap=[{"architecture": "SCMP_ARCH_X86_64"}]),
                        "both 'architectures' and 'archMap'"),
    "unknown arch": (_top(archMap=[{"architecture": "SCMP_ARCH_VAX"}]),
                     "archMap[0].architecture: unknown architecture 'SCMP_ARCH_VAX'"),
    "name and names": (_one_rule(name="b"), "syscalls[0]: both 'name' and 'names'"),
    "no names": (_one_rule(names=[]), "syscalls[0]: no syscall names"),
    "names not strings": (_one_rule(names=[1]), "syscalls[0].names: expected a list of non-empty strings"),
    "rule action": (_top(syscalls=[{"names": ["a"]}]), "syscalls[0].action: is required"),
    "arg index": (_one_arg(index=6), "syscalls[0].args[0].index: 6 is out of range 0..5"),
    "arg op": (_one_arg(op="SCMP_CMP_ABOUT"), "syscalls[0].args[0].op: unknown operator 'SCMP_CMP_ABOUT'"),
    "arg value type": (_one_arg(value=True), "syscalls[0].args[0].value: expected an integer, got a boolean"),
    "arg value range": (_one_arg(value=2**64), "syscalls[0].args[0].value: 18446744073709551616 is out of range"),
    "min kernel": (_one_rule(includes={"minKernel": "4.8.1"}), "syscalls[0].includes.minKernel: invalid kernel"),
    "listener": (_top(listenerPath="/run/agent.sock"), "listenerPath: is not supported"),
    "flags": (_top(flags=["SECCOMP_FILTER_FLAG_LOG"]), "flags: is not supported"),
}


@pytest.mark.parametrize(("text", "message"), BAD_PROFILES.values(), ids=BAD_PROFILES.keys())
def test_bad_profiles_are_usage_errors_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_docker_profile(text, source="my.json")
    assert str(info.value).startswith("seccomp profile my.json: ")
    assert message in str(info.value)


def test_unreadable_profile_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read seccomp profile .*missing.json"):
        seccomp.read_docker_profile(tmp_path / "missing.json")


def test_unknown_keys_are_ignored_as_docker_does() -> None:
    text = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", "comment": "x"}]}'
    assert parse_docker_profile(text).syscalls == (SyscallRule(names=("a",), action="SCMP_ACT_ERRNO"),)


# --- load(): the calls, on a recording fake ---------------------------------


class RecordingLib:
    """LibSeccomp's methods used by load(); each call appends (name, *args) to ``calls``."""

    KNOWN: ClassVar[dict[str, int]] = {"read": 0, "chown32": -10004, "socket": 41}

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail:
            raise OSError(errno.EINVAL, f"{call[0]}: Invalid argument")

    def init(self, default_action: int) -> S.FilterContext:
        self._record("init", default_action)
        return S.FilterContext(1234)

    def attr_set(self, ctx: S.FilterContext, attr: int, value: int) -> None:
        self._record("attr_set", attr, value)

    def arch_add(self, ctx: S.FilterContext, arch: int) -> None:
        self._record("arch_add", arch)
        if arch == S.ARCHES["SCMP_ARCH_X86_64"]:
            raise OSError(errno.EEXIST, "seccomp_arch_add: File exists")

    def syscall_resolve_name(self, name: str) -> int | None:
        return self.KNOWN.get(name)

    def rule_add_array(self, ctx: S.FilterContext, action: int, syscall: int, comparisons: list[S.ArgCmp]) -> None:
        self._record("rule_add_array", action, syscall, comparisons)

    def load(self, ctx: S.FilterContext) -> None:
        self._record("load")

    def release(self, ctx: S.FilterContext) -> None:
        self._record("release")


FILTER = Filter(
    default_action=ERRNO_EPERM,
    architectures=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"),
    rules=(Rule(syscall="read", action=S.SCMP_ACT_ALLOW),
           Rule(syscall="listmount", action=S.SCMP_ACT_ALLOW),  # newer than this libseccomp: skipped
           Rule(syscall="chown32", action=S.SCMP_ACT_ALLOW),  # a pseudo number on x86_64, kept
           Rule(syscall="socket", action=S.SCMP_ACT_ALLOW,
                args=(Arg(index=0, op="SCMP_CMP_MASKED_EQ", value=0xF0, value_two=0x10),))),
)


def _load(lib: RecordingLib, no_new_privs: bool) -> None:
    load(FILTER, no_new_privs=no_new_privs, lib=lib)  # type: ignore[arg-type]


@pytest.mark.parametrize("no_new_privs", [True, False])
def test_load_makes_runcs_calls(no_new_privs: bool) -> None:
    lib = RecordingLib()
    _load(lib, no_new_privs)
    nnp_off = [] if no_new_privs else [("attr_set", S.SCMP_FLTATR_CTL_NNP, 0)]
    assert lib.calls == [
        ("init", ERRNO_EPERM),
        ("attr_set", S.SCMP_FLTATR_API_SYSRAWRC, 1),
        *nnp_off,
        ("arch_add", S.ARCHES["SCMP_ARCH_X86_64"]),  # EEXIST, tolerated
        ("arch_add", S.ARCHES["SCMP_ARCH_X86"]),
        ("rule_add_array", S.SCMP_ACT_ALLOW, 0, []),
        ("rule_add_array", S.SCMP_ACT_ALLOW, -10004, []),
        ("rule_add_array", S.SCMP_ACT_ALLOW, 41, [(0, S.SCMP_CMP_MASKED_EQ, 0xF0, 0x10)]),
        ("load",),
        ("release",),
    ]


def test_load_asks_for_the_binary_tree_above_32_rules() -> None:
    lib = RecordingLib()
    many = replace(FILTER, rules=tuple(Rule(syscall="read", action=S.SCMP_ACT_ERRNO(n)) for n in range(33)))
    load(many, no_new_privs=True, lib=lib)  # type: ignore[arg-type]
    assert ("attr_set", S.SCMP_FLTATR_CTL_OPTIMIZE, 2) in lib.calls


@pytest.mark.parametrize("step", ["rule_add_array", "load"])
def test_load_failure_is_a_pybox_error_and_releases(step: str) -> None:
    lib = RecordingLib(fail=step)
    with pytest.raises(PyboxError, match="seccomp: cannot load the filter: .*Invalid argument") as info:
        _load(lib, no_new_privs=True)
    assert not isinstance(info.value, OSError)  # PID 1 would report an OSError as "cannot execute"
    assert lib.calls[-1] == ("release",)
    if step == "rule_add_array":
        assert "rule for read" in str(info.value)


# --- the installed libseccomp agrees with the binding's tables -------------


@pytest.fixture
def lib() -> S.LibSeccomp:
    try:
        opened: S.LibSeccomp | None = S.LibSeccomp()
    except OSError:
        opened = None
    require(opened is not None, f"needs {S.SONAME} (Debian package libseccomp2)")
    assert opened is not None
    return opened


LIBSECCOMP_ARCH_NAMES = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel", "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc", "SCMP_ARCH_PARISC64": "parisc64", "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
}


def test_arch_tokens_match_libseccomps(lib: S.LibSeccomp) -> None:
    assert set(LIBSECCOMP_ARCH_NAMES) == set(S.ARCHES)
    for name, token in S.ARCHES.items():
        resolved = lib.arch_resolve_name(LIBSECCOMP_ARCH_NAMES[name])
        assert resolved in (token, None), name  # None: newer than the installed libseccomp (loongarch64 in 2.5)


def test_host_arch_is_libseccomps_native_arch(lib: S.LibSeccomp) -> None:
    native = _default(arch=seccomp.host_arch()).architectures[0]  # the archMap entry picked for this host
    assert S.ARCHES[native] == lib.arch_native()


def test_syscall_names_resolve_to_native_and_pseudo_numbers(lib: S.LibSeccomp) -> None:
    x86 = S.ARCHES["SCMP_ARCH_X86"]
    assert lib.syscall_resolve_name("no_such_syscall") is None
    assert lib.syscall_resolve_name_arch(x86, "chown32") == 212  # i386's unistd_32.h
    pseudo = lib.syscall_resolve_name_arch(S.ARCHES["SCMP_ARCH_X86_64"], "chown32")
    assert pseudo is not None and pseudo < 0
    assert lib.syscall_resolve_name("getpid") == lib.syscall_resolve_name_arch(lib.arch_native(), "getpid")


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=CAP_SETS.keys())
def test_libseccomp_accepts_every_rule_of_the_default(lib: S.LibSeccomp, caps: frozenset[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything up to seccomp_load, on a context that is then released: nothing reaches the kernel."""
    f = _default(caps=caps, arch=seccomp.host_arch(), kernel=seccomp.host_kernel())
    loaded: list[S.FilterContext] = []
    monkeypatch.setattr(lib, "load", loaded.append)
    load(f, no_new_privs=True, lib=lib)
    assert len(loaded) == 1
