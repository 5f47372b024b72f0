"""A ctypes binding of libseccomp.so.2, the library runc and crun build their filters with.

Only what :func:`pybox.runtime.seccomp.load` needs, declared from
``<seccomp.h>`` of libseccomp 2.5 (Debian package ``libseccomp2``; the
functions are described in their man pages, seccomp_init(3),
seccomp_rule_add(3) ...). libseccomp returns ``-errno`` on failure; every
wrapper turns that into ``OSError``.

Two choices differ from the obvious ones:

- rules go through ``seccomp_rule_add_array``, never the variadic
  ``seccomp_rule_add``: its ``...`` are ``struct scmp_arg_cmp`` values, and
  ctypes cannot pass structs through varargs portably (DESIGN.md section 4).
- the library is opened by its soname, not through ``ctypes.util.find_library``:
  the prototypes and constants here are those of ABI version 2, and
  ``find_library`` runs ``ldconfig -p`` in a subprocess on pybox run's path.

Importing this module loads nothing; :class:`LibSeccomp` opens the library.
Open it before ``pivot_root``: the host's library is not visible afterwards.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, NewType, cast

__all__ = [
    "ARCHES",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
    "SCMP_FLTATR_API_SYSRAWRC",
    "SCMP_FLTATR_CTL_NNP",
    "SCMP_FLTATR_CTL_OPTIMIZE",
    "SONAME",
    "ArgCmp",
    "FilterContext",
    "LibSeccomp",
]

SONAME = "libseccomp.so.2"

# Actions, <seccomp.h>. KILL is KILL_THREAD (the kernel's SECCOMP_RET_KILL).
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def SCMP_ACT_ERRNO(errno: int) -> int:
    """The action "fail with ``errno``"; the kernel keeps 16 bits of it."""
    return 0x00050000 | (errno & 0xFFFF)


def SCMP_ACT_TRACE(message: int) -> int:
    """The action "notify the ptrace(2) tracer with ``message``"."""
    return 0x7FF00000 | (message & 0xFFFF)


# enum scmp_compare.
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

# enum scmp_filter_attr (the ones pybox sets).
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9

# Architecture tokens: the kernel's AUDIT_ARCH_* values (<linux/audit.h>): the
# ELF machine, plus flags for 64-bit and little-endian ABIs. x32 differs from
# the kernel's value so libseccomp can tell it from x86_64 (<seccomp.h>).
_64BIT = 0x80000000
_LE = 0x40000000
_MIPS_N32 = 0x20000000
_EM_386, _EM_MIPS, _EM_PARISC, _EM_PPC, _EM_PPC64, _EM_S390 = 3, 8, 15, 20, 21, 22
_EM_ARM, _EM_X86_64, _EM_AARCH64, _EM_RISCV, _EM_LOONGARCH = 40, 62, 183, 243, 258

# Keyed by the names Docker profiles and the OCI runtime spec use.
ARCHES: MappingProxyType[str, int] = MappingProxyType({
    "SCMP_ARCH_X86": _EM_386 | _LE,
    "SCMP_ARCH_X86_64": _EM_X86_64 | _64BIT | _LE,
    "SCMP_ARCH_X32": _EM_X86_64 | _LE,
    "SCMP_ARCH_ARM": _EM_ARM | _LE,
    "SCMP_ARCH_AARCH64": _EM_AARCH64 | _64BIT | _LE,
    "SCMP_ARCH_MIPS": _EM_MIPS,
    "SCMP_ARCH_MIPS64": _EM_MIPS | _64BIT,
    "SCMP_ARCH_MIPS64N32": _EM_MIPS | _64BIT | _MIPS_N32,
    "SCMP_ARCH_MIPSEL": _EM_MIPS | _LE,
    "SCMP_ARCH_MIPSEL64": _EM_MIPS | _64BIT | _LE,
    "SCMP_ARCH_MIPSEL64N32": _EM_MIPS | _64BIT | _LE | _MIPS_N32,
    "SCMP_ARCH_PPC": _EM_PPC,
    "SCMP_ARCH_PPC64": _EM_PPC64 | _64BIT,
    "SCMP_ARCH_PPC64LE": _EM_PPC64 | _64BIT | _LE,
    "SCMP_ARCH_S390": _EM_S390,
    "SCMP_ARCH_S390X": _EM_S390 | _64BIT,
    "SCMP_ARCH_PARISC": _EM_PARISC,
    "SCMP_ARCH_PARISC64": _EM_PARISC | _64BIT,
    "SCMP_ARCH_RISCV64": _EM_RISCV | _64BIT | _LE,
    "SCMP_ARCH_LOONGARCH64": _EM_LOONGARCH | _64BIT | _LE,  # libseccomp >= 2.6
})

_NR_SCMP_ERROR = -1  # what the name resolvers return for a name they do not know

FilterContext = NewType("FilterContext", int)
# struct scmp_arg_cmp as a tuple: (arg, op, datum_a, datum_b); arg counts from 0.
ArgCmp = tuple[int, int, int, int]


class _ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result < 0:
        raise OSError(-result, f"{what}: {os.strerror(-result)}")


class LibSeccomp:
    """libseccomp.so.2, opened now; the methods are the C functions of the same name minus ``seccomp_``."""

    def __init__(self, soname: str = SONAME) -> None:
        lib = ctypes.CDLL(soname)  # OSError when the library is not installed

        def fn(name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
            f = getattr(lib, name)
            f.argtypes = list(argtypes)
            f.restype = restype
            return cast("Callable[..., Any]", f)

        ctx, u32, c_int, c_uint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint
        self._init = fn("seccomp_init", ctx, u32)
        self._release = fn("seccomp_release", None, ctx)
        self._attr_set = fn("seccomp_attr_set", c_int, ctx, c_int, u32)
        self._arch_add = fn("seccomp_arch_add", c_int, ctx, u32)
        self._arch_native = fn("seccomp_arch_native", u32)
        self._arch_resolve_name = fn("seccomp_arch_resolve_name", u32, ctypes.c_char_p)
        self._resolve_name = fn("seccomp_syscall_resolve_name", c_int, ctypes.c_char_p)
        self._resolve_name_arch = fn("seccomp_syscall_resolve_name_arch", c_int, u32, ctypes.c_char_p)
        self._rule_add_array = fn("seccomp_rule_add_array", c_int, ctx, u32, c_int, c_uint,
                                  ctypes.POINTER(_ScmpArgCmp))
        self._load = fn("seccomp_load", c_int, ctx)
        self._export_bpf = fn("seccomp_export_bpf", c_int, ctx, c_int)

    def init(self, default_action: int) -> FilterContext:
        """A new filter whose action for unmatched syscalls is ``default_action``, for the native arch."""
        handle = self._init(default_action)
        if not handle:
            # seccomp_init(3) reports failure only as NULL: an invalid action or no memory.
            raise OSError(f"seccomp_init({default_action:#x}) failed: invalid action or out of memory")
        return FilterContext(handle)

    def release(self, ctx: FilterContext) -> None:
        """Free the filter; a loaded filter stays in the kernel."""
        self._release(ctx)

    def attr_set(self, ctx: FilterContext, attr: int, value: int) -> None:
        """seccomp_attr_set(3): one of the ``SCMP_FLTATR_*`` attributes."""
        _check(self._attr_set(ctx, attr, value), f"seccomp_attr_set({attr}, {value})")

    def arch_add(self, ctx: FilterContext, arch: int) -> None:
        """Add an architecture token (``ARCHES``); ``EEXIST`` when it is already there (the native one is)."""
        _check(self._arch_add(ctx, arch), f"seccomp_arch_add({arch:#x})")

    def arch_native(self) -> int:
        """The token of the architecture libseccomp was built for."""
        return int(self._arch_native())

    def arch_resolve_name(self, name: str) -> int | None:
        """``"x86_64"``, ``"aarch64"`` ... -> the token; None when this libseccomp does not know the name."""
        return int(self._arch_resolve_name(name.encode())) or None

    def syscall_resolve_name(self, name: str) -> int | None:
        """The native number of syscall ``name``, or None if this libseccomp does not know it.

        A syscall the native architecture lacks but another one has (``chown32``
        on x86_64) resolves to a negative pseudo number; rules added with it
        apply to the filter's architectures that have the syscall
        (seccomp_syscall_resolve_name(3)).
        """
        number = self._resolve_name(name.encode())
        return None if number == _NR_SCMP_ERROR else int(number)

    def syscall_resolve_name_arch(self, arch: int, name: str) -> int | None:
        """The number of ``name`` on architecture ``arch``; pseudo numbers and None as above."""
        number = self._resolve_name_arch(arch, name.encode())
        return None if number == _NR_SCMP_ERROR else int(number)

    def rule_add_array(self, ctx: FilterContext, action: int, syscall: int, comparisons: Sequence[ArgCmp]) -> None:
        """Add "``syscall`` with all of ``comparisons`` true -> ``action``" (the comparisons are ANDed)."""
        array = (_ScmpArgCmp * len(comparisons))(*(_ScmpArgCmp(*c) for c in comparisons))
        _check(self._rule_add_array(ctx, action, syscall, len(comparisons), array),
               f"seccomp_rule_add_array(syscall {syscall})")

    def load(self, ctx: FilterContext) -> None:
        """Generate the BPF program and install it for the calling thread (seccomp_load(3))."""
        _check(self._load(ctx), "seccomp_load")

    def export_bpf(self, ctx: FilterContext, fd: int) -> None:
        """Write the generated BPF program (struct sock_filter[]) to ``fd`` (seccomp_export_bpf(3))."""
        _check(self._export_bpf(ctx, fd), "seccomp_export_bpf")
