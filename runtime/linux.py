"""Every privileged Linux call pybox makes, through ctypes, in one place.

Python 3.11 has no ``os.unshare``/``os.setns``/``os.mount``; glibc exports
them. Each wrapper declares its argtypes, passes ``bytes`` paths and turns
``errno`` into ``OSError``. Where Python already has the call (``os.setresuid``,
``os.mknod``, ``fcntl.ioctl`` ...) the method calls it: the point of a method is
that callers receive a :class:`Linux` object, so tests can pass a recording
fake and assert the order of calls (DESIGN.md section 8, rule 2).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import termios
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLONE_NEWCGROUP",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "MNT_DETACH",
    "MS_BIND",
    "MS_MOVE",
    "MS_NOATIME",
    "MS_NODEV",
    "MS_NODIRATIME",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_RELATIME",
    "MS_REMOUNT",
    "MS_SHARED",
    "MS_SLAVE",
    "MS_STRICTATIME",
    "MS_UNBINDABLE",
    "CapSets",
    "Linux",
]

# clone(2) / unshare(2) namespace flags, <linux/sched.h>.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags, <linux/mount.h>.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

# umount2(2).
MNT_DETACH = 0x2

# mount_setattr(2): one number on every architecture (new syscalls share the
# generic table), struct mount_attr of four u64, <linux/mount.h> flags.
_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1

# prctl(2) options, <linux/prctl.h>. Private: each has its own method below.
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4

# netdevice(7) ioctls on struct ifreq: a 16-byte name, then the flags (a short), 40 bytes in all.
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sH22x")

# capget(2): version 3 uses two data structs, bits 0-31 and 32-63 of each set.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CapDataPair = _CapData * 2


@dataclass(frozen=True, kw_only=True)
class CapSets:
    """A thread's effective, permitted and inheritable capability sets as bit masks (bit n = cap n)."""

    effective: int
    permitted: int
    inheritable: int


def _fs(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# rt_sigaction's number (arch/x86/entry/syscalls, asm-generic/unistd.h).
_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}


