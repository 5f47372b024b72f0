"""The last steps of PID 1 before ``exec``: drop privileges, reset signals.

The order is runc's (libcontainer ``standard_init_linux.go`` Init and
``init_linux.go`` finalizeNamespace), DESIGN.md section 4; each step depends
on what the previous one left:

- keepcaps first: leaving uid 0 would otherwise empty the permitted set
  before capset could choose what stays (capabilities(7), "Effect of user ID
  changes on capabilities").
- seccomp without no_new_privs needs CAP_SYS_ADMIN, so it is loaded while the
  process still has it (seccomp(2)).
- PR_CAPBSET_DROP needs CAP_SETPCAP, setgroups/setresgid need CAP_SETGID,
  setresuid needs CAP_SETUID: all before capset removes them.
- ambient capabilities must be in the permitted and inheritable sets, so
  they come after capset (PR_CAP_AMBIENT_RAISE in prctl(2)).
- with no_new_privs, seccomp comes last so the filter need not allow the
  syscalls above.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from pybox.runtime.capabilities import CAPABILITIES, last_cap, to_mask
from pybox.runtime.linux import CapSets, Linux
from pybox.runtime.spec import Security, UserSpec

__all__ = ["drop_privileges", "reset_signals"]


def drop_privileges(linux: Linux, security: Security, user: UserSpec,
                    load_seccomp: Callable[[], None] | None = None) -> None:
    """Become ``user`` with exactly the capabilities of ``security``; ``load_seccomp`` installs the filter."""
    linux.set_keepcaps(True)
    if not security.no_new_privileges and load_seccomp is not None:
        load_seccomp()
    # By number up to the kernel's last capability, not by the table: a
    # capability newer than pybox must not stay in the bounding set.
    bounding = to_mask(security.bounding)
    for cap in range(last_cap() + 1):
        if not bounding >> cap & 1:
            linux.capbset_drop(cap)
    linux.setgroups(user.additional_gids)
    linux.setresgid(user.gid, user.gid, user.gid)
    linux.setresuid(user.uid, user.uid, user.uid)
    linux.set_keepcaps(False)
    linux.capset(CapSets(effective=to_mask(security.effective), permitted=to_mask(security.permitted),
                         inheritable=to_mask(security.inheritable)))
    # Clear first (as gocapability's Apply(AMBIENT) under runc's ApplyCaps):
    # a process that stays uid 0 keeps the ambient set it inherited from
    # pybox's own environment, for whatever capset left permitted and inheritable.
    linux.cap_ambient_clear_all()
    for name in sorted(security.ambient, key=CAPABILITIES.__getitem__):
        linux.cap_ambient_raise(CAPABILITIES[name])
    if security.no_new_privileges:
        linux.set_no_new_privs()
        if load_seccomp is not None:
            load_seccomp()


def reset_signals(linux: Linux) -> None:
    """Every signal disposition to SIG_DFL and an empty signal mask, as a freshly exec'd process expects.

    execve(2) resets caught signals but keeps ignored ones and the mask
    (signal(7)); Python ignores SIGPIPE and SIGXFSZ at startup, so without
    this ``yes | head -1`` would never end in the container.
    """
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
    # Python's signal module does not offer glibc's reserved real-time signals.
    for sig in range(32, signal.SIGRTMIN):
        linux.default_reserved_signal(sig)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
