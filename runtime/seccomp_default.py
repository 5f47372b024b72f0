"""Docker's default seccomp profile, written down in pybox's own terms.

Source: moby/moby ``vendor/github.com/moby/profiles/seccomp/default.json``
at b985e2313a8676e18072b442911fc8f64f17d440 (generated from moby/profiles
``seccomp/default_linux.go``), Apache-2.0. tests/unit/test_seccomp_build.py
checks that this table and that file build the same filter for several
capability sets, architectures and kernels.

The shape: every syscall not named here fails with EPERM. A set of syscalls
any program needs is always allowed; the syscalls a capability guards in the
kernel are allowed only when the container keeps that capability (so
``--cap-add SYS_ADMIN`` gives both the capability and ``mount``); a few are
allowed only on some architectures, on a new enough kernel, or with some
argument values. ``clone3`` answers ENOSYS instead of EPERM: its flags sit
behind a pointer where seccomp cannot check them, and ENOSYS makes glibc fall
back to ``clone``, whose flags it can (moby PR #42681).
"""

from __future__ import annotations

import errno

from pybox.runtime.linux import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)
from pybox.runtime.seccomp import ArchGroup, Arg, Condition, Op, Profile, SyscallRule

__all__ = ["DEFAULT"]

# Always allowed.
_EVERYONE = (
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
    "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
    "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
    "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl",
    "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set",
    "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount",
    "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
    "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall",
    "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
    "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
    "removexattr", "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "riscv_hwprobe",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat",
    "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statmount",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time",
    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink",
    "unlinkat", "uretprobe", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4",
    "waitid", "waitpid", "write", "writev",
)

# The kernel checks the capability itself in these syscalls; without it, the
# profile keeps them out of reach entirely (less kernel code exposed).
_BY_CAPABILITY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    ("CAP_SYS_ADMIN", (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
        "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount", "mount_setattr", "move_mount",
        "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
        "syslog", "umount", "umount2", "unshare",
    )),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("delete_module", "init_module", "finit_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
                        "ptrace")),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_TIME", ("settimeofday", "stime", "clock_settime", "clock_settime64")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
)

# Syscalls only some architectures have or need, by the architecture names profiles use.
_BY_ARCH: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("ppc64le",), ("sync_file_range2", "swapcontext")),
    (("arm", "arm64"), ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                        "set_tls")),
    (("amd64", "x32"), ("arch_prctl",)),
    (("amd64", "x32", "x86"), ("modify_ldt",)),
    (("s390", "s390x"), ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr")),
    (("riscv64",), ("riscv_flush_icache",)),
)

# socket(2) families, <linux/socket.h>. Every family is allowed but AF_ALG (the
# kernel's crypto API, needless attack surface) and AF_VSOCK (host/guest
# sockets, not confined by network namespaces).
_AF_ALG, _AF_NFC, _AF_VSOCK = 38, 39, 40

# personality(2) values, <linux/personality.h>: plain Linux, 32-bit (linux32),
# the uname 2.6 emulation of both, and 0xffffffff, which only queries.
_PER_LINUX, _PER_LINUX32, _UNAME26, _PERSONALITY_QUERY = 0x0000, 0x0008, 0x0020000, 0xFFFFFFFF
_PERSONALITIES = (_PER_LINUX, _PER_LINUX32, _UNAME26, _UNAME26 | _PER_LINUX32, _PERSONALITY_QUERY)

# Without CAP_SYS_ADMIN, clone(2) must not create namespaces (unshare is denied the same way).
_NAMESPACE_FLAGS = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
                    | CLONE_NEWCGROUP)
_S390 = ("s390", "s390x")


_ANY = Condition()  # no condition: holds everywhere as "includes", never as "excludes"


def _allow(*names: str, args: tuple[Arg, ...] = (), when: Condition = _ANY, unless: Condition = _ANY) -> SyscallRule:
    return SyscallRule(names=names, action="SCMP_ACT_ALLOW", args=args, includes=when, excludes=unless)


def _first_arg(op: Op, value: int, *, index: int = 0) -> tuple[Arg, ...]:
    return (Arg(index=index, op=op, value=value),)


_SYS_ADMIN = Condition(caps=("CAP_SYS_ADMIN",))

DEFAULT = Profile(
    default_action="SCMP_ACT_ERRNO",
    default_errno_ret=errno.EPERM,
    # A filter covers the native ABI and the compat ABIs its kernel also runs
    # (an x86_64 kernel runs i386 and x32 programs); unlisted ABIs are killed.
    arch_map=(
        ArchGroup(arch="SCMP_ARCH_X86_64", sub_arches=("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
        ArchGroup(arch="SCMP_ARCH_AARCH64", sub_arches=("SCMP_ARCH_ARM",)),
        ArchGroup(arch="SCMP_ARCH_MIPS64", sub_arches=("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
        ArchGroup(arch="SCMP_ARCH_MIPS64N32", sub_arches=("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64")),
        ArchGroup(arch="SCMP_ARCH_MIPSEL64", sub_arches=("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32")),
        ArchGroup(arch="SCMP_ARCH_MIPSEL64N32", sub_arches=("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64")),
        ArchGroup(arch="SCMP_ARCH_S390X", sub_arches=("SCMP_ARCH_S390",)),
        ArchGroup(arch="SCMP_ARCH_RISCV64"),
        ArchGroup(arch="SCMP_ARCH_LOONGARCH64"),
    ),
    syscalls=(
        _allow(*_EVERYONE),
        # Before Linux 4.8 a tracer could rewrite a syscall after seccomp had
        # checked it, a way around the filter (torvalds/linux 93e35efb8de4, moby PR #38137).
        _allow("process_vm_readv", "process_vm_writev", "ptrace", when=Condition(min_kernel=(4, 8))),
        _allow("socket", args=_first_arg("SCMP_CMP_LT", _AF_ALG)),
        _allow("socket", args=_first_arg("SCMP_CMP_EQ", _AF_NFC)),
        _allow("socket", args=_first_arg("SCMP_CMP_GT", _AF_VSOCK)),
        *(_allow("personality", args=_first_arg("SCMP_CMP_EQ", p)) for p in _PERSONALITIES),
        *(_allow(*names, when=Condition(arches=arches)) for arches, names in _BY_ARCH),
        *(_allow(*names, when=Condition(caps=(cap,))) for cap, names in _BY_CAPABILITY),
        # clone with none of the namespace flags set; s390's clone takes the stack first and the flags second.
        _allow("clone", args=_first_arg("SCMP_CMP_MASKED_EQ", _NAMESPACE_FLAGS),
               unless=Condition(caps=_SYS_ADMIN.caps, arches=_S390)),
        _allow("clone", args=_first_arg("SCMP_CMP_MASKED_EQ", _NAMESPACE_FLAGS, index=1),
               when=Condition(arches=_S390), unless=_SYS_ADMIN),
        # ENOSYS, not EPERM, so glibc falls back to clone (see above).
        SyscallRule(names=("clone3",), action="SCMP_ACT_ERRNO", errno_ret=errno.ENOSYS, excludes=_SYS_ADMIN),
    ),
)