class Linux:
    """Real syscalls. Methods raise ``OSError`` with the errno and the path involved."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)

        def fn(name: str, *argtypes: Any) -> Callable[..., int]:
            f = getattr(libc, name)
            f.argtypes = list(argtypes)
            f.restype = ctypes.c_int
            return f

        c_char_p, c_int, c_ulong, c_size_t = ctypes.c_char_p, ctypes.c_int, ctypes.c_ulong, ctypes.c_size_t
        self._mount = fn("mount", c_char_p, c_char_p, c_char_p, c_ulong, c_char_p)
        self._umount2 = fn("umount2", c_char_p, c_int)
        self._unshare = fn("unshare", c_int)
        self._setns = fn("setns", c_int, c_int)
        self._pivot_root = fn("pivot_root", c_char_p, c_char_p)
        self._sethostname = fn("sethostname", c_char_p, c_size_t)
        self._setdomainname = fn("setdomainname", c_char_p, c_size_t)
        # prctl(2) is variadic in glibc; it reads all four extra arguments as
        # unsigned long, and integer varargs travel in the same registers as
        # fixed ones on the Linux ABIs, so a fixed prototype is safe here
        # (unlike seccomp_rule_add, whose varargs are structs).
        self._prctl = fn("prctl", c_int, c_ulong, c_ulong, c_ulong, c_ulong)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._capget = fn("capget", ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
        self._capset = fn("capset", ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))

    @staticmethod
    def _check(result: int, what: str, path: str | os.PathLike[str] | None = None,
               path2: str | os.PathLike[str] | None = None) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}", None if path is None else os.fspath(path), None,
                          None if path2 is None else os.fspath(path2))

    def _prctl_call(self, what: str, option: int, arg2: int = 0, arg3: int = 0) -> None:
        self._check(self._prctl(option, arg2, arg3, 0, 0), what)

    # --- filesystems, namespaces, network ----------------------------------

    def mount(self, source: str | None, target: str | os.PathLike[str], fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        """mount(2)."""
        self._check(self._mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data)), "mount", target)

    def umount2(self, target: str | os.PathLike[str], flags: int = 0) -> None:
        """umount2(2)."""
        self._check(self._umount2(_fs(target), flags), "umount", target)

    def make_readonly_recursive(self, target: str | os.PathLike[str]) -> None:
        """mount_setattr(2) with AT_RECURSIVE: the mount at ``target`` and every mount below it read-only.

        A read-only remount changes one mount only; submounts of a bind's
        source would stay writable. Raises OSError (ENOSYS before Linux 5.12).
        """
        attr = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY, 0, 0, 0)
        result = self._syscall(ctypes.c_long(_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD), _fs(target),
                               ctypes.c_uint(_AT_RECURSIVE), attr, ctypes.c_size_t(ctypes.sizeof(attr)))
        self._check(result, "mount_setattr", target)

    def unshare(self, flags: int) -> None:
        """unshare(2): ``flags`` is an OR of ``CLONE_NEW*``; call it single-threaded (DESIGN.md section 4)."""
        self._check(self._unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int = 0) -> None:
        """setns(2): join the namespace open at ``fd``; ``nstype`` 0 accepts any kind."""
        self._check(self._setns(fd, nstype), "setns")

    def pivot_root(self, new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
        """pivot_root(2); ``pivot_root(".", ".")`` stacks the old root on the new one (see its NOTES)."""
        self._check(self._pivot_root(_fs(new_root), _fs(put_old)), "pivot_root", new_root, put_old)

    def sethostname(self, name: str) -> None:
        """sethostname(2), in the caller's UTS namespace."""
        raw = name.encode()
        self._check(self._sethostname(raw, len(raw)), "sethostname")

    def setdomainname(self, name: str) -> None:
        """setdomainname(2), in the caller's UTS namespace."""
        raw = name.encode()
        self._check(self._setdomainname(raw, len(raw)), "setdomainname")

    def mknod(self, path: str | os.PathLike[str], mode: int, device: int = 0) -> None:
        """mknod(2): ``mode`` includes the file type (``stat.S_IFCHR``); ``device`` from ``os.makedev``."""
        os.mknod(path, mode, device)

    def symlink(self, target: str | os.PathLike[str], link: str | os.PathLike[str]) -> None:
        """symlink(2): create ``link`` pointing at ``target``."""
        os.symlink(target, link)

    def chdir(self, path: str | os.PathLike[str]) -> None:
        """chdir(2)."""
        os.chdir(path)

    def set_link_up(self, name: str) -> None:
        """netdevice(7) SIOCSIFFLAGS with IFF_UP, in the caller's network namespace (no pyroute2 import)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = _IFREQ_FLAGS.pack(name.encode(), 0)
            flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), flags | _IFF_UP))

    # --- process ------------------------------------------------------------

    def load_seccomp_program(self, program: bytes) -> None:
        """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): install a BPF program (struct sock_filter[]).

        The kernel wants no_new_privs or CAP_SYS_ADMIN at this point, as for
        libseccomp's own load (seccomp(2)).
        """
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
        self._check(self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
                    "prctl(PR_SET_SECCOMP)")

    def default_reserved_signal(self, sig: int) -> None:
        """rt_sigaction(2) straight to the kernel: SIG_DFL for a signal glibc reserves (32, 33).

        glibc's sigaction() refuses those numbers, yet a process can inherit
        them ignored, and exec keeps ignored signals. An all-zero
        struct kernel_sigaction is SIG_DFL with no flags on every architecture.
        """
        number = _RT_SIGACTION.get(os.uname().machine)
        if number is None:
            return
        action = (ctypes.c_ulong * 8)()
        self._check(self._syscall(ctypes.c_long(number), ctypes.c_long(sig), action, None, ctypes.c_long(8)),
                    "rt_sigaction", None)

    def set_child_subreaper(self) -> None:
        """prctl(2) PR_SET_CHILD_SUBREAPER: orphaned descendants are reparented to this process."""
        self._prctl_call("prctl(PR_SET_CHILD_SUBREAPER)", _PR_SET_CHILD_SUBREAPER, 1)

    def setsid(self) -> int:
        """setsid(2): a new session and process group; returns the session id."""
        return os.setsid()

    def set_controlling_terminal(self, fd: int) -> None:
        """ioctl_tty(2) TIOCSCTTY: make the terminal at ``fd`` the session's controlling terminal."""
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)

    # --- credentials and capabilities --------------------------------------

    def setgroups(self, gids: Sequence[int]) -> None:
        """setgroups(2): the supplementary group list."""
        os.setgroups(gids)

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None:
        """setresgid(2)."""
        os.setresgid(rgid, egid, sgid)

    def setresuid(self, ruid: int, euid: int, suid: int) -> None:
        """setresuid(2): leaving uid 0 clears the permitted set unless keepcaps is on (capabilities(7))."""
        os.setresuid(ruid, euid, suid)

    def set_keepcaps(self, on: bool) -> None:
        """prctl(2) PR_SET_KEEPCAPS: keep the permitted set across a change away from uid 0."""
        self._prctl_call("prctl(PR_SET_KEEPCAPS)", _PR_SET_KEEPCAPS, int(on))

    def capbset_drop(self, cap: int) -> None:
        """prctl(2) PR_CAPBSET_DROP: remove ``cap`` from the bounding set (needs CAP_SETPCAP)."""
        self._prctl_call("prctl(PR_CAPBSET_DROP)", _PR_CAPBSET_DROP, cap)

    def cap_ambient_clear_all(self) -> None:
        """prctl(2) PR_CAP_AMBIENT_CLEAR_ALL."""
        self._prctl_call("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)

    def cap_ambient_raise(self, cap: int) -> None:
        """prctl(2) PR_CAP_AMBIENT_RAISE: ``cap`` must be in the permitted and inheritable sets."""
        self._prctl_call("prctl(PR_CAP_AMBIENT_RAISE)", _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)

    def set_no_new_privs(self) -> None:
        """prctl(2) PR_SET_NO_NEW_PRIVS: execve never grants privileges again (setuid bits, file caps)."""
        self._prctl_call("prctl(PR_SET_NO_NEW_PRIVS)", _PR_SET_NO_NEW_PRIVS, 1)

    def capget(self) -> CapSets:
        """capget(2) for the calling thread."""
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = _CapDataPair()
        self._check(self._capget(ctypes.byref(header), data), "capget")
        return CapSets(effective=data[0].effective | data[1].effective << 32,
                       permitted=data[0].permitted | data[1].permitted << 32,
                       inheritable=data[0].inheritable | data[1].inheritable << 32)

    def capset(self, sets: CapSets) -> None:
        """capset(2) for the calling thread; the bounding and ambient sets go through prctl."""
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = _CapDataPair()
        for i in range(2):
            shift, low = 32 * i, 0xFFFFFFFF
            data[i] = _CapData(sets.effective >> shift & low, sets.permitted >> shift & low,
                               sets.inheritable >> shift & low)
        self._check(self._capset(ctypes.byref(header), data), "capset")
